// Package mkfs makes empty file systems on partitions: the recovery
// ramdisk's data partition after a factory reset, a wipe or a
// manufacturing flash, where no mke2fs is at hand. It wraps go-diskfs's
// ext4 writer, checked against e2fsck and the kernel (mkfs_test.go).
package mkfs

import (
	"fmt"
	"os"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/ext4"
)

// MinExt4Size is the smallest file system Ext4 makes.
const MinExt4Size = 16 << 20

// Ext4 makes an empty, journaled ext4 file system labelled label on the
// first size bytes of dev (a partition's device node or an image file).
// What the partition held before is not read; a caller that must not
// leave it readable wipes it first (pkg/reset). The file system has no
// resize inode, since it never grows, and is synced before Ext4 returns.
func Ext4(dev *os.File, size int64, label string) error {
	if size < MinExt4Size {
		return fmt.Errorf("mkfs ext4 on %s: %d bytes, want at least %d", dev.Name(), size, MinExt4Size)
	}
	if len(label) > 16 {
		return fmt.Errorf("mkfs ext4 on %s: label %q is longer than 16 bytes", dev.Name(), label)
	}
	_, err := ext4.Create(file.New(dev, false), size, 0, 512, &ext4.Params{
		VolumeName: label,
		Features:   []ext4.FeatureOpt{ext4.WithFeatureReservedGDTBlocksForExpansion(false)},
	})
	if err != nil {
		return fmt.Errorf("mkfs ext4 on %s: %w", dev.Name(), err)
	}
	if err := dev.Sync(); err != nil {
		return fmt.Errorf("mkfs ext4 on %s: %w", dev.Name(), err)
	}
	return nil
}
