package tests

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/lifeboat-update/lifeboat/pkg/chunk"
	"github.com/lifeboat-update/lifeboat/pkg/install"
	"github.com/lifeboat-update/lifeboat/pkg/publish"
	lbrelease "github.com/lifeboat-update/lifeboat/pkg/release"
	"github.com/lifeboat-update/lifeboat/pkg/store"
	"github.com/lifeboat-update/lifeboat/pkg/verity"
)

// testBoard is the board every release of these tests is for.
const testBoard = "testboard"

// releaseRepo is a repository made by `lifeboat-release keys init`, and the
// directory of the keys that sign it.
type releaseRepo struct{ dir, keys string }

// newReleaseRepo creates keys and an empty signed repository.
func newReleaseRepo(t *testing.T) *releaseRepo {
	t.Helper()
	dir := t.TempDir()
	r := &releaseRepo{dir: filepath.Join(dir, "repo"), keys: filepath.Join(dir, "keys")}
	release(t, "keys", "init", "--keys="+r.keys, "--repo="+r.dir)
	return r
}

// create signs release version of images (slot class to path) for
// testBoard; the rootfs image gets a dm-verity tree.
func (r *releaseRepo) create(t *testing.T, version string, images map[string]string) {
	t.Helper()
	args := []string{"create", "--progress=none", "--repo=" + r.dir, "--keys=" + r.keys,
		"--board=" + testBoard, "--version=" + version, "--verity=rootfs"}
	for _, class := range slices.Sorted(maps.Keys(images)) {
		args = append(args, "--image", class+"="+images[class])
	}
	release(t, args...)
}

// signed returns release version as the repository's current targets,
// found through timestamp and snapshot, list it.
func (r *releaseRepo) signed(t *testing.T, version string) lbrelease.Release {
	t.Helper()
	targets, _, _, err := (&publish.Repo{Dir: r.dir}).Targets()
	if err != nil {
		t.Fatalf("publish.Repo{%s}.Targets() = %v", r.dir, err)
	}
	for _, rel := range targets.Releases {
		if rel.Board == testBoard && rel.Version == version {
			return rel
		}
	}
	t.Fatalf("the targets of %s list no release %s/%s", r.dir, testBoard, version)
	return lbrelease.Release{}
}

// index reads the chunk index of image im.
func (r *releaseRepo) index(t *testing.T, im lbrelease.Image) *chunk.Index {
	t.Helper()
	return readIndex(t, filepath.Join(r.dir, filepath.FromSlash(im.Index.Path)))
}

// chunkIDs returns the distinct chunks of every image of rel.
func (r *releaseRepo) chunkIDs(t *testing.T, rel lbrelease.Release) map[chunk.ID]bool {
	t.Helper()
	ids := make(map[chunk.ID]bool)
	for _, im := range rel.Images {
		for _, e := range r.index(t, im).Chunks {
			ids[e.ID] = true
		}
	}
	return ids
}

// imageOf returns rel's image for class.
func imageOf(t *testing.T, rel lbrelease.Release, class string) lbrelease.Image {
	t.Helper()
	for _, im := range rel.Images {
		if im.Class == class {
			return im
		}
	}
	t.Fatalf("release %s has no %s image", rel.Version, class)
	return lbrelease.Image{}
}

// device is a device provisioned with a repository's first root: its
// trusted state, and two banks of slots, a and b.
type device struct{ dir, state string }

func newDevice(t *testing.T, rootJSON string) *device {
	t.Helper()
	dir := t.TempDir()
	d := &device{dir: dir, state: filepath.Join(dir, "state")}
	if r := lifeboat(t, "provision", "--state="+d.state, rootJSON); r.code != 0 {
		t.Fatalf("lifeboat provision --state=%s %s: exit status %d\n%s", d.state, rootJSON, r.code, r.stderr)
	}
	return d
}

