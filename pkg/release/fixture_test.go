package release_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-update/lifeboat/pkg/chunk"
	"github.com/lifeboat-update/lifeboat/pkg/durable"
	"github.com/lifeboat-update/lifeboat/pkg/install"
	"github.com/lifeboat-update/lifeboat/pkg/publish"
	"github.com/lifeboat-update/lifeboat/pkg/release"
	"github.com/lifeboat-update/lifeboat/pkg/store"
)

// testBoard is the board of the devices under test.
const testBoard = "lifeboat-test"

// imageSize is about the size of every test image: a few chunks at the
// default chunking parameters.
const imageSize = 300 << 10

// clock is a settable clock for the release side and the devices.
type clock struct{ t time.Time }

func (c *clock) Now() time.Time          { return c.t }
func (c *clock) Advance(d time.Duration) { c.t = c.t.Add(d) }

// fixtureOptions shape a repository: how many keys each role has (default
// 1) and its thresholds (default 1).
type fixtureOptions struct {
	keys       map[string]int
	thresholds map[string]int
}

// fixture is the release side of a test: a repository in a temporary
// directory, the keys that sign it, its chunk store, and a clock.
type fixture struct {
	t      *testing.T
	dir    string
	keyDir string
	repo   *publish.Repo
	keys   publish.KeySet
	clock  *clock
	store  *store.Local
	images map[string][]byte // by board/version/class
}

// newFixture initialises a repository with fresh keys. The clock starts at
// the real time, since publish.Init signs the first root and targets with
// the real clock.
func newFixture(t *testing.T, opt fixtureOptions) *fixture {
	t.Helper()
	f := &fixture{
		t:      t,
		dir:    t.TempDir(),
		keyDir: t.TempDir(),
		keys:   publish.KeySet{},
		clock:  &clock{t: time.Now().UTC().Truncate(time.Second)},
		images: map[string][]byte{},
	}
	for _, role := range release.Roles {
		n := max(opt.keys[role], 1)
		for i := range n {
			f.keys[role] = append(f.keys[role], f.newKey(fmt.Sprintf("%s-%d", role, i)))
		}
	}
	repo, err := publish.Init(f.dir, f.keys, opt.thresholds)
	if err != nil {
		t.Fatalf("publish.Init(%s) = %v, want nil", f.dir, err)
	}
	repo.Now = f.clock.Now
	f.repo = repo
	s, err := store.NewLocal(filepath.Join(f.dir, release.StoreDir))
	if err != nil {
		t.Fatalf("store.NewLocal = %v, want nil", err)
	}
	f.store = s
	return f
}

// newKey generates a key in the fixture's key directory.
func (f *fixture) newKey(name string) release.Signer {
	f.t.Helper()
	s, err := release.GenerateKey(filepath.Join(f.keyDir, name+".key"))
	if err != nil {
		f.t.Fatalf("release.GenerateKey(%s) = %v, want nil", name, err)
	}
	return s
}

// keySet returns a copy of the fixture's keys with role's replaced.
func (f *fixture) keySet(role string, signers ...release.Signer) publish.KeySet {
	ks := maps.Clone(f.keys)
	ks[role] = signers
	return ks
}

// image returns the deterministic content of an image.
func (f *fixture) image(board, version, class string) []byte {
	key := board + "/" + version + "/" + class
	if b, ok := f.images[key]; ok {
		return b
	}
	seed := sha256.Sum256([]byte(key))
	rng := rand.NewChaCha8(seed)
	b := make([]byte, imageSize+int(binary.LittleEndian.Uint16(seed[:])%4096))
	rng.Read(b)
	f.images[key] = b
	return b
}

