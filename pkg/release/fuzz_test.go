package release_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-update/lifeboat/pkg/durable"
	"github.com/lifeboat-update/lifeboat/pkg/publish"
	"github.com/lifeboat-update/lifeboat/pkg/release"
)

var update = flag.Bool("update", false, "rewrite testdata/ (keys, repository and hostile metadata)")

// Testdata: a repository written by publish with the test keys in
// testdata/keys (release 1.0, a rotation of the timestamp key, release
// 2.0), and hostile metadata against it in testdata/hostile, named
// <role>.<case>.json. All of it is signed at testdataTime.
const (
	testdataRepo    = "testdata/repo"
	testdataKeys    = "testdata/keys"
	testdataHostile = "testdata/hostile"
	testdataBoard   = "testboard"
)

var testdataTime = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// hostileClasses are the refusal each file of testdata/hostile must meet
// when served as the repository's timestamp.json.
var hostileClasses = map[string]error{
	"timestamp.unknown-key.json":    release.ErrArbitrarySoftware,
	"timestamp.revoked-key.json":    release.ErrFastForward,
	"timestamp.rollback.json":       release.ErrRollback,
	"timestamp.expired.json":        release.ErrFreeze,
	"timestamp.same-version.json":   release.ErrMixAndMatch,
	"timestamp.wrong-type.json":     release.ErrMixAndMatch,
	"timestamp.oversized.json":      release.ErrEndlessData,
	"timestamp.snapshot-short.json": release.ErrEndlessData,
}

// fakeImage is a well-formed image entry; testdata has no image behind it.
func fakeImage(seed string) release.Image {
	h := release.HashOf([]byte(seed))
	return release.Image{Class: "rootfs", Size: 4096, SHA256: h,
		Index: release.IndexRef{Path: release.IndexDir + "/" + h + ".caibx", Length: 120, SHA256: h}}
}

