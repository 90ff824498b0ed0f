package kmod

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var (
	update     = flag.Bool("update", false, "regenerate testdata/ with the real depmod and objcopy from -modules")
	modulesDir = flag.String("modules", "", "with -update: a Debian kernel's /lib/modules/RELEASE directory (unpacked linux-image-*-cloud-amd64)")
)

// goldenModules are the modules in testdata/modules: what the VM tier loads
// for virtio disks, dm-verity and dm-crypt, with their dependencies. Each is
// cut down to its .modinfo section by objcopy.
var goldenModules = []string{
	"kernel/drivers/virtio/virtio.ko",
	"kernel/drivers/virtio/virtio_ring.ko",
	"kernel/drivers/virtio/virtio_pci.ko",
	"kernel/drivers/virtio/virtio_pci_legacy_dev.ko",
	"kernel/drivers/virtio/virtio_pci_modern_dev.ko",
	"kernel/drivers/block/virtio_blk.ko",
	"kernel/drivers/md/dm-mod.ko",
	"kernel/drivers/md/dm-bufio.ko",
	"kernel/drivers/md/dm-verity.ko",
	"kernel/drivers/md/dm-crypt.ko",
	"kernel/lib/reed_solomon/reed_solomon.ko",
	"kernel/crypto/xts.ko",
}

const testModules = "testdata/modules"

