// Package vmtest runs a Go test inside a QEMU guest on Debian's cloud kernel
// (or another pinned Debian kernel), as root, with virtio disks, USB sticks,
// a user-mode network, kernel modules and an optional TPM: the VM test tier.
// A VM test is an ordinary test:
//
//	func TestSomethingVM(t *testing.T) {
//		img := ...  // prepared on the host: if !vmtest.InGuest() { ... }
//		if !vmtest.Run(t, vmtest.Options{Disks: []string{img}, Modules: []string{"dm-verity"}}) {
//			return
//		}
//		// from here on: root inside the guest, on the real kernel; the
//		// disk is vmtest.Disk(0)
//	}
//
// On the host Run builds the calling package's test binary (once per test
// process), puts it with an init (qemu/cmd/vminit) and the modules into an
// initramfs, boots QEMU (qemu package) with the kernel from the cache
// (qemu/kernel), runs just the calling test in the guest and relays its output
// to t.Log. See qemu/README.md.
package vmtest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lifeboat-update/lifeboat/pkg/kmod"
	"github.com/lifeboat-update/lifeboat/qemu"
	"github.com/lifeboat-update/lifeboat/qemu/cpio"
	"github.com/lifeboat-update/lifeboat/qemu/kernel"
	"github.com/lifeboat-update/lifeboat/qemu/vminit"
)

// Options describe the guest a test runs in.
type Options struct {
	Disks   []string      // host files attached as virtio disks, read-write: /dev/vda, /dev/vdb, ... in the guest
	Modules []string      // kernel modules to load with their dependencies, e.g. "dm-verity", "dm-crypt", "ext4"
	TPM     bool          // attach an swtpm TPM 2.0 (tpm-tis): /dev/tpm0, /dev/tpmrm0 in the guest
	Memory  string        // default "512M"
	Timeout time.Duration // default 3 minutes

	// Net attaches QEMU's user-mode network (virtio-net, module virtio_net
	// loaded): the guest's eth0 gets 10.0.2.15/24 by DHCP, with the host's
	// loopback at 10.0.2.2. The guest test brings the link up itself.
	Net *qemu.NetUser
	// USB are host files attached read-write as removable USB sticks on an
	// xHCI controller (modules xhci_pci, usb_storage, sd_mod loaded). They
	// appear as /dev/sdX in enumeration order, a second or so after the
	// test starts: init does not wait for them. They need a kernel with USB
	// drivers, such as GenericKernel.
	USB []string
	// Kernel is the Debian kernel to boot; the zero Pin is kernel.Pinned(),
	// the cloud kernel, which boots fastest but has no USB drivers.
	Kernel kernel.Pin
}

const (
	// EnvGuest is set to "1" in the guest.
	EnvGuest = "LIFEBOAT_VMTEST"
	// DefaultTimeout bounds a guest run from boot to power-off.
	DefaultTimeout = 3 * time.Minute
	// DefaultMemory is the guest's RAM.
	DefaultMemory = "512M"
)

// baseModules are loaded in every guest: the virtio PCI transport and disks.
// The serial console, ext4, tmpfs and the TPM (tpm_tis) are built into
// Debian's cloud kernel.
var baseModules = []string{"virtio_pci", "virtio_blk"}

// netModules are loaded for Options.Net, usbModules for Options.USB.
var (
	netModules = []string{"virtio_net"}
	usbModules = []string{"xhci_pci", "usb_storage", "sd_mod"}
)

// GenericKernel is Debian's generic amd64 kernel of the same build as
// kernel.Pinned(): it has the USB host controller and storage drivers
// (modules) that the cloud kernel lacks, and boots a little slower.
func GenericKernel() kernel.Pin {
	return kernel.Pin{
		Package: "linux-image-6.1.0-56-amd64",
		Version: "6.1.192-2",
		SHA256:  "a86e2049672f52354c4536a089203b6c82639420424d31c91cf31a181fd4d8f1",
	}
}

// pin is the kernel opt asks for.
func (opt Options) pin() kernel.Pin {
	if opt.Kernel == (kernel.Pin{}) {
		return kernel.Pinned()
	}
	return opt.Kernel
}

