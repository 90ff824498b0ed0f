package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lifeboat-update/lifeboat/pkg/verity"
)

// verityLines parses veritysetup-style "Key: \tvalue" lines.
func verityLines(out string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.Contains(v, "\t") {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

func TestVerity(t *testing.T) {
	dir := t.TempDir()
	img := writeImage(t, dir, 1<<20)
	hashPath := filepath.Join(dir, "img.verity")
	os.WriteFile(hashPath, make([]byte, 1<<21), 0o644) // truncated, not overwritten in place
	salt := strings.Repeat("ab", 32)
	code, out, errs := runCmd(t, "verity", "--progress=none", "--salt="+salt, "--uuid=6c1f0b2e-5a3d-4e8f-9b71-0d2c4a6e8f13", img, hashPath)
	if code != 0 {
		t.Fatalf("verity exited %d: %s", code, errs)
	}
	got := verityLines(out)
	for k, want := range map[string]string{
		"UUID": "6c1f0b2e-5a3d-4e8f-9b71-0d2c4a6e8f13", "Hash type": "1", "Data blocks": "256",
		"Data block size": "4096", "Hash blocks": "3", "Hash block size": "4096",
		"Hash algorithm": "sha256", "Salt": salt, "Hash device size": "16384 [bytes]",
	} {
		if got[k] != want {
			t.Errorf("verity printed %s: %q, want %q\n%s", k, got[k], want, out)
		}
	}
	if fi, err := os.Stat(hashPath); err != nil || fi.Size() != 16384 {
		t.Errorf("hash file: %v, want 16384 bytes", err)
	}
	checkTree(t, img, hashPath, 1<<20, 0, salt, got["Root hash"])

	// The same, as JSON; the default salt is 32 random bytes.
	code, out, errs = runCmd(t, "verity", "--progress=none", "--json", "--hash=sha512", img, hashPath)
	if code != 0 {
		t.Fatalf("verity --json exited %d: %s", code, errs)
	}
	var r verityResult
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("verity --json printed %q: %v", out, err)
	}
	if len(r.Salt) != 64 || r.Salt == salt || len(r.RootHash) != 128 || r.HashAlgorithm != "sha512" || len(r.Levels) != 2 {
		t.Errorf("verity --json = %+v, want a random 32-byte salt and a sha512 root", r)
	}
}

// TestVerityInPlace puts the tree into the image, after its data.
func TestVerityInPlace(t *testing.T) {
	dir := t.TempDir()
	img := writeImage(t, dir, 1<<20)
	code, out, errs := runCmd(t, "verity", "--progress=none", "--salt=-", "--no-superblock", "--hash-offset=1048576", img, img)
	if code != 0 {
		t.Fatalf("verity exited %d: %s", code, errs)
	}
	got := verityLines(out)
	if got["Salt"] != "-" || got["Data blocks"] != "256" || got["UUID"] != "" {
		t.Errorf("verity printed %q", out)
	}
	if _, ok := got["Hash device size"]; ok {
		t.Errorf("verity printed a hash device size with a hash offset, as veritysetup does not:\n%s", out)
	}
	if fi, err := os.Stat(img); err != nil || fi.Size() != 1<<20+12288 {
		t.Errorf("image after verity: %v, want %d bytes", err, 1<<20+12288)
	}
	checkTree(t, img, img, 1<<20, 1<<20, "", got["Root hash"], verity.WithoutSuperblock())
}

func checkTree(t *testing.T, dataPath, hashPath string, dataSize, hashOffset int64, salt, root string, opts ...verity.Option) {
	t.Helper()
	data, err := os.Open(dataPath)
	if err != nil {
		t.Fatal(err)
	}
	defer data.Close()
	hash, err := os.Open(hashPath)
	if err != nil {
		t.Fatal(err)
	}
	defer hash.Close()
	p := verity.DefaultParams()
	p.Salt, _ = hex.DecodeString(salt)
	r, err := hex.DecodeString(root)
	if err != nil {
		t.Fatalf("root hash %q: %v", root, err)
	}
	if err := verity.Verify(context.Background(), data, dataSize, hash, hashOffset, p, r, opts...); err != nil {
		t.Errorf("verity.Verify(the tree verity wrote) = %v", err)
	}
}

func TestVerityUsage(t *testing.T) {
	dir := t.TempDir()
	img := writeImage(t, dir, 1<<20)
	odd := writeImage(t, t.TempDir(), 5000)
	hashPath := filepath.Join(dir, "hash")
	for _, tc := range []struct {
		args   []string
		stderr string
	}{
		{[]string{img}, "want DATA and HASHFILE"},
		{[]string{"--salt=xyz", img, hashPath}, "--salt"},
		{[]string{"--salt=" + strings.Repeat("00", 257), img, hashPath}, "salt is 257 bytes"},
		{[]string{"--hash=md5", img, hashPath}, "not supported"},
		{[]string{"--data-block-size=1000", img, hashPath}, "data block size 1000"},
		{[]string{"--format=2", img, hashPath}, "format 2"},
		{[]string{"--no-superblock", "--uuid=6c1f0b2e-5a3d-4e8f-9b71-0d2c4a6e8f13", img, hashPath}, "--uuid"},
		{[]string{"--uuid=nope", img, hashPath}, "--uuid"},
		{[]string{odd, hashPath}, "not a whole number of 4096-byte blocks"},
		{[]string{"--data-blocks=256", "--hash-offset=4096", img, img}, "overlaps"},
		{[]string{"--hash-offset=100", img, hashPath}, "multiple of 512"},
	} {
		code, _, errs := runCmd(t, append([]string{"verity", "--progress=none"}, tc.args...)...)
		if code == 0 || !strings.Contains(errs, tc.stderr) {
			t.Errorf("verity %q = exit %d, stderr %q; want an error with %q", tc.args, code, errs, tc.stderr)
		}
	}
}
