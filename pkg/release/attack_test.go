package release_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-update/lifeboat/pkg/chunk"
	"github.com/lifeboat-update/lifeboat/pkg/durable"
	"github.com/lifeboat-update/lifeboat/pkg/release"
)

// attack is one attack of TUF's threat model, mounted against a device
// that then runs the installer into a slot of its own.
type attack struct {
	name  string
	class error
	opt   fixtureOptions
	// mount prepares the repository, the device and its view of the
	// repository. Legitimate installs it makes go to their own slots.
	mount func(t *testing.T, f *fixture, d *device)
}

// Thresholds of the threshold attacks: targets needs 2 of its 3 keys.
var twoOfThree = fixtureOptions{
	keys:       map[string]int{release.RoleTargets: 3},
	thresholds: map[string]int{release.RoleTargets: 2},
}

// metaName is the repository name of a metadata file.
func metaName(format string, args ...any) string {
	return release.MetadataDir + "/" + fmt.Sprintf(format, args...)
}

// slotA is a slot for the legitimate installs an attack starts from.
func slotA(t *testing.T) string { return filepath.Join(t.TempDir(), "rootfs-a") }

// addRelease returns the current targets with rel added, one version up.
func (f *fixture) addRelease(rel release.Release) *release.Targets {
	tg, _, _ := f.current()
	tg.Version++
	tg.Releases = append(tg.Releases, rel)
	return tg
}

// installedV1 publishes release 1.0 and installs it on the device.
func installedV1(t *testing.T, f *fixture, d *device) {
	f.publish(testBoard, "1.0")
	d.mustInstall(slotA(t), "1.0")
}

// padTo appends spaces to b up to n bytes: JSON that decodes the same.
func padTo(b []byte, n int) []byte {
	return append(bytes.Clone(b), bytes.Repeat([]byte(" "), n-len(b))...)
}

// httpFetcher serves the repository over loopback HTTP, with a
// Content-Length or, if chunked, without one.
func httpFetcher(t *testing.T, dir string, chunked bool) release.Fetcher {
	t.Helper()
	var h http.Handler = http.FileServer(http.Dir(dir))
	if chunked {
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(strings.TrimPrefix(r.URL.Path, "/"))))
			if err != nil {
				http.NotFound(w, r)
				return
			}
			w.Write(b[:len(b)/2])
			w.(http.Flusher).Flush() // no Content-Length from here
			w.Write(b[len(b)/2:])
		})
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	hf, err := release.NewHTTPFetcher(srv.URL, srv.Client())
	if err != nil {
		t.Fatalf("NewHTTPFetcher(%s) = %v", srv.URL, err)
	}
	return hf
}

