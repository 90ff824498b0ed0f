package kernel

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// fakeUnpack "unpacks" a .deb whose content is a release name: a kernel image
// and an empty modules directory.
func fakeUnpack(deb, dir string) error {
	b, err := os.ReadFile(deb)
	if err != nil {
		return err
	}
	rel := string(b)
	if err := os.MkdirAll(filepath.Join(dir, "lib/modules", rel, "kernel"), 0o755); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(dir, "boot"), 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "boot", "vmlinuz-"+rel), []byte("bzImage"), 0o644)
}

func sum(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func newMirror() *MemSource {
	return &MemSource{
		Debs: map[string][]byte{
			"linux-image-1-cloud-amd64=1.0-1": []byte("1-cloud-amd64"),
			"linux-image-2-cloud-amd64=2.0-1": []byte("2-cloud-amd64"),
		},
		Candidate: map[string]string{"linux-image-2-cloud-amd64": "2.0-1"},
		Deps:      map[string]string{Meta: "linux-image-2-cloud-amd64"},
	}
}

var pin1 = Pin{Package: "linux-image-1-cloud-amd64", Version: "1.0-1", SHA256: sum("1-cloud-amd64")}

func TestGetPinnedOnceAndCached(t *testing.T) {
	m := newMirror()
	var logs []string
	c := &Cache{Dir: t.TempDir(), Source: m, Unpack: fakeUnpack, Logf: func(f string, a ...any) { logs = append(logs, fmt.Sprintf(f, a...)) }}
	for i := range 3 {
		k, err := c.Get(context.Background(), pin1, Meta)
		if err != nil {
			t.Fatalf("Get #%d = %v", i, err)
		}
		if k.Release != "1-cloud-amd64" || k.Version != "1.0-1" || k.SHA256 != pin1.SHA256 {
			t.Errorf("Get #%d = %+v, want release 1-cloud-amd64 version 1.0-1", i, k)
		}
		if b, err := os.ReadFile(k.Image()); err != nil || string(b) != "bzImage" {
			t.Errorf("ReadFile(Image()) = %q, %v; want bzImage", b, err)
		}
		if _, err := k.Modules(); err != nil {
			t.Errorf("Modules() = %v", err)
		}
	}
	if n := m.DownloadCount(); n != 1 {
		t.Errorf("downloads = %d (%v), want 1", n, m.Downloads)
	}
	// Nothing but complete entries and the lock is left in the cache.
	ents, _ := os.ReadDir(filepath.Join(c.Dir, "kernel"))
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if got, want := strings.Join(names, " "), ".lock linux-image-1-cloud-amd64_1.0-1"; got != want {
		t.Errorf("cache entries = %q, want %q", got, want)
	}
}

func TestGetFallsBack(t *testing.T) {
	m := newMirror()
	delete(m.Debs, "linux-image-1-cloud-amd64=1.0-1") // gone from the mirror
	var logs []string
	c := &Cache{Dir: t.TempDir(), Source: m, Unpack: fakeUnpack, Logf: func(f string, a ...any) { logs = append(logs, fmt.Sprintf(f, a...)) }}
	k, err := c.Get(context.Background(), pin1, Meta)
	if err != nil {
		t.Fatalf("Get = %v", err)
	}
	if k.Package != "linux-image-2-cloud-amd64" || k.Version != "2.0-1" || k.Release != "2-cloud-amd64" {
		t.Errorf("Get = %+v, want the current linux-image-2-cloud-amd64 2.0-1", k)
	}
	if !strings.Contains(strings.Join(logs, "\n"), "falling back") {
		t.Errorf("logs = %q, want a line about falling back", logs)
	}
	// The second time the cached current build is used without a download.
	n := m.DownloadCount()
	if _, err := c.Get(context.Background(), pin1, Meta); err != nil {
		t.Fatal(err)
	}
	if got := m.DownloadCount() - n; got != 1 { // only the failing pinned attempt
		t.Errorf("second Get downloaded %d times (%v), want 1 (the pinned attempt)", got, m.Downloads)
	}
	// Offline: still the cached kernel.
	c.Source = &MemSource{}
	if k, err := c.Get(context.Background(), pin1, Meta); err != nil || k.Release != "2-cloud-amd64" {
		t.Errorf("Get offline = %v, %v; want the cached 2-cloud-amd64", k, err)
	}
}

func TestGetErrors(t *testing.T) {
	bad := pin1
	bad.SHA256 = sum("something else")
	c := &Cache{Dir: t.TempDir(), Source: newMirror(), Unpack: fakeUnpack}
	if _, err := c.Get(context.Background(), bad, Meta); !errors.Is(err, ErrChecksum) {
		t.Errorf("Get(wrong checksum) = %v, want ErrChecksum", err)
	}
	c = &Cache{Dir: t.TempDir(), Source: &MemSource{}, Unpack: fakeUnpack}
	if _, err := c.Get(context.Background(), pin1, Meta); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Get(empty mirror) = %v, want ErrUnavailable", err)
	}
}