// modules are the modules to load in the guest, before resolving their
// dependencies.
func (opt Options) modules() []string {
	m := slices.Clone(baseModules)
	if opt.Net != nil {
		m = append(m, netModules...)
	}
	if len(opt.USB) > 0 {
		m = append(m, usbModules...)
	}
	return append(m, opt.Modules...)
}

// abiPrefix is the versioned part of a Debian kernel package's name.
var abiPrefix = regexp.MustCompile(`^linux-image-[0-9]+\.[0-9]+\.[0-9]+-[0-9]+-`)

// metaFor is the metapackage that depends on the current build of pkg's
// flavour ("linux-image-6.1.0-56-amd64" gives "linux-image-amd64"), which the
// cache falls back to when the mirror has dropped the pinned build; "" if
// pkg is not named like a Debian kernel.
func metaFor(pkg string) string {
	loc := abiPrefix.FindStringIndex(pkg)
	if loc == nil || loc[1] == len(pkg) {
		return ""
	}
	return "linux-image-" + pkg[loc[1]:]
}

// InGuest reports whether this process runs inside a vmtest guest.
func InGuest() bool { return os.Getenv(EnvGuest) == "1" }

// Disk is the path of the i-th attached disk in the guest: /dev/vda, /dev/vdb, ...
func Disk(i int) string {
	// The kernel's virtio_blk naming: a..z, aa..az, ba...
	name := ""
	for i++; i > 0; i = (i - 1) / 26 {
		name = string(rune('a'+(i-1)%26)) + name
	}
	return "/dev/vd" + name
}

// Run makes the calling test run inside a QEMU guest. On the host it boots a guest
// with this package's test binary, runs just this test there as root, relays the
// guest's output to t.Log, and fails t if the test failed in the guest; it returns
// false, and the caller returns. Inside the guest it returns true at once and the
// test goes on. It skips t (saying why) when QEMU or the kernel cannot be had, except
// under CI=true, where it fails instead.
func Run(t *testing.T, opt Options) bool {
	t.Helper()
	if InGuest() {
		return true
	}
	if testing.Short() {
		t.Skip("vmtest: -short skips tests that boot a VM; make test runs them")
	}
	res, err := boot(t, t.Name(), opt)
	var unavail *unavailableError
	switch {
	case errors.As(err, &unavail):
		if os.Getenv("CI") != "" {
			t.Fatalf("vmtest: %v (CI is set: the VM tier must run; `make deps` installs QEMU)", err)
		}
		t.Skipf("vmtest: skipped: %v", err)
	case err != nil:
		t.Fatalf("vmtest: %v", err)
	}
	if msg := res.failure(); msg != "" {
		t.Error(msg)
	}
	return false
}

// unavailableError means the VM tier cannot run here: no QEMU, swtpm or kernel.
type unavailableError struct{ err error }

func (e *unavailableError) Error() string { return e.err.Error() }
func (e *unavailableError) Unwrap() error { return e.err }

// result is what a guest run came to.
type result struct {
	name     string
	timeout  time.Duration
	started  bool          // the start marker was seen
	exited   bool          // the exit marker was seen
	status   int           // from the exit marker
	initErr  string        // from an error marker
	qemuErr  error         // QEMU's exit error
	timedOut bool          // the run exceeded its timeout
	output   []string      // the guest test's lines, after the start marker
	console  []string      // all console lines, for when there is no start marker
	toStart  time.Duration // from Run to the start marker
	total    time.Duration
}