var attacks = []attack{
	// Arbitrary software: content not signed by the trusted keys.
	{
		name:  "arbitrary software/targets altered, old signatures kept, re-pinned by the online keys",
		class: release.ErrArbitrarySoftware,
		mount: func(t *testing.T, f *fixture, d *device) {
			installedV1(t, f, d)
			tg, _, _ := f.current()
			old := envelope(t, f.read(metaName("%d.targets.json", tg.Version)))
			tg = f.addRelease(f.makeRelease(testBoard, "2.0"))
			body, err := json.Marshal(tg)
			if err != nil {
				t.Fatal(err)
			}
			b, err := json.Marshal(release.Envelope{Signed: body, Signatures: old.Signatures})
			if err != nil {
				t.Fatal(err)
			}
			f.writeTargets(tg.Version, b)
			f.pin(tg.Version)
		},
	},
	{
		name:  "arbitrary software/index altered",
		class: release.ErrArbitrarySoftware,
		mount: func(t *testing.T, f *fixture, d *device) {
			rel := f.publish(testBoard, "1.0")
			name := rel.Images[0].Index.Path
			b := f.read(name)
			b[48+16+8] ^= 0xff // the first chunk's ID
			f.write(name, b)
		},
	},
	{
		name:  "arbitrary software/every chunk altered",
		class: release.ErrArbitrarySoftware,
		mount: func(t *testing.T, f *fixture, d *device) {
			f.publish(testBoard, "1.0")
			n := 0
			err := filepath.WalkDir(f.path(release.StoreDir), func(p string, e fs.DirEntry, err error) error {
				if err != nil || !strings.HasSuffix(p, ".cacnk") {
					return err
				}
				n++
				return os.WriteFile(p, chunk.Compress(nil, bytes.Repeat([]byte("evil"), 4096)), 0o644)
			})
			if err != nil || n == 0 {
				t.Fatalf("altered %d chunks: %v", n, err)
			}
		},
	},
	{
		name:  "arbitrary software/timestamp signed by an unknown key",
		class: release.ErrArbitrarySoftware,
		mount: func(t *testing.T, f *fixture, d *device) {
			installedV1(t, f, d)
			_, _, ts := f.current()
			ts.Version++
			f.write(metaName("timestamp.json"), f.sign(ts, f.newKey("mallory")))
		},
	},
	{
		name:  "arbitrary software/root signed by an unknown key",
		class: release.ErrArbitrarySoftware,
		mount: func(t *testing.T, f *fixture, d *device) {
			installedV1(t, f, d)
			mallory := f.newKey("mallory")
			f.write(metaName("2.root.json"), f.sign(ownedRoot(2, f.clock.Now(), mallory), mallory))
		},
	},

	// Threshold: fewer distinct keys than the role needs.
	{
		name:  "threshold/targets signed by one of its three keys",
		class: release.ErrThreshold,
		opt:   twoOfThree,
		mount: func(t *testing.T, f *fixture, d *device) {
			installedV1(t, f, d)
			tg := f.addRelease(f.makeRelease(testBoard, "2.0"))
			f.writeTargets(tg.Version, f.sign(tg, f.keys[release.RoleTargets][0]))
			f.pin(tg.Version)
		},
	},
	{
		name:  "threshold/one key's signature given three times",
		class: release.ErrThreshold,
		opt:   twoOfThree,
		mount: func(t *testing.T, f *fixture, d *device) {
			installedV1(t, f, d)
			k := f.keys[release.RoleTargets][1]
			tg := f.addRelease(f.makeRelease(testBoard, "2.0"))
			f.writeTargets(tg.Version, f.sign(tg, k, k, k))
			f.pin(tg.Version)
		},
	},
	{
		// Root (signed by its real key) lists one public key twice, once in
		// upper-case hex: two key IDs, one key. A single private key must
		// not reach a threshold of two.
		name:  "threshold/one key listed twice in root under two encodings",
		class: release.ErrThreshold,
		opt:   twoOfThree,
		mount: func(t *testing.T, f *fixture, d *device) {
			installedV1(t, f, d)
			root, err := f.repo.Root()
			if err != nil {
				t.Fatal(err)
			}
			signer := f.keys[release.RoleTargets][0]
			k := signer.Public()
			alias := release.Key{Type: k.Type, Public: strings.ToUpper(k.Public)}
			root.Version++
			root.Expires = f.clock.Now().Add(365 * 24 * time.Hour)
			root.Keys[alias.ID()] = alias
			rk := root.Roles[release.RoleTargets]
			rk.KeyIDs = append(rk.KeyIDs, alias.ID())
			root.Roles[release.RoleTargets] = rk
			f.write(metaName("%d.root.json", root.Version), f.sign(root, f.keys[release.RoleRoot]...))

			tg := f.addRelease(f.makeRelease(testBoard, "2.0"))
			env := envelope(t, f.sign(tg, signer))
			env.Signatures = append(env.Signatures, release.Signature{KeyID: alias.ID(), Sig: env.Signatures[0].Sig})
			b, err := json.Marshal(env)
			if err != nil {
				t.Fatal(err)
			}
			f.writeTargets(tg.Version, b)
			f.pin(tg.Version)
		},
	},

	// Rollback: older metadata or an older release than trusted.
	{
		name:  "rollback/repository restored to its metadata of v1 after v2 was installed",
		class: release.ErrRollback,
		mount: func(t *testing.T, f *fixture, d *device) {
			f.publish(testBoard, "1.0")
			v1 := f.saveMetadata()
			f.publish(testBoard, "2.0")
			d.mustInstall(slotA(t), "2.0")
			f.restoreMetadata(v1)
		},
	},
	{
		name:  "rollback/newly signed targets whose newest release is older than the installed one",
		class: release.ErrRollback,
		mount: func(t *testing.T, f *fixture, d *device) {
			f.publish(testBoard, "1.0")
			f.publish(testBoard, "2.0")
			d.mustInstall(slotA(t), "2.0")
			tg, _, _ := f.current()
			tg.Version++
			tg.Releases = tg.Releases[:1] // 1.0 only
			f.writeTargets(tg.Version, f.sign(tg, f.keys[release.RoleTargets]...))
			f.pin(tg.Version)
		},
	},
	{
		name:  "rollback/timestamp version lower than the trusted one",
		class: release.ErrRollback,
		mount: func(t *testing.T, f *fixture, d *device) {
			installedV1(t, f, d)
			f.publish(testBoard, "2.0")
			_, _, ts := f.current()
			f.write(metaName("timestamp.json"), f.sign(f.timestamp(1, f.clock.Now(), ts.Snapshot), f.keys[release.RoleTimestamp]...))
		},
	},
	{
		name:  "rollback/snapshot names targets older than the trusted ones",
		class: release.ErrRollback,
		mount: func(t *testing.T, f *fixture, d *device) {
			installedV1(t, f, d)
			f.publish(testBoard, "2.0")
			f.pin(1) // the empty targets publish.Init signed
		},
	},

	// Indefinite freeze: metadata past its expiry.
	{
		name:  "indefinite freeze/timestamp expired and no fresh one",
		class: release.ErrFreeze,
		mount: func(t *testing.T, f *fixture, d *device) {
			installedV1(t, f, d)
			f.publish(testBoard, "2.0")
			f.clock.Advance(25 * time.Hour)
		},
	},
	{
		// The server's cron re-signs snapshot and timestamp but the offline
		// targets expired; a device whose clock reads 1970 must take the
		// timestamp's issue time as the time, not accept the targets.
		name:  "indefinite freeze/clock reset to 1970, targets expired before the timestamp was issued",
		class: release.ErrFreeze,
		mount: func(t *testing.T, f *fixture, d *device) {
			installedV1(t, f, d)
			f.clock.Advance(91 * 24 * time.Hour)
			if err := f.repo.Refresh(f.keys); err != nil {
				t.Fatalf("Repo.Refresh() = %v, want nil", err)
			}
			d.client.Now = func() time.Time { return time.Unix(0, 0) }
		},
	},
	{
		// The device saw a timestamp issued 5 days after release 1.0; a
		// stale timestamp (signed by the timestamp key, expired 4 days
		// before that) must be refused by a device whose clock reads 1970.
		name:  "indefinite freeze/clock reset to 1970, timestamp expired before the time floor",
		class: release.ErrFreeze,
		mount: func(t *testing.T, f *fixture, d *device) {
			start := f.clock.Now()
			f.publish(testBoard, "1.0")
			f.clock.Advance(5 * 24 * time.Hour)
			if err := f.repo.Refresh(f.keys); err != nil {
				t.Fatalf("Repo.Refresh() = %v, want nil", err)
			}
			d.mustInstall(slotA(t), "1.0")
			f.publish(testBoard, "2.0")
			// The attacker withholds 2.0: a newer timestamp version still
			// pinning the trusted snapshot, issued and expired long ago.
			trusted := d.trustedTimestamp(t)
			stale := f.timestamp(trusted.Version+1, start.Add(time.Hour), trusted.Snapshot)
			f.write(metaName("timestamp.json"), f.sign(stale, f.keys[release.RoleTimestamp]...))
			d.client.Now = func() time.Time { return time.Unix(0, 0) }
		},
	},

	// Fast-forward: metadata by a key root has revoked.
	{
		name:  "fast-forward/revoked timestamp key signs a version above the trusted one",
		class: release.ErrFastForward,
		mount: func(t *testing.T, f *fixture, d *device) {
			fastForward(t, f, d, 0)
		},
	},
	{
		// The compromised key also set the timestamp's issue time ten years
		// ahead: after the rotation the device must still recover.
		name:  "fast-forward/revoked timestamp key pushed the time floor ahead",
		class: release.ErrFastForward,
		mount: func(t *testing.T, f *fixture, d *device) {
			fastForward(t, f, d, 10*365*24*time.Hour)
		},
	},

	// Mix-and-match: files of different repository states.
	{
		name:  "mix-and-match/older targets served under the name the snapshot pins",
		class: release.ErrMixAndMatch,
		mount: func(t *testing.T, f *fixture, d *device) {
			f.publish(testBoard, "1.0")
			f.publish(testBoard, "2.0")
			tg, _, _ := f.current()
			f.write(metaName("%d.targets.json", tg.Version), f.read(metaName("%d.targets.json", tg.Version-1)))
		},
	},
	{
		name:  "mix-and-match/snapshot other than the one the timestamp pins",
		class: release.ErrMixAndMatch,
		mount: func(t *testing.T, f *fixture, d *device) {
			f.publish(testBoard, "1.0")
			f.publish(testBoard, "2.0")
			_, sn, ts := f.current()
			old := f.read(metaName("%d.snapshot.json", sn.Version-1))
			if int64(len(old)) > ts.Snapshot.Length {
				t.Fatalf("older snapshot is %d bytes, longer than the pinned %d", len(old), ts.Snapshot.Length)
			}
			f.write(metaName("%d.snapshot.json", sn.Version), old)
		},
	},
	{
		name:  "mix-and-match/targets bytes altered after signing",
		class: release.ErrMixAndMatch,
		mount: func(t *testing.T, f *fixture, d *device) {
			f.publish(testBoard, "1.0")
			tg, _, _ := f.current()
			name := metaName("%d.targets.json", tg.Version)
			b := bytes.Replace(f.read(name), []byte(`"version":"1.0"`), []byte(`"version":"9.0"`), 1)
			f.write(name, b)
		},
	},
	{
		name:  "mix-and-match/snapshot pins an older targets file under a newer version",
		class: release.ErrMixAndMatch,
		mount: func(t *testing.T, f *fixture, d *device) {
			installedV1(t, f, d)
			f.publish(testBoard, "2.0")
			tg, _, _ := f.current()
			old := f.read(metaName("%d.targets.json", tg.Version-1))
			f.writeTargets(tg.Version+1, old)
			f.pinMeta(release.MetaFile{Version: tg.Version + 1, Length: int64(len(old)), SHA256: release.HashOf(old)})
		},
	},
	{
		name:  "mix-and-match/two timestamps of one version",
		class: release.ErrMixAndMatch,
		mount: func(t *testing.T, f *fixture, d *device) {
			installedV1(t, f, d)
			_, _, ts := f.current()
			other := ts.Snapshot
			other.SHA256 = strings.Repeat("0", 64)
			f.write(metaName("timestamp.json"), f.sign(f.timestamp(ts.Version, f.clock.Now(), other), f.keys[release.RoleTimestamp]...))
		},
	},

	// Endless data: downloads longer than allowed.
	{
		name:  "endless data/timestamp one byte over MaxTimestampSize",
		class: release.ErrEndlessData,
		mount: func(t *testing.T, f *fixture, d *device) {
			f.publish(testBoard, "1.0")
			f.write(metaName("timestamp.json"), padTo(f.read(metaName("timestamp.json")), release.MaxTimestampSize+1))
		},
	},
	{
		name:  "endless data/timestamp over MaxTimestampSize over HTTP with Content-Length",
		class: release.ErrEndlessData,
		mount: func(t *testing.T, f *fixture, d *device) {
			f.publish(testBoard, "1.0")
			f.write(metaName("timestamp.json"), padTo(f.read(metaName("timestamp.json")), 4*release.MaxTimestampSize))
			d.client.Fetch = httpFetcher(t, f.dir, false)
		},
	},
	{
		name:  "endless data/timestamp over MaxTimestampSize over HTTP without Content-Length",
		class: release.ErrEndlessData,
		mount: func(t *testing.T, f *fixture, d *device) {
			f.publish(testBoard, "1.0")
			f.write(metaName("timestamp.json"), padTo(f.read(metaName("timestamp.json")), 4*release.MaxTimestampSize))
			d.client.Fetch = httpFetcher(t, f.dir, true)
		},
	},
	{
		name:  "endless data/targets longer than its pinned length",
		class: release.ErrEndlessData,
		mount: func(t *testing.T, f *fixture, d *device) {
			f.publish(testBoard, "1.0")
			_, sn, _ := f.current()
			name := metaName("%d.targets.json", sn.Targets.Version)
			f.write(name, padTo(f.read(name), int(sn.Targets.Length)+1))
		},
	},
	{
		name:  "endless data/snapshot longer than its pinned length",
		class: release.ErrEndlessData,
		mount: func(t *testing.T, f *fixture, d *device) {
			f.publish(testBoard, "1.0")
			_, _, ts := f.current()
			name := metaName("%d.snapshot.json", ts.Snapshot.Version)
			f.write(name, padTo(f.read(name), int(ts.Snapshot.Length)+1))
		},
	},
	{
		name:  "endless data/index longer than its signed length",
		class: release.ErrEndlessData,
		mount: func(t *testing.T, f *fixture, d *device) {
			rel := f.publish(testBoard, "1.0")
			name := rel.Images[0].Index.Path
			f.write(name, append(f.read(name), make([]byte, 1<<20)...))
		},
	},
	{
		name:  "endless data/root one byte over MaxRootSize",
		class: release.ErrEndlessData,
		mount: func(t *testing.T, f *fixture, d *device) {
			f.publish(testBoard, "1.0")
			f.write(metaName("2.root.json"), padTo(f.read(metaName("1.root.json")), release.MaxRootSize+1))
		},
	},

	// Extraneous dependencies: an image for a slot the device lacks.
	{
		name:  "extraneous dependencies/image for a slot class the device does not have",
		class: release.ErrExtraneous,
		mount: func(t *testing.T, f *fixture, d *device) {
			f.publish(testBoard, "1.0", "rootfs", "bootloader")
		},
	},

	// Wrong board.
	{
		name:  "wrong board/releases only for another board",
		class: release.ErrWrongBoard,
		mount: func(t *testing.T, f *fixture, d *device) {
			f.publish("other-board", "1.0")
		},
	},

	// Key compromise with rotation of the root key itself.
	{
		name:  "root rotation/new root signed by the revoked root key",
		class: release.ErrArbitrarySoftware,
		mount: func(t *testing.T, f *fixture, d *device) {
			oldRoot := rotateRoot(t, f, d)
			mallory := f.newKey("mallory")
			root, err := f.repo.Root()
			if err != nil {
				t.Fatal(err)
			}
			f.write(metaName("%d.root.json", root.Version+1), f.sign(ownedRoot(root.Version+1, f.clock.Now(), mallory), append(oldRoot, mallory)...))
		},
	},
	{
		name:  "root rotation/targets signed by the revoked root key",
		class: release.ErrFastForward,
		mount: func(t *testing.T, f *fixture, d *device) {
			oldRoot := rotateRoot(t, f, d)
			tg := f.addRelease(f.makeRelease(testBoard, "3.0"))
			f.writeTargets(tg.Version, f.sign(tg, oldRoot...))
			f.pin(tg.Version)
		},
	},
}

