// Command demoinit is /init in the demo OS's initramfs (demo/README.md).
// It takes no arguments; the kernel command line says what to do:
//
//	lifeboat.slot=NAME                 the booted slot (required)
//	lifeboat.layout=NAME               the board layout on the disk [ab]
//	lifeboat.verity=DATASIZE:ROOTHASH  the slot's dm-verity hash offset and root hash (required)
//	lifeboat.demo=poweroff|reboot|stay what to do at the end [poweroff]
//
// It mounts /proc, /sys and /dev, loads /etc/lifeboat/modules.order,
// opens the booted slot through dm-verity, reads every file of it, marks
// the slot good in the bootloader's environment, reports the release
// installed to the fleet server the device's identity names, if any
// (bringing the network up with DHCP), and powers off (see
// package demo/demoinit). It runs only as PID 1: anywhere else it would
// power the machine off.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/lifeboat-update/lifeboat/demo/demoinit"
)

func main() {
	err := run(context.Background(), os.Args[1:], os.Stdout, os.Getpid())
	if err != nil {
		fmt.Fprintf(os.Stderr, "demoinit: %v\n", err)
		if os.Getpid() != 1 {
			os.Exit(2)
		}
	}
	// PID 1 must not exit: the kernel would panic.
	select {}
}

// errNotInit refuses to run anywhere but as a system's init.
var errNotInit = errors.New("not PID 1: demoinit is the demo OS's /init and powers the machine off")

func run(ctx context.Context, args []string, stdout io.Writer, pid int) error {
	if len(args) != 0 {
		return fmt.Errorf("want no arguments, got %q", args)
	}
	if pid != 1 {
		return errNotInit
	}
	k := &demoinit.Linux{}
	res, _ := demoinit.Run(ctx, demoinit.Config{
		Kernel:  k,
		Disks:   demoinit.SysDisks{},
		Console: stdout,
		Network: demoinit.NetupNetwork{Timeout: 30 * time.Second},
	})
	return demoinit.End(k, res.Params.Action)
}
