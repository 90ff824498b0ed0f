package dmcrypt

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/lifeboat-update/lifeboat/pkg/dm"
)

func TestTable(t *testing.T) {
	key := VolumeKey{0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef}
	tests := []struct {
		name    string
		seg     Segment
		devSize int64
		opts    []Option
		want    dm.Target
	}{
		{
			name:    "dynamic 512",
			seg:     Segment{Type: "crypt", Offset: 16 << 20, Dynamic: true, Encryption: "aes-xts-plain64", SectorSize: 512},
			devSize: 32<<20 + 512,
			want:    dm.Target{Length: 32769, Type: "crypt", Params: "aes-xts-plain64 0123456789abcdef 0 /dev/vda 32768"},
		},
		{
			name:    "dynamic 4096 rounds down",
			seg:     Segment{Type: "crypt", Offset: 16 << 20, Dynamic: true, Encryption: "aes-xts-plain64", SectorSize: 4096},
			devSize: 32<<20 + 512,
			want:    dm.Target{Length: 32768, Type: "crypt", Params: "aes-xts-plain64 0123456789abcdef 0 /dev/vda 32768 1 sector_size:4096"},
		},
		{
			name:    "fixed size with iv tweak",
			seg:     Segment{Type: "crypt", Offset: 1 << 20, Size: 1 << 20, IVTweak: 8, Encryption: "aes-cbc-essiv:sha256", SectorSize: 512},
			devSize: 4 << 20,
			want:    dm.Target{Length: 2048, Type: "crypt", Params: "aes-cbc-essiv:sha256 0123456789abcdef 8 /dev/vda 2048"},
		},
		{
			name:    "raw, discards",
			seg:     Segment{Dynamic: true, Encryption: "aes-xts-plain64", SectorSize: 2048},
			devSize: 1 << 20,
			opts:    []Option{WithAllowDiscards(), WithAllowDiscards()},
			want:    dm.Target{Length: 2048, Type: "crypt", Params: "aes-xts-plain64 0123456789abcdef 0 /dev/vda 0 2 allow_discards sector_size:2048"},
		},
		{
			name:    "sector size 0 is 512",
			seg:     Segment{Dynamic: true, Encryption: "twofish-xts-plain64"},
			devSize: 1 << 20,
			want:    dm.Target{Length: 2048, Type: "crypt", Params: "twofish-xts-plain64 0123456789abcdef 0 /dev/vda 0"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Table(tt.seg, key, "/dev/vda", tt.devSize, tt.opts...)
			if err != nil {
				t.Fatalf("Table(%+v) = %v", tt.seg, err)
			}
			if got != tt.want {
				t.Errorf("Table(%+v) = %v, want %v", tt.seg, got, tt.want)
			}
		})
	}
}

func TestTableErrors(t *testing.T) {
	key := VolumeKey{1, 2, 3, 4}
	ok := Segment{Type: "crypt", Offset: 4096, Dynamic: true, Encryption: "aes-xts-plain64", SectorSize: 512}
	tests := []struct {
		name    string
		change  func(s *Segment)
		devSize int64
		device  string
		key     VolumeKey
		want    string
	}{
		{"past device", func(s *Segment) { s.Offset = 1 << 20 }, 4096, "/dev/vda", key, "past the device"},
		{"fixed past device", func(s *Segment) { s.Dynamic, s.Size = false, 1<<20 }, 1 << 20, "/dev/vda", key, "runs past"},
		{"no data", func(s *Segment) {}, 4096, "/dev/vda", key, "holds no data"},
		{"space in cipher", func(s *Segment) { s.Encryption = "aes-xts-plain64 1" }, 1 << 20, "/dev/vda", key, "bad cipher"},
		{"no cipher", func(s *Segment) { s.Encryption = "" }, 1 << 20, "/dev/vda", key, "bad cipher"},
		{"space in device", func(s *Segment) {}, 1 << 20, "/dev/v da", key, "bad device"},
		{"no key", func(s *Segment) {}, 1 << 20, "/dev/vda", nil, "empty key"},
		{"integrity", func(s *Segment) { s.Integrity = true }, 1 << 20, "/dev/vda", key, "authenticated"},
		{"linear", func(s *Segment) { s.Type = "linear" }, 1 << 20, "/dev/vda", key, "segment type"},
		{"sector size", func(s *Segment) { s.SectorSize = 1000 }, 1 << 20, "/dev/vda", key, "sector size 1000"},
		{"unaligned", func(s *Segment) { s.Offset = 1000 }, 1 << 20, "/dev/vda", key, "not in sectors"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seg := ok
			tt.change(&seg)
			got, err := Table(seg, tt.key, tt.device, tt.devSize)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Table(%+v) = %v, %v, want an error saying %q", seg, got, err, tt.want)
			}
		})
	}
}

