// Package vminit is the init process of a VM test guest: it mounts the
// kernel file systems, loads modules, waits for devices, runs one command (a
// test binary) with its output on the console, reports the command's exit
// status with an unambiguous marker line, and powers the machine off.
//
// The host side writes a Config into the initramfs as /vminit.json and reads
// the markers back from the serial console with ParseMarker.
package vminit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// ConfigPath is where the host puts the Config in the initramfs.
const ConfigPath = "/vminit.json"

// Config tells the guest init what to do.
type Config struct {
	// Nonce is a random string that marker lines carry, so that output of
	// the command cannot be mistaken for a marker.
	Nonce string `json:"nonce"`
	// Modules are module files to load, in order.
	Modules []string `json:"modules,omitempty"`
	// Wait are device paths to wait for before running the command, such
	// as /dev/vda or /dev/tpm0.
	Wait []string `json:"wait,omitempty"`
	// WaitTimeout bounds the wait for each path; default 10 seconds.
	WaitTimeout time.Duration `json:"wait_timeout,omitempty"`
	// Command is the program and its arguments.
	Command []string `json:"command"`
	// Env is the command's environment, "KEY=value".
	Env []string `json:"env,omitempty"`
	// Dir is the command's working directory; default "/".
	Dir string `json:"dir,omitempty"`
}

// ParseConfig decodes a Config.
func ParseConfig(r io.Reader) (*Config, error) {
	var c Config
	d := json.NewDecoder(r)
	d.DisallowUnknownFields()
	if err := d.Decode(&c); err != nil {
		return nil, fmt.Errorf("parse vminit config: %w", err)
	}
	if c.Nonce == "" || strings.ContainsAny(c.Nonce, " \t\r\n") {
		return nil, fmt.Errorf("parse vminit config: bad nonce %q", c.Nonce)
	}
	if len(c.Command) == 0 {
		return nil, errors.New("parse vminit config: no command")
	}
	return &c, nil
}

// Mount is one file system to mount.
type Mount struct {
	Source, Target, FSType string
}

// Mounts are what every guest gets: /proc, /sys, /dev (devtmpfs, where
// /dev/vda, /dev/mapper/control and /dev/dm-N appear by themselves), /tmp
// and /run.
var Mounts = []Mount{
	{"proc", "/proc", "proc"},
	{"sysfs", "/sys", "sysfs"},
	{"devtmpfs", "/dev", "devtmpfs"},
	{"tmpfs", "/tmp", "tmpfs"},
	{"tmpfs", "/run", "tmpfs"},
}

// System is what init needs from the kernel.
type System interface {
	// Mount mounts a file system, creating the target directory.
	Mount(m Mount) error
	// LoadModule loads a module file; an already loaded module is not an error.
	LoadModule(path string) error
	// Exists reports whether path exists.
	Exists(path string) bool
	// Exec runs argv with its output on out and returns its exit status.
	Exec(ctx context.Context, argv, env []string, dir string, out io.Writer) (int, error)
}

// Marker kinds.
const (
	KindStart = "start" // the command is about to run
	KindExit  = "exit"  // the command exited; Status is its exit status
	KindError = "error" // init failed before or while running the command
)

// Marker is a line init prints on the console for the host.
type Marker struct {
	Kind   string
	Status int    // KindExit
	Msg    string // KindError
}

const markerPrefix = "vminit: "

// Format returns the console line (without newline) for m.
func (m Marker) Format(nonce string) string {
	switch m.Kind {
	case KindExit:
		return fmt.Sprintf("%s%s %s %d", markerPrefix, nonce, KindExit, m.Status)
	case KindError:
		return fmt.Sprintf("%s%s %s %s", markerPrefix, nonce, KindError, strings.NewReplacer("\n", " ", "\r", " ").Replace(m.Msg))
	default:
		return fmt.Sprintf("%s%s %s", markerPrefix, nonce, m.Kind)
	}
}

// ParseMarker recognises a marker line with the given nonce. Carriage
// returns and text before the marker (a console may have some) are ignored.
func ParseMarker(line, nonce string) (Marker, bool) {
	head := markerPrefix + nonce + " "
	i := strings.Index(line, head)
	if i < 0 || nonce == "" {
		return Marker{}, false
	}
	rest := strings.TrimRight(line[i+len(head):], "\r\n")
	if strings.ContainsAny(rest, "\r\n") {
		return Marker{}, false // not one line
	}
	kind, arg, _ := strings.Cut(rest, " ")
	switch kind {
	case KindStart:
		if arg != "" {
			return Marker{}, false
		}
		return Marker{Kind: KindStart}, true
	case KindExit:
		n, err := strconv.Atoi(arg)
		if err != nil {
			return Marker{}, false
		}
		return Marker{Kind: KindExit, Status: n}, true
	case KindError:
		return Marker{Kind: KindError, Msg: arg}, true
	}
	return Marker{}, false
}

// Run does init's work and returns the command's exit status, or an error
// (which it has also reported on console with a KindError marker). The caller
// powers off afterwards.
func Run(ctx context.Context, sys System, c *Config, console io.Writer) (int, error) {
	status, err := run(ctx, sys, c, console)
	if err != nil {
		fmt.Fprintln(console, Marker{Kind: KindError, Msg: err.Error()}.Format(c.Nonce))
		return -1, err
	}
	fmt.Fprintln(console, Marker{Kind: KindExit, Status: status}.Format(c.Nonce))
	return status, nil
}

func run(ctx context.Context, sys System, c *Config, console io.Writer) (int, error) {
	for _, m := range Mounts {
		if err := sys.Mount(m); err != nil {
			return 0, err
		}
	}
	for _, m := range c.Modules {
		if err := sys.LoadModule(m); err != nil {
			return 0, err
		}
	}
	wt := c.WaitTimeout
	if wt <= 0 {
		wt = 10 * time.Second
	}
	for _, p := range c.Wait {
		if err := waitFor(ctx, sys, p, wt); err != nil {
			return 0, err
		}
	}
	dir := c.Dir
	if dir == "" {
		dir = "/"
	}
	fmt.Fprintln(console, Marker{Kind: KindStart}.Format(c.Nonce))
	return sys.Exec(ctx, c.Command, c.Env, dir, console)
}

// waitFor polls for path: device nodes of devices that probe asynchronously
// appear a little after their driver loads.
func waitFor(ctx context.Context, sys System, path string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for !sys.Exists(path) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s: %w", path, ctx.Err())
		case <-t.C:
		}
	}
	return nil
}
