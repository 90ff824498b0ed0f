package verity

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lifeboat-update/lifeboat/internal/testtool"
)

var update = flag.Bool("update", false, "regenerate testdata/ with the real veritysetup")

// goldenUUID is the --uuid every golden superblock carries.
const goldenUUID = "6c1f0b2e-5a3d-4e8f-9b71-0d2c4a6e8f13"

// goldenSalt is a fixed 32-byte salt, the size veritysetup picks.
var goldenSalt = bytes.Repeat([]byte{0x5a, 0xc3, 0x01, 0xfe}, 8)

// goldenCase is one `veritysetup format` run whose hash area and root hash
// testdata/NAME.{hash.gz,json} hold.
type goldenCase struct {
	name       string
	seed       uint64
	size       int64 // data bytes
	p          Params
	noSB       bool  // --no-superblock
	hashOffset int64 // --hash-offset
	sameFile   bool  // the tree goes into the data file, at hashOffset
}

func params(alg string, dbs, hbs uint32, salt []byte, version uint32) Params {
	return Params{HashAlg: alg, DataBlockSize: dbs, HashBlockSize: hbs, Salt: salt, Version: version}
}

var goldenCases = []goldenCase{
	{name: "sha256-1m", seed: 1, size: 1 << 20, p: params("sha256", 4096, 4096, goldenSalt, 1)},
	{name: "sha256-4m4k", seed: 2, size: 4<<20 + 4096, p: params("sha256", 4096, 4096, goldenSalt, 1)},
	// 257 data blocks, 16 digests per 512-byte hash block: three levels.
	{name: "sha256-h512-3levels", seed: 3, size: 1<<20 + 4096, p: params("sha256", 4096, 512, goldenSalt, 1)},
	{name: "sha256-d512-h512", seed: 4, size: 160 << 10, p: params("sha256", 512, 512, goldenSalt, 1)},
	{name: "sha512-1m", seed: 5, size: 1 << 20, p: params("sha512", 4096, 4096, goldenSalt, 1)},
	// 20-byte digests padded to 32 in format 1, packed in format 0.
	{name: "sha1-1m", seed: 6, size: 1 << 20, p: params("sha1", 4096, 4096, goldenSalt, 1)},
	{name: "sha1-format0", seed: 7, size: 1 << 20, p: params("sha1", 4096, 4096, goldenSalt, 0)},
	{name: "sha256-format0", seed: 8, size: 1 << 20, p: params("sha256", 4096, 4096, goldenSalt, 0)},
	{name: "sha384-format0-h512", seed: 9, size: 256 << 10, p: params("sha384", 4096, 512, goldenSalt, 0)},
	{name: "nosalt", seed: 10, size: 1 << 20, p: params("sha256", 4096, 4096, nil, 1)},
	{name: "nosuperblock", seed: 11, size: 1 << 20, p: params("sha256", 4096, 4096, goldenSalt, 1), noSB: true},
	{name: "nosuperblock-offset", seed: 12, size: 1 << 20, p: params("sha256", 4096, 4096, goldenSalt, 1), noSB: true, hashOffset: 8192},
	{name: "samefile", seed: 13, size: 1 << 20, p: params("sha256", 4096, 4096, goldenSalt, 1), sameFile: true, hashOffset: 1 << 20},
	// The superblock at 1 MiB + 512, the tree at the next hash block.
	{name: "samefile-unaligned", seed: 14, size: 1 << 20, p: params("sha256", 4096, 4096, goldenSalt, 1), sameFile: true, hashOffset: 1<<20 + 512},
	{name: "one-block", seed: 15, size: 4096, p: params("sha256", 4096, 4096, goldenSalt, 1)},
	{name: "two-blocks-h512", seed: 16, size: 8192, p: params("sha256", 4096, 512, goldenSalt, 1)},
}

// testData returns size deterministic bytes: SHA-256 in counter mode, with
// every fifth 4 KiB block zero, as images have.
func testData(seed uint64, size int64) []byte {
	b := make([]byte, size)
	var ctr [16]byte
	binary.LittleEndian.PutUint64(ctr[:], seed)
	for off := int64(0); off < size; off += sha256.Size {
		if off/4096%5 == 4 {
			continue
		}
		binary.LittleEndian.PutUint64(ctr[8:], uint64(off))
		s := sha256.Sum256(ctr[:])
		copy(b[off:], s[:])
	}
	return b
}

// golden is what testdata/NAME.json records of a veritysetup run.
type golden struct {
	Veritysetup string   `json:"veritysetup"`
	Args        []string `json:"args"`
	RootHash    string   `json:"root_hash"`
	HashSize    int64    `json:"hash_size"` // bytes of the hash file from the hash offset
	Output      []string `json:"output"`
}

