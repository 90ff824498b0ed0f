package board

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/lifeboat-update/lifeboat/pkg/bootenv"
	"github.com/lifeboat-update/lifeboat/pkg/bootenv/grub"
	"github.com/lifeboat-update/lifeboat/pkg/bootenv/uboot"
)

type nopCloser struct{}

func (nopCloser) Close() error { return nil }

// OpenEnv opens the board's bootloader environment on the running device.
// For grub, envRoot is where the partition EnvPartition names is mounted;
// U-Boot's fw_env lines name their devices themselves. EFI Boot Guard
// keeps one environment per slot: open it with pkg/bootenv/ebg instead.
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
		cfg, err := uboot.ParseConfig(strings.NewReader(strings.Join(bl.FWEnv, "\n") + "\n"))
		if err != nil {
			return nil, nil, fmt.Errorf("board %s: fw_env: %w", b.Name, err)
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
