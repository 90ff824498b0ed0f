package ui

import (
	"strings"
	"testing"
)

// FuzzRolloutForm: whatever the creation form holds, parse names what is
// wrong or gives a request whose release and waves are the fields as
// typed, trimmed.
func FuzzRolloutForm(f *testing.F) {
	f.Add("qemu-x86_64/2.0", "attr.site=depot-3", "", "1, 50%, 100%", "0.9", "0.1")
	f.Add("qemu-x86_64/2.0", "", "north", "100%", "1", "0")
	f.Add("", "", "", "", "", "")
	f.Add("a/b/c", "id=x", "g", ",,100%,", "NaN", "-0")
	f.Fuzz(func(t *testing.T, release, filter, group, waves, success, errs string) {
		rf := &rolloutForm{Release: release, Filter: filter, Group: group, Waves: waves, Success: success, Errors: errs}
		c, err := rf.parse()
		if err != nil {
			if err.Error() == "" {
				t.Fatalf("parse(%+v): an empty error", rf)
			}
			return
		}
		if c.Board+"/"+c.Version != release || strings.Contains(c.Board, "/") {
			t.Errorf("parse(%+v): board %q, version %q", rf, c.Board, c.Version)
		}
		for _, w := range c.Waves {
			if w == "" || w != strings.TrimSpace(w) || !strings.Contains(waves, w) {
				t.Errorf("parse(%+v): wave %q", rf, w)
			}
		}
		if c.Filter != strings.TrimSpace(filter) || c.Group != group {
			t.Errorf("parse(%+v): filter %q, group %q", rf, c.Filter, c.Group)
		}
		// What parse accepts, the API's validation judges: never a panic.
		_ = c.Validate()
	})
}
