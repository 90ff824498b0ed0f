// Package blockdev is the block layer's seam to disks: a small [Device]
// interface over a block device or a disk image, the GUID Partition Table,
// board partition layouts, and finding partitions by label, PARTUUID or
// type.
//
// # Devices
//
// [Open] opens a block device or a regular file as a [*File]: its size
// (BLKGETSIZE64 or stat), sector sizes (BLKSSZGET, BLKPBSZGET), flush
// (fsync, then BLKFLSBUF on a block device), discard (BLKDISCARD, or
// punching a hole in a file), secure discard (BLKSECDISCARD) and zero-out
// (BLKZEROOUT, or fallocate(FALLOC_FL_ZERO_RANGE) on a file). A device that
// cannot do one of these says so with an error wrapping [ErrNotSupported];
// [Zero] falls back to writing zeros. [Mem] is the in-memory fake, which
// records every discard, zero-out and flush for other packages' tests, and
// [Section] gives the view of one partition of a device.
//
// # GPT
//
// [ReadGPT] parses a GUID Partition Table (UEFI 2.10, section 5.3) strictly
// — protective MBR, signatures, revision, header sizes, both CRC32s, the
// LBAs each header gives for itself and its twin, entry arrays and
// partitions within the usable area, no overlaps — from 512- or 4096-byte
// sectors. When one copy of the table is damaged and the other is whole it
// returns the whole one and records what was wrong with the other in
// [Table.PrimaryErr] or [Table.BackupErr]. [WriteGPT] writes both copies and
// the protective MBR; [Layout.Create] plans a board's partitions on a blank
// disk (1 MiB alignment, one partition may take the rest) and writes them.
// Tables this package writes read back identically with sfdisk and sgdisk,
// and theirs with this package (see the golden tests).
//
// # Finding partitions
//
// [Table.Find] finds a partition of one disk by [Match] (label, PARTUUID,
// type). [FindPartition] finds one on the running system: it reads the GPT
// of every disk in /sys/block, takes the partitions' device nodes, starts and
// sizes from sysfs, and needs no udev, as in a ramdisk; where a disk cannot
// be read it falls back to udev's /dev/disk/by-partuuid and by-partlabel
// links.
package blockdev
