package board

import "path"

// SealedKeyDir is the directory, in the file system of the partition
// holding the bootloader environment (Bootloader.EnvPartition), that holds
// the TPM-sealed passphrases of encrypted partitions.
const SealedKeyDir = "lifeboat"

// SealedKeyPath is where the TPM-sealed passphrase (a pkg/tpm blob) of the
// encrypted partition labelled label lives in the file system of the
// partition holding the bootloader environment: lifeboat/<label>.key.tpm.
// The disk builder writes it there and the recovery ramdisk reads it.
func SealedKeyPath(label string) string { return path.Join(SealedKeyDir, label+".key.tpm") }
