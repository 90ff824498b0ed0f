package vmtest

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-update/lifeboat/qemu"
)

// pattern is the deterministic content of the disk TestGuestBootsVM attaches,
// computed the same on host and guest.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte((i*7 + i/4096) % 251)
	}
	return b
}

const (
	diskSize     = 1 << 20
	guestWriteAt = 512 << 10
	guestWrite   = "written in the guest"
)

func TestGuestBootsVM(t *testing.T) {
	t.Parallel()
	img := filepath.Join(t.TempDir(), "disk.img")
	if !InGuest() {
		if err := os.WriteFile(img, pattern(diskSize), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if !Run(t, Options{Disks: []string{img}}) {
		// Back on the host: the guest's write is in the image.
		if t.Failed() {
			return
		}
		b, err := os.ReadFile(img)
		if err != nil {
			t.Fatal(err)
		}
		want := pattern(diskSize)
		copy(want[guestWriteAt:], guestWrite)
		if !bytes.Equal(b, want) {
			t.Errorf("disk image after the guest ran: %q at %d, want %q and the pattern elsewhere", b[guestWriteAt:guestWriteAt+len(guestWrite)], guestWriteAt, guestWrite)
		}
		return
	}

	v, err := os.ReadFile("/proc/version")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(v), "Debian") || !strings.Contains(string(v), "cloud-amd64") {
		t.Errorf("/proc/version = %q, want a Debian cloud-amd64 kernel", v)
	}
	t.Logf("kernel: %s", strings.TrimSpace(string(v)))
	if os.Getuid() != 0 {
		t.Errorf("uid = %d, want root", os.Getuid())
	}
	f, err := os.OpenFile(Disk(0), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := make([]byte, diskSize)
	if _, err := f.ReadAt(got, 0); err != nil {
		t.Fatalf("read %s: %v", Disk(0), err)
	}
	if !bytes.Equal(got, pattern(diskSize)) {
		t.Errorf("%s does not hold the pattern the host wrote", Disk(0))
	}
	if _, err := f.WriteAt([]byte(guestWrite), guestWriteAt); err != nil {
		t.Fatalf("write %s: %v", Disk(0), err)
	}
	if err := f.Sync(); err != nil {
		t.Fatalf("fsync %s: %v", Disk(0), err)
	}
}

func TestModulesVM(t *testing.T) {
	t.Parallel()
	if !Run(t, Options{Modules: []string{"dm-verity"}}) {
		return
	}
	if _, err := os.Stat("/dev/mapper/control"); err != nil {
		t.Errorf("after loading dm-verity: %v", err)
	}
	misc, err := os.ReadFile("/proc/misc")
	if err != nil || !strings.Contains(string(misc), "device-mapper") {
		t.Errorf("/proc/misc = %q, %v; want device-mapper listed", misc, err)
	}
	mods, err := os.ReadFile("/proc/modules")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"dm_verity", "dm_bufio", "dm_mod", "virtio_blk", "virtio_pci"} {
		if !strings.Contains(string(mods), m+" ") {
			t.Errorf("/proc/modules does not list %s:\n%s", m, mods)
		}
	}
}

func TestTPMVM(t *testing.T) {
	t.Parallel()
	if !Run(t, Options{TPM: true}) {
		return
	}
	for _, p := range []string{"/dev/tpm0", "/dev/tpmrm0"} {
		if _, err := os.Stat(p); err != nil {
			t.Error(err)
		}
	}
	// TPM2_GetRandom(8), by hand: TPM_ST_NO_SESSIONS, size 12, TPM_CC_GetRandom.
	f, err := os.OpenFile("/dev/tpmrm0", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := []byte{0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x7b, 0, 8}
	if _, err := f.Write(cmd); err != nil {
		t.Fatalf("write TPM2_GetRandom: %v", err)
	}
	rsp := make([]byte, 4096)
	n, err := f.Read(rsp)
	if err != nil {
		t.Fatalf("read TPM2_GetRandom response: %v", err)
	}
	rsp = rsp[:n]
	if n != 20 || binary.BigEndian.Uint32(rsp[6:]) != 0 || binary.BigEndian.Uint16(rsp[10:]) != 8 {
		t.Errorf("TPM2_GetRandom(8) response = %x, want rc 0 and 8 bytes", rsp)
	}
}

// TestNetVM: with Net, the guest has a virtio-net Ethernet link with
// QEMU's default MAC address.
func TestNetVM(t *testing.T) {
	t.Parallel()
	if !Run(t, Options{Net: &qemu.NetUser{}}) {
		return
	}
	mac, err := os.ReadFile("/sys/class/net/eth0/address")
	if err != nil {
		t.Fatalf("no eth0: %v", err)
	}
	if got := strings.TrimSpace(string(mac)); got != "52:54:00:12:34:56" {
		t.Errorf("eth0 address = %q, want QEMU's default 52:54:00:12:34:56", got)
	}
	driver, err := os.Readlink("/sys/class/net/eth0/device/driver")
	if err != nil || filepath.Base(driver) != "virtio_net" {
		t.Errorf("eth0 driver = %q, %v; want virtio_net", driver, err)
	}
}

// TestUSBVM: a USB stick appears as a removable SCSI disk behind the xHCI
// controller, with the host file's content, on the generic kernel.
func TestUSBVM(t *testing.T) {
	t.Parallel()
	img := filepath.Join(t.TempDir(), "stick.img")
	if !InGuest() {
		if err := os.WriteFile(img, pattern(diskSize), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if !Run(t, Options{USB: []string{img}, Kernel: GenericKernel()}) {
		return
	}
	v, err := os.ReadFile("/proc/version")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(v), "cloud") {
		t.Errorf("/proc/version = %q, want the generic kernel", v)
	}
	// USB storage enumerates after init has started the test.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, err := os.Stat("/dev/sda"); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("no /dev/sda after 30s")
		case <-tick.C:
		}
	}
	if b, err := os.ReadFile("/sys/block/sda/removable"); err != nil || strings.TrimSpace(string(b)) != "1" {
		t.Errorf("/sys/block/sda/removable = %q, %v; want 1", b, err)
	}
	if p, err := filepath.EvalSymlinks("/sys/block/sda"); err != nil || !strings.Contains(p, "/usb") {
		t.Errorf("/sys/block/sda is %q, %v; want a path through the USB bus", p, err)
	}
	got, err := os.ReadFile("/dev/sda")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, pattern(diskSize)) {
		t.Errorf("/dev/sda (%d bytes) does not hold the pattern the host wrote", len(got))
	}
}

