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
	"github.com/lifeboat-update/lifeboat/pkg/assemble"
	"github.com/lifeboat-update/lifeboat/pkg/chunk"
	"github.com/lifeboat-update/lifeboat/pkg/store"
)

func runCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), cli.IO{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb}, args)
	return code, out.String(), errb.String()
}

// chunkRelease chunks data into a store in dir and writes its index there.
func chunkRelease(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	c, _ := chunk.NewChunker(chunk.DefaultParams)
	x := chunk.NewIndex(chunk.DefaultParams, chunk.SHA512256)
	var err error
	x.Chunks, err = chunk.Scan(context.Background(), bytes.NewReader(data), int64(len(data)), c, x.Digest, chunk.ScanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ws, err := store.NewLocal(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.AddChunks(context.Background(), ws, bytes.NewReader(data), x.Chunks, nil); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name+".caibx")
	f, _ := os.Create(p)
	defer f.Close()
	if _, err := x.WriteTo(f); err != nil {
		t.Fatal(err)
	}
	return p
}

func random(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, 3))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

func TestExtract(t *testing.T) {
	dir := t.TempDir()
	v1 := random(1, 2<<20)
	v2 := bytes.Clone(v1)
	copy(v2[1<<20:], random(2, 100<<10))
	chunkRelease(t, dir, "v1", v1)
	idx := chunkRelease(t, dir, "v2", v2)
	seed := filepath.Join(dir, "v1.img")
	os.WriteFile(seed, v1, 0o644)
	out := filepath.Join(dir, "out.img")

	code, stdout, errs := runCmd(t, "extract", "--progress=none", "--json", "--store="+filepath.Join(dir, "store"), "--seed="+seed, idx, out)
	if code != 0 {
		t.Fatalf("extract exited %d: %s", code, errs)
	}
	got, _ := os.ReadFile(out)
	if !bytes.Equal(got, v2) {
		t.Fatal("extract wrote the wrong image")
	}
	var st assemble.Stats
	if err := json.Unmarshal([]byte(stdout), &st); err != nil {
		t.Fatalf("extract --json printed %q: %v", stdout, err)
	}
	if st.Seeds[0].Chunks == 0 || st.Stores[0].Chunks == 0 || st.Seeds[0].Bytes+st.Stores[0].Bytes != int64(len(v2)) {
		t.Errorf("stats = %+v, want the image split between seed and store", st)
	}

	// Again into the finished file: everything is already in place.
	code, stdout, _ = runCmd(t, "extract", "--progress=none", "--json", "--store="+filepath.Join(dir, "store"), idx, out)
	st = assemble.Stats{}
	if err := json.Unmarshal([]byte(stdout), &st); err != nil {
		t.Fatal(err)
	}
	if code != 0 || st.InPlace.Bytes != int64(len(v2)) || st.Fetched() != 0 {
		t.Errorf("second extract: exit %d, in place %d bytes, fetched %d; want all in place, none fetched", code, st.InPlace.Bytes, st.Fetched())
	}
}

func TestExtractErrors(t *testing.T) {
	dir := t.TempDir()
	idx := chunkRelease(t, dir, "v1", random(3, 300<<10))
	bad := filepath.Join(dir, "bad.caibx")
	b, _ := os.ReadFile(idx)
	os.WriteFile(bad, b[:len(b)-3], 0o644)
	storeDir := filepath.Join(dir, "store")
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"extract"}, 2, "want INDEX.caibx and TARGET"},
		{[]string{"extract", "--progress=x", idx, filepath.Join(dir, "o")}, 2, "--progress"},
		{[]string{"extract", "--store=" + storeDir, bad, filepath.Join(dir, "o")}, 1, "bad index"},
		{[]string{"extract", "--store=" + filepath.Join(dir, "nostore"), idx, filepath.Join(dir, "o")}, 1, "nostore"},
		{[]string{"extract", "--store=ftp://x", idx, filepath.Join(dir, "o")}, 1, "unsupported scheme"},
		{[]string{"extract", idx, filepath.Join(dir, "o")}, 1, "no store"},
		{[]string{"extract", "--seed-index=" + filepath.Join(dir, "seed.img"), "--store=" + storeDir, idx, filepath.Join(dir, "o")}, 1, ".caibx"},
	} {
		code, _, errs := runCmd(t, tc.args...)
		if code != tc.code || !strings.Contains(errs, tc.msg) {
			t.Errorf("lifeboat %v = exit %d, %q; want %d and a message with %q", tc.args, code, errs, tc.code, tc.msg)
		}
		if _, err := os.Stat(filepath.Join(dir, "o")); err == nil {
			t.Errorf("lifeboat %v left a target behind", tc.args)
		}
	}
}