func TestGetConcurrent(t *testing.T) {
	m := newMirror()
	dir := t.TempDir()
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() {
			c := &Cache{Dir: dir, Source: m, Unpack: fakeUnpack}
			_, errs[i] = c.Get(context.Background(), pin1, Meta)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Get #%d = %v", i, err)
		}
	}
	if n := m.DownloadCount(); n != 1 {
		t.Errorf("downloads = %d, want 1", n)
	}
}

// TestGetRealDeb unpacks a real .deb made by dpkg-deb -b with the default
// Unpack (dpkg-deb -x).
func TestGetRealDeb(t *testing.T) {
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Skipf("dpkg-deb not installed (Debian package dpkg): %v", err)
	}
	src := t.TempDir()
	rel := "9.9.9-1-cloud-amd64"
	for _, d := range []string{"DEBIAN", "boot", "lib/modules/" + rel + "/kernel"} {
		if err := os.MkdirAll(filepath.Join(src, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	control := "Package: linux-image-9-cloud-amd64\nVersion: 9.9-1\nArchitecture: amd64\nMaintainer: test <t@example.com>\nDescription: test\n"
	files := map[string]string{"DEBIAN/control": control, "boot/vmlinuz-" + rel: "bzImage", "lib/modules/" + rel + "/modules.builtin": "kernel/fs/ext4/ext4.ko\n"}
	for p, s := range files {
		if err := os.WriteFile(filepath.Join(src, p), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	deb := filepath.Join(t.TempDir(), "k.deb")
	if out, err := exec.Command("dpkg-deb", "--root-owner-group", "-b", src, deb).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -b: %v\n%s", err, out)
	}
	b, err := os.ReadFile(deb)
	if err != nil {
		t.Fatal(err)
	}
	m := &MemSource{Debs: map[string][]byte{"linux-image-9-cloud-amd64=9.9-1": b}}
	c := &Cache{Dir: t.TempDir(), Source: m}
	k, err := c.Get(context.Background(), Pin{Package: "linux-image-9-cloud-amd64", Version: "9.9-1"}, "")
	if err != nil {
		t.Fatalf("Get = %v", err)
	}
	ix, err := k.Modules()
	if err != nil || !ix.Builtin("ext4") {
		t.Errorf("Modules() = %v; want ext4 built in", err)
	}
}

func TestParseDepends(t *testing.T) {
	tests := []struct {
		out, want string
		wantErr   bool
	}{
		{out: "linux-image-cloud-amd64\n  Depends: linux-image-6.1.0-56-cloud-amd64\n", want: "linux-image-6.1.0-56-cloud-amd64"},
		{out: "linux-image-cloud-amd64\n  Recommends: x\n", wantErr: true},
		{out: "", wantErr: true},
		{out: "m\n  Depends: <virtual>\n  Depends: real\n", want: "real"},
	}
	for _, tt := range tests {
		got, err := parseDepends([]byte(tt.out), Meta)
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("parseDepends(%q) = %q, %v; want %q, error %v", tt.out, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestDefaultDir(t *testing.T) {
	t.Setenv("LIFEBOAT_CACHE", "/x/cache")
	if d, err := DefaultDir(); d != "/x/cache" || err != nil {
		t.Errorf("DefaultDir() with LIFEBOAT_CACHE = %q, %v; want /x/cache", d, err)
	}
	t.Setenv("LIFEBOAT_CACHE", "")
	t.Setenv("XDG_CACHE_HOME", "/xdg")
	if d, err := DefaultDir(); d != "/xdg/lifeboat" || err != nil {
		t.Errorf("DefaultDir() with XDG_CACHE_HOME = %q, %v; want /xdg/lifeboat", d, err)
	}
}

// TestGetArch checks that a pin's architecture is recorded in the cache and
// that the offline fallback never hands out another architecture's kernel.
func TestGetArch(t *testing.T) {
	m := newMirror()
	m.Debs["linux-image-1-cloud-arm64=1.0-1"] = []byte("1-cloud-arm64")
	arm := Pin{Package: "linux-image-1-cloud-arm64", Version: "1.0-1", SHA256: sum("1-cloud-arm64"), Arch: "arm64"}
	dir := t.TempDir()
	c := &Cache{Dir: dir, Source: m, Unpack: fakeUnpack}
	k, err := c.Get(context.Background(), arm, "")
	if err != nil || k.Arch != "arm64" || k.Release != "1-cloud-arm64" {
		t.Fatalf("Get(arm64 pin) = %+v, %v; want release 1-cloud-arm64, arch arm64", k, err)
	}
	// From the cache, as written in kernel.json.
	c.Source = &MemSource{}
	if k, err := c.Get(context.Background(), arm, ""); err != nil || k.Arch != "arm64" {
		t.Errorf("Get(arm64 pin) again = %+v, %v; want the cached arm64 kernel", k, err)
	}
	// Offline, a missing amd64 pin falls back to no arm64 kernel, and a
	// missing arm64 pin to no amd64 one.
	if k, err := c.Get(context.Background(), pin1, Meta); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Get(amd64 pin, offline, arm64 cached) = %+v, %v; want ErrUnavailable", k, err)
	}
	c.Source = newMirror()
	if _, err := c.Get(context.Background(), pin1, Meta); err != nil {
		t.Fatal(err)
	}
	c.Source = &MemSource{}
	other := Pin{Package: "linux-image-2-cloud-arm64", Version: "2.0-1", Arch: "arm64"}
	if k, err := c.Get(context.Background(), other, MetaArm64); err != nil || k.Arch != "arm64" {
		t.Errorf("Get(other arm64 pin, offline) = %+v, %v; want the cached arm64 kernel", k, err)
	}
}

// TestAptSource checks which APT a Cache runs: the host's for a pin without
// an architecture, one with its own state in the cache for one with.
func TestAptSource(t *testing.T) {
	c := &Cache{Dir: "/c"}
	if got := c.source(""); got != (Apt{}) {
		t.Errorf("source(\"\") = %#v, want Apt{}", got)
	}
	want := Apt{Arch: "arm64", Dir: "/c/apt/arm64"}
	if got := c.source("arm64"); got != want {
		t.Errorf("source(arm64) = %#v, want %#v", got, want)
	}
	if got := (Apt{}).options(); got != nil {
		t.Errorf("Apt{}.options() = %q, want none", got)
	}
	opts := strings.Join(want.options(), " ")
	for _, o := range []string{
		"APT::Architecture=arm64", "APT::Architectures=arm64",
		"Dir::Etc::SourceList=/c/apt/arm64/sources.list", "Dir::Etc::SourceParts=/dev/null",
		"Dir::State::Lists=/c/apt/arm64/lists", "Dir::Cache=/c/apt/arm64/cache",
	} {
		if !strings.Contains(opts, "-o "+o) {
			t.Errorf("%#v.options() = %q, want -o %s", want, opts, o)
		}
	}
	if err := (Apt{Arch: "arm64"}).prepare(context.Background(), false); err == nil {
		t.Errorf("Apt{Arch: arm64}.prepare() = nil, want an error for the missing state directory")
	}
}
