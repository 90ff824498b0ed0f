// Package testtool is what tests share about the real tools they check
// Lifeboat against (casync, veritysetup, cryptsetup, sfdisk, ...): a test
// that needs one skips, saying why, where it is missing, and fails under CI
// (CI=true), which must have installed it (scripts/deps.sh, run by make
// test).
package testtool

import (
	"os"
	"os/exec"
	"testing"
)

// Require skips t, or fails it under CI, unless every named tool is on the
// PATH.
func Require(t testing.TB, names ...string) {
	t.Helper()
	for _, name := range names {
		if _, err := exec.LookPath(name); err == nil {
			continue
		}
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not installed; CI must install it (scripts/deps.sh, run by make test)", name)
		}
		t.Skipf("%s is not installed; make test installs it (scripts/deps.sh)", name)
	}
}

// Have reports whether the named tool is on the PATH, for tests that fall
// back to golden files without it; under CI it must be there.
func Have(t testing.TB, name string) bool {
	t.Helper()
	if _, err := exec.LookPath(name); err == nil {
		return true
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is not installed; CI must install it (scripts/deps.sh, run by make test)", name)
	}
	t.Logf("%s is not installed: live check skipped, golden files only", name)
	return false
}
