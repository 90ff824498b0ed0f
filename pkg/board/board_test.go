package board

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/lifeboat-update/lifeboat/pkg/blockdev"
	"github.com/lifeboat-update/lifeboat/pkg/bootenv"
	"github.com/lifeboat-update/lifeboat/pkg/bootenv/uboot"
)

// boardsDir is the repository's boards/ directory.
var boardsDir = filepath.Join("..", "..", "boards")

// TestBoards loads every board in boards/ and plans each layout on a
// disk of its size: what the disk builder and the ramdisk will do.
func TestBoards(t *testing.T) {
	dirs, err := os.ReadDir(boardsDir)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, d := range dirs {
		if !d.IsDir() {
			continue
		}
		n++
		b, err := Load(filepath.Join(boardsDir, d.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if b.Name != d.Name() {
			t.Errorf("%s: name %q, want the directory's name", d.Name(), b.Name)
		}
		for name, l := range b.Layouts {
			g, err := l.GPT()
			if err != nil {
				t.Fatalf("%s/%s: %v", b.Name, name, err)
			}
			size, _ := ParseSize(l.DiskSize)
			tab, err := g.Plan(size)
			if err != nil {
				t.Fatalf("%s/%s: %v", b.Name, name, err)
			}
			if len(tab.Partitions) != len(l.Partitions) {
				t.Errorf("%s/%s: %d partitions planned, want %d", b.Name, name, len(tab.Partitions), len(l.Partitions))
			}
		}
	}
	if n == 0 {
		t.Fatal("no boards")
	}
}

func TestLayoutQueries(t *testing.T) {
	b, err := Load(filepath.Join(boardsDir, "qemu-x86_64"))
	if err != nil {
		t.Fatal(err)
	}
	ab, err := b.Layout("ab")
	if err != nil {
		t.Fatal(err)
	}
	if got := ab.SlotNames(); strings.Join(got, " ") != "A B" {
		t.Errorf("SlotNames = %v, want [A B]", got)
	}
	if got := ab.Classes(); strings.Join(got, " ") != "rootfs" {
		t.Errorf("Classes = %v, want [rootfs]", got)
	}
	if p, ok := ab.Role(RoleData); !ok || p.Label != "data" {
		t.Errorf("Role(data) = %+v, %v", p, ok)
	}
	if _, err := b.Layout("nope"); err == nil || !strings.Contains(err.Error(), "ab, ab-crypt, small") {
		t.Errorf("Layout(nope) = %v, want an error listing the layouts", err)
	}
	g, err := ab.GPT()
	if err != nil {
		t.Fatal(err)
	}
	if g.Partitions[0].Type != blockdev.TypeEFISystem || g.Partitions[3].Size != blockdev.Rest {
		t.Errorf("GPT = %+v", g.Partitions)
	}
}

func TestParseRejects(t *testing.T) {
	good, err := os.ReadFile(filepath.Join(boardsDir, "qemu-x86_64", File))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, old, new, want string
	}{
		{"unknown field", `"console"`, `"consol"`, "unknown field"},
		{"arch", `"arch": "amd64"`, `"arch": "mips"`, "arch"},
		{"kernel sha", `"sha256": "a86e`, `"sha256": "A86e`, "sha256"},
		{"backend", `"backend": "grub"`, `"backend": "lilo"`, "backend"},
		{"env partition", `"env_partition": "esp"`, `"env_partition": "boot"`, "env_partition"},
		{"size", `"size": "64M"`, `"size": "64Q"`, "size"},
		{"role", `"role": "data"`, `"role": "swap"`, "role"},
		{"slot twice", `"slot": "B"`, `"slot": "A"`, "given twice"},
		{"label twice", `"label": "rootfs-b"`, `"label": "rootfs-a"`, "unique label"},
		{"too big", `"disk_size": "320M"`, `"disk_size": "200M"`, "does not fit"},
		{"two rest", `"size": "96M"}`, `"size": "rest"}`, "Rest"},
		{"disk path", `"disk": "vda"`, `"disk": "/dev/vda"`, "disk \"/dev/vda\""},
		{"reset trigger kind", `"console-key:r"`, `"gpio:17"`, "reset_trigger"},
		{"reset trigger key", `"console-key:r"`, `"console-key:R"`, "reset_trigger"},
		{"reset trigger two keys", `"console-key:r"`, `"console-key:rr"`, "reset_trigger"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := strings.Replace(string(good), tc.old, tc.new, 1)
			if b == string(good) {
				t.Fatalf("%q not in the board", tc.old)
			}
			_, err := Parse([]byte(b))
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Parse = %v, want ErrInvalid mentioning %q", err, tc.want)
			}
		})
	}
}

