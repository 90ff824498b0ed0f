package tests

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// newRand returns a deterministic generator for seed.
func newRand(seed uint64) *rand.ChaCha8 {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	return rand.NewChaCha8(s)
}

// randomBytes returns n bytes of deterministic noise.
func randomBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	newRand(seed).Read(b)
	return b
}

// randomImage returns an image of size bytes that is mostly noise, with a
// run of zeros (whole zero chunks) and a repeated stretch (chunks that
// occur twice) in it, so every source the extractor has gets used.
func randomImage(seed uint64, size int) []byte {
	b := randomBytes(seed, size)
	if size >= 1<<20 {
		clear(b[size/4 : size/4+size/8])
		copy(b[3*size/4:], b[size/16:size/16+size/10])
	}
	return b
}

// writeFile writes data to a new file path.
func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// words make the text files of generated trees.
var words = strings.Fields(`lifeboat update chunk store seed index image slot boot kernel
	initramfs device recovery verify rollback partition firmware network casync zstd ext4
	block inode journal superblock extent directory file the a of and to in is it that`)

// tree is a generated directory tree: relative file path to content.
// Directories are implied by the paths.
type tree map[string][]byte

// genTree generates a tree of about size bytes of mixed content: text,
// noise, repeated patterns, zeros and empty files, in nested directories.
func genTree(seed uint64, size int) tree {
	r := rand.New(newRand(seed))
	dirs := []string{"etc", "usr/bin", "usr/lib/firmware", "usr/share/doc", "var/log", "home/user/.config/app"}
	for i := range 24 {
		parent := dirs[r.IntN(len(dirs))]
		dirs = append(dirs, fmt.Sprintf("%s/d%02d", parent, i))
	}
	tr := make(tree)
	total := 0
	for i := 0; total < size; i++ {
		var data []byte
		switch kind := r.IntN(10); {
		case kind == 0:
			// empty
		case kind <= 3:
			data = genText(r, 1+r.IntN(64<<10))
		case kind <= 6:
			n := 1 + r.IntN(32<<10)
			if r.IntN(8) == 0 {
				n = 256<<10 + r.IntN(2<<20)
			}
			data = make([]byte, n)
			newRand(r.Uint64()).Read(data)
		case kind <= 8:
			pat := make([]byte, 1+r.IntN(8<<10))
			newRand(r.Uint64()).Read(pat)
			data = bytes.Repeat(pat, 1+r.IntN(256))
		default:
			data = make([]byte, r.IntN(512<<10))
		}
		name := fmt.Sprintf("%s/f%03d", dirs[r.IntN(len(dirs))], i)
		tr[name] = data
		total += len(data)
	}
	return tr
}

func genText(r *rand.Rand, n int) []byte {
	var b bytes.Buffer
	for b.Len() < n {
		for i := range 1 + r.IntN(12) {
			if i > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(words[r.IntN(len(words))])
		}
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// next returns the tree of a later release: some files changed in place,
// some grown, some removed and some added.
func (tr tree) next(seed uint64) tree {
	r := rand.New(newRand(seed))
	out := maps.Clone(tr)
	names := slices.Sorted(maps.Keys(tr))
	for i := 0; i < len(names); i += max(1, len(names)/12) {
		name := names[i]
		v := slices.Clone(out[name])
		switch {
		case len(v) > 8<<10 && i%2 == 0:
			newRand(r.Uint64()).Read(v[len(v)/2 : len(v)/2+4<<10])
		case i%3 == 0:
			delete(out, name)
			continue
		default:
			v = append(v, genText(r, 2<<10)...)
		}
		out[name] = v
	}
	for i := range 6 {
		data := make([]byte, 16<<10+r.IntN(256<<10))
		newRand(r.Uint64()).Read(data)
		out[fmt.Sprintf("opt/new/n%d", i)] = data
	}
	return out
}

// fixedTime is the time of every file, directory and file system the tests
// make, so images depend only on their content.
var fixedTime = time.Unix(1700000000, 0)

// write creates the tree below dir, with fixed times.
func (tr tree) write(dir string) error {
	// In name order: mkfs.ext4 -d lays files out in the order it reads
	// the directories, which on tmpfs is the order they were made in.
	var dirs []string
	for _, name := range slices.Sorted(maps.Keys(tr)) {
		data := tr[name]
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return err
		}
		if err := os.Chtimes(p, fixedTime, fixedTime); err != nil {
			return err
		}
	}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return err
	})
	if err != nil {
		return err
	}
	for _, d := range slices.Backward(dirs) {
		if err := os.Chtimes(d, fixedTime, fixedTime); err != nil {
			return err
		}
	}
	return nil
}

// The file system UUID and directory hash seed of every image, so that two
// releases differ only where their trees do.
const fsUUID = "6c1f0e6a-5b8e-4c3a-9d7e-2f1a0b9c8d7e"

// mkfs makes an ext4 image of size (mkfs.ext4 syntax) holding tree.
func mkfs(tr tree, img, size string) error {
	dir, err := os.MkdirTemp(filepath.Dir(img), "tree-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := tr.write(dir); err != nil {
		return err
	}
	cmd := exec.Command("mkfs.ext4", "-q", "-F", "-U", fsUUID, "-E", "hash_seed="+fsUUID, "-d", dir, img, size)
	cmd.Env = append(os.Environ(), fmt.Sprintf("E2FSPROGS_FAKE_TIME=%d", fixedTime.Unix()))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("mkfs.ext4 %s: %w\n%s", img, err, out)
	}
	return nil
}

// ext4Release is a pair of ext4 images: v1 and v2, the next release, made
// from v1's tree with some files changed, added and removed.
type ext4Release struct {
	v1, v2 string
}

// ext4Size is the size of the ext4 images; their trees fill about half.
const ext4Size = "48M"

var ext4Images = sync.OnceValues(func() (*ext4Release, error) {
	dir := filepath.Join(workDir, "ext4")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, err
	}
	r := &ext4Release{v1: filepath.Join(dir, "v1.img"), v2: filepath.Join(dir, "v2.img")}
	t1 := genTree(1, 24<<20)
	if err := mkfs(t1, r.v1, ext4Size); err != nil {
		return nil, err
	}
	if err := mkfs(t1.next(2), r.v2, ext4Size); err != nil {
		return nil, err
	}
	return r, nil
})

// ext4Pair returns the shared ext4 images, made on first use. Tests must
// not change them.
func ext4Pair(t *testing.T) *ext4Release {
	t.Helper()
	requireTools(t, "mkfs.ext4")
	r, err := ext4Images()
	if err != nil {
		t.Fatalf("make ext4 images: %v", err)
	}
	return r
}