// failure says how the guest run failed, or "" if the test passed.
func (r *result) failure() string {
	tail := func(lines []string) string {
		const max = 60
		if len(lines) > max {
			lines = append([]string{fmt.Sprintf("[... %d lines before]", len(lines)-max)}, lines[len(lines)-max:]...)
		}
		return "\n\t" + strings.Join(lines, "\n\t")
	}
	switch {
	case r.exited && r.status == 0:
		return ""
	case r.exited:
		return fmt.Sprintf("vmtest: %s failed in the guest (exit status %d); its output:%s", r.name, r.status, tail(r.output))
	case r.initErr != "":
		return fmt.Sprintf("vmtest: guest init failed: %s; console:%s", r.initErr, tail(r.console))
	case r.timedOut && r.started:
		return fmt.Sprintf("vmtest: %s timed out in the guest after %v; its output:%s", r.name, r.timeout, tail(r.output))
	case r.timedOut:
		return fmt.Sprintf("vmtest: guest did not start %s within %v; console:%s", r.name, r.timeout, tail(r.console))
	case r.started:
		return fmt.Sprintf("vmtest: guest ended before %s finished (%v); its output:%s", r.name, r.qemuErr, tail(r.output))
	default:
		return fmt.Sprintf("vmtest: guest ended before starting %s (%v); console:%s", r.name, r.qemuErr, tail(r.console))
	}
}

// boot runs the test called name (normally t's own) in a guest.
func boot(t *testing.T, name string, opt Options) (*result, error) {
	t.Helper()
	start := time.Now()
	if opt.Timeout <= 0 {
		opt.Timeout = DefaultTimeout
	}
	if opt.Memory == "" {
		opt.Memory = DefaultMemory
	}
	if len(opt.USB) > 0 && opt.Kernel == (kernel.Pin{}) {
		return nil, errors.New("USB sticks need a kernel with USB drivers: the cloud kernel has none; set Options.Kernel to vmtest.GenericKernel()")
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		return nil, &unavailableError{qemu.ErrNoQEMU}
	}
	if _, err := exec.LookPath("swtpm"); opt.TPM && err != nil {
		return nil, &unavailableError{qemu.ErrNoSWTPM}
	}
	for _, d := range opt.Disks {
		if _, err := os.Stat(d); err != nil {
			return nil, fmt.Errorf("disk: %w", err)
		}
	}
	for _, d := range opt.USB {
		if _, err := os.Stat(d); err != nil {
			return nil, fmt.Errorf("USB stick: %w", err)
		}
	}
	k, err := kernels.get(t, opt.pin())
	if err != nil {
		return nil, err
	}
	bins, err := shared.get(t)
	if err != nil {
		return nil, err
	}
	a := &artifacts{kernel: k.kernel, modules: k.modules, test: bins.test, init: bins.init}
	prepared := time.Now()

	dir := t.TempDir()
	nonce := newNonce()
	initrd := filepath.Join(dir, "initramfs.cpio")
	// The guest test gets most of the time; the rest is for booting and
	// for its stack dump to reach the host.
	guestTimeout := opt.Timeout - min(opt.Timeout/4, 20*time.Second)
	if err := a.writeInitramfs(initrd, nonce, name, guestTimeout, opt); err != nil {
		return nil, err
	}

	timeout := opt.Timeout
	if dl, ok := t.Deadline(); ok {
		// Report a hang ourselves rather than be killed by go test.
		timeout = min(timeout, time.Until(dl)-5*time.Second)
	}
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()

	res := &result{name: name, timeout: timeout}
	cons := &console{t: t, nonce: nonce, res: res, start: start}
	cons.Line = cons.line
	cfg := qemu.Config{
		Memory:  opt.Memory,
		Kernel:  a.kernel.Image(),
		Initrd:  initrd,
		Append:  qemu.Cmdline(),
		Console: cons,
	}
	for _, d := range opt.Disks {
		cfg.Disks = append(cfg.Disks, qemu.Disk{Path: d})
	}
	for _, d := range opt.USB {
		cfg.USB = append(cfg.USB, qemu.Disk{Path: d})
	}
	cfg.Net = opt.Net
	if opt.TPM {
		cfg.TPMState = filepath.Join(dir, "tpm")
	}
	vm, err := qemu.Start(ctx, cfg)
	if err != nil {
		if errors.Is(err, qemu.ErrNoQEMU) || errors.Is(err, qemu.ErrNoSWTPM) {
			return nil, &unavailableError{err}
		}
		return nil, err
	}
	t.Cleanup(func() { vm.Kill() }) // in case of a panic below; Kill after Wait is a no-op
	res.qemuErr = vm.Wait()
	cons.Flush()
	res.timedOut = errors.Is(ctx.Err(), context.DeadlineExceeded)
	res.total = time.Since(start)
	t.Logf("vmtest: %s on %s: prepared in %v, guest test started after %v, total %v",
		name, a.kernel.Release, prepared.Sub(start).Round(time.Millisecond),
		res.toStart.Round(time.Millisecond), res.total.Round(time.Millisecond))
	return res, nil
}