func TestParseSize(t *testing.T) {
	for s, want := range map[string]int64{"512": 512, "64K": 64 << 10, "96M": 96 << 20, "2G": 2 << 30} {
		if got, err := ParseSize(s); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v, want %d", s, got, err, want)
		}
	}
	for _, s := range []string{"", "M", "-1M", "0", "1T", "1.5G", "99999999999G"} {
		if _, err := ParseSize(s); err == nil {
			t.Errorf("ParseSize(%q) succeeded", s)
		}
	}
}

// TestUBootRejects checks the fw_env rules of a U-Boot board, on
// qemu-arm64's definition.
func TestUBootRejects(t *testing.T) {
	good, err := os.ReadFile(filepath.Join(boardsDir, "qemu-arm64", File))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, old, new, want string
	}{
		{"no fw_env", `"fw_env": ["lifeboat.env 0x0 0x4000"]`, `"fw_env": []`, "want fw_env"},
		{"bad line", `"lifeboat.env 0x0 0x4000"`, `"lifeboat.env 0x0"`, "fw_env"},
		{"single copy not allowed", `"single_copy": true`, `"single_copy": false`, "single_copy"},
		{"absolute device in a partition", `"lifeboat.env 0x0`, `"/dev/mtd1 0x0`, "relative path"},
		{"device outside the partition", `"lifeboat.env 0x0`, `"../lifeboat.env 0x0`, "relative path"},
		{"relative device without a partition", `"env_partition": "boot",`, ``, "absolute path"},
		{"env partition not in the layout", `"env_partition": "boot"`, `"env_partition": "esp"`, "env_partition"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := strings.Replace(string(good), tc.old, tc.new, 1)
			if b == string(good) {
				t.Fatalf("%q not in the board", tc.old)
			}
			_, err := Parse([]byte(b))
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Parse = %v, want ErrInvalid mentioning %q", err, tc.want)
			}
		})
	}
}

// TestUBootOpenEnv opens qemu-arm64's environment, a file in its boot
// partition, under the directory the partition is mounted on, and saves
// and loads it there.
func TestUBootOpenEnv(t *testing.T) {
	b, err := Load(filepath.Join(boardsDir, "qemu-arm64"))
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	cfg, err := b.Bootloader.UBootConfig(root)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.Copies[0].Device, filepath.Join(root, "lifeboat.env"); got != want {
		t.Errorf("UBootConfig(%q) device = %q, want %q", root, got, want)
	}
	img, err := uboot.Image{Vars: bootenv.Vars{"BOOT_ORDER": "A B recovery"}}.Encode(cfg.Copies[0].Size)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg.Copies[0].Device, img, 0o644); err != nil {
		t.Fatal(err)
	}
	env, c, err := b.OpenEnv(root)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	want := bootenv.Vars{"BOOT_ORDER": "B A recovery", "BOOT_B_LEFT": "3"}
	if err := env.Save(t.Context(), want); err != nil {
		t.Fatalf("Save = %v (a single copy the board allows)", err)
	}
	got, err := env.Load(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Load after Save (-want +got):\n%s", diff)
	}
}

func TestResetKey(t *testing.T) {
	for _, tc := range []struct{ trigger, key string }{
		{"", ""},
		{"console-key:r", "r"},
		{"console-key:7", "7"},
		{"console-key:ctrl-c", "ctrl-c"},
	} {
		b := &Board{ResetTrigger: tc.trigger}
		if got := b.ResetKey(); got != tc.key {
			t.Errorf("ResetKey() of %q = %q, want %q", tc.trigger, got, tc.key)
		}
	}
}