// slots returns the rootfs and kernel slots of bank.
func (d *device) slots(bank string) map[string]string {
	return map[string]string{
		"rootfs": filepath.Join(d.dir, "rootfs-"+bank),
		"kernel": filepath.Join(d.dir, "kernel-"+bank),
	}
}

// seeds returns --seed flags for the slots of bank.
func (d *device) seeds(bank string) []string {
	var out []string
	for _, p := range d.slots(bank) {
		out = append(out, "--seed="+p)
	}
	slices.Sort(out)
	return out
}

// install runs `lifeboat install` from repo (a directory or URL) into
// slots, with extra flags, and returns how it ended.
func (d *device) install(t *testing.T, repo string, slots map[string]string, extra ...string) result {
	t.Helper()
	args := []string{"install", "--progress=none", "--repo=" + repo, "--state=" + d.state, "--board=" + testBoard}
	for _, class := range slices.Sorted(maps.Keys(slots)) {
		args = append(args, "--slot", class+"="+slots[class])
	}
	return lifeboat(t, append(args, extra...)...)
}

// mustInstall installs with --json, which must succeed, and returns the
// statistics it printed.
func (d *device) mustInstall(t *testing.T, repo string, slots map[string]string, extra ...string) *install.Result {
	t.Helper()
	r := d.install(t, repo, slots, append(extra, "--json")...)
	if r.code != 0 {
		t.Fatalf("lifeboat install --repo=%s %s: exit status %d\n%s", repo, strings.Join(extra, " "), r.code, r.stderr)
	}
	var res install.Result
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("lifeboat install --json printed %q: %v", r.stdout, err)
	}
	return &res
}

// upToDate checks that a second install from repo changes nothing: it
// exits 0 and says the release is already installed.
func (d *device) upToDate(t *testing.T, repo string, slots map[string]string) {
	t.Helper()
	r := d.install(t, repo, slots)
	if r.code != 0 || !strings.Contains(r.stdout, "already up to date") {
		t.Errorf("second lifeboat install --repo=%s = exit status %d, stdout %q, stderr %q; want 0 and \"already up to date\"", repo, r.code, r.stdout, r.stderr)
	}
}

// checkSlots checks that slots hold release rel's images: exactly the
// signed size; the image's bytes first; and for an image with a verity
// tree, zeros to the end of the data area and a tree that verity.Verify
// accepts with the signed parameters and root hash.
func checkSlots(t *testing.T, rel lbrelease.Release, slots, images map[string]string) {
	t.Helper()
	for _, im := range rel.Images {
		slotPath, imgPath := slots[im.Class], images[im.Class]
		slot, img := readFile(t, slotPath), readFile(t, imgPath)
		if int64(len(slot)) != im.Size {
			t.Errorf("%s slot %s is %d bytes, release %s signed %d", im.Class, slotPath, len(slot), rel.Version, im.Size)
			continue
		}
		if len(slot) < len(img) {
			t.Errorf("%s slot %s is %d bytes, shorter than image %s (%d bytes)", im.Class, slotPath, len(slot), imgPath, len(img))
			continue
		}
		if i := firstDiffBytes(slot[:len(img)], img); i >= 0 {
			t.Errorf("%s slot %s differs from image %s at offset %d", im.Class, slotPath, imgPath, i)
		}
		if im.Verity == nil {
			if len(slot) != len(img) {
				t.Errorf("%s slot %s is %d bytes, image %s without verity %d", im.Class, slotPath, len(slot), imgPath, len(img))
			}
			continue
		}
		v := im.Verity
		if v.DataSize < int64(len(img)) || v.DataSize > int64(len(slot)) || v.HashOffset != v.DataSize {
			t.Errorf("%s: signed verity data size %d, hash offset %d for a %d-byte image in a %d-byte slot", im.Class, v.DataSize, v.HashOffset, len(img), len(slot))
			continue
		}
		if i := bytes.IndexFunc(slot[len(img):v.DataSize], func(r rune) bool { return r != 0 }); i >= 0 {
			t.Errorf("%s slot %s: padding after the image is not zero at offset %d", im.Class, slotPath, len(img)+i)
		}
		p, root, err := publish.VerityParams(v)
		if err != nil {
			t.Fatalf("publish.VerityParams(%s) = %v", im.Class, err)
		}
		var opts []verity.Option
		if !v.Superblock {
			opts = append(opts, verity.WithoutSuperblock())
		}
		r := bytes.NewReader(slot)
		if err := verity.Verify(t.Context(), r, v.DataSize, r, v.HashOffset, p, root, opts...); err != nil {
			t.Errorf("verity.Verify(%s slot %s, root %s) = %v, want nil", im.Class, slotPath, v.RootHash, err)
		}
	}
}

