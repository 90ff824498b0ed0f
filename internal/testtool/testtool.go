// Package testtool is what tests share about the real tools they check
// Lifeboat against (casync, veritysetup, cryptsetup, sfdisk, ...): a test
// that needs one skips, saying why, where it is missing, and fails under CI
// (CI=true), which must have installed it (scripts/deps.sh, run by make
// test); and the gzipped golden files those tools' output is kept in.
package testtool

import (
	"bytes"
	"compress/gzip"
	"io"
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

// ReadGzip returns the uncompressed content of a gzipped golden file.
func ReadGzip(t testing.TB, path string) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("%v (regenerate with go test -update)", err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return b
}

// WriteGzip writes b to path, gzipped at the best compression: golden
// files stay small in testdata.
func WriteGzip(t testing.TB, path string, b []byte) {
	t.Helper()
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}