// veritysetupArgs returns the arguments of `veritysetup format` for tc,
// without the file names.
func (tc goldenCase) veritysetupArgs() []string {
	salt := "-"
	if len(tc.p.Salt) > 0 {
		salt = hex.EncodeToString(tc.p.Salt)
	}
	args := []string{"format", "--salt=" + salt, "--hash=" + tc.p.HashAlg,
		fmt.Sprintf("--data-block-size=%d", tc.p.DataBlockSize),
		fmt.Sprintf("--hash-block-size=%d", tc.p.HashBlockSize),
		fmt.Sprintf("--format=%d", tc.p.Version)}
	if tc.noSB {
		args = append(args, "--no-superblock")
	} else {
		args = append(args, "--uuid="+goldenUUID)
	}
	if tc.hashOffset != 0 {
		args = append(args, fmt.Sprintf("--hash-offset=%d", tc.hashOffset))
	}
	if tc.sameFile {
		args = append(args, fmt.Sprintf("--data-blocks=%d", tc.size/int64(tc.p.DataBlockSize)))
	}
	return args
}

// runVeritysetup formats tc's data with the real veritysetup and returns
// the hash area from the hash offset to the end of the file, and what it
// printed.
func runVeritysetup(t *testing.T, tc goldenCase, data []byte) (area []byte, g golden) {
	t.Helper()
	dir := t.TempDir()
	dataPath, hashPath := filepath.Join(dir, "data"), filepath.Join(dir, "hash")
	if tc.sameFile {
		hashPath = dataPath
	}
	if err := os.WriteFile(dataPath, data, 0o644); err != nil {
		t.Fatal(err)
	}
	g.Args = tc.veritysetupArgs()
	cmd := exec.Command("veritysetup", append(g.Args, dataPath, hashPath)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("veritysetup %s: %v\n%s", strings.Join(g.Args, " "), err, out)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if strings.HasPrefix(line, "VERITY header information for") {
			continue // names a temporary file
		}
		g.Output = append(g.Output, line)
		if v, ok := strings.CutPrefix(line, "Root hash:"); ok {
			g.RootHash = strings.TrimSpace(v)
		}
	}
	if g.RootHash == "" {
		t.Fatalf("veritysetup printed no root hash:\n%s", out)
	}
	if v, err := exec.Command("veritysetup", "--version").Output(); err == nil {
		g.Veritysetup = strings.TrimSpace(string(v))
	}
	b, err := os.ReadFile(hashPath)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(b)) < tc.hashOffset {
		t.Fatalf("veritysetup wrote %d bytes, less than the hash offset %d", len(b), tc.hashOffset)
	}
	area = b[tc.hashOffset:]
	g.HashSize = int64(len(area))
	return area, g
}

func goldenPaths(name string) (hashPath, jsonPath string) {
	return filepath.Join("testdata", name+".hash.gz"), filepath.Join("testdata", name+".json")
}

