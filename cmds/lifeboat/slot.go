package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/lifeboat-update/lifeboat/internal/cli"
	"github.com/lifeboat-update/lifeboat/pkg/blockdev"
	"github.com/lifeboat-update/lifeboat/pkg/bootenv"
	"github.com/lifeboat-update/lifeboat/pkg/bootenv/ebg"
	"github.com/lifeboat-update/lifeboat/pkg/bootenv/grub"
	"github.com/lifeboat-update/lifeboat/pkg/bootenv/uboot"
	"github.com/lifeboat-update/lifeboat/pkg/fleet"
	"github.com/lifeboat-update/lifeboat/pkg/identity"
	"github.com/lifeboat-update/lifeboat/pkg/slot"
)

// bootFlags choose the bootloader and where its state lives. A board
// configuration will set them later.
type bootFlags struct {
	bootloader string
	envConfig  string
	singleCopy bool
	grubenv    string
	ebgConfig  cli.Strings
	cmdline    string
	slots      string
	goodTries  int
}

func addBootFlags(fs *flag.FlagSet) *bootFlags {
	f := &bootFlags{}
	fs.StringVar(&f.bootloader, "bootloader", "", "the bootloader: uboot, grub or ebg")
	fs.StringVar(&f.envConfig, "env-config", "/etc/fw_env.config", "uboot: fw_env.config naming the environment's copies")
	fs.BoolVar(&f.singleCopy, "allow-single-copy", false, "uboot: write an environment that has one copy (not power-cut safe: a cut while saving leaves U-Boot's defaults)")
	fs.StringVar(&f.grubenv, "grubenv", "", "grub: the grubenv file, e.g. /boot/efi/EFI/BOOT/grubenv")
	fs.Var(&f.ebgConfig, "ebg-config", "ebg: SLOT=PATH, a config partition (a vfat block device or image) or its BGENV.DAT; repeat in disk order")
	fs.StringVar(&f.cmdline, "cmdline", slot.DefaultCmdline, "the kernel command line, naming the booted slot with lifeboat.slot= or rauc.slot=")
	fs.StringVar(&f.slots, "slots", "", "uboot, grub: the board's slots in default boot order, e.g. A,B,recovery (default: those the environment names)")
	fs.IntVar(&f.goodTries, "good-tries", slot.DefaultTries, "uboot, grub: boots a good slot gets, as the boot script counts")
	return f
}

// device is a bootloader opened: the slot policy over it and its raw
// environments.
type device struct {
	boot slot.Bootloader
	// env returns the environment of slot s, or the one environment when
	// the bootloader has one for all slots (s must then be empty).
	env   func(s slot.Name) (bootenv.Env, error)
	close func() error
}

// opener opens the bootloader flags name. Commands take it as a parameter
// so that tests can run them over memory.
type opener func(ctx context.Context, f *bootFlags) (*device, error)

// vars returns the Vars bootloader over env, for U-Boot and GRUB.
func (f *bootFlags) vars(env bootenv.Env) (*slot.Vars, error) {
	opts := []slot.VarsOption{slot.WithCmdline(f.cmdline), slot.WithGoodTries(f.goodTries)}
	if f.slots != "" {
		var names []slot.Name
		for _, s := range strings.Split(f.slots, ",") {
			names = append(names, slot.Name(strings.TrimSpace(s)))
		}
		opts = append(opts, slot.WithSlots(names...))
	}
	v, err := slot.NewVars(env, opts...)
	if err != nil {
		return nil, cli.Usagef("%v", err)
	}
	return v, nil
}

// oneEnv is device.env for a bootloader with one environment.
func oneEnv(env bootenv.Env) func(slot.Name) (bootenv.Env, error) {
	return func(s slot.Name) (bootenv.Env, error) {
		if s != "" {
			return nil, cli.Usagef("--slot: %s keeps one environment for all slots", env)
		}
		return env, nil
	}
}

