package board

import (
	"fmt"
	"io"
	"io/fs"
	"path"
	"path/filepath"
	"strings"

	"github.com/lifeboat-update/lifeboat/pkg/bootenv"
	"github.com/lifeboat-update/lifeboat/pkg/bootenv/grub"
	"github.com/lifeboat-update/lifeboat/pkg/bootenv/uboot"
)

type nopCloser struct{}

// UBootConfig returns the U-Boot environment's layout the fw_env lines
// describe, with relative devices (files in the EnvPartition) resolved
// under envRoot, where that partition is mounted.
func (bl Bootloader) UBootConfig(envRoot string) (uboot.Config, error) {
	cfg, err := uboot.ParseConfig(strings.NewReader(strings.Join(bl.FWEnv, "\n") + "\n"))
	if err != nil {
		return uboot.Config{}, fmt.Errorf("fw_env: %w", err)
	}
	if bl.EnvPartition != "" {
		for i := range cfg.Copies {
			cfg.Copies[i].Device = filepath.Join(envRoot, filepath.FromSlash(cfg.Copies[i].Device))
		}
	}
	return cfg, nil
}

// validateUBoot checks a uboot bootloader's fw_env lines: they parse, a
// single copy is allowed explicitly, and their devices are files in the
// env partition (relative, clean, inside it) when it has one and absolute
// paths when it has none.
func (bl Bootloader) validateUBoot() error {
	if len(bl.FWEnv) == 0 {
		return invalid("bootloader uboot: want fw_env lines")
	}
	cfg, err := uboot.ParseConfig(strings.NewReader(strings.Join(bl.FWEnv, "\n") + "\n"))
	if err != nil {
		return invalid("bootloader uboot: fw_env: %v", err)
	}
	if !cfg.Redundant() && !bl.SingleCopy {
		return invalid("bootloader uboot: fw_env has one copy, which a power cut during a save destroys: give two, or set single_copy")
	}
	for _, l := range cfg.Copies {
		switch {
		case bl.EnvPartition != "" && (!fs.ValidPath(l.Device) || l.Device == "."):
			return invalid("bootloader uboot: fw_env device %q: with env_partition %q, want a file's relative path in it", l.Device, bl.EnvPartition)
		case bl.EnvPartition == "" && !path.IsAbs(l.Device):
			return invalid("bootloader uboot: fw_env device %q: want an absolute path (or set env_partition for a file in a partition)", l.Device)
		}
	}
	return nil
}

func (nopCloser) Close() error { return nil }

// OpenEnv opens the board's bootloader environment on the running device.
// envRoot is where the partition EnvPartition names is mounted: grub's
// env_file, and the relative devices of U-Boot's fw_env lines, are in it;
// without an EnvPartition, U-Boot's fw_env lines name their devices
// themselves. EFI Boot Guard keeps one environment per slot: open it with
// pkg/bootenv/ebg instead.
func (b *Board) OpenEnv(envRoot string) (bootenv.Env, io.Closer, error) {
	bl := b.Bootloader
	switch bl.Backend {
	case "grub":
		env := grub.Open(filepath.Join(envRoot, filepath.FromSlash(bl.EnvFile)), grub.GRUBWrites())
		if err := env.Clean(); err != nil {
			return nil, nil, err
		}
		return env, nopCloser{}, nil
	case "uboot":
		cfg, err := bl.UBootConfig(envRoot)
		if err != nil {
			return nil, nil, fmt.Errorf("board %s: %w", b.Name, err)
		}
		var opts []uboot.Option
		if bl.SingleCopy {
			opts = append(opts, uboot.AllowSingleCopy())
		}
		env, err := uboot.Open(cfg, opts...)
		if err != nil {
			return nil, nil, err
		}
		return env, env, nil
	default:
		return nil, nil, fmt.Errorf("board %s: bootloader %s keeps no single environment", b.Name, bl.Backend)
	}
}
