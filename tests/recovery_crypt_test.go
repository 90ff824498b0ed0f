package tests

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lifeboat-update/lifeboat/internal/testtool"
	"github.com/lifeboat-update/lifeboat/pkg/slot"
	qdevice "github.com/lifeboat-update/lifeboat/qemu/device"
)

// newCryptDevice is newDevice on the ab-crypt layout: the data partition
// is LUKS2, its passphrase sealed to the device's TPM, an swtpm state
// directory the disk names (Disk.TPMState).
func (f *recoveryFixture) newCryptDevice(t *testing.T) *qdevice.Disk {
	t.Helper()
	testtool.Require(t, qdevice.CryptTools()...)
	dir := t.TempDir()
	spec := f.Spec("ab-crypt", filepath.Join(dir, "disk.img"), nil)
	spec.TPMState = filepath.Join(dir, "tpm")
	d, err := qdevice.Build(t.Context(), spec)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestRecoveryCrypt is the acceptance item "an encrypted data partition
// unlocked by the ramdisk with a TPM-sealed key": on the ab-crypt layout
// the ramdisk unseals the data partition's passphrase with the device's
// TPM, opens the LUKS2 volume, updates v1 -> v2 over the network and
// kexecs into v2, which marks itself good. The same disk with another TPM
// fails, naming the check, and switches nothing.
func TestRecoveryCrypt(t *testing.T) {
	f := needRecovery(t)
	srv := serveRepo(t, f.Repo)
	d := f.newCryptDevice(t)
	args := "lifeboat.layout=ab-crypt lifeboat.source=net lifeboat.repo=" + srv.url

	t.Run("update", func(t *testing.T) {
		spec := f.direct(d, args)
		spec.TPMState = d.TPMState
		lines := f.boot(t, spec)
		res := resultOf[ramdiskResult](t, lines)
		if !res.OK || res.Version != "2" || res.Slot != "B" || res.Seed != "A" {
			t.Fatalf("result %+v; console:\n%s", res, strings.Join(lines, "\n"))
		}
		if !containsLine(lines, "lifeboat: unlocked the encrypted data partition data with the key sealed to the TPM: /dev/mapper/lifeboat-data") {
			t.Errorf("the console does not show the unlock:\n%s", strings.Join(lines, "\n"))
		}
		t.Logf("phases %+v", res.Phases)
		if got := strings.Join(demoLines(lines), "; "); !strings.Contains(got, "version=2 slot=B verity=ok") || !strings.Contains(got, "marked-good slot=B") {
			t.Errorf("v2 did not boot and mark itself good after kexec: %s", got)
		}
		env := envOf(t, d)
		if env[slot.LeftVar("B")] != "3" || !strings.HasPrefix(env[slot.OrderVar], "B A") || env["LIFEBOAT_B_VERITY"] != f.VerityArg("2") {
			t.Errorf("grubenv after the update: %v", env)
		}
	})

	t.Run("another TPM", func(t *testing.T) {
		before := envOf(t, d)
		spec := f.direct(d, args)
		spec.TPMState = t.TempDir() // a fresh TPM: another owner seed
		lines := f.boot(t, spec)
		res := resultOf[ramdiskResult](t, lines)
		if res.OK || res.Check != "unlock" || !strings.Contains(res.Error, "unseal: ") {
			t.Fatalf("result %+v, want check unlock failing to unseal; console:\n%s", res, strings.Join(lines, "\n"))
		}
		t.Logf("refused: %s", res.Error)
		if !containsLine(lines, "FAILED (unlock)") || !containsLine(lines, "nothing was switched") {
			t.Errorf("the console does not name the check:\n%s", strings.Join(lines, "\n"))
		}
		if after := envOf(t, d); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Errorf("grubenv changed: %v -> %v", before, after)
		}
	})
}
