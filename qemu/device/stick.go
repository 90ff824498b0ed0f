package device

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// StickLabel is the FAT label of the sticks Stick makes.
const StickLabel = "LIFEBOAT"

// Stick writes out, a USB stick image: one FAT file system, labelled
// StickLabel, holding the files of bundleDir at its root (a bundle is a
// repository's layout: pkg/publish.Bundle). The image is sized to the
// bundle with room to spare; it is sparse on the host. An existing out is
// replaced once the new image is complete.
func Stick(ctx context.Context, bundleDir, out string) error {
	ents, err := os.ReadDir(bundleDir)
	if err != nil {
		return fmt.Errorf("stick: %w", err)
	}
	if len(ents) == 0 {
		return fmt.Errorf("stick: bundle %s is empty", bundleDir)
	}
	var bytes, files int64
	err = filepath.WalkDir(bundleDir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		files++
		if e.Type().IsRegular() {
			fi, err := e.Info()
			if err != nil {
				return err
			}
			bytes += fi.Size()
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("stick: %w", err)
	}
	const mib = 1 << 20
	// A quarter more, a cluster (at most 32 KiB) for every file and
	// directory, and the FAT and root directory's share.
	size := (bytes + bytes/4 + files*(32<<10) + 32*mib + mib - 1) / mib * mib
	part := out + ".part"
	os.Remove(part) // mkfs.fat -C refuses an existing file
	defer os.Remove(part)
	if _, err := run(ctx, "mkfs.fat", "-n", StickLabel, "-C", part, fmt.Sprint(size/1024)); err != nil {
		return fmt.Errorf("stick: %w", err)
	}
	args := []string{"-s", "-Q", "-i", part}
	for _, e := range ents {
		args = append(args, filepath.Join(bundleDir, e.Name()))
	}
	if _, err := run(ctx, "mcopy", append(args, "::/")...); err != nil {
		return fmt.Errorf("stick: %w", err)
	}
	if err := os.Rename(part, out); err != nil {
		return fmt.Errorf("stick: %w", err)
	}
	return nil
}
