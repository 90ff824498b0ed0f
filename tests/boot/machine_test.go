package boot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lifeboat-update/lifeboat/pkg/blockdev"
	"github.com/lifeboat-update/lifeboat/qemu"
	"github.com/lifeboat-update/lifeboat/qemu/cpio"
	"github.com/lifeboat-update/lifeboat/qemu/kernel"
)

// unavailable skips t because something the tier needs is missing, or
// fails it under CI, which must run this tier.
func unavailable(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") != "" {
		t.Fatalf("%s; CI must run the boot tier (scripts/deps.sh, run by `make test`, installs it)", msg)
	}
	t.Skipf("%s; `make deps` installs it", msg)
}

// requireTools skips (or under CI fails) t unless every tool is on PATH
// or, for a path, exists.
func requireTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if strings.Contains(tool, "/") {
			if _, err := os.Stat(tool); err != nil {
				unavailable(t, "%s is not installed", tool)
			}
			continue
		}
		if _, err := exec.LookPath(tool); err != nil {
			unavailable(t, "%s is not installed", tool)
		}
	}
}

// requireVM skips under -short, and then like requireTools when QEMU or
// OVMF is missing; it returns OVMF.
func requireVM(t *testing.T) qemu.OVMF {
	t.Helper()
	if testing.Short() {
		t.Skip("-short skips tests that boot a VM; make test runs them")
	}
	requireTools(t, "qemu-system-x86_64")
	o, err := qemu.FindOVMF(qemu.OVMFDir)
	if err != nil {
		unavailable(t, "%v", err)
	}
	return o
}

// getKernel returns the VM tier's Debian cloud kernel, downloading it the
// first time (qemu/kernel).
func getKernel(t *testing.T) *kernel.Kernel {
	t.Helper()
	return getPinnedKernel(t, kernel.Pinned(), kernel.Meta)
}

// getPinnedKernel returns the kernel pin names (falling back to the build
// meta depends on), downloading it the first time (qemu/kernel).
func getPinnedKernel(t *testing.T, pin kernel.Pin, meta string) *kernel.Kernel {
	t.Helper()
	dir, err := kernel.DefaultDir()
	if err != nil {
		unavailable(t, "kernel cache: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	k, err := (&kernel.Cache{Dir: dir, Logf: t.Logf}).Get(ctx, pin, meta)
	switch {
	case errors.Is(err, kernel.ErrChecksum):
		t.Fatalf("kernel: %v", err)
	case err != nil:
		unavailable(t, "kernel: %v", err)
	}
	return k
}

// run runs a command that must succeed and returns its stdout.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	// mtools refuses some images mkfs.fat makes without this.
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.Bytes())
	}
	return stdout.String()
}

// partition is one GPT partition of a disk.
type partition struct {
	name    string // GPT partition name
	typ     string // sgdisk type code: "ef00" (ESP), "8300", "0700"
	sizeMiB int64
}

// disk is a GPT disk image made without root, loop devices or mounts:
// truncate and sgdisk for the table, mkfs.fat -C for each file system, a
// copy into place, and mtools on the image at the partition's offset.
type disk struct {
	path  string
	start []int64 // first sector of each partition, 1-based as in GPT
	size  []int64 // sectors
}

const sector = 512

// newDisk writes an image at path with the partitions, 1 MiB aligned and
// back to back from sector 2048.
func newDisk(t *testing.T, path string, parts ...partition) *disk {
	t.Helper()
	d := &disk{path: path, start: []int64{0}, size: []int64{0}}
	args := []string{"-o"}
	next := int64(2048)
	for i, p := range parts {
		n := i + 1
		last := next + p.sizeMiB*2048 - 1
		args = append(args, fmt.Sprintf("-n%d:%d:%d", n, next, last), fmt.Sprintf("-t%d:%s", n, p.typ), fmt.Sprintf("-c%d:%s", n, p.name))
		d.start = append(d.start, next)
		d.size = append(d.size, last-next+1)
		next = last + 1
	}
	// 1 MiB at the end for the backup table.
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, (next+2048)*sector); err != nil {
		t.Fatal(err)
	}
	run(t, "sgdisk", append(args, path)...)
	return d
}

