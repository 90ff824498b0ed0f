package ebg

import (
	"fmt"
	"testing"
)

func cfg(rev uint32, u UState, kernel string) *Config {
	return &Config{KernelFile: kernel, KernelParams: "console=ttyS0", Revision: rev, UState: u}
}

func descr(cs []*Config) string {
	s := ""
	for i, c := range cs {
		if i > 0 {
			s += ", "
		}
		if c == nil {
			s += "invalid"
		} else {
			s += fmt.Sprintf("rev %d %s in_progress %d", c.Revision, c.UState, c.InProgress)
		}
	}
	return "[" + s + "]"
}

// TestSelect checks the rule against what EBG 0.13 did under QEMU
// (../shared/notes/bootloaders-in-qemu.md, "Scenarios and observed
// results") and against load_config's corner cases.
func TestSelect(t *testing.T) {
	inProgress := cfg(3, OK, "B")
	inProgress.InProgress = 1
	for _, tc := range []struct {
		name    string
		in      []*Config
		boot    int
		trial   bool
		failed  int
		after   []*Config // nil: unchanged
		qemuRun bool      // observed under QEMU
	}{
		{name: "A only", in: []*Config{cfg(1, OK, "A"), cfg(0, OK, "B")}, boot: 0, failed: -1, qemuRun: true},
		{name: "update to B", in: []*Config{cfg(1, OK, "A"), cfg(2, Installed, "B")}, boot: 1, trial: true, failed: -1,
			after: []*Config{cfg(1, OK, "A"), cfg(2, Testing, "B")}, qemuRun: true},
		{name: "reset without confirm", in: []*Config{cfg(1, OK, "A"), cfg(2, Testing, "B")}, boot: 0, failed: 1,
			after: []*Config{cfg(1, OK, "A"), cfg(0, Failed, "B")}, qemuRun: true},
		{name: "confirmed B", in: []*Config{cfg(1, OK, "A"), cfg(2, OK, "B")}, boot: 1, failed: -1, qemuRun: true},
		{name: "after fallback", in: []*Config{cfg(1, OK, "A"), cfg(0, Failed, "B")}, boot: 0, failed: -1, qemuRun: true},

		{name: "B on config 0", in: []*Config{cfg(2, Installed, "B"), cfg(1, OK, "A")}, boot: 0, trial: true, failed: -1,
			after: []*Config{cfg(2, Testing, "B"), cfg(1, OK, "A")}},
		{name: "tie goes to the lower index", in: []*Config{cfg(2, OK, "A"), cfg(2, OK, "B")}, boot: 0, failed: -1},
		{name: "in progress is skipped", in: []*Config{cfg(1, OK, "A"), inProgress}, boot: 0, failed: -1},
		{name: "bad CRC is skipped", in: []*Config{cfg(1, OK, "A"), nil}, boot: 0, failed: -1},
		{name: "bad CRC on config 0", in: []*Config{nil, cfg(1, OK, "B")}, boot: 1, failed: -1},
		{name: "nothing valid", in: []*Config{nil, nil}, boot: -1, failed: -1},
		{name: "only revision 0, config 0 bad", in: []*Config{nil, cfg(0, OK, "B")}, boot: -1, failed: -1},
		{name: "only revision 0 boots config 0", in: []*Config{cfg(0, OK, "A"), cfg(0, OK, "B")}, boot: 0, failed: -1},
		{name: "failed with a revision still boots", in: []*Config{cfg(1, OK, "A"), cfg(2, Failed, "B")}, boot: 1, failed: -1},
		{name: "testing with no fallback", in: []*Config{nil, cfg(2, Testing, "B")}, boot: -1, failed: 1,
			after: []*Config{nil, cfg(0, Failed, "B")}},
		{name: "testing alone on config 0 boots itself failed", in: []*Config{cfg(2, Testing, "A"), nil}, boot: 0, failed: 0,
			after: []*Config{cfg(0, Failed, "A"), nil}},
		{name: "three configs", in: []*Config{cfg(3, OK, "A"), cfg(5, Testing, "B"), cfg(4, OK, "C")}, boot: 2, failed: 1,
			after: []*Config{cfg(3, OK, "A"), cfg(0, Failed, "B"), cfg(4, OK, "C")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := Select(tc.in)
			if d.Boot != tc.boot || d.Trial != tc.trial || d.Failed != tc.failed {
				t.Errorf("Select(%s) = boot %d trial %v failed %d, want boot %d trial %v failed %d",
					descr(tc.in), d.Boot, d.Trial, d.Failed, tc.boot, tc.trial, tc.failed)
			}
			after := tc.after
			if after == nil {
				after = tc.in
			}
			for i := range after {
				if !d.After[i].Equal(after[i]) {
					t.Errorf("Select(%s).After = %s, want %s", descr(tc.in), descr(d.After), descr(after))
					break
				}
			}
		})
	}
}