// openBootloader opens the real backends.
func openBootloader(ctx context.Context, f *bootFlags) (*device, error) {
	switch f.bootloader {
	case "uboot":
		cfg, err := uboot.ReadConfig(f.envConfig)
		if err != nil {
			return nil, err
		}
		var opts []uboot.Option
		if f.singleCopy {
			opts = append(opts, uboot.AllowSingleCopy())
		}
		env, err := uboot.Open(cfg, opts...)
		if err != nil {
			return nil, err
		}
		v, err := f.vars(env)
		if err != nil {
			env.Close()
			return nil, err
		}
		return &device{boot: v, env: oneEnv(env), close: env.Close}, nil
	case "grub":
		if f.grubenv == "" {
			return nil, cli.Usagef("--bootloader=grub wants --grubenv")
		}
		env := grub.Open(f.grubenv, grub.GRUBWrites())
		if err := env.Clean(); err != nil {
			return nil, err
		}
		v, err := f.vars(env)
		if err != nil {
			return nil, err
		}
		return &device{boot: v, env: oneEnv(env), close: func() error { return nil }}, nil
	case "ebg":
		return openEBG(f)
	case "":
		return nil, cli.Usagef("want --bootloader=uboot, grub or ebg")
	}
	return nil, cli.Usagef("--bootloader=%s: want uboot, grub or ebg", f.bootloader)
}

// openEBG opens EFI Boot Guard's config partitions, one slot each.
func openEBG(f *bootFlags) (*device, error) {
	if len(f.ebgConfig) == 0 {
		return nil, cli.Usagef("--bootloader=ebg wants --ebg-config=SLOT=PATH for each config partition")
	}
	var parts []ebg.SlotPart
	var closers []io.Closer
	closeAll := func() error {
		var errs []error
		for _, c := range closers {
			errs = append(errs, c.Close())
		}
		return errors.Join(errs...)
	}
	for _, spec := range f.ebgConfig {
		name, path, ok := strings.Cut(spec, "=")
		if !ok || name == "" || path == "" {
			closeAll()
			return nil, cli.Usagef("--ebg-config=%s: want SLOT=PATH", spec)
		}
		part, c, err := openEBGPart(path)
		if err != nil {
			closeAll()
			return nil, err
		}
		if c != nil {
			closers = append(closers, c)
		}
		parts = append(parts, ebg.SlotPart{Name: slot.Name(name), Part: part})
	}
	booted, err := slot.BootedFromCmdline(f.cmdline)
	if err != nil {
		closeAll()
		return nil, err
	}
	slots, err := ebg.NewSlots(parts, ebg.WithBooted(booted))
	if err != nil {
		closeAll()
		return nil, cli.Usagef("%v", err)
	}
	env := func(s slot.Name) (bootenv.Env, error) {
		if s == "" {
			s = booted
		}
		if s == "" {
			return nil, cli.Usagef("the booted slot cannot be told: name one with --slot")
		}
		return slots.Env(s)
	}
	return &device{boot: slots, env: env, close: closeAll}, nil
}

// openEBGPart opens a config partition's BGENV.DAT: the file itself when
// path names a .DAT file, else inside the FAT volume at path.
func openEBGPart(path string) (ebg.Part, io.Closer, error) {
	if strings.EqualFold(filepath.Ext(path), ".dat") {
		p, err := ebg.OpenFile(path)
		return p, nil, err
	}
	d, err := blockdev.Open(path, os.O_RDWR)
	if err != nil {
		return nil, nil, err
	}
	p, err := ebg.OpenFAT(d, "BGENV.DAT")
	if err != nil {
		d.Close()
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return p, d, nil
}

// withDevice opens the device, runs f on it and closes it.
func withDevice(ctx context.Context, open opener, bf *bootFlags, f func(d *device) error) (err error) {
	d, err := open(ctx, bf)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := d.close(); err == nil {
			err = cerr
		}
	}()
	return f(d)
}