func TestOpen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	tc := goldenCases[0]
	img, g := writeGoldenImage(t, dir, tc.name)
	size := int64(tc.size)
	fake := dm.NewFake(filepath.Join(dir, "mapper"))
	if err := os.Mkdir(fake.Dir, 0o755); err != nil {
		t.Fatal(err)
	}

	path, err := Open(ctx, fake, "data", img, []byte(tc.pass2), WithReadOnly())
	if err != nil {
		t.Fatalf("Open(%s) = %v", img, err)
	}
	if want := filepath.Join(fake.Dir, "data"); path != want {
		t.Errorf("Open() = %q, want %q", path, want)
	}
	table, err := fake.Table(ctx, "data")
	if err != nil {
		t.Fatal(err)
	}
	want := []dm.Target{{Length: uint64(size-288<<10) / 512, Type: "crypt",
		Params: "aes-xts-plain64 " + g.VolumeKey + " 0 " + img + " 576"}}
	if !cmp.Equal(table, want) {
		t.Errorf("Open() loaded %v, want %v", table, want)
	}
	info, err := fake.Info(ctx, "data")
	if err != nil {
		t.Fatal(err)
	}
	if wantUUID := "CRYPT-LUKS2-" + strings.ReplaceAll(goldenUUID, "-", "") + "-data"; info.UUID != wantUUID || !info.ReadOnly {
		t.Errorf("Open() made UUID %q read-only %v, want %q read-only", info.UUID, info.ReadOnly, wantUUID)
	}
	if _, err := Open(ctx, fake, "data", img, []byte(tc.pass)); !errors.Is(err, dm.ErrExists) {
		t.Errorf("Open(existing name) = %v, want dm.ErrExists", err)
	}
	if err := Close(ctx, fake, "data"); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if err := Close(ctx, fake, "data"); !errors.Is(err, dm.ErrNoDevice) {
		t.Errorf("Close(closed) = %v, want dm.ErrNoDevice", err)
	}

	if _, err := Open(ctx, fake, "data", img, []byte("wrong")); !errors.Is(err, ErrWrongPassphrase) {
		t.Errorf("Open(wrong passphrase) = %v, want ErrWrongPassphrase", err)
	}
	if l, err := fake.List(ctx); err != nil || len(l) != 0 {
		t.Errorf("after a wrong passphrase List() = %v, %v, want no devices", l, err)
	}
	if _, err := Open(ctx, fake, "data", filepath.Join(dir, "missing"), []byte(tc.pass)); err == nil {
		t.Errorf("Open(missing device) = nil, want an error")
	}
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, fake, "data", plain, []byte(tc.pass)); !errors.Is(err, ErrNotLUKS) {
		t.Errorf("Open(zeros) = %v, want ErrNotLUKS", err)
	}
}

func TestOpenPersistentFlags(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	golden, g := readGolden(t, "argon2id-xts512-4k")
	img := editJSON(t, golden, func(m map[string]any) {
		obj(m, "config")["flags"] = []any{"allow-discards", "no-read-workqueue", "some-future-flag"}
	})
	p := filepath.Join(dir, "img")
	if err := os.WriteFile(p, img, 0o600); err != nil {
		t.Fatal(err)
	}
	fake := dm.NewFake("")
	if _, err := Open(ctx, fake, "c", p, []byte(goldenCases[1].pass), WithAllowDiscards()); err != nil {
		t.Fatalf("Open() = %v", err)
	}
	table, err := fake.Table(ctx, "c")
	if err != nil {
		t.Fatal(err)
	}
	want := "aes-xts-plain64 " + g.VolumeKey + " 0 " + p + " 576 3 allow_discards no_read_workqueue sector_size:4096"
	if len(table) != 1 || table[0].Params != want || table[0].Length != 64<<10/512 {
		t.Errorf("Open() loaded %v, want 0 128 crypt %s", table, want)
	}
}

func TestOpenRaw(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	p := filepath.Join(dir, "raw")
	if err := os.WriteFile(p, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	fake := dm.NewFake("")
	key := bytes.Repeat([]byte{0xab}, 32)
	seg := Segment{Encryption: "aes-cbc-essiv:sha256", Offset: 4096, Dynamic: true}
	path, err := OpenRaw(ctx, fake, "raw", p, seg, key)
	if err != nil {
		t.Fatalf("OpenRaw() = %v", err)
	}
	if path != "/dev/mapper/raw" {
		t.Errorf("OpenRaw() = %q, want /dev/mapper/raw", path)
	}
	table, _ := fake.Table(ctx, "raw")
	want := []dm.Target{{Length: (1<<20 - 4096) / 512, Type: "crypt", Params: "aes-cbc-essiv:sha256 " + strings.Repeat("ab", 32) + " 0 " + p + " 8"}}
	if !cmp.Equal(table, want) {
		t.Errorf("OpenRaw() loaded %v, want %v", table, want)
	}
	info, _ := fake.Info(ctx, "raw")
	if info.UUID != "CRYPT-PLAIN-raw" || info.ReadOnly {
		t.Errorf("OpenRaw() made UUID %q read-only %v, want CRYPT-PLAIN-raw read-write", info.UUID, info.ReadOnly)
	}
	seg.Offset = 2 << 20
	if _, err := OpenRaw(ctx, fake, "raw2", p, seg, key); err == nil || !strings.Contains(err.Error(), "past the device") {
		t.Errorf("OpenRaw(offset past the end) = %v, want an error saying past the device", err)
	}
}