// TestGuestFails is the guest half of TestFailureIsReportedVM: it fails on
// purpose, and runs only in that test's guest.
func TestGuestFails(t *testing.T) {
	if !InGuest() {
		t.Skip("runs only in the guest that TestFailureIsReportedVM boots")
	}
	t.Log("about to fail")
	t.Error("deliberate failure in the guest")
}

// TestFailureIsReportedVM: a test that fails in the guest makes the host side
// fail, with the guest's output in the message.
func TestFailureIsReportedVM(t *testing.T) {
	t.Parallel()
	if InGuest() {
		t.Fatal("TestFailureIsReportedVM must not run in a guest")
	}
	res, err := boot(t, "TestGuestFails", Options{})
	if err != nil {
		if _, ok := err.(*unavailableError); ok && os.Getenv("CI") == "" {
			t.Skipf("vmtest: skipped: %v", err)
		}
		t.Fatal(err)
	}
	if !res.started || !res.exited || res.status != 1 {
		t.Errorf("guest run: started %v, exited %v, status %d; want true, true, 1", res.started, res.exited, res.status)
	}
	msg := res.failure()
	for _, want := range []string{"TestGuestFails failed in the guest (exit status 1)", "deliberate failure in the guest", "--- FAIL: TestGuestFails"} {
		if !strings.Contains(msg, want) {
			t.Errorf("failure() = %q, want it to contain %q", msg, want)
		}
	}
}

// TestSubtestVM runs a subtest, not its parent, in the guest.
func TestSubtestVM(t *testing.T) {
	t.Parallel()
	ran := false
	t.Run("inner (with spaces)", func(t *testing.T) {
		ran = true
		if !Run(t, Options{}) {
			return
		}
		if !strings.HasSuffix(t.Name(), "/inner_(with_spaces)") {
			t.Errorf("t.Name() = %q in the guest", t.Name())
		}
	})
	if !ran {
		t.Error("subtest did not run")
	}
}