// writeTestdata regenerates testdata/ from fresh keys.
func writeTestdata(t *testing.T) {
	for _, d := range []string{testdataRepo, testdataKeys, testdataHostile} {
		if err := os.RemoveAll(d); err != nil {
			t.Fatal(err)
		}
	}
	key := func(role, name string) release.Signer {
		dir := filepath.Join(testdataKeys, role)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		s, err := release.GenerateKey(filepath.Join(dir, name+".key"))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	ks := publish.KeySet{}
	for _, role := range release.Roles {
		ks[role] = []release.Signer{key(role, "1")}
	}
	repo, err := publish.Init(testdataRepo, ks, nil)
	if err != nil {
		t.Fatal(err)
	}
	repo.Now = func() time.Time { return testdataTime }
	for _, d := range []string{release.IndexDir, release.StoreDir} {
		if err := os.Remove(filepath.Join(testdataRepo, d)); err != nil {
			t.Fatal(err)
		}
	}
	rel := release.Release{Board: testdataBoard, Version: "1.0", Created: testdataTime, Images: []release.Image{fakeImage("1.0")}}
	if err := repo.AddRelease(rel, ks); err != nil {
		t.Fatal(err)
	}
	stolen := ks[release.RoleTimestamp]
	next := key(release.RoleTimestamp, "2")
	if err := repo.Rotate(release.RoleTimestamp, []release.Signer{next}, 1, ks); err != nil {
		t.Fatal(err)
	}
	ks[release.RoleTimestamp] = []release.Signer{next}
	rel = release.Release{Board: testdataBoard, Version: "2.0", Created: testdataTime, Images: []release.Image{fakeImage("2.0")}}
	if err := repo.AddRelease(rel, ks); err != nil {
		t.Fatal(err)
	}

	_, _, ts, err := repo.Targets()
	if err != nil {
		t.Fatal(err)
	}
	stamp := func(version int64, issued time.Time, sn release.MetaFile) *release.Timestamp {
		return &release.Timestamp{Header: release.Header{Type: release.RoleTimestamp, Version: version, Expires: issued.Add(24 * time.Hour)}, Issued: issued, Snapshot: sn}
	}
	sign := func(v any, s ...release.Signer) []byte {
		b, err := release.Sign(v, s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	unknown := key("unknown", "1")
	other := ts.Snapshot
	other.SHA256 = strings.Repeat("0", 64)
	short := ts.Snapshot
	short.Length = 10
	wrongType := stamp(ts.Version+1, testdataTime, ts.Snapshot)
	wrongType.Type = release.RoleSnapshot
	cur, err := os.ReadFile(filepath.Join(testdataRepo, release.MetadataDir, "timestamp.json"))
	if err != nil {
		t.Fatal(err)
	}
	hostile := map[string][]byte{
		"timestamp.unknown-key.json":    sign(stamp(ts.Version+1, testdataTime, ts.Snapshot), unknown),
		"timestamp.revoked-key.json":    sign(stamp(1000, testdataTime, ts.Snapshot), stolen...),
		"timestamp.rollback.json":       sign(stamp(ts.Version-1, testdataTime, ts.Snapshot), next),
		"timestamp.expired.json":        sign(stamp(ts.Version+1, testdataTime.Add(-48*time.Hour), ts.Snapshot), next),
		"timestamp.same-version.json":   sign(stamp(ts.Version, testdataTime, other), next),
		"timestamp.wrong-type.json":     sign(wrongType, next),
		"timestamp.oversized.json":      append(cur, bytes.Repeat([]byte(" "), release.MaxTimestampSize)...),
		"timestamp.snapshot-short.json": sign(stamp(ts.Version+1, testdataTime, short), next),
	}
	if err := os.MkdirAll(testdataHostile, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range hostile {
		if err := os.WriteFile(filepath.Join(testdataHostile, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// refreshHarness is a device provisioned with testdata's first root and
// refreshed once from testdata's repository, so that it trusts the
// rotated root and remembers the revoked timestamp key.
type refreshHarness struct {
	repo memFetcher
	base *durable.Crash
	root *release.Root // trusted after the first refresh
}

func (h *refreshHarness) client(state durable.FS, fetch release.Fetcher) *release.Client {
	return &release.Client{State: state, Fetch: fetch, Board: testdataBoard,
		Now: func() time.Time { return testdataTime.Add(time.Hour) }}
}

func newRefreshHarness(t testing.TB) *refreshHarness {
	t.Helper()
	h := &refreshHarness{repo: loadRepo(t, testdataRepo)}
	c := durable.NewCrash()
	if err := release.Provision(c, h.repo[release.MetadataDir+"/1.root.json"]); err != nil {
		t.Fatalf("Provision(testdata root) = %v", err)
	}
	if _, err := h.client(c, h.repo).Refresh(t.Context()); err != nil {
		t.Fatalf("Refresh() from %s = %v, want nil (regenerate with -update?)", testdataRepo, err)
	}
	h.base = c.Reboot()
	b, err := h.base.ReadFile(release.TrustedFile(release.RoleRoot))
	if err != nil {
		t.Fatal(err)
	}
	h.root = &release.Root{}
	if err := release.Decode(b, release.RoleRoot, h.root); err != nil {
		t.Fatal(err)
	}
	return h
}

// refresh refreshes a fresh copy of the device with b served as the
// repository file name, and returns the state after it.
func (h *refreshHarness) refresh(t *testing.T, name string, b []byte) (*durable.Crash, error) {
	state := h.base.Reboot()
	fetch := overrideFetcher{Next: h.repo, Files: map[string][]byte{name: b}}
	_, err := h.client(state, fetch).Refresh(t.Context())
	return state, err
}

// TestTestdata regenerates testdata with -update, and otherwise checks a
// device refreshes from its repository and refuses each hostile file.
func TestTestdata(t *testing.T) {
	if *update {
		writeTestdata(t)
	}
	h := newRefreshHarness(t)
	if h.root.Version != 2 {
		t.Errorf("trusted root after refreshing from %s is v%d, want v2", testdataRepo, h.root.Version)
	}
	for name, class := range hostileClasses {
		t.Run(name, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join(testdataHostile, name))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := h.refresh(t, release.MetadataDir+"/timestamp.json", b); !errors.Is(err, class) {
				t.Errorf("Refresh() with %s as timestamp.json = %v, want %v", name, err, class)
			}
		})
	}
}

// seeds returns the metadata files of testdata, except those beyond
// MaxTimestampSize: TestTestdata covers them, and they only slow the
// fuzzer's minimisation down.
func seeds(t testing.TB) [][]byte {
	t.Helper()
	var out [][]byte
	for _, glob := range []string{testdataRepo + "/" + release.MetadataDir + "/*.json", testdataHostile + "/*.json"} {
		files, err := filepath.Glob(glob)
		if err != nil {
			t.Fatal(err)
		}
		if len(files) == 0 {
			t.Fatalf("no seeds match %s (regenerate with go test -run TestTestdata -update)", glob)
		}
		slices.Sort(files)
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if len(b) <= release.MaxTimestampSize {
				out = append(out, b)
			}
		}
	}
	return out
}

// decodeAs decodes b as role's metadata and returns its header.
func decodeAs(b []byte, role string) (release.Header, error) {
	switch role {
	case release.RoleRoot:
		var v release.Root
		err := release.Decode(b, role, &v)
		return v.Header, err
	case release.RoleTargets:
		var v release.Targets
		err := release.Decode(b, role, &v)
		return v.Header, err
	case release.RoleSnapshot:
		var v release.Snapshot
		err := release.Decode(b, role, &v)
		return v.Header, err
	case release.RoleTimestamp:
		var v release.Timestamp
		err := release.Decode(b, role, &v)
		return v.Header, err
	}
	panic("unknown role " + role)
}

// fuzzDecode fuzzes release.Decode for role: it never panics, and what it
// accepts is of that role, of a valid version, and of no other role.
func fuzzDecode(f *testing.F, role string) {
	for _, b := range seeds(f) {
		f.Add(b)
	}
	f.Add([]byte(`{"signed":{"_type":"` + role + `","version":1},"signatures":[]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := decodeAs(b, role)
		if err != nil {
			return
		}
		if h.Type != role || h.Version < 1 {
			t.Errorf("Decode(%q, %s) = header %+v, nil; want type %s and version >= 1", b, role, h, role)
		}
		for _, other := range release.Roles {
			if _, err := decodeAs(b, other); other != role && err == nil {
				t.Errorf("Decode(%q) succeeds as both %s and %s", b, role, other)
			}
		}
	})
}

func FuzzDecodeRoot(f *testing.F)      { fuzzDecode(f, release.RoleRoot) }
func FuzzDecodeTargets(f *testing.F)   { fuzzDecode(f, release.RoleTargets) }
func FuzzDecodeSnapshot(f *testing.F)  { fuzzDecode(f, release.RoleSnapshot) }
func FuzzDecodeTimestamp(f *testing.F) { fuzzDecode(f, release.RoleTimestamp) }

// FuzzRefreshTimestamp serves the fuzz input as timestamp.json to a
// provisioned device: Refresh must not panic, and the device must not take
// a timestamp that is not validly signed by the trusted timestamp key.
func FuzzRefreshTimestamp(f *testing.F) {
	h := newRefreshHarness(f)
	for _, b := range seeds(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		state, err := h.refresh(t, release.MetadataDir+"/timestamp.json", b)
		got, rerr := state.ReadFile(release.TrustedFile(release.RoleTimestamp))
		if rerr != nil {
			t.Fatalf("read trusted timestamp: %v", rerr)
		}
		if err == nil && !bytes.Equal(got, b) {
			t.Errorf("Refresh() = nil, but the trusted timestamp is not the one served")
		}
		if !bytes.Equal(got, b) {
			return
		}
		var env release.Envelope
		if json.Unmarshal(b, &env) != nil || !validlySigned(env, h.root, release.RoleTimestamp) {
			t.Errorf("Refresh() = %v and the device took timestamp %q, which is not validly signed by the timestamp key", err, b)
		}
	})
}

// FuzzRefreshRoot serves the fuzz input as the next root version: Refresh
// must not panic, and the device must take it only if the trusted root and
// the new root itself both signed it.
func FuzzRefreshRoot(f *testing.F) {
	h := newRefreshHarness(f)
	for _, b := range seeds(f) {
		f.Add(b)
	}
	name := fmt.Sprintf("%s/%d.root.json", release.MetadataDir, h.root.Version+1)
	f.Fuzz(func(t *testing.T, b []byte) {
		state, err := h.refresh(t, name, b)
		got, rerr := state.ReadFile(release.TrustedFile(release.RoleRoot))
		if rerr != nil {
			t.Fatalf("read trusted root: %v", rerr)
		}
		if !bytes.Equal(got, b) {
			return
		}
		var env release.Envelope
		var next release.Root
		if json.Unmarshal(b, &env) != nil || release.Decode(b, release.RoleRoot, &next) != nil ||
			!validlySigned(env, h.root, release.RoleRoot) || !validlySigned(env, &next, release.RoleRoot) {
			t.Errorf("Refresh() = %v and the device took root %q, which is not validly signed by the old and new root keys", err, b)
		}
	})
}
