package chunk

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "regenerate testdata/*.caibx with the real casync")

// goldenCases are indexes `casync make` wrote for testData inputs.
var goldenCases = []struct {
	name   string
	seed   uint64
	size   int
	params Params
	digest Digest
}{
	{"default", 1, 6 << 20, DefaultParams, SHA512256},
	{"small", 2, 2 << 20, Params{4 << 10, 16 << 10, 64 << 10}, SHA512256},
	{"large", 3, 8 << 20, Params{64 << 10, 256 << 10, 1 << 20}, SHA512256},
	{"odd", 4, 256 << 10, Params{1, 64, 100}, SHA512256},
	{"fixed", 5, 1<<20 + 17, Params{4096, 4096, 4096}, SHA512256},
	{"sha256", 6, 3 << 20, DefaultParams, SHA256},
	{"empty", 7, 0, DefaultParams, SHA512256},
	{"tiny", 8, 100, DefaultParams, SHA512256},
}

// casyncMake runs the real casync on data and returns its index.
func casyncMake(t *testing.T, data []byte, p Params, d Digest) []byte {
	t.Helper()
	dir := t.TempDir()
	img := filepath.Join(dir, "img")
	if err := os.WriteFile(img, data, 0o644); err != nil {
		t.Fatal(err)
	}
	idx := filepath.Join(dir, "img.caibx")
	cmd := exec.Command("casync", "make", "--store="+filepath.Join(dir, "store"),
		"--chunk-size="+p.String(), "--digest="+d.String(), idx, img)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("casync make: %v\n%s", err, out)
	}
	b, err := os.ReadFile(idx)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func ourIndex(t *testing.T, data []byte, p Params, d Digest) []byte {
	t.Helper()
	c, err := NewChunker(p)
	if err != nil {
		t.Fatal(err)
	}
	x := NewIndex(p, d)
	x.Chunks, err = Scan(context.Background(), bytes.NewReader(data), int64(len(data)), c, d, ScanOptions{SectionSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := x.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestGoldenIndexes(t *testing.T) {
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			data := testData(tc.seed, tc.size)
			golden := filepath.Join("testdata", tc.name+".caibx")
			if *update {
				if err := os.WriteFile(golden, casyncMake(t, data, tc.params, tc.digest), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (regenerate with go test -update)", err)
			}
			got := ourIndex(t, data, tc.params, tc.digest)
			if !bytes.Equal(got, want) {
				t.Errorf("index for %s differs from casync's %s: %s", tc.params, golden, firstDiff(got, want))
			}
			x, err := ReadIndex(bytes.NewReader(want))
			if err != nil {
				t.Fatalf("ReadIndex(%s) = %v", golden, err)
			}
			if x.Params != tc.params || x.Digest != tc.digest || x.Size() != uint64(tc.size) {
				t.Errorf("ReadIndex(%s) = params %s digest %s size %d, want %s %s %d",
					golden, x.Params, x.Digest, x.Size(), tc.params, tc.digest, tc.size)
			}
		})
	}
}

func firstDiff(a, b []byte) string {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return fmt.Sprintf("first difference at byte %d of %d/%d", i, len(a), len(b))
		}
	}
	return fmt.Sprintf("lengths %d and %d", len(a), len(b))
}