// ownedRoot is a root of the given version that gives every role to k.
func ownedRoot(version int64, now time.Time, k release.Signer) *release.Root {
	root := &release.Root{
		Header: release.Header{Type: release.RoleRoot, Version: version, Expires: now.Add(365 * 24 * time.Hour)},
		Keys:   map[string]release.Key{k.Public().ID(): k.Public()},
		Roles:  map[string]release.RoleKeys{},
	}
	for _, role := range release.Roles {
		root.Roles[role] = release.RoleKeys{KeyIDs: []string{k.Public().ID()}, Threshold: 1}
	}
	return root
}

// rotateRoot installs 1.0, rotates the root key, and installs 2.0 through
// the new root. It returns the revoked root key.
func rotateRoot(t *testing.T, f *fixture, d *device) []release.Signer {
	t.Helper()
	slot := slotA(t)
	f.publish(testBoard, "1.0")
	d.mustInstall(slot, "1.0")
	old := f.keys[release.RoleRoot]
	next := f.newKey("root-new")
	if err := f.repo.Rotate(release.RoleRoot, []release.Signer{next}, 1, f.keys); err != nil {
		t.Fatalf("Rotate(root) = %v, want nil", err)
	}
	f.keys = f.keySet(release.RoleRoot, next)
	f.publish(testBoard, "2.0")
	d.mustInstall(slot, "2.0")
	return old
}