func printStatus(w io.Writer, st slot.Status) {
	booted := string(st.Booted)
	if booted == "" {
		booted = "(unknown)"
	}
	next := string(st.Next)
	if next == "" {
		next = "(none: no slot has tries left)"
	}
	fmt.Fprintf(w, "booted: %s\nnext:   %s\n\n", booted, next)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SLOT\tSTATE\tTRIES LEFT")
	for _, s := range st.Slots {
		tries := fmt.Sprint(s.TriesLeft)
		if s.Name.ReadOnly() {
			tries = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", s.Name, s.State, tries)
	}
	tw.Flush()
}

func statusCommand(open opener) cli.Command {
	return cli.Command{
		Name:     "status",
		Usage:    "--bootloader=uboot|grub|ebg [BOOTLOADER FLAGS] [--json]",
		Synopsis: "show the slots, their states and tries, the booted slot and the next",
		Run: func(ctx context.Context, std cli.IO, fs *flag.FlagSet, args []string) error {
			bf := addBootFlags(fs)
			out := cli.JSONFlag(fs)
			if err := cli.Parse(fs, args); err != nil {
				return err
			}
			if fs.NArg() != 0 {
				return cli.Usagef("no arguments wanted")
			}
			return withDevice(ctx, open, bf, func(d *device) error {
				st, err := (&slot.Policy{Bootloader: d.boot}).Status(ctx)
				if err != nil {
					return err
				}
				return out.Result(std.Stdout, st, func(w io.Writer) { printStatus(w, st) })
			})
		},
	}
}

// MarkGoodResult is what mark-good --json prints.
type MarkGoodResult struct {
	Marked slot.Name   `json:"marked"`
	Status slot.Status `json:"status"`
	// Reported names the fleet server told the release is installed.
	Reported string `json:"reported,omitempty"`
}

func markGoodCommand(open opener) cli.Command {
	return cli.Command{
		Name:     "mark-good",
		Usage:    "--bootloader=uboot|grub|ebg [BOOTLOADER FLAGS] [--force] [--identity=FILE --version=V] [--json] [SLOT]",
		Synopsis: "record that the booted slot works, so that it keeps booting",
		Run: func(ctx context.Context, std cli.IO, fs *flag.FlagSet, args []string) error {
			bf := addBootFlags(fs)
			force := fs.Bool("force", false, "mark SLOT good although it is not the booted slot")
			identityFile := fs.String("identity", "", "the device's identity (lifeboat/identity.json on the ESP): when it names a fleet server, tell it the release is installed")
			version := fs.String("version", "", "with --identity: the release the marked slot runs")
			out := cli.JSONFlag(fs)
			if err := cli.Parse(fs, args); err != nil {
				return err
			}
			if fs.NArg() > 1 {
				return cli.Usagef("want at most one SLOT")
			}
			if (*identityFile == "") != (*version == "") {
				return cli.Usagef("--identity and --version go together")
			}
			return withDevice(ctx, open, bf, func(d *device) error {
				p := &slot.Policy{Bootloader: d.boot}
				s, err := p.MarkGood(ctx, slot.Name(fs.Arg(0)), *force)
				if err != nil {
					return err
				}
				st, err := p.Status(ctx)
				if err != nil {
					return err
				}
				res := MarkGoodResult{Marked: s, Status: st}
				if *identityFile != "" {
					// The slot is good whatever the server hears: a
					// report that fails is said, not an error.
					server, err := reportInstalled(ctx, *identityFile, *version, st)
					if err != nil {
						fmt.Fprintf(std.Stderr, "lifeboat mark-good: %v\n", err)
					}
					res.Reported = server
				}
				return out.Result(std.Stdout, res, func(w io.Writer) {
					fmt.Fprintf(w, "marked %s good; next boot: %s\n", s, st.Next)
					if res.Reported != "" {
						fmt.Fprintf(w, "reported %s installed to %s\n", *version, res.Reported)
					}
				})
			})
		},
	}
}

// reportInstalled tells the fleet server the identity in file names, if
// any, that version is installed, and returns the server told.
func reportInstalled(ctx context.Context, file, version string, st slot.Status) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	id, err := identity.Parse(b)
	if err != nil {
		return "", fmt.Errorf("%s: %w", file, err)
	}
	if err := fleet.ReportInstalled(ctx, id, nil, version, st); err != nil {
		return "", err
	}
	return id.Server, nil
}

// RollbackResult is what rollback --json prints.
type RollbackResult struct {
	From   slot.Name   `json:"from"`
	Next   slot.Name   `json:"next"`
	Status slot.Status `json:"status"`
}

