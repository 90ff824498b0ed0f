package assemble

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFileTargetNewFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "img")
	tg, err := OpenTarget(path, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if !tg.Fresh() || tg.InPlace() {
		t.Errorf("new file: Fresh, InPlace = %v, %v, want true, false", tg.Fresh(), tg.InPlace())
	}
	tg.WriteAt([]byte("hello"), 10)
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("target exists before Commit: %v", err)
	}
	if err := tg.Commit(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil || len(b) != 1000 || string(b[10:15]) != "hello" {
		t.Fatalf("committed file = %d bytes, %v", len(b), err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestFileTargetAbortRemovesNewFile(t *testing.T) {
	dir := t.TempDir()
	tg, err := OpenTarget(filepath.Join(dir, "img"), 1000)
	if err != nil {
		t.Fatal(err)
	}
	tg.Abort()
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("Abort left %d files", len(left))
	}
}

func TestFileTargetExistingShrinks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "img")
	os.WriteFile(path, bytes.Repeat([]byte{1}, 5000), 0o644)
	tg, err := OpenTarget(path, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if !tg.InPlace() {
		t.Error("existing file is not in place")
	}
	if err := tg.Commit(); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Size() != 1000 {
		t.Errorf("size after Commit = %d, want 1000", fi.Size())
	}
}

func TestOpenSeedShorterThanIndex(t *testing.T) {
	dir := t.TempDir()
	data := randomBytes(9, 300<<10)
	x, _ := makeIndex(t, data)
	idxPath := filepath.Join(dir, "seed.caibx")
	f, _ := os.Create(idxPath)
	x.WriteTo(f)
	f.Close()
	img, err := SeedIndexPath(idxPath)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(img, data[:len(data)-1], 0o644)
	_, _, err = OpenSeed(img, idxPath)
	if err == nil || !strings.Contains(err.Error(), "shorter than its index") {
		t.Fatalf("OpenSeed(short seed) = %v, want a shorter-than-index error", err)
	}
	if _, err := SeedIndexPath("seed.img"); err == nil {
		t.Error("SeedIndexPath(seed.img) succeeded, want an error for a path without .caibx")
	}
}