// image is the mtools image argument for partition n.
func (d *disk) image(n int) string { return fmt.Sprintf("%s@@%d", d.path, d.start[n]*sector) }

// formatFAT makes a FAT16 file system labelled label in partition n, with
// the directories dirs.
func (d *disk) formatFAT(t *testing.T, n int, label string, sizeMiB int64, dirs ...string) {
	t.Helper()
	fat := filepath.Join(t.TempDir(), "part.fat")
	run(t, "mkfs.fat", "-F", "16", "-n", label, "-C", fat, fmt.Sprint(sizeMiB*1024))
	b, err := os.ReadFile(fat)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(d.path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// What dd conv=notrunc seek=START does.
	if _, err := f.WriteAt(b, d.start[n]*sector); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	for _, dir := range dirs {
		run(t, "mmd", "-i", d.image(n), "::"+dir)
	}
}

// put copies the host file src to dst in partition n's FAT, replacing it.
func (d *disk) put(t *testing.T, n int, src, dst string) {
	t.Helper()
	run(t, "mcopy", "-o", "-i", d.image(n), src, "::"+dst)
}

// get copies src from partition n's FAT to the host file dst.
func (d *disk) get(t *testing.T, n int, src, dst string) {
	t.Helper()
	run(t, "mcopy", "-o", "-i", d.image(n), "::"+src, dst)
}

// partition returns partition n of dev, an open disk.
func (d *disk) partition(t *testing.T, dev blockdev.Device, n int) blockdev.Device {
	t.Helper()
	p, err := blockdev.Section(dev, d.start[n]*sector, d.size[n]*sector)
	if err != nil {
		t.Fatalf("partition %d of %s: %v", n, d.path, err)
	}
	return p
}

// install writes a release to the FAT in partition n, as an update would:
// a release here is only its initramfs, written to dst, with the slots'
// init and the release's action (goodRelease or badRelease).
func (d *disk) install(t *testing.T, n int, dst string, init []byte, release string) {
	t.Helper()
	initrd := filepath.Join(t.TempDir(), "initrd.img")
	writeInitrd(t, initrd, init, release)
	d.put(t, n, initrd, dst)
}

// slotInit builds tests/boot/slotinit, the slots' /init.
func slotInit(t *testing.T) []byte {
	t.Helper()
	return slotInitFor(t, "amd64")
}

// slotInitFor builds tests/boot/slotinit for goarch.
func slotInitFor(t *testing.T, goarch string) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "slotinit")
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", out, "github.com/lifeboat-update/lifeboat/tests/boot/slotinit")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build slotinit for %s: %v\n%s", goarch, err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Releases a slot can hold, by what their init does after it reports the
// slot: "poweroff" boots well (the test marks it good from the host);
// "reboot" never marks itself good and resets the machine.
const (
	goodRelease = "poweroff"
	badRelease  = "reboot"
)

// hangRelease is a release whose boot never ends: slotinit reports the
// slot and then blocks for ever opening /action, a FIFO nobody writes. It
// neither marks itself good nor resets the machine, and nothing in its
// initramfs loads a watchdog driver (it holds no modules; the cloud
// kernel builds them all as modules), so nothing pets a watchdog: only
// the watchdog, or the test's timeout, ends its boot.
const hangRelease = "hang"

// modeFIFO is the file type of a named pipe in a cpio header (S_IFIFO).
const modeFIFO = 0o010000