func newNonce() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// testPattern is the -test.run pattern that selects exactly the test (or
// subtest) called name.
func testPattern(name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	return strings.Join(parts, "/")
}

// console receives the serial console, relays it to t.Log line by line and
// picks out vminit's markers.
type console struct {
	qemu.Lines
	t     *testing.T
	nonce string
	res   *result
	start time.Time
}

func (c *console) line(s string) {
	s = strings.TrimRight(s, "\r")
	if m, ok := vminit.ParseMarker(s, c.nonce); ok {
		switch m.Kind {
		case vminit.KindStart:
			c.res.started = true
			c.res.toStart = time.Since(c.start)
		case vminit.KindExit:
			c.res.exited, c.res.status = true, m.Status
		case vminit.KindError:
			c.res.initErr = m.Msg
		}
		return
	}
	c.t.Log("guest: " + s)
	c.res.console = append(c.res.console, s)
	if c.res.started {
		c.res.output = append(c.res.output, s)
	}
}

// artifacts are what a guest run is made of: a kernel and its modules, and
// the guest binaries.
type artifacts struct {
	kernel  *kernel.Kernel
	modules *kmod.Index
	test    *os.File // this package's test binary, built for the guest (unlinked)
	init    *os.File // vminit (unlinked)
}

// binaries are the guest binaries every guest run of this test process
// shares.
type binaries struct {
	test *os.File
	init *os.File
}

// lazy builds the binaries once per test process.
type lazy struct {
	once sync.Once
	b    *binaries
	err  error
}

// shared holds the lazily built binaries: built on first use and never
// changed after, so the tests of a process share one build.
var shared lazy

func (l *lazy) get(t *testing.T) (*binaries, error) {
	l.once.Do(func() { l.b, l.err = build(t) })
	return l.b, l.err
}

// guestKernel is a kernel from the cache with its module index.
type guestKernel struct {
	kernel  *kernel.Kernel
	modules *kmod.Index
}

// kernelSet gets each kernel once per test process, on first use.
type kernelSet struct {
	mu sync.Mutex
	m  map[kernel.Pin]*lazyKernel
}

type lazyKernel struct {
	once sync.Once
	k    *guestKernel
	err  error
}

// kernels holds the kernels of this test process's guests, by pin.
var kernels kernelSet

func (s *kernelSet) get(t *testing.T, pin kernel.Pin) (*guestKernel, error) {
	s.mu.Lock()
	if s.m == nil {
		s.m = map[kernel.Pin]*lazyKernel{}
	}
	l := s.m[pin]
	if l == nil {
		l = &lazyKernel{}
		s.m[pin] = l
	}
	s.mu.Unlock()
	l.once.Do(func() { l.k, l.err = getKernel(t, pin) })
	return l.k, l.err
}

// getKernel gets pin from the kernel cache, downloading it the first time.
func getKernel(t *testing.T, pin kernel.Pin) (*guestKernel, error) {
	t.Helper()
	// Not t.Context: the kernel outlives this test.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	dir, err := kernel.DefaultDir()
	if err != nil {
		return nil, &unavailableError{err}
	}
	start := time.Now()
	kc := &kernel.Cache{Dir: dir, Logf: t.Logf}
	k, err := kc.Get(ctx, pin, metaFor(pin.Package))
	if err != nil {
		if errors.Is(err, kernel.ErrChecksum) {
			return nil, err
		}
		return nil, &unavailableError{fmt.Errorf("kernel: %w", err)}
	}
	ix, err := k.Modules()
	if err != nil {
		return nil, fmt.Errorf("kernel %s: %w", k, err)
	}
	t.Logf("vmtest: kernel %s from %s (%v)", k, k.Dir, time.Since(start).Round(time.Millisecond))
	return &guestKernel{kernel: k, modules: ix}, nil
}

