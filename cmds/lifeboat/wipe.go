package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/lifeboat-update/lifeboat/internal/cli"
	"github.com/lifeboat-update/lifeboat/pkg/blockdev"
	"github.com/lifeboat-update/lifeboat/pkg/board"
	"github.com/lifeboat-update/lifeboat/pkg/reset"
	"github.com/lifeboat-update/lifeboat/pkg/slot"
)

// ErrNotWipeable is wrapped by the error of a wipe refused for safety: a
// whole disk, a partition in use, or the booted slot's.
var ErrNotWipeable = errors.New("refusing to wipe")

// wipeHost is what wipe reads of the running system. The paths are the
// kernel's; tests give files.
type wipeHost struct {
	mountinfo string // /proc/self/mountinfo
	sys       string // /sys
	// find finds a partition by PARTLABEL (blockdev.FindPartition).
	find func(blockdev.Match) (blockdev.SysPartition, error)
}

var liveHost = wipeHost{mountinfo: "/proc/self/mountinfo", sys: "/sys", find: blockdev.FindPartition}

// wipeResult is what wipe prints with --json.
type wipeResult struct {
	Partition       string `json:"partition"` // the device path wiped
	Label           string `json:"label,omitempty"`
	Bytes           int64  `json:"bytes"`
	Discarded       int64  `json:"discarded_bytes"`
	SecureDiscarded int64  `json:"secure_discarded_bytes"`
	ZeroedByDevice  int64  `json:"zeroed_by_device_bytes"`
	ZeroedByWriting int64  `json:"zeroed_by_writing_bytes"`
	Verified        int64  `json:"verified_bytes"`
}

func wipeCommand(h wipeHost) cli.Command {
	return cli.Command{
		Name:     "wipe",
		Usage:    "[--secure] [--verify] [--progress=...] [--json] PARTLABEL|DEVICE",
		Synopsis: "wipe one partition (not a whole disk, not one in use, not the booted slot's) so that it reads as zeros",
		Run: func(ctx context.Context, std cli.IO, fs *flag.FlagSet, args []string) error {
			return runWipe(ctx, h, std, fs, args)
		},
	}
}

func runWipe(ctx context.Context, h wipeHost, std cli.IO, fs *flag.FlagSet, args []string) error {
	secure := fs.Bool("secure", false, "discard securely where the device can (eMMC secure trim), so not even spare blocks keep the data")
	verify := fs.Bool("verify", false, "read the whole partition back and fail unless every byte is zero")
	cmdline := fs.String("cmdline", slot.DefaultCmdline, "the kernel command line, naming the booted slot (lifeboat.slot=) and layout (lifeboat.layout=)")
	boardDir := fs.String("board", "/etc/lifeboat", "directory of the board's board.json, mapping slots to partitions")
	out := cli.OutputFlags(fs)
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return cli.Usagef("want one PARTLABEL or DEVICE")
	}
	reporter, err := out.Reporter(std.Stderr)
	if err != nil {
		return err
	}
	path, label, err := h.resolve(fs.Arg(0))
	if err != nil {
		return err
	}
	if label == "" {
		label = h.partLabel(path)
	}
	if err := h.check(path, label, *cmdline, *boardDir); err != nil {
		return err
	}
	// O_EXCL: the kernel also refuses a block device in use.
	dev, err := blockdev.Open(path, os.O_RDWR|os.O_EXCL)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer dev.Close()
	var opts []reset.WipeOption
	if *secure {
		opts = append(opts, reset.Secure())
	}
	if *verify {
		opts = append(opts, reset.Verify())
	}
	opts = append(opts, reset.WithProgress(reporter))
	st, err := reset.Wipe(ctx, dev, 0, dev.Size(), opts...)
	if err != nil {
		return fmt.Errorf("wipe %s: %w", path, err)
	}
	res := wipeResult{Partition: path, Label: label, Bytes: st.Bytes, Discarded: st.Discarded, SecureDiscarded: st.SecureDiscarded,
		ZeroedByDevice: st.ZeroedByDevice, ZeroedByWriting: st.ZeroedByWriting, Verified: st.Verified}
	return out.Result(std.Stdout, res, func(w io.Writer) {
		name := path
		if label != "" {
			name = fmt.Sprintf("%s (%s)", path, label)
		}
		fmt.Fprintf(w, "wiped %s: %d bytes\n", name, st.Bytes)
		fmt.Fprintf(w, "  discarded %d (securely %d), zeroed by the device %d, by writing %d\n", st.Discarded+st.SecureDiscarded, st.SecureDiscarded, st.ZeroedByDevice, st.ZeroedByWriting)
		if *verify {
			fmt.Fprintf(w, "  verified %d bytes read back as zeros\n", st.Verified)
		}
	})
}

// resolve returns the device path arg names, a path or a PARTLABEL, and
// the label when arg was one.
func (h wipeHost) resolve(arg string) (path, label string, err error) {
	if strings.Contains(arg, "/") {
		p, err := filepath.EvalSymlinks(arg)
		if err != nil {
			return "", "", err
		}
		return p, "", nil
	}
	p, err := h.find(blockdev.Match{Label: arg})
	if err != nil {
		return "", "", fmt.Errorf("partition %q: %w", arg, err)
	}
	if p.Path == "" {
		return "", "", fmt.Errorf("partition %q on %s: the kernel has no device node for it (its partition table changed since boot?)", arg, p.Disk)
	}
	return p.Path, arg, nil
}

