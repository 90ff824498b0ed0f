package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/lifeboat-update/lifeboat/pkg/api"
	"github.com/lifeboat-update/lifeboat/pkg/board"
	"github.com/lifeboat-update/lifeboat/pkg/slot"
)

// params are the recovery entry's kernel command line (README.md).
type params struct {
	mode   string // update, wipe, factory-reset, flash, shell
	source string // auto, net, usb
	repo   string // repository URL, or "" for DHCP's offer or the board's
	server string // the fleet server's URL, over the identity's; "" for the identity's
	layout string
	after  string // kexec, reboot, poweroff
	onfail string // shell, poweroff, reboot
	wipe   string // wipe mode: the PARTLABELs to wipe, comma-separated
	force  bool   // flash mode: overwrite a disk that is not blank
	device string // flash mode: the device ID, or "" for the DMI UUID or a random one
	// inplaceRAM and inplaceCommit are the in-place update's RAM budget
	// and commit interval in bytes; 0 leaves the flow's default.
	inplaceRAM, inplaceCommit int64
}

var choices = map[string][]string{
	"mode":   {"update", "wipe", "factory-reset", "flash", "shell"},
	"source": {"auto", "net", "usb"},
	"after":  {"kexec", "reboot", "poweroff"},
	"onfail": {"shell", "poweroff", "reboot"},
	"force":  {"0", "1"},
}

// parseParams reads the lifeboat.* parameters of a kernel command line.
// A value that is not one of the choices is an error naming the
// parameter; the flow then offers the shell rather than guess.
func parseParams(cmdline string) (params, error) {
	p := params{mode: "update", source: "auto", layout: "ab", after: "kexec", onfail: "shell"}
	for _, arg := range slot.SplitCmdline(cmdline) {
		k, v, _ := strings.Cut(arg, "=")
		name, ok := strings.CutPrefix(k, "lifeboat.")
		if !ok {
			continue
		}
		if c, ok := choices[name]; ok && !slices.Contains(c, v) {
			return p, fmt.Errorf("kernel command line: %s=%q: want one of %s", k, v, strings.Join(c, ", "))
		}
		switch name {
		case "mode":
			p.mode = v
		case "source":
			p.source = v
		case "repo":
			p.repo = v
		case "server":
			if err := api.CheckURL(k, v); err != nil {
				return p, fmt.Errorf("kernel command line: %w", err)
			}
			p.server = v
		case "layout":
			p.layout = v
		case "after":
			p.after = v
		case "onfail":
			p.onfail = v
		case "wipe":
			p.wipe = v
		case "force":
			p.force = v == "1"
		case "device":
			p.device = v
		case "inplace_ram", "inplace_commit":
			n, err := board.ParseSize(v)
			if err != nil {
				return p, fmt.Errorf("kernel command line: %s: %w", k, err)
			}
			if name == "inplace_ram" {
				p.inplaceRAM = n
			} else {
				p.inplaceCommit = n
			}
		}
	}
	return p, nil
}