// makeRelease chunks an image of every class into the store, writes its
// index, and returns the release describing them, without publishing it.
func (f *fixture) makeRelease(board, version string, classes ...string) release.Release {
	f.t.Helper()
	if len(classes) == 0 {
		classes = []string{"rootfs"}
	}
	rel := release.Release{Board: board, Version: version, Created: f.clock.Now()}
	ctx := context.Background()
	ch, err := chunk.NewChunker(chunk.DefaultParams)
	if err != nil {
		f.t.Fatalf("chunk.NewChunker = %v", err)
	}
	for _, class := range classes {
		img := f.image(board, version, class)
		entries, err := chunk.Scan(ctx, bytes.NewReader(img), int64(len(img)), ch, chunk.SHA512256, chunk.ScanOptions{})
		if err != nil {
			f.t.Fatalf("chunk.Scan = %v", err)
		}
		if _, err := store.AddChunks(ctx, f.store, bytes.NewReader(img), entries, nil); err != nil {
			f.t.Fatalf("store.AddChunks = %v", err)
		}
		idx := chunk.NewIndex(chunk.DefaultParams, chunk.SHA512256)
		idx.Chunks = entries
		var buf bytes.Buffer
		if _, err := idx.WriteTo(&buf); err != nil {
			f.t.Fatalf("Index.WriteTo = %v", err)
		}
		h := release.HashOf(buf.Bytes())
		name := release.IndexDir + "/" + h + ".caibx"
		f.write(name, buf.Bytes())
		rel.Images = append(rel.Images, release.Image{
			Class:  class,
			Size:   int64(len(img)),
			SHA256: release.HashOf(img),
			Index:  release.IndexRef{Path: name, Length: int64(buf.Len()), SHA256: h},
		})
	}
	return rel
}

// publish makes a release and adds it to the repository.
func (f *fixture) publish(board, version string, classes ...string) release.Release {
	f.t.Helper()
	rel := f.makeRelease(board, version, classes...)
	if err := f.repo.AddRelease(rel, f.keys); err != nil {
		f.t.Fatalf("AddRelease(%s/%s) = %v, want nil", board, version, err)
	}
	return rel
}

// path is the file of repository name.
func (f *fixture) path(name string) string { return filepath.Join(f.dir, filepath.FromSlash(name)) }

func (f *fixture) read(name string) []byte {
	f.t.Helper()
	b, err := os.ReadFile(f.path(name))
	if err != nil {
		f.t.Fatalf("read repository file: %v", err)
	}
	return b
}

