// Command vminit is the /init of a VM test guest (see package
// qemu/vminit). It reads /vminit.json, does what it says, prints the exit
// marker on the console and powers the machine off. It takes no arguments;
// the host's vmtest package builds it (CGO_ENABLED=0) and puts it in the
// initramfs.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/lifeboat-update/lifeboat/qemu/vminit"
)

func main() {
	if err := run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "vminit:", err)
	}
	if err := vminit.PowerOff(); err != nil {
		fmt.Fprintln(os.Stderr, "vminit:", err)
	}
	select {} // pid 1 must not exit
}

func run(ctx context.Context) error {
	f, err := os.Open(vminit.ConfigPath)
	if err != nil {
		return err
	}
	c, err := vminit.ParseConfig(f)
	f.Close()
	if err != nil {
		return err
	}
	_, err = vminit.Run(ctx, vminit.Linux{}, c, os.Stdout)
	return err
}
