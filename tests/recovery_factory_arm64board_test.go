// The file name does not end in _arm64_test.go: Go would build it on
// arm64 hosts only.

package tests

import (
	"strings"
	"testing"
)

// TestRecoveryFactoryResetArm64 is acceptance 7 for the factory reset:
// acceptance 4's reset from the button on qemu-arm64, where the button is
// Ctrl-C held on the console, which U-Boot's sleep in the board's boot
// script notices (docs/bootloader-uboot.md). The reset reboots through
// U-Boot into v1, which verifies itself and marks A good through the
// environment file; the data partition is checked as on qemu-x86_64.
func TestRecoveryFactoryResetArm64(t *testing.T) {
	f, q := needRecoveryArm64(t)
	requireTools(t, "e2fsck", "debugfs")
	d := f.newFactoryDevice(t)
	lines := f.bootWithResetKey(t, d, q)
	if !containsLine(lines, "LIFEBOAT reset trigger: factory reset") {
		t.Errorf("the boot script did not see Ctrl-C; console:\n%s", strings.Join(lines, "\n"))
	}
	f.checkFactoryReset(t, d, lines)
}