func writeGolden(t *testing.T, tc goldenCase, area []byte, g golden) {
	t.Helper()
	hashPath, jsonPath := goldenPaths(tc.name)
	j, err := json.MarshalIndent(g, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	testtool.WriteGzip(t, hashPath, area)
	if err := os.WriteFile(jsonPath, append(j, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readGolden(t testing.TB, name string) (area []byte, g golden) {
	t.Helper()
	hashPath, jsonPath := goldenPaths(name)
	j, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatalf("%v (regenerate with go test -update)", err)
	}
	if err := json.Unmarshal(j, &g); err != nil {
		t.Fatalf("%s: %v", jsonPath, err)
	}
	return testtool.ReadGzip(t, hashPath), g
}

// ourArea builds tc's tree with Build, into the data file itself when
// tc.sameFile, and returns the tree and the hash area from the offset on.
func ourArea(t *testing.T, tc goldenCase, data []byte) (*Tree, []byte) {
	t.Helper()
	opts := []Option{WithWorkers(2)}
	if tc.noSB {
		opts = append(opts, WithoutSuperblock())
	} else {
		u, err := ParseUUID(goldenUUID)
		if err != nil {
			t.Fatal(err)
		}
		opts = append(opts, WithUUID(u))
	}
	f, err := os.Create(filepath.Join(t.TempDir(), "hash"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var src io.ReaderAt = bytes.NewReader(data)
	if tc.sameFile {
		if _, err := f.Write(data); err != nil {
			t.Fatal(err)
		}
		src = f
	}
	tree, err := Build(context.Background(), src, tc.size, f, tc.hashOffset, tc.p, opts...)
	if err != nil {
		t.Fatalf("Build(%s) = %v", tc.name, err)
	}
	b, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := int64(len(b)), tc.hashOffset+tree.HashSize; got != want {
		t.Errorf("Build(%s) left a %d-byte file, want offset+HashSize = %d", tc.name, got, want)
	}
	return tree, b[min(tc.hashOffset, int64(len(b))):]
}

// compareArea checks our hash area against veritysetup's. veritysetup
// writes its superblock a whole file system block at a time, so its file
// may run on past the tree, with zeros.
func compareArea(t *testing.T, tree *Tree, got, want []byte, wantRoot string) {
	t.Helper()
	if r := hex.EncodeToString(tree.RootHash); r != wantRoot {
		t.Errorf("root hash %s, veritysetup's %s", r, wantRoot)
	}
	if int64(len(got)) != tree.HashSize {
		t.Errorf("hash area is %d bytes, Tree.HashSize %d", len(got), tree.HashSize)
	}
	if len(want) < len(got) {
		t.Errorf("hash area is %d bytes, veritysetup's %d", len(got), len(want))
		return
	}
	if !bytes.Equal(got, want[:len(got)]) {
		t.Errorf("hash area differs from veritysetup's: %s", firstDiff(got, want[:len(got)]))
	}
	if !allZero(want[len(got):]) {
		t.Errorf("veritysetup's hash area runs %d bytes past ours, not all zero", len(want)-len(got))
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

// TestGolden compares Build with hash areas and root hashes veritysetup
// wrote, and checks that Verify accepts them.
func TestGolden(t *testing.T) {
	if *update {
		requireVeritysetup(t)
	}
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			data := testData(tc.seed, tc.size)
			if *update {
				area, g := runVeritysetup(t, tc, data)
				writeGolden(t, tc, area, g)
			}
			want, g := readGolden(t, tc.name)
			if strings.Join(g.Args, " ") != strings.Join(tc.veritysetupArgs(), " ") {
				t.Fatalf("golden %s was made with %q, the case now says %q (regenerate with go test -update)", tc.name, g.Args, tc.veritysetupArgs())
			}
			tree, got := ourArea(t, tc, data)
			compareArea(t, tree, got, want, g.RootHash)

			root, _ := hex.DecodeString(g.RootHash)
			var opts []Option
			if tc.noSB {
				opts = append(opts, WithoutSuperblock())
			}
			hashDev := io.NewSectionReader(bytes.NewReader(append(make([]byte, tc.hashOffset), want...)), 0, tc.hashOffset+int64(len(want)))
			if err := Verify(context.Background(), bytes.NewReader(data), tc.size, hashDev, tc.hashOffset, tc.p, root, opts...); err != nil {
				t.Errorf("Verify(veritysetup's tree) = %v", err)
			}
		})
	}
}

// TestVeritysetupLive runs the real veritysetup on the golden cases and on
// more sizes and parameters, and compares its trees with Build's.
func TestVeritysetupLive(t *testing.T) {
	requireVeritysetup(t)
	cases := append([]goldenCase(nil), goldenCases...)
	salt := []byte("lifeboat")
	for i, n := range []int64{2, 127, 128, 129, 16385} {
		for j, alg := range []string{"sha256", "sha512", "sha1", "sha224"} {
			for _, hbs := range []uint32{512, 4096} {
				if n == 16385 && hbs == 512 {
					continue
				}
				cases = append(cases, goldenCase{
					name: fmt.Sprintf("%s-%d-h%d-v%d", alg, n, hbs, (i+j)%2),
					seed: uint64(100 + i), size: n * 4096,
					p: params(alg, 4096, hbs, salt, uint32((i+j)%2)),
				})
			}
		}
	}
	cases = append(cases, goldenCase{name: "d1024-h2048-long-salt", seed: 200, size: 1000 * 1024,
		p: params("sha256", 1024, 2048, bytes.Repeat([]byte{7}, MaxSaltSize), 1)})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			data := testData(tc.seed, tc.size)
			want, g := runVeritysetup(t, tc, data)
			tree, got := ourArea(t, tc, data)
			compareArea(t, tree, got, want, g.RootHash)
			if want := int64(tc.p.HashBlockSize); !tc.noSB && tree.HashStart%want != 0 {
				t.Errorf("HashStart %d is not on a hash block boundary", tree.HashStart)
			}
			if hb := fmt.Sprint(tree.HashBlocks()); !slices.Contains(g.Output, "Hash blocks:     \t"+hb) {
				t.Errorf("HashBlocks() = %s, veritysetup printed %q", hb, g.Output)
			}
		})
	}
}

// requireVeritysetup skips the test when veritysetup is not installed, or
// fails it under CI, which must install it.
func requireVeritysetup(t *testing.T) { testtool.Require(t, "veritysetup") }
