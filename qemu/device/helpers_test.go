package device_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/lifeboat-update/lifeboat/pkg/board"
	"github.com/lifeboat-update/lifeboat/pkg/release"
)

// boardDir is the board the tests build and boot.
var boardDir = filepath.Join("..", "..", "boards", "qemu-x86_64")

func testBoard(t *testing.T) *board.Board {
	t.Helper()
	b, err := board.Load(boardDir)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// rootJSON returns a root.json signed by a new key, valid for a year.
func rootJSON(t *testing.T) []byte {
	t.Helper()
	s, err := release.GenerateKey(filepath.Join(t.TempDir(), "root.key"))
	if err != nil {
		t.Fatal(err)
	}
	id := s.Public().ID()
	root := release.Root{
		Header: release.Header{Type: release.RoleRoot, Version: 1, Expires: time.Now().Add(365 * 24 * time.Hour).UTC().Round(time.Second)},
		Keys:   map[string]release.Key{id: s.Public()},
		Roles:  map[string]release.RoleKeys{},
	}
	for _, r := range release.Roles {
		root.Roles[r] = release.RoleKeys{KeyIDs: []string{id}, Threshold: 1}
	}
	b, err := release.Sign(root, []release.Signer{s})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// debugfsCat returns the file name in the ext4 file system at off in img.
func debugfsCat(t *testing.T, img string, off int64, name string) []byte {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("debugfs", "-R", "cat "+name, img+"?offset="+strconv.FormatInt(off, 10))
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("debugfs cat %s: %v\n%s", name, err, stderr.Bytes())
	}
	return stdout.Bytes()
}

// writeFile writes b to name in dir and returns its path.
func writeFile(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// mcopyOut returns the file name from the FAT at off in img.
func mcopyOut(t *testing.T, img string, off int64, name string) []byte {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "f")
	cmd := exec.Command("mcopy", "-i", img+"@@"+strconv.FormatInt(off, 10), "::"+name, dst)
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mcopy %s: %v\n%s", name, err, out)
	}
	b, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