// partLabel is the PARTLABEL of the block device at path, from sysfs's
// uevent, or "".
func (h wipeHost) partLabel(path string) string {
	dir, ok := h.sysDir(path)
	if !ok {
		return ""
	}
	b, _ := os.ReadFile(filepath.Join(dir, "uevent"))
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "PARTNAME="); ok {
			return v
		}
	}
	return ""
}

// sysDir is the sysfs directory of the block device at path, when it is
// one.
func (h wipeHost) sysDir(path string) (string, bool) {
	dev, ok := devNumber(path)
	if !ok {
		return "", false
	}
	return filepath.Join(h.sys, "dev", "block", dev), true
}

// devNumber is the MAJOR:MINOR of the block device at path.
func devNumber(path string) (string, bool) {
	fi, err := os.Stat(path)
	if err != nil || fi.Mode()&os.ModeDevice == 0 || fi.Mode()&os.ModeCharDevice != 0 {
		return "", false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return "", false
	}
	rdev := uint64(st.Rdev)
	return fmt.Sprintf("%d:%d", unix.Major(rdev), unix.Minor(rdev)), true
}

// check refuses what must not be wiped: a whole disk (or a disk image
// with a partition table), a partition mounted or held by another device
// (device mapper: dm-verity, dm-crypt), and the booted slot's partition.
func (h wipeHost) check(path, label, cmdline, boardDir string) error {
	name := path
	if label != "" {
		name = fmt.Sprintf("%s (%s)", path, label)
	}
	refuse := func(format string, args ...any) error {
		return fmt.Errorf("%w %s: %s", ErrNotWipeable, name, fmt.Sprintf(format, args...))
	}
	dev, isBlock := devNumber(path)
	if isBlock {
		dir := filepath.Join(h.sys, "dev", "block", dev)
		if _, err := os.Stat(filepath.Join(dir, "partition")); err != nil {
			return refuse("it is a whole disk, not a partition")
		}
		if holders, _ := os.ReadDir(filepath.Join(dir, "holders")); len(holders) > 0 {
			return refuse("it is in use by %s (device mapper: a verity or crypt volume, perhaps the running root)", holders[0].Name())
		}
	} else {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		fi, err := f.Stat()
		if err == nil && !fi.Mode().IsRegular() {
			err = errors.New("neither a block device nor a regular file")
		}
		if err == nil {
			if _, gerr := blockdev.ReadGPT(f, fi.Size(), 512); gerr == nil {
				err = refuse("it holds a partition table: a whole disk image, not a partition")
			}
		}
		f.Close()
		if err != nil {
			return err
		}
	}
	mnt, err := mountedAt(h.mountinfo, path, dev)
	if err != nil {
		return err
	}
	if mnt == "/" {
		return refuse("it holds the running root file system")
	}
	if mnt != "" {
		return refuse("it is mounted on %s", mnt)
	}
	if label == "" {
		return nil
	}
	booted, err := slot.BootedFromCmdline(cmdline)
	if err != nil || booted == "" {
		return err
	}
	b, err := board.Load(boardDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil // no board to map slots to partitions; the checks above stand
	}
	if err != nil {
		return err
	}
	layout := "ab"
	for _, arg := range slot.SplitCmdline(readCmdline(cmdline)) {
		if v, ok := strings.CutPrefix(arg, "lifeboat.layout="); ok {
			layout = v
		}
	}
	l, err := b.Layout(layout)
	if err != nil {
		return err
	}
	if p, ok := l.Partition(label); ok && p.Role == board.RoleSlot && slot.Name(p.Slot) == booted {
		return refuse("it is slot %s's, the booted slot", booted)
	}
	return nil
}

func readCmdline(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// mountedAt returns where the device at path (MAJOR:MINOR dev, for a
// block device) is mounted, per a mountinfo file, or "".
func mountedAt(mountinfo, path, dev string) (string, error) {
	f, err := os.Open(mountinfo)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// ID PARENT MAJOR:MINOR ROOT MOUNTPOINT OPTIONS [TAGS...] - FSTYPE SOURCE SUPEROPTIONS
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" {
				sep = i
				break
			}
		}
		if len(fields) < 5 || sep < 0 || sep+2 >= len(fields) {
			continue
		}
		source := unescapeMount(fields[sep+2])
		if real, err := filepath.EvalSymlinks(source); err == nil {
			source = real
		}
		if (dev != "" && fields[2] == dev) || source == path {
			return unescapeMount(fields[4]), nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("%s: %w", mountinfo, err)
	}
	return "", nil
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			var c byte
			ok := true
			for _, d := range s[i+1 : i+4] {
				if d < '0' || d > '7' {
					ok = false
					break
				}
				c = c*8 + byte(d-'0')
			}
			if ok {
				b.WriteByte(c)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