// storeIDs lists the chunks a store directory holds.
func storeIDs(t *testing.T, dir string) []chunk.ID {
	t.Helper()
	return slices.SortedFunc(maps.Keys(chunkSizes(t, dir)), compareIDs)
}

// sortedIDs returns the IDs of a set, sorted.
func sortedIDs(set map[chunk.ID]bool) []chunk.ID {
	return slices.SortedFunc(maps.Keys(set), compareIDs)
}

// sameIDs fails the test unless store list got holds exactly want.
func sameIDs(t *testing.T, what string, got, want []chunk.ID) {
	t.Helper()
	for _, id := range missing(want, got) {
		t.Errorf("%s lacks chunk %s", what, id)
	}
	for _, id := range missing(got, want) {
		t.Errorf("%s holds chunk %s, which it should not", what, id)
	}
}

// releaseImages writes the images of two releases into dir: v1.0's rootfs
// and kernel, and v1.1's rootfs, changed in two places and grown. Sizes
// are not multiples of the verity block, so the rootfs slot has padding.
func releaseImages(t *testing.T, dir string) (v10, v11 map[string]string) {
	t.Helper()
	rootfs := randomImage(101, 3<<20+12345)
	kernel := randomBytes(102, 1<<20+777)
	rootfs2 := slices.Clone(rootfs)
	copy(rootfs2[1<<20:], randomBytes(103, 40<<10))
	copy(rootfs2[len(rootfs2)-5000:], randomBytes(104, 5000))
	rootfs2 = append(rootfs2, randomBytes(105, 100<<10)...)
	v10 = map[string]string{"rootfs": filepath.Join(dir, "rootfs-1.0.img"), "kernel": filepath.Join(dir, "kernel-1.0.img")}
	v11 = map[string]string{"rootfs": filepath.Join(dir, "rootfs-1.1.img"), "kernel": v10["kernel"]}
	writeFile(t, v10["rootfs"], rootfs)
	writeFile(t, v10["kernel"], kernel)
	writeFile(t, v11["rootfs"], rootfs2)
	return v10, v11
}

// checkVerifyGate runs `lifeboat-release verify` and checks that it lists
// every image of rels, in text and in JSON, with what the release signed.
func checkVerifyGate(t *testing.T, r *releaseRepo, rels ...lbrelease.Release) {
	t.Helper()
	text := release(t, "verify", "--progress=none", "--repo="+r.dir)
	var got []publish.VerifiedImage
	out := release(t, "verify", "--progress=none", "--json", "--repo="+r.dir)
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("lifeboat-release verify --json printed %q: %v", out, err)
	}
	var want []publish.VerifiedImage
	for _, rel := range rels {
		for _, im := range rel.Images {
			want = append(want, publish.VerifiedImage{Board: rel.Board, Version: rel.Version, Class: im.Class,
				Size: im.Size, Chunks: len(r.index(t, im).Chunks), Verity: im.Verity != nil})
			if line := fmt.Sprintf("ok  %s/%s %s: ", rel.Board, rel.Version, im.Class); !strings.Contains(text, line) {
				t.Errorf("lifeboat-release verify printed %q, want a line starting %q", text, line)
			}
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("lifeboat-release verify --json: images differ from the signed releases (-want +got):\n%s", diff)
	}
}

