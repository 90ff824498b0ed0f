package initramfs

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/lifeboat-update/lifeboat/internal/testtool"
	"github.com/lifeboat-update/lifeboat/pkg/board"
	"github.com/lifeboat-update/lifeboat/pkg/kmod"
	"github.com/lifeboat-update/lifeboat/pkg/publish"
	"github.com/lifeboat-update/lifeboat/pkg/release"
	"github.com/lifeboat-update/lifeboat/qemu/cpio"
	"github.com/lifeboat-update/lifeboat/qemu/kernel"
)

const testBoardDir = "../boards/qemu-x86_64"

func loadBoard(t *testing.T) *board.Board {
	t.Helper()
	b, err := board.Load(testBoardDir)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestWriteModulesOrder(t *testing.T) {
	tests := []struct {
		name    string
		release string
		rels    []string
		want    string
		wantErr bool
	}{
		{"none", "6.1.0-56-amd64", nil, "", false},
		{"deps first", "6.1.0-56-amd64",
			[]string{"kernel/drivers/virtio/virtio_ring.ko", "kernel/drivers/virtio/virtio.ko", "kernel/drivers/block/virtio_blk.ko"},
			"/lib/modules/6.1.0-56-amd64/kernel/drivers/virtio/virtio_ring.ko\n" +
				"/lib/modules/6.1.0-56-amd64/kernel/drivers/virtio/virtio.ko\n" +
				"/lib/modules/6.1.0-56-amd64/kernel/drivers/block/virtio_blk.ko\n", false},
		{"compressed", "6.12.0-1-arm64", []string{"kernel/fs/ext4/ext4.ko.xz"},
			"/lib/modules/6.12.0-1-arm64/kernel/fs/ext4/ext4.ko.xz\n", false},
		{"no release", "", []string{"kernel/a.ko"}, "", true},
		{"release with a slash", "6.1/x", []string{"kernel/a.ko"}, "", true},
		{"release dot-dot", "..", []string{"kernel/a.ko"}, "", true},
		{"absolute module", "6.1", []string{"/kernel/a.ko"}, "", true},
		{"escaping module", "6.1", []string{"../../../etc/passwd"}, "", true},
		{"unclean module", "6.1", []string{"kernel/./a.ko"}, "", true},
		{"newline in module", "6.1", []string{"kernel/a.ko\n/etc/x"}, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			err := WriteModulesOrder(&b, tt.release, tt.rels)
			if (err != nil) != tt.wantErr {
				t.Fatalf("WriteModulesOrder(%q, %q) = %v, want error %v", tt.release, tt.rels, err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if got := b.String(); got != tt.want {
				t.Errorf("WriteModulesOrder(%q, %q) wrote %q, want %q", tt.release, tt.rels, got, tt.want)
			}
			paths, err := ReadModulesOrder(&b)
			if err != nil {
				t.Fatalf("ReadModulesOrder(written) = %v", err)
			}
			var want []string
			for _, r := range tt.rels {
				want = append(want, ModulePath(tt.release, r))
			}
			if diff := cmp.Diff(want, paths); diff != "" {
				t.Errorf("ReadModulesOrder(written) (-want +got):\n%s", diff)
			}
		})
	}
}

func TestReadModulesOrderRefuses(t *testing.T) {
	for _, in := range []string{"lib/modules/a.ko\n", "/lib/modules/../a.ko\n"} {
		if got, err := ReadModulesOrder(strings.NewReader(in)); err == nil {
			t.Errorf("ReadModulesOrder(%q) = %q, want an error", in, got)
		}
	}
}

func TestValidate(t *testing.T) {
	b := loadBoard(t)
	good := func() Options { return Options{Board: b, Output: "out/ramdisk.cpio.xz"} }
	noDir := *b
	noDir.Dir = ""
	badBoard := *b
	badBoard.RamdiskBudget = 0
	tests := []struct {
		name   string
		change func(*Options)
		want   string // in the error; "" for none
	}{
		{"defaults", func(*Options) {}, ""},
		{"own commands", func(o *Options) {
			o.Commands = []string{"init", "gosh", "github.com/u-root/u-root/cmds/core/dd"}
		}, ""},
		{"extra file", func(o *Options) { o.Files = []File{{Src: "x", Dest: "/etc/lifeboat/extra.conf"}} }, ""},
		{"no board", func(o *Options) { o.Board = nil }, "no board"},
		{"board not loaded", func(o *Options) { o.Board = &noDir }, "no directory"},
		{"invalid board", func(o *Options) { o.Board = &badBoard }, "ramdisk_budget"},
		{"no output", func(o *Options) { o.Output = "" }, "no output"},
		{"no init", func(o *Options) { o.Commands = []string{"gosh", "ls"} }, "would not boot"},
		{"no shell", func(o *Options) { o.Commands = []string{"init", "ls"} }, "no rescue shell"},
		{"twice", func(o *Options) { o.Commands = []string{"init", "gosh", "ls", "ls"} }, "already in"},
		{"same name twice", func(o *Options) {
			o.Commands = []string{"init", "gosh", "ls", "example.com/x/ls"}
		}, "already in"},
		{"ours", func(o *Options) { o.Commands = []string{"init", "gosh", "example.com/x/uinit"} }, "ours"},
		{"flag as command", func(o *Options) { o.Commands = []string{"init", "gosh", "-files=/etc/shadow:x"} }, "want a u-root command"},
		{"relative package", func(o *Options) { o.Commands = []string{"init", "gosh", "./x/y"} }, "want a u-root command"},
		{"file without source", func(o *Options) { o.Files = []File{{Dest: "/etc/x"}} }, "no source"},
		{"relative destination", func(o *Options) { o.Files = []File{{Src: "x", Dest: "etc/x"}} }, "clean absolute"},
		{"unclean destination", func(o *Options) { o.Files = []File{{Src: "x", Dest: "/etc/../init"}} }, "clean absolute"},
		{"replaces init", func(o *Options) { o.Files = []File{{Src: "x", Dest: "/init"}} }, "clashes"},
		{"replaces the board", func(o *Options) { o.Files = []File{{Src: "x", Dest: BoardPath}} }, "clashes"},
		{"under bbin", func(o *Options) { o.Files = []File{{Src: "x", Dest: "/bbin/uinit"}} }, "clashes"},
		{"under the modules", func(o *Options) { o.Files = []File{{Src: "x", Dest: "/lib/modules/6.1/x.ko"}} }, "clashes"},
		{"over the modules", func(o *Options) { o.Files = []File{{Src: "x", Dest: "/lib"}} }, "clashes"},
		{"destination twice", func(o *Options) {
			o.Files = []File{{Src: "x", Dest: "/etc/x"}, {Src: "y", Dest: "/etc/x"}}
		}, "twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := good()
			tt.change(&o)
			err := o.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tt.want == "":
			case err == nil:
				t.Fatalf("Validate() = nil, want an error with %q", tt.want)
			case !errors.Is(err, ErrInvalidOptions) || !strings.Contains(err.Error(), tt.want):
				t.Fatalf("Validate() = %v, want ErrInvalidOptions with %q", err, tt.want)
			}
		})
	}
}