func (f *fixture) write(name string, b []byte) {
	f.t.Helper()
	if err := os.MkdirAll(filepath.Dir(f.path(name)), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(f.path(name), b, 0o644); err != nil {
		f.t.Fatalf("write repository file: %v", err)
	}
}

// saveMetadata copies every metadata file, to be put back by
// restoreMetadata.
func (f *fixture) saveMetadata() map[string][]byte {
	f.t.Helper()
	ents, err := os.ReadDir(f.path(release.MetadataDir))
	if err != nil {
		f.t.Fatal(err)
	}
	m := map[string][]byte{}
	for _, e := range ents {
		name := release.MetadataDir + "/" + e.Name()
		m[name] = f.read(name)
	}
	return m
}

func (f *fixture) restoreMetadata(m map[string][]byte) {
	f.t.Helper()
	for _, name := range slices.Sorted(maps.Keys(m)) {
		f.write(name, m[name])
	}
}

// current returns the repository's current targets, snapshot and timestamp,
// found as a device finds them.
func (f *fixture) current() (*release.Targets, *release.Snapshot, *release.Timestamp) {
	f.t.Helper()
	tg, sn, ts, err := f.repo.Targets()
	if err != nil {
		f.t.Fatalf("Repo.Targets() = %v, want nil", err)
	}
	return tg, sn, ts
}

// sign signs a role's metadata with signers.
func (f *fixture) sign(v any, signers ...release.Signer) []byte {
	f.t.Helper()
	b, err := release.Sign(v, signers)
	if err != nil {
		f.t.Fatalf("release.Sign = %v, want nil", err)
	}
	return b
}

// writeTargets writes signed targets bytes as the file of its version.
func (f *fixture) writeTargets(version int64, b []byte) {
	f.write(fmt.Sprintf("%s/%d.targets.json", release.MetadataDir, version), b)
}

// pin signs, with the repository's own snapshot and timestamp keys, a new
// snapshot pinning the targets file of version tgVersion as it is in the
// repository, and a new timestamp pinning that snapshot: what a release
// server's online keys sign for whatever targets file it holds.
func (f *fixture) pin(tgVersion int64) {
	f.t.Helper()
	tb := f.read(fmt.Sprintf("%s/%d.targets.json", release.MetadataDir, tgVersion))
	f.pinMeta(release.MetaFile{Version: tgVersion, Length: int64(len(tb)), SHA256: release.HashOf(tb)})
}

// pinMeta is pin for any MetaFile.
func (f *fixture) pinMeta(m release.MetaFile) {
	f.t.Helper()
	_, sn, ts := f.current()
	now := f.clock.Now()
	nsn := &release.Snapshot{
		Header:  release.Header{Type: release.RoleSnapshot, Version: sn.Version + 1, Expires: now.Add(publish.DefaultExpiry[release.RoleSnapshot])},
		Targets: m,
	}
	sb := f.sign(nsn, f.keys[release.RoleSnapshot]...)
	f.write(fmt.Sprintf("%s/%d.snapshot.json", release.MetadataDir, nsn.Version), sb)
	nts := f.timestamp(ts.Version+1, now, release.MetaFile{Version: nsn.Version, Length: int64(len(sb)), SHA256: release.HashOf(sb)})
	f.write(release.MetadataDir+"/timestamp.json", f.sign(nts, f.keys[release.RoleTimestamp]...))
}

// timestamp returns a timestamp issued at issued, expiring a day later.
func (f *fixture) timestamp(version int64, issued time.Time, sn release.MetaFile) *release.Timestamp {
	return &release.Timestamp{
		Header:   release.Header{Type: release.RoleTimestamp, Version: version, Expires: issued.Add(publish.DefaultExpiry[release.RoleTimestamp])},
		Issued:   issued,
		Snapshot: sn,
	}
}

// envelope decodes a metadata file's envelope.
func envelope(t *testing.T, b []byte) release.Envelope {
	t.Helper()
	var env release.Envelope
	if err := json.Unmarshal(b, &env); err != nil {
		t.Fatalf("decode envelope: %v", err)
	}
	return env
}

// device is a provisioned device of the fixture's repository.
type device struct {
	f      *fixture
	state  durable.FS
	client *release.Client
}

// newDevice provisions a device whose trusted state lives in state with
// the repository's first root.
func (f *fixture) newDevice(state durable.FS) *device {
	f.t.Helper()
	root := f.read(release.MetadataDir + "/1.root.json")
	if err := release.Provision(state, root); err != nil {
		f.t.Fatalf("release.Provision = %v, want nil", err)
	}
	return &device{f: f, state: state, client: f.client(state)}
}

// client returns a client of the repository over state.
func (f *fixture) client(state durable.FS) *release.Client {
	return &release.Client{State: state, Fetch: release.DirFetcher{Dir: f.dir}, Board: testBoard, Now: f.clock.Now}
}

// install installs the newest release into a rootfs slot at slot.
func (d *device) install(slot string) (*install.Result, error) {
	return installWith(d.client, d.f.store, map[string]string{"rootfs": slot})
}

func installWith(c *release.Client, s store.Store, slots map[string]string) (*install.Result, error) {
	return install.Install(context.Background(), c, slots, install.Options{Stores: []store.Store{s}, Workers: 2})
}

// mustInstall installs the newest release into slot and checks the slot
// holds the image of version.
func (d *device) mustInstall(slot, version string) {
	d.f.t.Helper()
	res, err := d.install(slot)
	if err != nil {
		d.f.t.Fatalf("install.Install(%s) = %v, want nil", version, err)
	}
	if res.Version != version {
		d.f.t.Fatalf("install.Install() installed %s, want %s", res.Version, version)
	}
	d.f.checkSlot(slot, testBoard, version)
}

// checkSlot checks the slot file holds the image of version.
func (f *fixture) checkSlot(slot, board, version string) {
	f.t.Helper()
	got, err := os.ReadFile(slot)
	if err != nil {
		f.t.Fatalf("read slot: %v", err)
	}
	if want := f.image(board, version, "rootfs"); !bytes.Equal(got, want) {
		f.t.Errorf("slot %s holds %d bytes (sha256 %s), want the %d bytes of %s (sha256 %s)",
			slot, len(got), release.HashOf(got), len(want), version, release.HashOf(want))
	}
}

// overrideFetcher serves some names from memory and the rest from Next,
// like a man in the middle. It caps its own replies as a Fetcher must.
type overrideFetcher struct {
	Next  release.Fetcher
	Files map[string][]byte
}

func (o overrideFetcher) Fetch(ctx context.Context, name string, max int64) ([]byte, error) {
	b, ok := o.Files[name]
	if !ok {
		return o.Next.Fetch(ctx, name, max)
	}
	if int64(len(b)) > max {
		return nil, release.Refuse(release.ErrEndlessData, "%s is longer than the %d bytes allowed", name, max)
	}
	return bytes.Clone(b), nil
}

// memFetcher serves a repository from memory.
type memFetcher map[string][]byte

func (m memFetcher) Fetch(ctx context.Context, name string, max int64) ([]byte, error) {
	b, ok := m[name]
	if !ok {
		return nil, fmt.Errorf("%s: %w", name, release.ErrNotFound)
	}
	if int64(len(b)) > max {
		return nil, release.Refuse(release.ErrEndlessData, "%s is longer than the %d bytes allowed", name, max)
	}
	return bytes.Clone(b), nil
}

// loadRepo reads every file of a repository directory into a memFetcher.
func loadRepo(t testing.TB, dir string) memFetcher {
	t.Helper()
	m := memFetcher{}
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		b, err := os.ReadFile(p)
		m[filepath.ToSlash(rel)] = b
		return err
	})
	if err != nil {
		t.Fatalf("load repository %s: %v", dir, err)
	}
	return m
}

