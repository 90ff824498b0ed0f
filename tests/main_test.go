package tests

import (
	"bytes"
	"errors"
	"fmt"
	"github.com/lifeboat-update/lifeboat/internal/testtool"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The commands under test, built once by TestMain, and a directory for the
// fixtures that several tests share. Both are set before any test runs and
// only read afterwards.
var (
	binDir  string
	workDir string
)

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "lifeboat-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	binDir, workDir = filepath.Join(dir, "bin"), filepath.Join(dir, "work")
	if err := os.Mkdir(workDir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	if err := buildCommands(binDir); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	return m.Run()
}

// buildCommands builds ./cmds/... of the module this package is in into dir.
func buildCommands(dir string) error {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		return fmt.Errorf("go list -m: %w", err)
	}
	root := strings.TrimSpace(string(out))
	build := exec.Command("go", "build", "-o", dir+string(filepath.Separator), "./cmds/...")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmds/... in %s: %w\n%s", root, err, out)
	}
	return nil
}

// requireTools skips the test when a tool it needs is not installed, or
// fails it under CI, which must install them.
func requireTools(t *testing.T, names ...string) { testtool.Require(t, names...) }

// result is how a command ended.
type result struct {
	stdout, stderr string
	code           int
}

// command runs name with args and extra environment, and returns how it
// ended. It fails the test only if the command could not be started.
func command(t *testing.T, env []string, name string, args ...string) result {
	t.Helper()
	ctx := t.Context()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit) && ctx.Err() == nil:
		r.code = exit.ExitCode()
	default:
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.Bytes())
	}
	return r
}

// mustRun runs a command that must succeed and returns its stdout.
func mustRun(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	r := command(t, env, name, args...)
	if r.code != 0 {
		t.Fatalf("%s %s: exit status %d\n%s", filepath.Base(name), strings.Join(args, " "), r.code, r.stderr)
	}
	return r.stdout
}

// lifeboat runs the device-side command.
func lifeboat(t *testing.T, args ...string) result {
	t.Helper()
	return command(t, nil, filepath.Join(binDir, "lifeboat"), args...)
}

// release runs the build-side command, which must succeed.
func release(t *testing.T, args ...string) string {
	t.Helper()
	return mustRun(t, nil, filepath.Join(binDir, "lifeboat-release"), args...)
}

// makeIndex chunks img into store with lifeboat-release and writes index.
func makeIndex(t *testing.T, store, index, img string, extra ...string) {
	t.Helper()
	args := append([]string{"make", "--progress=none", "--store=" + store}, extra...)
	release(t, append(args, index, img)...)
}

// sameFile fails the test unless files got and want have the same content,
// naming the first offset where they differ.
func sameFile(t *testing.T, got, want string) {
	t.Helper()
	if off, err := firstDiff(got, want); err != nil {
		t.Fatal(err)
	} else if off >= 0 {
		t.Errorf("%s differs from %s from offset %d on", got, want, off)
	}
}

// firstDiff returns the first offset at which a and b differ (a length
// difference counts), or -1 if they are the same.
func firstDiff(a, b string) (int64, error) {
	fa, err := os.Open(a)
	if err != nil {
		return 0, err
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return 0, err
	}
	defer fb.Close()
	const n = 1 << 20
	ba, bb := make([]byte, n), make([]byte, n)
	var off int64
	for {
		na, erra := io.ReadFull(fa, ba)
		nb, errb := io.ReadFull(fb, bb)
		if i := firstDiffBytes(ba[:na], bb[:nb]); i >= 0 {
			return off + int64(i), nil
		}
		off += int64(na)
		endA, endB := erra != nil, errb != nil
		if endA && !errors.Is(erra, io.EOF) && !errors.Is(erra, io.ErrUnexpectedEOF) {
			return 0, erra
		}
		if endB && !errors.Is(errb, io.EOF) && !errors.Is(errb, io.ErrUnexpectedEOF) {
			return 0, errb
		}
		if endA || endB {
			return -1, nil
		}
	}
}

// firstDiffBytes returns the first index at which a and b differ, counting
// a length difference, or -1.
func firstDiffBytes(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	return -1
}

// copyFile copies src to a new file dst.
func copyFile(t *testing.T, dst, src string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