func TestCheckBudget(t *testing.T) {
	b := loadBoard(t)
	if b.RamdiskBudget != 6<<20 {
		t.Fatalf("qemu-x86_64 ramdisk_budget = %d, want 6 MiB", b.RamdiskBudget)
	}
	for _, size := range []int64{0, b.RamdiskBudget - 1, b.RamdiskBudget} {
		if err := checkBudget(b, size); err != nil {
			t.Errorf("checkBudget(%d of %d) = %v, want nil", size, b.RamdiskBudget, err)
		}
	}
	err := checkBudget(b, b.RamdiskBudget+1)
	if !errors.Is(err, ErrOverBudget) {
		t.Fatalf("checkBudget(%d of %d) = %v, want ErrOverBudget", b.RamdiskBudget+1, b.RamdiskBudget, err)
	}
	var be *BudgetError
	if !errors.As(err, &be) || be.Size != b.RamdiskBudget+1 || be.Budget != b.RamdiskBudget || be.Board != b.Name {
		t.Errorf("checkBudget error = %#v, want a *BudgetError with the sizes", err)
	}
	if !strings.Contains(err.Error(), "1 bytes over") {
		t.Errorf("checkBudget error = %q, want it to say by how much", err)
	}
}

func TestCommandPackage(t *testing.T) {
	for in, want := range map[string]string{
		"ls":                                  "github.com/u-root/u-root/cmds/core/ls",
		"gosh":                                "github.com/u-root/u-root/cmds/core/gosh",
		"github.com/u-root/u-root/cmds/exp/x": "github.com/u-root/u-root/cmds/exp/x",
		"":                                    "",
		"-v":                                  "",
		"./uinit":                             "",
		"a b":                                 "",
		"example.com//x":                      "",
		"LS":                                  "",
	} {
		if got := commandPackage(in); got != want {
			t.Errorf("commandPackage(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestXZArgs(t *testing.T) {
	for size, want := range map[int64]string{
		0:         "dict=1MiB",
		1 << 20:   "dict=1MiB",
		1<<20 + 1: "dict=2MiB",
		18305928:  "dict=32MiB",
		1 << 30:   "dict=64MiB",
	} {
		args := xzArgs(size)
		if !slices.Contains(args, "--check=crc32") || !slices.Contains(args, "--threads=1") {
			t.Errorf("xzArgs(%d) = %q, want CRC32 checks and one thread", size, args)
		}
		if !strings.Contains(strings.Join(args, " "), "preset=9e,"+want) {
			t.Errorf("xzArgs(%d) = %q, want -9e with %s", size, args, want)
		}
	}
}

// fakeKernel unpacks a made-up kernel with modules into a temp dir:
// virtio_blk needs virtio and virtio_ring, dm-verity needs dm-bufio and
// dm-mod, ext4 is built in.
func fakeKernel(t *testing.T) *kernel.Kernel {
	t.Helper()
	b := loadBoard(t)
	k := &kernel.Kernel{Package: b.Kernel.Package, Version: b.Kernel.Version, SHA256: b.Kernel.SHA256,
		Release: "6.1.0-99-test", Dir: t.TempDir()}
	dep := []string{
		"kernel/drivers/virtio/virtio_ring.ko:",
		"kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko",
		"kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko",
		"kernel/drivers/md/dm-mod.ko:",
		"kernel/drivers/md/dm-bufio.ko: kernel/drivers/md/dm-mod.ko",
		"kernel/drivers/md/dm-verity.ko: kernel/drivers/md/dm-bufio.ko kernel/drivers/md/dm-mod.ko",
	}
	for _, line := range dep {
		rel, _, _ := strings.Cut(line, ":")
		p := filepath.Join(k.ModulesDir(), rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("module "+kmod.Name(rel)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		"modules.dep":     strings.Join(dep, "\n") + "\n",
		"modules.builtin": "kernel/fs/ext4/ext4.ko\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(k.ModulesDir(), name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return k
}

type fakeKernels struct {
	k   *kernel.Kernel
	err error
	got []kernel.Pin
}

func (f *fakeKernels) Get(ctx context.Context, pin kernel.Pin, meta string) (*kernel.Kernel, error) {
	f.got = append(f.got, pin)
	return f.k, f.err
}

func TestKernelIsThePinnedOne(t *testing.T) {
	b := loadBoard(t)
	want := kernel.Pin{Package: b.Kernel.Package, Version: b.Kernel.Version, SHA256: b.Kernel.SHA256}

	k := fakeKernel(t)
	fk := &fakeKernels{k: k}
	o := Options{Board: b, Output: "x", Kernels: fk}
	got, err := o.kernel(t.Context())
	if err != nil || got != k {
		t.Fatalf("kernel() = %v, %v, want the fake kernel", got, err)
	}
	if diff := cmp.Diff([]kernel.Pin{want}, fk.got); diff != "" {
		t.Errorf("Get pins (-want +got):\n%s", diff)
	}

	// The cache falls back to another kernel when the pinned one cannot
	// be had: its modules would not load on the board's kernel.
	other := *k
	other.Package, other.Version = "linux-image-6.1.0-56-cloud-amd64", "6.1.192-2"
	o.Kernels = &fakeKernels{k: &other}
	if _, err := o.kernel(t.Context()); !errors.Is(err, kernel.ErrUnavailable) {
		t.Errorf("kernel() with the cache's fallback = %v, want ErrUnavailable", err)
	}

	o.Kernels = &fakeKernels{err: kernel.ErrChecksum}
	if _, err := o.kernel(t.Context()); !errors.Is(err, kernel.ErrChecksum) {
		t.Errorf("kernel() with a bad download = %v, want ErrChecksum", err)
	}
}

// makeRoot returns the path of a new repository's root.json, signed by
// fresh keys.
func makeRoot(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	ks := publish.KeySet{}
	for _, role := range release.Roles {
		s, err := release.GenerateKey(filepath.Join(dir, role+".key"))
		if err != nil {
			t.Fatal(err)
		}
		ks[role] = []release.Signer{s}
	}
	repo := filepath.Join(dir, "repo")
	if _, err := publish.Init(repo, ks, nil); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(repo, release.MetadataDir, "root.json")
}

func TestStage(t *testing.T) {
	b := loadBoard(t)
	b.Modules = []string{"virtio_blk", "dm-verity", "ext4", "virtio"}
	k := fakeKernel(t)
	extra := filepath.Join(t.TempDir(), "hello")
	if err := os.WriteFile(extra, []byte("#!/bin/sh\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(t.TempDir(), "x.conf")
	if err := os.WriteFile(conf, []byte("x=1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	root := makeRoot(t)
	rootJSON, err := os.ReadFile(root)
	if err != nil {
		t.Fatal(err)
	}
	o := Options{Board: b, Output: "x", Root: root,
		Files: []File{{Src: extra, Dest: "/usr/bin/hello"}, {Src: conf, Dest: "/etc/x.conf"}}}
	tmp := t.TempDir()
	st, err := o.stage(tmp, k)
	if err != nil {
		t.Fatalf("stage() = %v", err)
	}

	mod := func(rel string) string { return ModulePath(k.Release, rel) }
	wantMods := []string{
		mod("kernel/drivers/virtio/virtio_ring.ko"),
		mod("kernel/drivers/virtio/virtio.ko"),
		mod("kernel/drivers/block/virtio_blk.ko"),
		mod("kernel/drivers/md/dm-mod.ko"),
		mod("kernel/drivers/md/dm-bufio.ko"),
		mod("kernel/drivers/md/dm-verity.ko"),
	}
	if diff := cmp.Diff(wantMods, st.modules); diff != "" {
		t.Errorf("staged modules (-want +got):\n%s", diff)
	}

	boardJSON, err := os.ReadFile(filepath.Join(testBoardDir, board.File))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		content string
		mode    os.FileMode
	}{
		BoardPath:        {string(boardJSON), 0o644},
		ModulesOrderPath: {strings.Join(wantMods, "\n") + "\n", 0o644},
		"/usr/bin/hello": {"#!/bin/sh\n", 0o755},
		"/etc/x.conf":    {"x=1\n", 0o644},
		RootPath:         {string(rootJSON), 0o644},
	}
	for _, m := range wantMods {
		want[m] = struct {
			content string
			mode    os.FileMode
		}{"module " + kmod.Name(m), 0o644}
	}
	got := map[string]bool{}
	for _, f := range st.files {
		got[f.dest] = true
		w, ok := want[f.dest]
		if !ok {
			t.Errorf("staged %s, want no such file", f.dest)
			continue
		}
		b, err := os.ReadFile(f.src)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != w.content {
			t.Errorf("staged %s = %q, want %q", f.dest, b, w.content)
		}
		fi, err := os.Stat(f.src)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != w.mode {
			t.Errorf("staged %s mode %v, want %v", f.dest, fi.Mode().Perm(), w.mode)
		}
	}
	for dest := range want {
		if !got[dest] {
			t.Errorf("staged files lack %s", dest)
		}
	}

	args := o.urootArgs("/work", "/out.cpio", st.files)
	joined := strings.Join(args, " ")
	for _, want := range []string{
		"-uinitcmd=/bbin/uinit", "-defaultsh=gosh", "-skip-ldd",
		"-files " + filepath.Join(tmp, "stage", "etc", "lifeboat", "board.json") + ":etc/lifeboat/board.json",
		"./uinit ./cmds/lifeboat github.com/u-root/u-root/cmds/core/init github.com/u-root/u-root/cmds/core/gosh",
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("urootArgs() = %q, want %q in it", args, want)
		}
	}

	o.Root = ""
	st, err = o.stage(t.TempDir(), k)
	if err != nil {
		t.Fatalf("stage() without a root = %v", err)
	}
	for _, f := range st.files {
		if f.dest == RootPath {
			t.Errorf("staged %s without Options.Root", RootPath)
		}
	}
}

func TestStageRefuses(t *testing.T) {
	k := fakeKernel(t)
	garbage := filepath.Join(t.TempDir(), "root.json")
	if err := os.WriteFile(garbage, []byte(`{"signed":{"_type":"root"},"signatures":[]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tests := []struct {
		name   string
		change func(*Options)
		want   string
	}{
		{"unknown module", func(o *Options) { o.Board.Modules = []string{"virtio_blk", "nosuch"} }, "nosuch"},
		{"unsigned root", func(o *Options) { o.Root = garbage }, "root of trust"},
		{"missing root", func(o *Options) { o.Root = filepath.Join(dir, "nosuch.json") }, "root of trust"},
		{"missing file", func(o *Options) { o.Files = []File{{Src: filepath.Join(dir, "nosuch"), Dest: "/x"}} }, "nosuch"},
		{"directory as file", func(o *Options) { o.Files = []File{{Src: dir, Dest: "/x"}} }, "not a regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := Options{Board: loadBoard(t), Output: "x"}
			o.Board.Modules = []string{"virtio_blk"}
			tt.change(&o)
			if _, err := o.stage(t.TempDir(), k); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("stage() = %v, want an error with %q", err, tt.want)
			}
		})
	}
}

func TestMeasure(t *testing.T) {
	archive := filepath.Join(t.TempDir(), "a.cpio")
	f, err := os.Create(archive)
	if err != nil {
		t.Fatal(err)
	}
	w := cpio.NewWriter(f)
	bb := bytes.Repeat([]byte("busybox "), 1000)
	steps := []error{
		w.WriteDir("bbin", 0o755),
		w.WriteFile("bbin/bb", 0o755, bb),
		w.WriteSymlink("bbin/ls", "bb"),
		w.WriteSymlink("init", "bbin/init"),
		w.WriteDir("lib/modules/6.1/kernel", 0o755),
		w.WriteFile("lib/modules/6.1/kernel/a.ko", 0o644, make([]byte, 300)),
		w.WriteFile("lib/modules/6.1/kernel/b.ko", 0o644, make([]byte, 201)),
		w.WriteFile("etc/lifeboat/board.json", 0o644, []byte("{}\n")),
		w.Close(),
		f.Close(),
	}
	if err := errors.Join(steps...); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(archive)
	if err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(t.TempDir(), "other")
	var res Result
	if err := measure(archive, &res, other); err != nil {
		t.Fatalf("measure() = %v", err)
	}
	want := Result{
		Size:    fi.Size(),
		Busybox: Part{Files: 1, Size: int64(len(bb))},
		Modules: Part{Files: 2, Size: 501},
		Other:   Part{Files: 5, Size: fi.Size() - int64(len(bb)) - 501},
	}
	if diff := cmp.Diff(want, res); diff != "" {
		t.Errorf("measure() (-want +got):\n%s", diff)
	}
	b, err := os.ReadFile(other)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), "bb"+"bbin/init"+"{}\n"; got != want {
		t.Errorf("other data = %q, want %q", got, want)
	}

	// No busybox: u-root did not build what we measure.
	noBB := filepath.Join(t.TempDir(), "nobb.cpio")
	var buf bytes.Buffer
	w = cpio.NewWriter(&buf)
	if err := errors.Join(w.WriteFile("init", 0o755, []byte("x")), w.Close()); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(noBB, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := measure(noBB, &res, other); err == nil || !strings.Contains(err.Error(), BusyboxPath) {
		t.Errorf("measure(no busybox) = %v, want an error naming %s", err, BusyboxPath)
	}
}

func TestCompressFile(t *testing.T) {
	testtool.Require(t, "xz")
	xz, _ := exec.LookPath("xz")
	dir := t.TempDir()
	in := filepath.Join(dir, "in")
	data := bytes.Repeat([]byte("lifeboat ramdisk "), 10000)
	if err := os.WriteFile(in, data, 0o644); err != nil {
		t.Fatal(err)
	}
	n, err := compressFile(t.Context(), xz, in, filepath.Join(dir, "out.xz"))
	if err != nil {
		t.Fatalf("compressFile() = %v", err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "out.xz"))
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(b)) != n {
		t.Errorf("compressFile() = %d, want the file's size %d", n, len(b))
	}
	if err := checkXZ(b); err != nil {
		t.Error(err)
	}
	out, err := exec.Command(xz, "-dc", filepath.Join(dir, "out.xz")).Output()
	if err != nil || !bytes.Equal(out, data) {
		t.Errorf("xz -dc of compressFile's output = %d bytes, %v; want the input back", len(out), err)
	}
	again, err := compressFile(t.Context(), xz, in, filepath.Join(dir, "again.xz"))
	b2, _ := os.ReadFile(filepath.Join(dir, "again.xz"))
	if err != nil || again != n || !bytes.Equal(b, b2) {
		t.Errorf("compressFile() twice gave different bytes (%d, %d, %v)", n, again, err)
	}

	if _, err := compressFile(t.Context(), xz, filepath.Join(dir, "nosuch"), filepath.Join(dir, "x.xz")); err == nil {
		t.Error("compressFile(missing input) = nil, want an error")
	}
}

// checkXZ checks that b is one xz stream with CRC32 checks, which the
// kernel's initramfs decompressor reads.
func checkXZ(b []byte) error {
	if len(b) < 12 || string(b[:6]) != "\xfd7zXZ\x00" {
		return errors.New("not an xz stream")
	}
	if b[6] != 0 || b[7] != 1 { // stream flags: check type 1 is CRC32
		return errors.New("xz stream flags are not CRC32")
	}
	return nil
}

func TestWriteReport(t *testing.T) {
	r := &Result{
		Board: "qemu-x86_64", Output: "out/qemu-x86_64/ramdisk.cpio.xz",
		Kernel: "linux-image-6.1.0-56-amd64 6.1.192-2", Release: "6.1.0-56-amd64",
		ModuleFiles: make([]string, 39),
		Size:        18305928, Compressed: 4369048, Budget: 6 << 20,
		Busybox: Part{1, 11194494, 3202000},
		Modules: Part{39, 7090231, 1166048},
		Other:   Part{76, 21203, 1000},
	}
	var b bytes.Buffer
	if err := r.WriteReport(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"out/qemu-x86_64/ramdisk.cpio.xz: ramdisk for qemu-x86_64, kernel 6.1.0-56-amd64",
		"39 module files",
		"  busybox       1     10.68     3.05    73%",
		"  modules      39      6.76     1.11    27%",
		"  total               17.46     4.17  of a 6.00 MiB budget: 1.83 MiB left (4369048 of 6291456 bytes)",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("WriteReport() =\n%s\nwant a line with %q", b.String(), want)
		}
	}

	r.Budget = 4 << 20
	b.Reset()
	if err := r.WriteReport(&b); err != nil {
		t.Fatal(err)
	}
	if want := "of a 4.00 MiB budget: 0.17 MiB OVER (4369048 of 4194304 bytes)"; !strings.Contains(b.String(), want) {
		t.Errorf("WriteReport(over budget) =\n%s\nwant a line with %q", b.String(), want)
	}
}