const vminitPackage = "github.com/lifeboat-update/lifeboat/qemu/cmd/vminit"

// build builds the guest binaries.
func build(t *testing.T) (*binaries, error) {
	t.Helper()
	// Not t.Context: the binaries outlive this test.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	a := &binaries{}
	tmp, err := os.MkdirTemp("", "vmtest")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp) // the open files outlive their names
	start := time.Now()
	var wg sync.WaitGroup
	var testErr, initErr error
	wg.Go(func() {
		// go test sets the working directory to the package's.
		a.test, testErr = goBuild(ctx, tmp, "test", "test", "-c", "-o", filepath.Join(tmp, "test"), ".")
	})
	wg.Go(func() {
		a.init, initErr = goBuild(ctx, tmp, "init", "build", "-o", filepath.Join(tmp, "init"), vminitPackage)
	})
	wg.Wait()
	if err := errors.Join(testErr, initErr); err != nil {
		return nil, err
	}
	t.Logf("vmtest: built the guest test binary and init in %v", time.Since(start).Round(time.Millisecond))
	return a, nil
}

// goBuild runs the go command to build a static binary at dir/out and opens it.
func goBuild(ctx context.Context, dir, out string, args ...string) (*os.File, error) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		return nil, fmt.Errorf("go command: %w", err)
	}
	cmd := exec.CommandContext(ctx, gobin, args...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Stdout = &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return os.Open(filepath.Join(dir, out))
}

// writeInitramfs writes the guest's initramfs: vminit as /init, its config,
// the test binary and the modules.
func (a *artifacts) writeInitramfs(path, nonce, name string, timeout time.Duration, opt Options) error {
	mods, err := a.modules.Resolve(opt.modules()...)
	if err != nil {
		return fmt.Errorf("modules %q of %s: %w", opt.modules(), a.kernel.Release, err)
	}
	cfg := vminit.Config{
		Nonce: nonce,
		Command: []string{"/test", "-test.run=" + testPattern(name), "-test.v", "-test.count=1",
			"-test.timeout=" + timeout.String()},
		Env: []string{EnvGuest + "=1", "PATH=/bin:/sbin:/usr/bin:/usr/sbin", "HOME=/tmp", "TMPDIR=/tmp"},
		Dir: "/tmp",
	}
	for i := range opt.Disks {
		cfg.Wait = append(cfg.Wait, Disk(i))
	}
	if opt.TPM {
		cfg.Wait = append(cfg.Wait, "/dev/tpm0", "/dev/tpmrm0")
	}
	for _, m := range mods {
		cfg.Modules = append(cfg.Modules, "/lib/modules/"+filepath.Base(m))
	}
	cfgJSON, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}

	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	w := cpio.NewWriter(bw)
	steps := []func() error{
		func() error { return w.WriteDir("dev", 0o755) },
		func() error { return w.WriteCharDev("dev/console", 0o600, 5, 1) },
		func() error { return w.WriteDir("lib", 0o755) },
		func() error { return w.WriteDir("lib/modules", 0o755) },
		func() error { return w.WriteFile(strings.TrimPrefix(vminit.ConfigPath, "/"), 0o644, cfgJSON) },
		func() error { return copyInto(w, "init", a.init) },
		func() error { return copyInto(w, "test", a.test) },
	}
	for _, m := range mods {
		steps = append(steps, func() error {
			mf, err := os.Open(filepath.Join(a.kernel.ModulesDir(), m))
			if err != nil {
				return err
			}
			defer mf.Close()
			return copyInto(w, "lib/modules/"+filepath.Base(m), mf)
		})
	}
	steps = append(steps, w.Close, bw.Flush, f.Close)
	for _, step := range steps {
		if err := step(); err != nil {
			return fmt.Errorf("write initramfs: %w", err)
		}
	}
	return nil
}

func copyInto(w *cpio.Writer, name string, f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	return w.CopyFile(name, 0o755, io.NewSectionReader(f, 0, fi.Size()), fi.Size())
}