// fastForward mounts the fast-forward attack: the timestamp key is
// compromised and signs version 1000 (issued ahead by ahead), which the
// device accepts; the owner rotates the timestamp key and publishes 2.0,
// which the device must install; then the revoked key signs version 1001.
func fastForward(t *testing.T, f *fixture, d *device, ahead time.Duration) {
	t.Helper()
	slot := slotA(t)
	installedV1(t, f, d)
	stolen := f.keys[release.RoleTimestamp]
	_, _, ts := f.current()
	forward := f.sign(f.timestamp(1000, f.clock.Now().Add(ahead), ts.Snapshot), stolen...)
	dir := d.client.Fetch
	d.client.Fetch = overrideFetcher{Next: dir, Files: map[string][]byte{metaName("timestamp.json"): forward}}
	// The key is still trusted, so the device takes the timestamp. One
	// issued in the future also moves the device's time floor there,
	// which expires the snapshot at once.
	_, err := d.install(slot)
	if want := release.ErrUpToDate; ahead > 0 {
		want = release.ErrFreeze
		if !errors.Is(err, want) {
			t.Fatalf("install.Install() with a timestamp v1000 issued %v ahead by the stolen key = %v, want %v", ahead, err, want)
		}
	} else if !errors.Is(err, want) {
		t.Fatalf("install.Install() with a timestamp v1000 by the stolen key = %v, want %v", err, want)
	}

	next := f.newKey("timestamp-new")
	if err := f.repo.Rotate(release.RoleTimestamp, []release.Signer{next}, 1, f.keys); err != nil {
		t.Fatalf("Rotate(timestamp) = %v, want nil", err)
	}
	f.keys = f.keySet(release.RoleTimestamp, next)
	f.publish(testBoard, "2.0")
	d.client.Fetch = dir
	res, err := d.install(slot)
	if err != nil || res.Version != "2.0" {
		t.Errorf("after the timestamp key's rotation, install.Install() = %+v, %v; want 2.0 installed (recovery from fast-forward)", res, err)
	} else {
		f.checkSlot(slot, testBoard, "2.0")
	}

	_, _, ts = f.current()
	forward = f.sign(f.timestamp(1001, f.clock.Now(), ts.Snapshot), stolen...)
	d.client.Fetch = overrideFetcher{Next: dir, Files: map[string][]byte{metaName("timestamp.json"): forward}}
}

