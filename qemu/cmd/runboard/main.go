// Command runboard runs a board in QEMU with its serial console on this
// terminal (package qemu/device): `make qemu BOARD=qemu-x86_64 LAYOUT=ab`.
// Run it in the checkout. It builds the board's disk the first time and
// keeps it, so that the device's state (slots, bootloader environment,
// trusted state, TPM) carries over from one run to the next, as a real
// device's does.
//
// Synopsis:
//
//	runboard [-board DIR|NAME] [-layout NAME] [-disk PATH] [-rebuild]
//	         [-kernel PATH] [-ramdisk PATH] [-slot LABEL=IMAGE]... [-root ROOT.json] [-env NAME=VALUE]...
//	         [-repo URL] [-args 'ARG...'] [-usb IMAGE|BUNDLE_DIR] [-net] [-tpm]
//	         [-firmware | -direct] [-no-reboot]
//
// Options:
//
//	-board DIR|NAME  the board's directory, or its name under boards/ [boards/qemu-x86_64]
//	-layout NAME     the layout of the board's disk [ab]
//	-disk PATH       the disk image, built if missing [out/BOARD/LAYOUT.img]
//	-rebuild         build the disk even if it exists
//	-kernel PATH     the recovery kernel [the board's pinned kernel, from the kernel cache]
//	-ramdisk PATH    the recovery ramdisk, `make ramdisk` [out/BOARD/ramdisk.cpio.xz]
//	-slot L=IMAGE    write IMAGE into slot partition L when building the disk, and try it first (repeatable)
//	-root PATH       provision the trusted state from this root.json when building the disk
//	-env NAME=VALUE  set a grubenv variable (LIFEBOAT_A_VERITY=DATASIZE:ROOTHASH, BOOT_ORDER=...) (repeatable)
//	-repo URL        the repository: lifeboat.repo=URL for recovery; implies -net
//	-args 'ARG...'   more kernel arguments for recovery (lifeboat.after=reboot, ...)
//	-usb PATH        attach a USB stick: an image, or a bundle directory made into one
//	-net             a user-mode network; the host is 10.0.2.2
//	-tpm             an swtpm TPM 2.0, its state in out/BOARD/tpm
//	-firmware        boot through OVMF and the disk's GRUB (the default)
//	-direct          boot the recovery kernel and ramdisk directly, skipping firmware and GRUB
//	-no-reboot       end the run when the guest resets, instead of restarting it
//
// The console and QEMU's monitor share the terminal: Ctrl-A c switches
// between them, Ctrl-A x quits. The console is also written to
// out/BOARD/console.log. With -firmware, the recovery kernel and ramdisk
// on the disk's ESP are refreshed from -kernel and -ramdisk on every run,
// and recovery's arguments (-repo, -args) are set in its grubenv; a fresh
// disk without -slot boots recovery.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/lifeboat-update/lifeboat/pkg/board"
	"github.com/lifeboat-update/lifeboat/pkg/bootenv"
	"github.com/lifeboat-update/lifeboat/qemu"
	"github.com/lifeboat-update/lifeboat/qemu/boardkernel"
	"github.com/lifeboat-update/lifeboat/qemu/device"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "runboard:", err)
		}
		os.Exit(1)
	}
}

// assignments is a repeatable NAME=VALUE flag: -slot LABEL=IMAGE, -env
// NAME=VALUE.
type assignments map[string]string

func (a assignments) String() string { return fmt.Sprint(map[string]string(a)) }

func (a assignments) Set(v string) error {
	name, value, ok := strings.Cut(v, "=")
	if !ok || name == "" {
		return fmt.Errorf("%q: want NAME=VALUE", v)
	}
	if _, dup := a[name]; dup {
		return fmt.Errorf("%s given twice", name)
	}
	a[name] = value
	return nil
}

// options are runboard's flags.
type options struct {
	board, layout, disk, kernel, ramdisk, root, repo, args, usb string
	slots, env                                                  assignments
	rebuild, net, tpm, firmware, direct, noReboot               bool
}

