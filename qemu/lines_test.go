package qemu

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestLines(t *testing.T) {
	var got []string
	l := &Lines{Line: func(s string) { got = append(got, s) }}
	for _, p := range []string{"boot", "ing\nline 2\n", "\npartial"} {
		fmt.Fprint(l, p)
	}
	l.Flush()
	l.Flush() // nothing left: no line
	if diff := cmp.Diff([]string{"booting", "line 2", "", "partial"}, got); diff != "" {
		t.Errorf("Lines passed on (-want +got):\n%s", diff)
	}
}
