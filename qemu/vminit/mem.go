package vminit

import (
	"context"
	"fmt"
	"io"
	"strings"
)

// Fake is an in-memory System for tests: it records what init does.
type Fake struct {
	Calls   []string         // "mount /proc", "load /lib/modules/x.ko", "exec a b"
	Present map[string]bool  // paths that Exists reports
	Fail    map[string]error // a Calls entry that fails, with the error
	Status  int              // what Exec returns
	Output  string           // what Exec writes
}

var _ System = (*Fake)(nil)

func (f *Fake) call(s string) error {
	f.Calls = append(f.Calls, s)
	return f.Fail[s]
}

// Mount implements System.
func (f *Fake) Mount(m Mount) error { return f.call("mount " + m.Target) }

// LoadModule implements System.
func (f *Fake) LoadModule(path string) error { return f.call("load " + path) }

// Exists implements System.
func (f *Fake) Exists(path string) bool { return f.Present[path] }

// Exec implements System.
func (f *Fake) Exec(_ context.Context, argv, env []string, dir string, out io.Writer) (int, error) {
	if err := f.call("exec " + strings.Join(argv, " ")); err != nil {
		return 0, err
	}
	fmt.Fprint(out, f.Output)
	return f.Status, nil
}