func parse(args []string, stderr io.Writer) (*options, error) {
	o := &options{slots: assignments{}, env: assignments{}}
	fs := flag.NewFlagSet("runboard", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.board, "board", "boards/qemu-x86_64", "the board's `DIR`ectory, or its name under boards/")
	fs.StringVar(&o.layout, "layout", "ab", "the `NAME` of the layout of the board's disk")
	fs.StringVar(&o.disk, "disk", "", "the disk image, built if missing (default out/BOARD/LAYOUT.img)")
	fs.BoolVar(&o.rebuild, "rebuild", false, "build the disk even if it exists")
	fs.StringVar(&o.kernel, "kernel", "", "the recovery kernel (default the board's pinned kernel, from the kernel cache)")
	fs.StringVar(&o.ramdisk, "ramdisk", "", "the recovery ramdisk, made by make ramdisk (default out/BOARD/ramdisk.cpio.xz)")
	fs.Var(o.slots, "slot", "write IMAGE into slot partition LABEL when building the disk, and try it first: `LABEL=IMAGE` (repeatable)")
	fs.Var(o.env, "env", "set a grubenv variable, `NAME=VALUE`, for example LIFEBOAT_A_VERITY=DATASIZE:ROOTHASH (repeatable)")
	fs.StringVar(&o.root, "root", "", "provision the trusted state from this root.json when building the disk")
	fs.StringVar(&o.repo, "repo", "", "the repository `URL` recovery updates from (lifeboat.repo=); implies -net")
	fs.StringVar(&o.args, "args", "", "more kernel arguments for recovery, for example lifeboat.after=reboot")
	fs.StringVar(&o.usb, "usb", "", "attach a USB stick: an image, or a bundle directory made into one")
	fs.BoolVar(&o.net, "net", false, "a user-mode network; the host is 10.0.2.2")
	fs.BoolVar(&o.tpm, "tpm", false, "an swtpm TPM 2.0, its state in out/BOARD/tpm")
	fs.BoolVar(&o.firmware, "firmware", false, "boot through OVMF and the disk's GRUB (the default)")
	fs.BoolVar(&o.direct, "direct", false, "boot the recovery kernel and ramdisk directly, skipping firmware and GRUB")
	fs.BoolVar(&o.noReboot, "no-reboot", false, "end the run when the guest resets, instead of restarting it")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() != 0 {
		fs.Usage()
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.firmware && o.direct {
		return nil, errors.New("-firmware and -direct: choose one")
	}
	if o.repo != "" {
		o.net = true
	}
	return o, nil
}

// loadBoard loads the board at dir, or boards/NAME.
func loadBoard(dir string) (*board.Board, error) {
	if !strings.Contains(dir, string(filepath.Separator)) {
		if _, err := os.Stat(filepath.Join(dir, board.File)); err != nil {
			dir = filepath.Join("boards", dir)
		}
	}
	return board.Load(dir)
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	o, err := parse(args, stderr)
	if err != nil {
		return err
	}
	logf := func(format string, args ...any) { fmt.Fprintf(stderr, "runboard: "+format+"\n", args...) }
	b, err := loadBoard(o.board)
	if err != nil {
		return err
	}
	if _, err := b.Layout(o.layout); err != nil {
		return err
	}
	out := filepath.Join("out", b.Name)
	if o.disk == "" {
		o.disk = filepath.Join(out, o.layout+".img")
	}
	if o.ramdisk == "" {
		o.ramdisk = filepath.Join(out, "ramdisk.cpio.xz")
	}
	if _, err := os.Stat(o.ramdisk); err != nil {
		return fmt.Errorf("recovery ramdisk: %w; build it with `make ramdisk BOARD=%s`, or pass -ramdisk", err, b.Name)
	}
	for label, img := range o.slots {
		if img == "" {
			return fmt.Errorf("-slot %s=: want an image", label)
		}
		if _, err := os.Stat(img); err != nil {
			return fmt.Errorf("slot %s: %w; build the demo images (demo/cmd/mkdemo), or pass another -slot", label, err)
		}
	}
	if o.kernel == "" {
		k, err := boardkernel.Get(ctx, "", b, logf)
		if err != nil {
			return err
		}
		o.kernel = k.Image()
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}

	spec := device.RunSpec{
		Board:   b,
		Disk:    o.disk,
		Vars:    strings.TrimSuffix(o.disk, ".img") + ".OVMF_VARS.fd",
		Resets:  !o.noReboot,
		Console: stdout,
		Log:     filepath.Join(out, "console.log"),
		Stdin:   stdin,
	}
	recoveryArgs := strings.Join(strings.Fields(o.args), " ")
	if o.repo != "" {
		recoveryArgs = strings.TrimSpace("lifeboat.repo=" + o.repo + " " + recoveryArgs)
	}
	if err := prepareDisk(ctx, o, b, recoveryArgs, logf); err != nil {
		return err
	}
	if o.direct {
		spec.Kernel, spec.Initrd = o.kernel, o.ramdisk
		spec.Append = strings.TrimSpace(fmt.Sprintf("%s lifeboat.mode=update lifeboat.layout=%s %s", b.BaseCmdline(), o.layout, recoveryArgs))
	}
	if o.usb != "" {
		if spec.USB, err = stick(ctx, o.usb, filepath.Join(out, "stick.img"), logf); err != nil {
			return err
		}
	}
	if o.net {
		spec.Net = &qemu.NetUser{}
	}
	if o.tpm {
		spec.TPMState = filepath.Join(out, "tpm")
	}
	how := "through OVMF and GRUB"
	if o.direct {
		how = "directly into the recovery kernel"
	}
	logf("%s %s: booting %s from %s; console log %s", b.Name, o.layout, how, o.disk, spec.Log)
	logf("Ctrl-A x quits, Ctrl-A c switches between the console and QEMU's monitor")
	m, err := device.Run(ctx, spec)
	if err != nil {
		return err
	}
	return m.Wait()
}

// prepareDisk builds the disk if it is missing (or -rebuild), and sets
// what a firmware boot takes from it: the recovery kernel and ramdisk, and
// recovery's arguments in grubenv.
func prepareDisk(ctx context.Context, o *options, b *board.Board, recoveryArgs string, logf func(string, ...any)) error {
	_, err := os.Stat(o.disk)
	if err == nil && !o.rebuild {
		if len(o.slots) > 0 || o.root != "" {
			return fmt.Errorf("%s exists: -slot and -root apply when the disk is built; add -rebuild", o.disk)
		}
		d, err := device.Open(b, o.layout, o.disk)
		if err != nil {
			return fmt.Errorf("%w (-rebuild makes a new one)", err)
		}
		set, unset := bootenv.Vars(maps.Clone(o.env)), []string(nil)
		if !o.direct {
			if err := d.PutRecovery(ctx, o.kernel, o.ramdisk); err != nil {
				return err
			}
			if recoveryArgs != "" {
				set["lifeboat_recovery_args"] = recoveryArgs
			} else {
				unset = append(unset, "lifeboat_recovery_args")
			}
		}
		if len(set) == 0 && len(unset) == 0 {
			return nil
		}
		_, err = d.UpdateEnv(ctx, set, unset...)
		return err
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	spec := device.Spec{
		Board: b, Layout: o.layout, Out: o.disk,
		Kernel: o.kernel, Ramdisk: o.ramdisk,
		Slots: o.slots,
		Env:   bootenv.Vars{},
	}
	if o.root != "" {
		if spec.RootJSON, err = os.ReadFile(o.root); err != nil {
			return err
		}
	}
	if recoveryArgs != "" {
		spec.Env["lifeboat_recovery_args"] = recoveryArgs
	}
	// The slots given are tried first, in disk order, then recovery.
	l, _ := b.Layout(o.layout)
	var order []string
	for _, p := range l.Slots("") {
		if o.slots[p.Label] != "" {
			order = append(order, p.Slot)
			spec.Env["BOOT_"+p.Slot+"_LEFT"] = "3"
		}
	}
	if len(order) > 0 {
		spec.Env["BOOT_ORDER"] = strings.Join(append(order, "recovery"), " ")
	}
	maps.Copy(spec.Env, o.env)
	logf("building %s", o.disk)
	_, err = device.Build(ctx, spec)
	return err
}

// stick returns the stick image at path, or, for a bundle directory,
// writes one to out and returns that.
func stick(ctx context.Context, path, out string, logf func(string, ...any)) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("USB stick: %w", err)
	}
	if !fi.IsDir() {
		return path, nil
	}
	logf("making %s from the bundle %s", out, path)
	if err := device.Stick(ctx, path, out); err != nil {
		return "", err
	}
	return out, nil
}
