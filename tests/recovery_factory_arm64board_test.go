// The file name does not end in _arm64_test.go: Go would build it on
// arm64 hosts only.

package tests

import (
	"strings"
	"testing"
)

// TestRecoveryFactoryResetArm64 is acceptance 7 for the factory reset:
// acceptance 4 on qemu-arm64. From the button, which is Ctrl-C held on the
// console, noticed by U-Boot's sleep in the board's boot script
// (docs/bootloader-uboot.md): the reset reboots through U-Boot into v1,
// which verifies itself and marks A good through the environment file;
// the data partition is checked as on qemu-x86_64. Then from the command
// line with 5 power cuts: every boot after a cut goes through U-Boot,
// whose boot script's lifeboat_mode=factory-reset, from lifeboat.env,
// brings it back into the reset, which resumes.
func TestRecoveryFactoryResetArm64(t *testing.T) {
	f, q := needRecoveryArm64(t)
	requireTools(t, "e2fsck", "debugfs")

	steps := 0
	t.Run("button", func(t *testing.T) {
		d := f.newFactoryDevice(t)
		lines := f.bootWithResetKey(t, d, q)
		if !containsLine(lines, "LIFEBOAT reset trigger: factory reset") {
			t.Errorf("the boot script did not see Ctrl-C; console:\n%s", strings.Join(lines, "\n"))
		}
		f.checkFactoryReset(t, d, lines)
		steps = resetSteps(lines)
		t.Logf("%d console lines from the first save to the end of the reset", steps)
	})
	if t.Failed() {
		return
	}
	t.Run("command line, power cuts", func(t *testing.T) {
		f.factoryResetPowerCuts(t, q, steps)
	})
}
