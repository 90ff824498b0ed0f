// Command uinit is the recovery ramdisk's flow; see README.md. u-root's
// init runs it once its own set-up is done.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/lifeboat-update/lifeboat/pkg/board"
)

// etcDir holds the board and the files the initramfs builder put there.
const etcDir = "/etc/lifeboat"

func main() {
	sys := linux{mountRoot: "/mnt", wait: 15 * time.Second}
	b, err := board.Load(etcDir)
	if err != nil {
		fmt.Fprintf(os.Stderr, "lifeboat: %v\nlifeboat: starting the rescue shell\n", err)
		sys.Shell()
		return
	}
	cmdline, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		fmt.Fprintf(os.Stderr, "lifeboat: %v\n", err)
	}
	f := &flow{
		sys:     sys,
		src:     &sources{log: slog.New(slog.NewTextHandler(os.Stdout, nil)), mediaWait: 5 * time.Second},
		board:   b,
		etc:     etcDir,
		console: os.Stdout,
		now:     time.Now,
		stats:   procStats,

		productUUID: DefaultProductUUID,
		kernel:      kernelRelease(),
	}
	if err := f.run(context.Background(), string(cmdline)); err != nil {
		fmt.Fprintf(os.Stderr, "lifeboat: %v\n", err)
	}
}