// TestReleaseFlow drives a release through its life as a user would:
// keys, two signed releases, the verify gate, devices updated over HTTP,
// from a full USB stick and from a delta stick with their running slots
// as seeds. Every slot must hold exactly the signed image, and the delta
// stick exactly the chunks the previous release lacks.
func TestReleaseFlow(t *testing.T) {
	repo := newReleaseRepo(t)
	v10imgs, v11imgs := releaseImages(t, t.TempDir())
	rootJSON := filepath.Join(repo.dir, lbrelease.MetadataDir, "1.root.json")

	repo.create(t, "1.0", v10imgs)
	v10 := repo.signed(t, "1.0")
	checkVerifyGate(t, repo, v10)
	if im := imageOf(t, v10, "rootfs"); im.Verity == nil {
		t.Fatal("release 1.0 signed no verity tree for rootfs, though create had --verity=rootfs")
	}
	if im := imageOf(t, v10, "kernel"); im.Verity != nil {
		t.Error("release 1.0 signed a verity tree for kernel, though create had no --verity=kernel")
	}

	srv := httptest.NewServer(http.FileServer(http.Dir(repo.dir)))
	defer srv.Close()

	// Three devices, each brought to 1.0 over HTTP into bank a.
	ways := []string{"http", "full stick", "delta stick"}
	devs := make(map[string]*device)
	for _, way := range ways {
		d := newDevice(t, rootJSON)
		res := d.mustInstall(t, srv.URL, d.slots("a"))
		if res.Version != "1.0" || len(res.Images) != 2 {
			t.Fatalf("install over HTTP = release %s with %d images, want 1.0 with 2", res.Version, len(res.Images))
		}
		checkSlots(t, v10, d.slots("a"), v10imgs)
		devs[way] = d
	}

	repo.create(t, "1.1", v11imgs)
	v11 := repo.signed(t, "1.1")
	checkVerifyGate(t, repo, v10, v11)

	sticks := t.TempDir()
	full, delta := filepath.Join(sticks, "full"), filepath.Join(sticks, "delta")
	release(t, "bundle", "--repo="+repo.dir, "--release=1.1", full)
	release(t, "bundle", "--repo="+repo.dir, "--release=1.1", "--baseline=1.0", delta)

	old, all := repo.chunkIDs(t, v10), repo.chunkIDs(t, v11)
	fresh := make(map[chunk.ID]bool)
	for id := range all {
		if !old[id] {
			fresh[id] = true
		}
	}
	if len(fresh) == 0 || len(fresh) == len(all) {
		t.Fatalf("1.1 has %d of its %d chunks that 1.0 lacks: the delta stick would prove nothing", len(fresh), len(all))
	}
	deltaIDs := storeIDs(t, filepath.Join(delta, lbrelease.StoreDir))
	sameIDs(t, "delta stick", deltaIDs, sortedIDs(fresh))
	sameIDs(t, "full stick", storeIDs(t, filepath.Join(full, lbrelease.StoreDir)), sortedIDs(all))
	onStick := make(map[chunk.ID]bool)
	for _, id := range deltaIDs {
		onStick[id] = true
	}

	// 1.1 three ways, each into bank b.
	sources := map[string]struct {
		repo  string
		extra []string
	}{
		"http":        {repo: srv.URL},
		"full stick":  {repo: full},
		"delta stick": {repo: delta, extra: devs["delta stick"].seeds("a")},
	}
	for _, way := range ways {
		t.Run(way, func(t *testing.T) {
			d, src := devs[way], sources[way]
			res := d.mustInstall(t, src.repo, d.slots("b"), src.extra...)
			if res.Version != "1.1" {
				t.Fatalf("install from %s = release %s, want 1.1", src.repo, res.Version)
			}
			checkSlots(t, v11, d.slots("b"), v11imgs)
			for _, ir := range res.Images {
				// Where each distinct chunk must come from: the new bank
				// is a fresh file, so zeros are not written; without
				// seeds everything else comes from the store, and with
				// them only what the stick holds.
				x := repo.index(t, imageOf(t, v11, ir.Class))
				var nonZero, wantStore int64
				seen := make(map[chunk.ID]bool)
				for _, e := range x.Chunks {
					if seen[e.ID] || isZero(x, e) {
						continue
					}
					seen[e.ID] = true
					nonZero++
					if onStick[e.ID] || src.extra == nil {
						wantStore++
					}
				}
				st := ir.Stats
				if st == nil || len(st.Stores) != 1 {
					t.Fatalf("install --json: %s stats %+v, want one store", ir.Class, st)
				}
				var fromSeeds int64
				for _, s := range st.Seeds {
					fromSeeds += s.Chunks
				}
				if got := st.Stores[0].Chunks; got != wantStore {
					t.Errorf("install --json: %s took %d chunks from store %s, want %d", ir.Class, got, st.Stores[0].Name, wantStore)
				}
				if fromSeeds != nonZero-wantStore || st.SeedMismatches != 0 {
					t.Errorf("install --json: %s took %d chunks from seeds (%d mismatched), want %d and none missing", ir.Class, fromSeeds, st.SeedMismatches, nonZero-wantStore)
				}
			}
			d.upToDate(t, src.repo, d.slots("b"))
		})
	}
	sameFile(t, devs["full stick"].slots("b")["rootfs"], devs["http"].slots("b")["rootfs"])
	sameFile(t, devs["delta stick"].slots("b")["rootfs"], devs["http"].slots("b")["rootfs"])
	sameFile(t, devs["full stick"].slots("b")["kernel"], devs["http"].slots("b")["kernel"])
	sameFile(t, devs["delta stick"].slots("b")["kernel"], devs["http"].slots("b")["kernel"])
}