// validlySigned reports whether env carries at least threshold valid
// ed25519 signatures by distinct public keys of role in root, checked
// independently of the package under test.
func validlySigned(env release.Envelope, root *release.Root, role string) bool {
	rk := root.Roles[role]
	good := map[string]bool{}
	for _, s := range env.Signatures {
		if !slices.Contains(rk.KeyIDs, s.KeyID) {
			continue
		}
		k, ok := root.Keys[s.KeyID]
		if !ok || k.Type != release.KeyType || k.ID() != s.KeyID {
			continue
		}
		pub, err := hex.DecodeString(k.Public)
		sig, err2 := hex.DecodeString(s.Sig)
		if err != nil || err2 != nil || len(pub) != ed25519.PublicKeySize {
			continue
		}
		if ed25519.Verify(ed25519.PublicKey(pub), env.Signed, sig) {
			good[strings.ToLower(k.Public)] = true // one vote per public key
		}
	}
	return rk.Threshold >= 1 && len(good) >= rk.Threshold
}

// checkRefused checks err is a refusal of class, named in its text.
func checkRefused(t *testing.T, err, class error) {
	t.Helper()
	if err == nil {
		t.Errorf("install.Install() = nil, want an error wrapping %q", class)
		return
	}
	if !errors.Is(err, class) {
		t.Errorf("install.Install() = %v, want an error wrapping %q", err, class)
	}
	if !strings.Contains(err.Error(), class.Error()) {
		t.Errorf("install.Install() = %q, want its text to name %q", err, class)
	}
}
