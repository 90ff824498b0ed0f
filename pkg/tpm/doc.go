// Package tpm gives Lifeboat three things a TPM 2.0 does better than software:
// sealing a volume key to the measured boot state, a monotonic counter for
// anti-rollback, and a device identity key that never leaves the chip.
//
// Each capability is a small interface with a real implementation on [*TPM]
// (built on github.com/google/go-tpm's tpm2 package) and an in-memory [Fake]
// for other packages' tests:
//
//	Sealer    Seal / Unseal a secret of up to 128 bytes under a PCR policy
//	PCRBank   ReadPCRs / ExtendPCR (SHA-256 bank)
//	Counter   Value / Increment / AdvanceTo on an NV counter ([*NVCounter])
//	Identity  IdentityKey, a crypto.Signer whose private key stays in the TPM
//
// [Open] opens /dev/tpmrm0 (the kernel's resource manager; /dev/tpm0 also
// works when nothing else uses the TPM); [New] speaks the same protocol over
// any byte stream, such as the server socket of an swtpm simulator (see
// package tpmtest).
//
// # Storage root key
//
// Sealed objects live under the TCG reference ECC P-256 storage root key
// (go-tpm's ECCSRKTemplate) in the owner hierarchy, re-created with
// TPM2_CreatePrimary on every use and flushed afterwards. A primary key is a
// deterministic function of the hierarchy's seed and the template, so nothing
// has to be provisioned or persisted, no persistent handle can collide with
// another tool's, and the key is the same one a board gets if it persisted the
// reference SRK at 0x81000001. ECC rather than RSA because creating an ECC
// primary takes milliseconds where RSA-2048 key generation takes seconds on
// real TPMs. A TPM2_Clear changes the owner seed: every sealed blob and the
// identity key are then gone, which is what clearing a TPM is for.
//
// # PCR policy
//
// A sealed object is a keyed-hash object with userWithAuth clear, so the only
// way to unseal it is a policy session that satisfies its authPolicy:
//
//	TPM2_PolicyPCR(sha256: PCRs...)   the PCRs hold the values sealed to
//	TPM2_PolicyAuthValue()            only when sealed with a PIN
//
// Seal binds to the PCRs' current values, or to values the caller predicts
// (Policy.Values), which is how an update reseals for the next boot's
// measurements. The recommended selection is PCR 7 (Secure Boot state and
// keys) and PCR 11 (the unified kernel image, as systemd-stub measures it):
// the firmware vouches for the signature chain and PCR 11 for the exact
// kernel, command line and initrd. After unsealing, the ramdisk should extend
// one of the sealed PCRs (ExtendPCR) so that nothing later in the boot can
// unseal the key again. When a PCR differs, Unseal fails with an error that
// matches [ErrPolicy] (and go-tpm's TPMRCPolicyFail). Policy.NoPCRs, asked
// for explicitly, seals to the TPM alone (the empty policy, with
// PolicyAuthValue when there is a PIN): what a recovery ramdisk that cannot
// predict the PCRs of every release it installs uses for the data
// partition's key (docs/security.md).
//
// Both directions of the key's journey over the TPM bus are encrypted: Seal
// sends the secret with a salted session encrypting TPM2_Create's sensitive
// parameter, and Unseal receives it through a salted policy session
// encrypting TPM2_Unseal's response (AES-128-CFB, salt sealed to the SRK), so
// an interposer on the LPC/SPI bus sees neither the key nor the PIN.
//
// Objects sealed without a PIN are noDA: there is nothing to guess, and a
// dictionary-attack lockout must not stop the device from booting. Objects
// sealed with a PIN are subject to the TPM's dictionary-attack protection; a
// wrong PIN is [ErrAuth], a TPM in lockout [ErrLockout].
//
// The sealed blob (the object's public and private areas, see [Sealed]) is
// not secret: only this TPM can load it. Keep it in a file next to the
// encrypted volume's header.
//
// # Counter
//
// [NVCounter] is a TPM_NT_COUNTER NV index (by default [DefaultCounterIndex],
// in the owner range 0x01000000–0x013FFFFF of the TCG handle registry), 8
// bytes, with attributes
//
//	OWNERWRITE  incrementing needs owner authorization
//	AUTHREAD    reading needs only the index's own, empty, authValue
//	OWNERREAD   the owner may read it too
//	NO_DA       empty authValues are not subject to dictionary-attack lockout
//
// The platform hierarchy is not used (PPWRITE/PPREAD clear): firmware
// normally disables it before the OS runs. AUTHWRITE and POLICYWRITE are clear
// so nobody who merely knows the index's empty auth can write it. The index is
// not ORDERLY, so every increment reaches NV at once; [NVCounter.AdvanceTo]
// refuses to step more than [MaxAdvance] times in one call to bound NV wear.
// A counter never goes back: the TPM only increments it, and should someone
// with owner authorization undefine and redefine the index, the TPM starts
// the new counter at the largest value any counter on it ever held. Every
// read checks the index's type and attributes, so an ordinary NV index
// planted at the same handle is refused ([ErrCounterMismatch]) rather than
// read as a counter. A fresh counter starts at a TPM-chosen value (1 on a
// new TPM, after the first increment that Define makes), so compare release
// versions with it, not with zero.
//
// # Identity key
//
// [TPM.IdentityKey] re-creates, with TPM2_CreatePrimary in the owner
// hierarchy, an unrestricted ECC P-256 signing key with attributes
// fixedTPM|fixedParent|sensitiveDataOrigin|userWithAuth|noDA|sign and an
// empty authValue. The template's unique field is SHA-256("lifeboat device
// identity v1"), which keeps it apart from other tools' primaries. The same
// key comes back after every restart for as long as the owner seed is
// unchanged; its private part was generated inside the TPM and can never be
// duplicated out of it. noDA keeps signing working while a PIN-protected
// object has the TPM in lockout.
//
// # What a board must provision
//
// Nothing persistent, but the package assumes the owner hierarchy is enabled
// and its authorization (ownerAuth) is empty, as it is on a TPM that was
// cleared and never taken ownership of: creating the SRK and the identity
// key, and defining and incrementing the counter, authorize with the empty
// owner password. Call NVCounter.Define once at provisioning (it is
// idempotent). A board whose firmware sets ownerAuth, or disables the owner
// hierarchy, cannot use this package as is. Access to /dev/tpmrm0 (root or
// the tss group) is the boundary for signing with the identity key and for
// incrementing the counter.
package tpm
