package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lifeboat-update/lifeboat/internal/cli"
	"github.com/lifeboat-update/lifeboat/pkg/chunk"
	"github.com/lifeboat-update/lifeboat/pkg/store"
)

func runCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), cli.IO{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb}, args)
	return code, out.String(), errb.String()
}

func writeImage(t *testing.T, dir string, size int) string {
	t.Helper()
	rng := rand.New(rand.NewPCG(uint64(size), 7))
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	p := filepath.Join(dir, "img")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestMake(t *testing.T) {
	dir := t.TempDir()
	img := writeImage(t, dir, 3<<20)
	idxPath := filepath.Join(dir, "img.caibx")
	storeDir := filepath.Join(dir, "store")
	code, out, errs := runCmd(t, "make", "--progress=none", "--json", "--chunk-size=16K:64K:256K", "--store="+storeDir, idxPath, img)
	if code != 0 {
		t.Fatalf("make exited %d: %s", code, errs)
	}
	var st makeStats
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("make --json printed %q: %v", out, err)
	}
	f, err := os.Open(idxPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	x, err := chunk.ReadIndex(f)
	if err != nil {
		t.Fatal(err)
	}
	if x.Size() != 3<<20 || int(st.Store.New) != len(x.Chunks) || st.Chunks != len(x.Chunks) {
		t.Errorf("index size %d, %d chunks; stats %+v", x.Size(), len(x.Chunks), st)
	}
	local, _ := store.NewLocal(storeDir)
	for _, e := range x.Chunks {
		if ok, _ := local.Has(context.Background(), e.ID); !ok {
			t.Fatalf("store lacks chunk %s", e.ID)
		}
	}
	// Again: nothing new to store.
	code, out, _ = runCmd(t, "make", "--progress=none", "--json", "--store="+storeDir, idxPath, img)
	json.Unmarshal([]byte(out), &st)
	if code != 0 || st.Store.New != 0 {
		t.Errorf("second make: exit %d, %d new chunks, want 0 new", code, st.Store.New)
	}
}

func TestMakeDefaultStore(t *testing.T) {
	dir := t.TempDir()
	img := writeImage(t, dir, 100<<10)
	if code, _, errs := runCmd(t, "make", "--progress=none", filepath.Join(dir, "x.caibx"), img); code != 0 {
		t.Fatalf("make exited %d: %s", code, errs)
	}
	if _, err := os.Stat(filepath.Join(dir, "default.castr")); err != nil {
		t.Errorf("no default.castr beside the index: %v", err)
	}
}

func TestMakeUsage(t *testing.T) {
	dir := t.TempDir()
	img := writeImage(t, dir, 1000)
	for _, args := range [][]string{
		{"make"},
		{"make", "x.caibx"},
		{"make", "--chunk-size=64K:16K:256K", "x.caibx", img},
		{"make", "--chunk-size=1:16:32", "x.caibx", img},
		{"make", "--digest=md5", "x.caibx", img},
		{"make", "--progress=fancy", "x.caibx", img},
		{"nonsense"},
	} {
		if code, _, errs := runCmd(t, args...); code != 2 || errs == "" {
			t.Errorf("lifeboat-release %v = exit %d (%q), want 2 and a message", args, code, errs)
		}
	}
	if code, _, errs := runCmd(t, "make", "--progress=none", filepath.Join(dir, "x.caibx"), filepath.Join(dir, "missing")); code != 1 || !strings.Contains(errs, "missing") {
		t.Errorf("make of a missing image = exit %d (%q), want 1 naming the file", code, errs)
	}
}
