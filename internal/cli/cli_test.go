package cli

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	var got []string
	cmds := []Command{{
		Name: "echo", Usage: "[--n=N] WORDS", Synopsis: "print words",
		Run: func(ctx context.Context, io IO, fs *flag.FlagSet, args []string) error {
			n := fs.Int("n", 1, "times")
			if err := Parse(fs, args); err != nil {
				return err
			}
			if fs.NArg() == 0 {
				return Usagef("want words")
			}
			if fs.Arg(0) == "fail" {
				return errors.New("it failed")
			}
			for range *n {
				got = append(got, fs.Args()...)
			}
			return nil
		},
	}}
	for _, tc := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"echo", "--n=2", "a"}, 0, ""},
		{[]string{"echo"}, 2, "want words"},
		{[]string{"echo", "--bogus", "a"}, 2, "bogus"},
		{[]string{"echo", "fail"}, 1, "prog echo: it failed"},
		{[]string{"echo", "-h"}, 0, "print words"},
		{[]string{"other"}, 2, `unknown command "other"`},
		{nil, 2, "commands:"},
		{[]string{"help"}, 0, "echo"},
	} {
		var out, errb bytes.Buffer
		code := Run(context.Background(), "prog", cmds, IO{Stdout: &out, Stderr: &errb}, tc.args)
		if code != tc.code || !strings.Contains(errb.String(), tc.stderr) {
			t.Errorf("Run(%q) = %d, stderr %q; want %d and %q", tc.args, code, errb.String(), tc.code, tc.stderr)
		}
	}
	if strings.Join(got, " ") != "a a" {
		t.Errorf("echo ran with %q, want a a", got)
	}
}

func TestProgressModes(t *testing.T) {
	var b bytes.Buffer
	for _, mode := range []string{"auto", "bar", "line", "none", ""} {
		if _, err := Progress(mode, &b); err != nil {
			t.Errorf("Progress(%q) = %v", mode, err)
		}
	}
	if _, err := Progress("fancy", &b); !errors.Is(err, ErrUsage) {
		t.Errorf("Progress(fancy) = %v, want a usage error", err)
	}
}
