// The file name does not end in _arm64_test.go: Go would build it on
// arm64 hosts only.

package tests

import (
	"strings"
	"testing"

	"github.com/lifeboat-update/lifeboat/pkg/bootenv"
	"github.com/lifeboat-update/lifeboat/pkg/slot"
	"github.com/lifeboat-update/lifeboat/qemu"
	qdevice "github.com/lifeboat-update/lifeboat/qemu/device"
)

// TestRecoveryInPlaceArm64 is issue 7's acceptance 7, TestRecoveryInPlace
// on qemu-arm64: with recovery first in BOOT_ORDER, U-Boot boots the
// recovery ramdisk, which updates the small layout's only slot, A, in
// place from v1 to v2 over the network, seeded by v1, switches the
// environment file to try A and reboots (the board's kernels cannot
// kexec_file_load); U-Boot counts A's try and boots v2, which verifies
// itself with dm-verity and marks A good.
func TestRecoveryInPlaceArm64(t *testing.T) {
	f, q := needRecoveryArm64(t)
	t.Parallel()
	srv := serveRepo(t, f.Repo)
	d := f.newSmallDevice(t, bootenv.Vars{
		slot.OrderVar:            "recovery A",
		"lifeboat_recovery_args": "lifeboat.source=net lifeboat.repo=" + srv.url + " lifeboat.after=reboot lifeboat.onfail=poweroff",
	})
	lines := f.boot(t, qdevice.RunSpec{Disk: d.Path, QEMU: q, Net: &qemu.NetUser{}, Resets: true})
	if !containsLine(lines, "LIFEBOAT slot=recovery") {
		t.Errorf("U-Boot did not choose recovery")
	}
	res := f.checkInPlaceDone(t, d, lines)
	need := f.needBytes(t, "2", "1")
	if res.FetchedBytes != need || srv.chunkBytes.Load() != need {
		t.Errorf("fetched %d bytes (the server sent %d), want %d: the chunks v2 has beyond v1", res.FetchedBytes, srv.chunkBytes.Load(), need)
	}
	if !containsLine(lines, "LIFEBOAT slot=A A_LEFT=2") {
		t.Errorf("after the reboot U-Boot did not choose A with its try counted; console:\n%s", strings.Join(lines, "\n"))
	}
	t.Logf("plan %+v; fetched %d bytes for a %d-byte image; phases %+v", planOf(t, lines), res.FetchedBytes, res.ImageBytes, res.Phases)
}
