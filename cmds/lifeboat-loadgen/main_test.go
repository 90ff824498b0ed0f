package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lifeboat-update/lifeboat/internal/cli"
)

// TestUsage: a bad invocation exits 2 and names what was wrong, before
// sending anything.
func TestUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"register", "--server=http://127.0.0.1:1"}, "--token-file is required"},
		{[]string{"register", "--server=127.0.0.1:1", "--token-file=x"}, `server "127.0.0.1:1"`},
		{[]string{"run", "--server=http://127.0.0.1:1", "--devices=0"}, "devices 0"},
		{[]string{"run", "--server=http://127.0.0.1:1", "--status-share=2"}, "status share 2"},
		{[]string{"run", "--server=http://127.0.0.1:1", "extra"}, "takes no arguments"},
		{[]string{"rollout", "--server=http://127.0.0.1:1", "--token-file=x"}, "--release is required"},
		{[]string{"rollout", "--server=http://127.0.0.1:1", "--release=2", "x"}, "takes no arguments"},
		{[]string{"rollout", "--server=http://127.0.0.1:1", "--release=2"}, "--token-file is required"},
		{[]string{"load"}, `unknown command "load"`},
	} {
		var out, errb bytes.Buffer
		code := run(context.Background(), cli.IO{Stdout: &out, Stderr: &errb}, tc.args)
		if code != 2 || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("lifeboat-loadgen %s = exit %d, stderr %q; want exit 2 naming %q", strings.Join(tc.args, " "), code, errb.String(), tc.want)
		}
	}
}

// TestRegisterUnreachable: a server that is not there is an error (exit
// 1) naming it, with the counts printed.
func TestRegisterUnreachable(t *testing.T) {
	tok := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tok, []byte("op\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	code := run(context.Background(), cli.IO{Stdout: &out, Stderr: &errb},
		[]string{"register", "--server=http://127.0.0.1:1", "--token-file=" + tok, "--devices=3", "--workers=1", "--json"})
	if code != 1 || !strings.Contains(errb.String(), "127.0.0.1:1") || !strings.Contains(out.String(), `"transport": 3`) {
		t.Errorf("register against nothing = exit %d, stdout %q, stderr %q; want exit 1, 3 transport errors, the address named", code, out.String(), errb.String())
	}
}