// copyTree copies directory src to a new directory dst.
func copyTree(t *testing.T, dst, src string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		copyFile(t, filepath.Join(dst, rel), path)
		return nil
	})
	if err != nil {
		t.Fatalf("copy %s to %s: %v", src, dst, err)
	}
}

// replaceOnce replaces the one occurrence of old in file with new, which
// has the same length.
func replaceOnce(t *testing.T, file, old, new string) {
	t.Helper()
	b := readFile(t, file)
	if n := bytes.Count(b, []byte(old)); n != 1 {
		t.Fatalf("%s holds %q %d times, want once", file, old, n)
	}
	writeFile(t, file, bytes.Replace(b, []byte(old), []byte(new), 1))
}

// flipByte inverts the byte at off of file.
func flipByte(t *testing.T, file string, off int64) {
	t.Helper()
	b := readFile(t, file)
	b[off] ^= 0xff
	writeFile(t, file, b)
}

// TestVerifyGateCatchesTampering spoils one thing of a signed repository
// at a time, each in its own copy: `lifeboat-release verify` must fail and
// say what is wrong.
func TestVerifyGateCatchesTampering(t *testing.T) {
	src := newReleaseRepo(t)
	imgs, _ := releaseImages(t, t.TempDir())
	src.create(t, "1.0", imgs)
	rel := src.signed(t, "1.0")
	rootfs := imageOf(t, rel, "rootfs")
	x := src.index(t, rootfs)
	victim := pickVictim(t, x, nil)
	_, sn, _, err := (&publish.Repo{Dir: src.dir}).Targets()
	if err != nil {
		t.Fatal(err)
	}
	targetsFile := fmt.Sprintf("%d.targets.json", sn.Targets.Version)
	chunkFile := func(t *testing.T, repo string, id chunk.ID) string {
		t.Helper()
		l, err := store.NewLocal(filepath.Join(repo, lbrelease.StoreDir))
		if err != nil {
			t.Fatal(err)
		}
		return l.Path(id)
	}
	// A SHA-256 with its first hex digit changed.
	otherHash := func(h string) string {
		c := byte('0')
		if h[0] == '0' {
			c = '1'
		}
		return string(c) + h[1:]
	}

	tests := []struct {
		name  string
		spoil func(t *testing.T, repo string)
		want  []string // in stderr; none for the untouched copy, which must pass
	}{
		{"untouched copy", func(*testing.T, string) {}, nil},
		{"bit flipped in a chunk", func(t *testing.T, repo string) {
			corruptChunk(t, chunkFile(t, repo, victim.ID), x.Digest, victim)
		}, []string{victim.ID.String(), "content hashes to"}},
		{"chunk deleted", func(t *testing.T, repo string) {
			if err := os.Remove(chunkFile(t, repo, victim.ID)); err != nil {
				t.Fatal(err)
			}
		}, []string{victim.ID.String(), "not found"}},
		{"index altered", func(t *testing.T, repo string) {
			// The first byte of the first chunk's ID in the table.
			flipByte(t, filepath.Join(repo, filepath.FromSlash(rootfs.Index.Path)), 64+8)
		}, []string{"arbitrary software", rootfs.Index.Path}},
		{"image hash altered in targets", func(t *testing.T, repo string) {
			replaceOnce(t, filepath.Join(repo, lbrelease.MetadataDir, targetsFile), rootfs.SHA256, otherHash(rootfs.SHA256))
		}, []string{"mix-and-match", targetsFile}},
		{"timestamp signature altered", func(t *testing.T, repo string) {
			file := filepath.Join(repo, lbrelease.MetadataDir, "timestamp.json")
			var env lbrelease.Envelope
			if err := json.Unmarshal(readFile(t, file), &env); err != nil || len(env.Signatures) != 1 {
				t.Fatalf("timestamp.json: %v, %d signatures, want one", err, len(env.Signatures))
			}
			replaceOnce(t, file, env.Signatures[0].Sig, otherHash(env.Signatures[0].Sig))
		}, []string{"arbitrary software", "timestamp has no valid signature"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			repo := filepath.Join(t.TempDir(), "repo")
			copyTree(t, repo, src.dir)
			tt.spoil(t, repo)
			r := command(t, nil, filepath.Join(binDir, "lifeboat-release"), "verify", "--progress=none", "--repo="+repo)
			if tt.want == nil {
				if r.code != 0 {
					t.Fatalf("lifeboat-release verify of an untouched copy: exit status %d\n%s", r.code, r.stderr)
				}
				return
			}
			if r.code == 0 {
				t.Fatalf("lifeboat-release verify = exit status 0, stdout %q; want a failure naming %q", r.stdout, tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("lifeboat-release verify: stderr %q, want it to name %q", r.stderr, w)
				}
			}
		})
	}
}