func rollbackCommand(open opener) cli.Command {
	return cli.Command{
		Name:     "rollback",
		Usage:    "--bootloader=uboot|grub|ebg [BOOTLOADER FLAGS] [--json]",
		Synopsis: "give up the slot on trial, or else the booted slot, so that the good slot boots next",
		Run: func(ctx context.Context, std cli.IO, fs *flag.FlagSet, args []string) error {
			bf := addBootFlags(fs)
			out := cli.JSONFlag(fs)
			if err := cli.Parse(fs, args); err != nil {
				return err
			}
			if fs.NArg() != 0 {
				return cli.Usagef("no arguments wanted")
			}
			return withDevice(ctx, open, bf, func(d *device) error {
				p := &slot.Policy{Bootloader: d.boot}
				from, next, err := p.Rollback(ctx)
				if err != nil {
					return err
				}
				st, err := p.Status(ctx)
				if err != nil {
					return err
				}
				return out.Result(std.Stdout, RollbackResult{From: from, Next: next, Status: st}, func(w io.Writer) {
					fmt.Fprintf(w, "marked %s bad; next boot: %s\n", from, next)
				})
			})
		},
	}
}

func envCommand(open opener) cli.Command {
	return cli.Command{
		Name:     "env",
		Usage:    "print [BOOTLOADER FLAGS] [--slot=S] [--json] [NAME...] | set [BOOTLOADER FLAGS] [--slot=S] NAME=VALUE...",
		Synopsis: "print or set bootloader environment variables (set: one power-cut safe write; NAME= deletes)",
		Run: func(ctx context.Context, std cli.IO, fs *flag.FlagSet, args []string) error {
			sub := "print"
			if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
				sub, args = args[0], args[1:]
			}
			bf := addBootFlags(fs)
			slotName := fs.String("slot", "", "ebg: the slot whose config to use (default: the booted slot)")
			var out *cli.Output
			if sub == "print" {
				out = cli.JSONFlag(fs)
			}
			if err := cli.Parse(fs, args); err != nil {
				return err
			}
			switch sub {
			case "print":
				return withDevice(ctx, open, bf, func(d *device) error {
					return envPrint(ctx, std, d, slot.Name(*slotName), out, fs.Args())
				})
			case "set":
				set, err := parseAssignments(fs.Args())
				if err != nil {
					return err
				}
				return withDevice(ctx, open, bf, func(d *device) error {
					return envSet(ctx, d, slot.Name(*slotName), set)
				})
			}
			return cli.Usagef("env %s: want print or set", sub)
		},
	}
}

// ErrUndefined is wrapped by the error of env print naming a variable the
// environment does not have.
var ErrUndefined = errors.New("not defined")

func envPrint(ctx context.Context, std cli.IO, d *device, s slot.Name, out *cli.Output, names []string) error {
	env, err := d.env(s)
	if err != nil {
		return err
	}
	vars, err := env.Load(ctx)
	if err != nil {
		return err
	}
	var missing []string
	if len(names) > 0 {
		sel := bootenv.Vars{}
		for _, n := range names {
			if v, ok := vars[n]; ok {
				sel[n] = v
			} else {
				missing = append(missing, n)
			}
		}
		vars = sel
	}
	err = out.Result(std.Stdout, vars, func(w io.Writer) {
		for _, k := range slices.Sorted(maps.Keys(vars)) {
			fmt.Fprintf(w, "%s=%s\n", k, vars[k])
		}
	})
	if err == nil && len(missing) > 0 {
		err = fmt.Errorf("%s: %w in %s", strings.Join(missing, ", "), ErrUndefined, env)
	}
	return err
}

// assignment is NAME=VALUE; an empty value deletes NAME, as fw_setenv
// and bg_setenv do.
type assignment struct{ name, value string }

func parseAssignments(args []string) ([]assignment, error) {
	if len(args) == 0 {
		return nil, cli.Usagef("want NAME=VALUE...")
	}
	var out []assignment
	for _, a := range args {
		n, v, ok := strings.Cut(a, "=")
		if !ok || n == "" || strings.ContainsAny(n, " \t\n\x00") || strings.ContainsRune(v, 0) {
			return nil, cli.Usagef("%q: want NAME=VALUE", a)
		}
		out = append(out, assignment{n, v})
	}
	return out, nil
}

// envSet applies every assignment in one Save.
func envSet(ctx context.Context, d *device, s slot.Name, set []assignment) error {
	env, err := d.env(s)
	if err != nil {
		return err
	}
	vars, err := env.Load(ctx)
	if err != nil {
		return err
	}
	for _, a := range set {
		if a.value == "" {
			delete(vars, a.name)
		} else {
			vars[a.name] = a.value
		}
	}
	return env.Save(ctx, vars)
}