// trustedTimestamp reads the device's trusted timestamp.
func (d *device) trustedTimestamp(t *testing.T) *release.Timestamp {
	t.Helper()
	b, err := d.state.ReadFile(release.TrustedFile(release.RoleTimestamp))
	if err != nil {
		t.Fatal(err)
	}
	var ts release.Timestamp
	if err := release.Decode(b, release.RoleTimestamp, &ts); err != nil {
		t.Fatal(err)
	}
	return &ts
}

// slotPattern fills a slot that exists before the attacked install.
var slotPattern = bytes.Repeat([]byte("lifeboat slot B, not to be touched\n"), (512<<10)/35)

// slotKinds are the two slot states an attacked install may meet: no file
// yet, or a file with earlier content, written in place.
var slotKinds = []struct {
	name     string
	existing bool
}{
	{"new slot", false},
	{"existing slot", true},
}

func TestAttacks(t *testing.T) {
	for _, tc := range attacks {
		for _, sk := range slotKinds {
			t.Run(tc.name+"/"+sk.name, func(t *testing.T) {
				t.Parallel()
				f := newFixture(t, tc.opt)
				d := f.newDevice(durable.OS(t.TempDir()))
				tc.mount(t, f, d)

				dir := t.TempDir()
				slot := filepath.Join(dir, "rootfs-b")
				if sk.existing {
					if err := os.WriteFile(slot, slotPattern, 0o644); err != nil {
						t.Fatal(err)
					}
				}
				_, err := d.install(slot)
				checkRefused(t, err, tc.class)

				if !sk.existing {
					ents, err := os.ReadDir(dir)
					if err != nil {
						t.Fatal(err)
					}
					for _, e := range ents {
						t.Errorf("after a refused install the slot directory holds %s, want nothing", e.Name())
					}
					return
				}
				got, err := os.ReadFile(slot)
				if err != nil {
					t.Fatalf("read slot after the refused install: %v", err)
				}
				if !bytes.Equal(got, slotPattern) {
					n := 0
					for i := range min(len(got), len(slotPattern)) {
						if got[i] != slotPattern[i] {
							n++
						}
					}
					t.Errorf("after a refused install the slot is %d bytes with %d changed, want the %d bytes it held, unchanged", len(got), n, len(slotPattern))
				}
			})
		}
	}
}

// TestInstall is the clean path: the slot receives the image, and a second
// plan is up to date, which is no attack.
func TestInstall(t *testing.T) {
	for _, sk := range slotKinds {
		t.Run(sk.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, fixtureOptions{})
			f.publish(testBoard, "1.0")
			d := f.newDevice(durable.OS(t.TempDir()))
			slot := filepath.Join(t.TempDir(), "rootfs-b")
			if sk.existing {
				if err := os.WriteFile(slot, slotPattern, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			d.mustInstall(slot, "1.0")

			_, err := d.client.Plan(t.Context(), []string{"rootfs"})
			if !errors.Is(err, release.ErrUpToDate) {
				t.Errorf("Plan() after installing 1.0 = %v, want %v", err, release.ErrUpToDate)
			}
			var ae *release.AttackError
			if errors.As(err, &ae) {
				t.Errorf("Plan() after installing 1.0 = %v, an attack; want a plain %v", err, release.ErrUpToDate)
			}
		})
	}
}