// TestKeyRotationFlow rotates the timestamp key and then the root key of a
// repository with a release out, signs a second release, and checks that
// devices provisioned before the rotations follow the chain of roots to
// it, refuse metadata signed by a revoked key, and keep refreshing once
// the timestamp is re-signed.
func TestKeyRotationFlow(t *testing.T) {
	repo := newReleaseRepo(t)
	v1imgs, v2imgs := releaseImages(t, t.TempDir())
	rootJSON := filepath.Join(repo.dir, lbrelease.MetadataDir, "1.root.json")
	repo.create(t, "1.0", v1imgs)

	// One device has 1.0 installed, and trusts root 1's timestamp key;
	// the other was provisioned and has never been updated.
	installed, blank := newDevice(t, rootJSON), newDevice(t, rootJSON)
	installed.mustInstall(t, repo.dir, installed.slots("a"))

	rootBefore, err := (&publish.Repo{Dir: repo.dir}).Root()
	if err != nil {
		t.Fatal(err)
	}
	release(t, "keys", "rotate", "--keys="+repo.keys, "--repo="+repo.dir, "--role=timestamp")
	release(t, "keys", "rotate", "--keys="+repo.keys, "--repo="+repo.dir, "--role=root")
	rootAfter, err := (&publish.Repo{Dir: repo.dir}).Root()
	if err != nil {
		t.Fatal(err)
	}
	if rootAfter.Version != rootBefore.Version+2 {
		t.Fatalf("root version after two rotations = %d, want %d", rootAfter.Version, rootBefore.Version+2)
	}
	for _, role := range []string{lbrelease.RoleTimestamp, lbrelease.RoleRoot} {
		if slices.Equal(rootAfter.Roles[role].KeyIDs, rootBefore.Roles[role].KeyIDs) {
			t.Errorf("root v%d keeps the %s keys of v%d: %v", rootAfter.Version, role, rootBefore.Version, rootAfter.Roles[role].KeyIDs)
		}
	}

	repo.create(t, "2.0", v2imgs)
	v2 := repo.signed(t, "2.0")
	checkVerifyGate(t, repo, repo.signed(t, "1.0"), v2)
	wantRoot := readFile(t, filepath.Join(repo.dir, lbrelease.MetadataDir, "root.json"))

	devs := []struct {
		name string
		d    *device
	}{{"installed 1.0", installed}, {"never updated", blank}}
	for _, dev := range devs {
		t.Run(dev.name, func(t *testing.T) {
			res := dev.d.mustInstall(t, repo.dir, dev.d.slots("b"))
			if res.Version != "2.0" {
				t.Fatalf("install = release %s, want 2.0", res.Version)
			}
			checkSlots(t, v2, dev.d.slots("b"), v2imgs)
			if got := readFile(t, filepath.Join(dev.d.state, "root.json")); !bytes.Equal(got, wantRoot) {
				t.Errorf("device's trusted root is not the repository's root v%d", rootAfter.Version)
			}
		})
	}

	t.Run("revoked timestamp key", func(t *testing.T) {
		// A timestamp signed by the key the rotation revoked, with a
		// version above the trusted one, is a fast-forward attack.
		keys, err := filepath.Glob(filepath.Join(repo.keys, "revoked", lbrelease.RoleTimestamp, "*.key"))
		if err != nil || len(keys) != 1 {
			t.Fatalf("revoked timestamp keys: %v, %v; want one", keys, err)
		}
		oldKey, err := lbrelease.LoadKey(keys[0])
		if err != nil {
			t.Fatal(err)
		}
		forged := filepath.Join(t.TempDir(), "repo")
		copyTree(t, forged, repo.dir)
		file := filepath.Join(forged, lbrelease.MetadataDir, "timestamp.json")
		var ts lbrelease.Timestamp
		if err := lbrelease.Decode(readFile(t, file), lbrelease.RoleTimestamp, &ts); err != nil {
			t.Fatal(err)
		}
		ts.Version += 10
		b, err := lbrelease.Sign(&ts, []lbrelease.Signer{oldKey})
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, file, b)
		r := blank.install(t, forged, blank.slots("b"))
		if r.code == 0 || !strings.Contains(r.stderr, "fast-forward") {
			t.Errorf("install with a timestamp signed by the revoked key = exit status %d, stderr %q; want a fast-forward refusal", r.code, r.stderr)
		}
	})

	// The timestamp, re-signed by cron with the new key, still refreshes.
	before := readFile(t, filepath.Join(repo.dir, lbrelease.MetadataDir, "timestamp.json"))
	release(t, "timestamp", "--repo="+repo.dir, "--keys="+repo.keys)
	after := readFile(t, filepath.Join(repo.dir, lbrelease.MetadataDir, "timestamp.json"))
	if bytes.Equal(before, after) {
		t.Fatal("lifeboat-release timestamp left timestamp.json as it was")
	}
	for _, dev := range devs {
		dev.d.upToDate(t, repo.dir, dev.d.slots("b"))
		if got := readFile(t, filepath.Join(dev.d.state, "timestamp.json")); !bytes.Equal(got, after) {
			t.Errorf("%s device: trusted timestamp is not the re-signed one", dev.name)
		}
	}
}