// writeInitrd writes an initramfs at path holding init as /init and
// action (goodRelease or badRelease) as /action; for hangRelease, /action
// is an empty FIFO.
func writeInitrd(t *testing.T, path string, init []byte, action string) {
	t.Helper()
	var buf bytes.Buffer
	w := cpio.NewWriter(&buf)
	writeAction := func() error {
		if action == hangRelease {
			return w.WriteHeader(&cpio.Header{Name: "action", Mode: modeFIFO | 0o644})
		}
		return w.WriteFile("action", 0o644, []byte(action+"\n"))
	}
	err := errors.Join(
		w.WriteDir("dev", 0o755),
		w.WriteCharDev("dev/console", 0o600, 5, 1),
		w.WriteDir("proc", 0o555),
		w.WriteFile("init", 0o755, init),
		writeAction(),
		w.Close(),
	)
	if err != nil {
		t.Fatalf("initramfs: %v", err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// machine is one x86_64 UEFI computer: OVMF with its own NVRAM, which
// survives between boots as a real machine's does, and one disk.
type machine struct {
	fw qemu.FirmwareBoot
}

func newMachine(t *testing.T, o qemu.OVMF, diskPath string) *machine {
	t.Helper()
	vars := filepath.Join(t.TempDir(), "OVMF_VARS.fd")
	if err := o.NewVars(vars); err != nil {
		t.Fatal(err)
	}
	return &machine{fw: qemu.FirmwareBoot{OVMF: o, Vars: vars, Disk: diskPath}}
}

// bootOptions change one boot of a machine.
type bootOptions struct {
	// resets: a guest or watchdog reset restarts the machine in the same
	// run, firmware and bootloader again; without, a reset ends the run.
	resets bool
	// readOnlyDisk attaches the disk write protected (readonly=on): the
	// guest sees a read-only virtio disk, and every write the firmware or
	// bootloader makes to it fails, as on a write-protected eMMC or SD
	// card.
	readOnlyDisk bool
	// args are more QEMU arguments: a watchdog device.
	args []string
}

// bootWith powers the machine on with the options o and waits until it
// powers itself off. It fails t if the machine does not power off by
// itself within timeout, and returns the serial console.
func (m *machine) bootWith(t *testing.T, o bootOptions, timeout time.Duration) *serial {
	t.Helper()
	fw := m.fw
	fw.Resets = o.resets
	args := fw.Args()
	if o.readOnlyDisk {
		n := 0
		for i, a := range args {
			if strings.HasPrefix(a, "file=") && strings.Contains(a, ",id=bootdisk") {
				args[i] = a + ",readonly=on"
				n++
			}
		}
		if n != 1 {
			t.Fatalf("read-only disk: %d drives with id=bootdisk in %q, want 1", n, args)
		}
	}
	return bootVM(t, qemu.Config{Args: append(args, o.args...)}, timeout)
}

// bootVM starts the machine cfg describes, its console a new serial, and
// waits until it powers itself off. It fails t if the machine does not
// power off by itself within timeout, and returns the serial console.
func bootVM(t *testing.T, cfg qemu.Config, timeout time.Duration) *serial {
	t.Helper()
	if dl, ok := t.Deadline(); ok {
		timeout = min(timeout, time.Until(dl)-5*time.Second)
	}
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	con := &serial{t: t, start: time.Now()}
	con.Line = con.line
	cfg.Console = con
	vm, err := qemu.Start(ctx, cfg)
	if errors.Is(err, qemu.ErrNoQEMU) {
		unavailable(t, "%v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Kill() // after Wait, a no-op
	err = vm.Wait()
	con.Flush()
	t.Logf("boot: machine off after %v", time.Since(con.start).Round(100*time.Millisecond))
	if ctx.Err() != nil {
		t.Fatalf("boot: the machine did not power off within %v", timeout)
	}
	if err != nil {
		t.Fatalf("boot: %v", err)
	}
	return con
}

// serial is the machine's serial console: it relays each line to t.Log and
// keeps them, with terminal escapes and carriage returns removed.
type serial struct {
	qemu.Lines
	t     *testing.T
	start time.Time
	mu    sync.Mutex // guards lines
	lines []string
}

var escape = regexp.MustCompile(`\x1b\[[0-9;=?]*[A-Za-z]|\r`)

func (s *serial) line(l string) {
	l = escape.ReplaceAllString(l, "")
	if strings.TrimSpace(l) == "" {
		return
	}
	s.mu.Lock()
	s.lines = append(s.lines, l)
	s.mu.Unlock()
	s.t.Logf("serial %5.1fs: %s", time.Since(s.start).Seconds(), l)
}

// has reports whether a line holds sub.
func (s *serial) has(sub string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.lines {
		if strings.Contains(l, sub) {
			return true
		}
	}
	return false
}

// after returns, for every line holding marker, the text after it.
func (s *serial) after(marker string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, l := range s.lines {
		if _, v, ok := strings.Cut(l, marker); ok {
			out = append(out, strings.TrimSpace(v))
		}
	}
	return out
}