// regenerate rebuilds testdata/modules from *modulesDir: the .modinfo-only
// modules, the lines of the real depmod's modules.dep for them, and the
// kernel's modules.builtin.
func regenerate(t *testing.T) {
	if *modulesDir == "" {
		t.Fatal("-update needs -modules=/path/to/lib/modules/RELEASE")
	}
	for _, tool := range []string{"depmod", "objcopy"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("-update needs %s (Debian packages kmod, binutils): %v", tool, err)
		}
	}
	release := filepath.Base(*modulesDir)
	root := t.TempDir()
	copyDir := filepath.Join(root, "lib/modules", release)
	if err := os.MkdirAll(filepath.Dir(copyDir), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", *modulesDir, copyDir).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
	if out, err := exec.Command("depmod", "-b", root, release).CombinedOutput(); err != nil {
		t.Fatalf("depmod: %v\n%s", err, out)
	}
	f, err := os.Open(filepath.Join(copyDir, "modules.dep"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	real, err := ParseDep(f)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(testModules); err != nil {
		t.Fatal(err)
	}
	sub := &Dep{Deps: map[string][]string{}}
	for _, p := range real.Paths {
		if !slices.Contains(goldenModules, p) {
			continue
		}
		for _, d := range real.Deps[p] {
			if !slices.Contains(goldenModules, d) {
				t.Fatalf("%s needs %s, which is not in goldenModules", p, d)
			}
		}
		sub.Paths = append(sub.Paths, p)
		sub.Deps[p] = real.Deps[p]
		dst := filepath.Join(testModules, p)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("objcopy", "--only-section=.modinfo", filepath.Join(*modulesDir, p), dst).CombinedOutput(); err != nil {
			t.Fatalf("objcopy: %v\n%s", err, out)
		}
	}
	var b bytes.Buffer
	if _, err := sub.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile("testdata/depmod.dep", b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	builtin, err := os.ReadFile(filepath.Join(*modulesDir, "modules.builtin"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(testModules, "modules.builtin"), builtin, 0o644); err != nil {
		t.Fatal(err)
	}
}

func readGoldenDep(t *testing.T) *Dep {
	t.Helper()
	f, err := os.Open("testdata/depmod.dep")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d, err := ParseDep(f)
	if err != nil {
		t.Fatalf("ParseDep(testdata/depmod.dep) = %v", err)
	}
	return d
}

// TestGenerateDepMatchesDepmod: for every module, GenerateDep lists the same
// dependencies as the real depmod did for the full kernel, in an order that
// loads (depmod's own order among independent modules may differ).
func TestGenerateDepMatchesDepmod(t *testing.T) {
	if *update {
		regenerate(t)
	}
	want := readGoldenDep(t)
	got, err := GenerateDep(testModules)
	if err != nil {
		t.Fatalf("GenerateDep(%s) = %v", testModules, err)
	}
	if d := cmp.Diff(sorted(want.Paths), got.Paths); d != "" {
		t.Errorf("GenerateDep(%s) paths (-depmod +got):\n%s", testModules, d)
	}
	for _, p := range want.Paths {
		if d := cmp.Diff(sorted(want.Deps[p]), sorted(got.Deps[p])); d != "" {
			t.Errorf("GenerateDep: deps of %s (-depmod +got):\n%s", p, d)
		}
		order := slices.Clone(got.Deps[p])
		slices.Reverse(order) // modprobe loads from the last
		checkLoadOrder(t, got, append(order, p))
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// checkLoadOrder fails t unless every module in order comes after all it
// needs according to d.
func checkLoadOrder(t *testing.T, d *Dep, order []string) {
	t.Helper()
	seen := map[string]bool{}
	for _, p := range order {
		for _, dep := range d.Deps[p] {
			if !seen[dep] {
				t.Errorf("load order %v: %s before its dependency %s", order, p, dep)
			}
		}
		seen[p] = true
	}
}

func TestResolve(t *testing.T) {
	ix := NewIndex(readGoldenDep(t), mustBuiltin(t))
	tests := []struct {
		names []string
		want  []string
	}{
		{[]string{"virtio_blk"}, []string{"virtio_ring", "virtio", "virtio_blk"}},
		{[]string{"virtio_pci", "virtio_blk"}, []string{"virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_pci", "virtio_blk"}},
		{[]string{"dm-verity"}, []string{"dm_mod", "dm_bufio", "reed_solomon", "dm_verity"}},
		{[]string{"dm_crypt", "dm-verity", "dm-crypt"}, []string{"dm_mod", "dm_crypt", "dm_bufio", "reed_solomon", "dm_verity"}},
		{[]string{"ext4", "virtio_blk"}, []string{"virtio_ring", "virtio", "virtio_blk"}}, // ext4 is built in
		{nil, nil},
	}
	d := readGoldenDep(t)
	for _, tt := range tests {
		got, err := ix.Resolve(tt.names...)
		if err != nil {
			t.Errorf("Resolve(%q) = %v", tt.names, err)
			continue
		}
		checkLoadOrder(t, d, got)
		var names []string
		for _, p := range got {
			names = append(names, Name(p))
		}
		// The exact order among independent modules is ours to choose;
		// compare as sets, the order was checked above.
		if diff := cmp.Diff(sorted(tt.want), sorted(names)); diff != "" {
			t.Errorf("Resolve(%q) (-want +got):\n%s", tt.names, diff)
		}
	}
	var nf *NotFoundError
	if _, err := ix.Resolve("virtio_blk", "no-such-module"); !errors.As(err, &nf) || nf.Name != "no-such-module" {
		t.Errorf("Resolve(no-such-module) = %v, want *NotFoundError", err)
	}
	if !ix.Builtin("ext4") || ix.Builtin("dm-verity") {
		t.Errorf("Builtin(ext4), Builtin(dm-verity) = %v, %v; want true, false", ix.Builtin("ext4"), ix.Builtin("dm-verity"))
	}
}

func mustBuiltin(t *testing.T) []string {
	b, err := os.ReadFile(filepath.Join(testModules, "modules.builtin"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(b))
}

func TestOpen(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open(empty dir) = %v, want ErrNotExist", err)
	}
	dep := "kernel/a.ko: kernel/b.ko\nkernel/b.ko:\n"
	if err := os.WriteFile(filepath.Join(dir, "modules.dep"), []byte(dep), 0o644); err != nil {
		t.Fatal(err)
	}
	ix, err := Open(dir)
	if err != nil {
		t.Fatalf("Open = %v", err)
	}
	if got, err := ix.Resolve("a"); err != nil || !slices.Equal(got, []string{"kernel/b.ko", "kernel/a.ko"}) {
		t.Errorf("Resolve(a) = %v, %v; want [kernel/b.ko kernel/a.ko]", got, err)
	}
}

func TestResolveBadDep(t *testing.T) {
	tests := []struct{ name, dep string }{
		{"cycle", "a.ko: b.ko\nb.ko: a.ko\n"},
		{"missing entry", "a.ko: b.ko\n"},
	}
	for _, tt := range tests {
		d, err := ParseDep(strings.NewReader(tt.dep))
		if err != nil {
			t.Fatalf("%s: ParseDep = %v", tt.name, err)
		}
		if got, err := NewIndex(d, nil).Resolve("a"); err == nil {
			t.Errorf("%s: Resolve(a) = %v, nil; want an error", tt.name, got)
		}
	}
}

func TestParseDep(t *testing.T) {
	tests := []struct {
		in      string
		wantErr bool
	}{
		{in: "# comment\n\nk/a.ko: k/b.ko  k/c.ko\nk/b.ko:\nk/c.ko:\n"},
		{in: "k/a.ko k/b.ko\n", wantErr: true},
		{in: ": k/b.ko\n", wantErr: true},
		{in: "k/a.ko:\nk/a.ko:\n", wantErr: true},
		{in: "k/a b.ko: x\n", wantErr: true},
	}
	for _, tt := range tests {
		d, err := ParseDep(strings.NewReader(tt.in))
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseDep(%q) = %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if err != nil {
			continue
		}
		var b bytes.Buffer
		if _, err := d.WriteTo(&b); err != nil {
			t.Fatal(err)
		}
		d2, err := ParseDep(&b)
		if err != nil || !cmp.Equal(d, d2) {
			t.Errorf("ParseDep(WriteTo(ParseDep(%q))) = %+v, %v; want %+v", tt.in, d2, err, d)
		}
	}
}

func TestReadModinfo(t *testing.T) {
	mi, err := ReadModinfoFile(filepath.Join(testModules, "kernel/drivers/md/dm-verity.ko"))
	if err != nil {
		t.Fatalf("ReadModinfoFile(dm-verity.ko) = %v", err)
	}
	if mi.Name != "dm_verity" || !slices.Equal(sorted(mi.Depends), []string{"dm_bufio", "dm_mod", "reed_solomon"}) || !strings.HasPrefix(mi.Vermagic, "6.1.0-") {
		t.Errorf("ReadModinfoFile(dm-verity.ko) = %+v, want name dm_verity, depends dm_bufio dm_mod reed_solomon", mi)
	}
	mi, err = ReadModinfoFile(filepath.Join(testModules, "kernel/crypto/xts.ko"))
	if err != nil || !slices.Contains(mi.Aliases, "crypto-xts") {
		t.Errorf("ReadModinfoFile(xts.ko) = %+v, %v; want alias crypto-xts", mi, err)
	}
	if _, err := ReadModinfo(strings.NewReader("not an ELF file")); err == nil {
		t.Error("ReadModinfo(garbage) = nil error, want an error")
	}
	if _, err := ReadModinfoFile("x.ko.xz"); err == nil {
		t.Error("ReadModinfoFile(x.ko.xz) = nil error, want an error")
	}
}

func TestName(t *testing.T) {
	tests := []struct{ in, want string }{
		{"dm-verity", "dm_verity"},
		{"dm_verity", "dm_verity"},
		{"kernel/drivers/md/dm-verity.ko", "dm_verity"},
		{"kernel/drivers/md/dm-verity.ko.xz", "dm_verity"},
		{"kernel/drivers/md/dm-verity.ko.zst", "dm_verity"},
	}
	for _, tt := range tests {
		if got := Name(tt.in); got != tt.want {
			t.Errorf("Name(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if !Compressed("a.ko.zst") || Compressed("a.ko") {
		t.Error("Compressed(a.ko.zst), Compressed(a.ko) = want true, false")
	}
}

func FuzzParseDep(f *testing.F) {
	b, err := os.ReadFile("testdata/depmod.dep")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte("a.ko: b.ko\nb.ko: a.ko\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := ParseDep(bytes.NewReader(data))
		if err != nil {
			return
		}
		_, _ = NewIndex(d, nil).Resolve(d.Paths...) // must not panic or hang
		var b bytes.Buffer
		if _, err := d.WriteTo(&b); err != nil {
			t.Fatal(err)
		}
		if d2, err := ParseDep(&b); err != nil || !cmp.Equal(d.Deps, d2.Deps) {
			t.Fatalf("ParseDep(WriteTo(d)) = %v, %v; want %v", d2, err, d)
		}
	})
}

func FuzzReadModinfo(f *testing.F) {
	for _, p := range goldenModules {
		b, err := os.ReadFile(filepath.Join(testModules, p))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = ReadModinfo(bytes.NewReader(data))
	})
}
