package device_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/lifeboat-update/lifeboat/internal/testtool"
	"github.com/lifeboat-update/lifeboat/pkg/board"
	"github.com/lifeboat-update/lifeboat/pkg/chunk"
	"github.com/lifeboat-update/lifeboat/pkg/durable"
	"github.com/lifeboat-update/lifeboat/pkg/factory"
	"github.com/lifeboat-update/lifeboat/pkg/release"
	"github.com/lifeboat-update/lifeboat/qemu"
	"github.com/lifeboat-update/lifeboat/qemu/device"
	"github.com/lifeboat-update/lifeboat/qemu/device/devicetest"
)

// factorySpec is a Factory of a made-up image of size bytes, with its
// index, for board b.
func factorySpec(t *testing.T, b *board.Board, size int) *device.Factory {
	t.Helper()
	dir := t.TempDir()
	img := bytes.Repeat([]byte("factory "), size/8)
	h := sha256.Sum256(img)
	idx := chunk.Index{Params: chunk.DefaultParams, Digest: chunk.SHA512256}
	for off := 0; off < len(img); off += 64 << 10 {
		c := img[off:min(off+64<<10, len(img))]
		idx.Chunks = append(idx.Chunks, chunk.Entry{Start: uint64(off), Size: uint64(len(c)), ID: chunk.SHA512256.Sum(c)})
	}
	var buf bytes.Buffer
	if _, err := idx.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	return &device.Factory{
		Record: factory.Record{Board: b.Name, Version: "1",
			Image: release.Image{Class: "rootfs", Size: int64(len(img)), SHA256: hex.EncodeToString(h[:])}},
		Image: writeFile(t, dir, "factory.img", img),
		Index: writeFile(t, dir, "rootfs.caibx", buf.Bytes()),
	}
}

func TestSpecValidateFactory(t *testing.T) {
	b := testBoard(t)
	dir := t.TempDir()
	kernel := writeFile(t, dir, "vmlinuz", []byte("kernel"))
	ramdisk := writeFile(t, dir, "ramdisk.img", []byte("ramdisk"))
	for _, tt := range []struct {
		name   string
		layout string
		change func(*device.Factory)
		want   string // in the error; "" for none
	}{
		{"valid", "small", func(*device.Factory) {}, ""},
		{"no factory partition", "ab", func(*device.Factory) {}, "layout ab has no factory partition"},
		{"no version", "small", func(f *device.Factory) { f.Record.Version = "" }, "no version"},
		{"other board", "small", func(f *device.Factory) { f.Record.Board = "qemu-arm64" }, `factory record for board "qemu-arm64"`},
		{"size", "small", func(f *device.Factory) { f.Record.Image.Size++ }, "the record says"},
		{"missing index", "small", func(f *device.Factory) { f.Index = filepath.Join(dir, "nope") }, "factory index"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fc := factorySpec(t, b, 4096)
			tt.change(fc)
			s := device.Spec{Board: b, Layout: tt.layout, Out: filepath.Join(dir, "disk.img"), Kernel: kernel, Ramdisk: ramdisk, Factory: fc}
			err := s.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Validate() = %v, want an error about %q", err, tt.want)
			case tt.want != "" && !errors.Is(err, device.ErrInvalidSpec):
				t.Errorf("Validate() = %v, want one wrapping ErrInvalidSpec", err)
			}
		})
	}
}

// TestBuildFactory builds each board's small disk with a factory image
// and reads it back: the image at the start of the factory partition,
// and the record and index on the partition holding the bootloader
// environment, which pkg/factory reads as written.
func TestBuildFactory(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"qemu-x86_64", "qemu-arm64"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b, err := board.Load(filepath.Join("..", "..", "boards", name))
			if err != nil {
				t.Fatal(err)
			}
			if b.Bootloader.Backend == "uboot" {
				testtool.Require(t, append(device.Tools()[:4], device.UBootTools()...)...)
				if _, err := os.Stat(qemu.UBootArm64); err != nil {
					devicetest.Unavailable(t, "U-Boot (Debian package u-boot-qemu): %v", err)
				}
			} else {
				devicetest.RequireBuild(t)
			}
			dir := t.TempDir()
			fc := factorySpec(t, b, 3<<20)
			d, err := device.Build(t.Context(), device.Spec{Board: b, Layout: "small", Out: filepath.Join(dir, "disk.img"),
				Kernel: writeFile(t, dir, "kernel", []byte("kernel")), Ramdisk: writeFile(t, dir, "ramdisk.img", []byte("ramdisk")),
				Factory: fc})
			if err != nil {
				t.Fatal(err)
			}
			img, err := os.ReadFile(d.Path)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := os.ReadFile(fc.Image)
			off, size, err := d.Partition("factory")
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(img[off:off+int64(len(want))], want) {
				t.Error("the factory partition does not start with the factory image")
			}
			if rest := img[off+int64(len(want)) : off+size]; len(bytes.Trim(rest, "\x00")) != 0 {
				t.Error("the factory partition holds more than the factory image")
			}
			envOff, _, err := d.Partition(b.Bootloader.EnvPartition)
			if err != nil {
				t.Fatal(err)
			}
			got := t.TempDir()
			for _, name := range []string{factory.RecordName, factory.IndexName("rootfs")} {
				p := filepath.Join(got, filepath.FromSlash(name))
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, mcopyOut(t, d.Path, envOff, name), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			rec, idx, err := factory.Read(durable.OS(got))
			if err != nil {
				t.Fatal(err)
			}
			fc.Record.Image.Index = rec.Image.Index // Write fills it in
			if diff := cmp.Diff(fc.Record, *rec); diff != "" {
				t.Errorf("factory record (-want +got):\n%s", diff)
			}
			if idx.Size() != uint64(len(want)) {
				t.Errorf("factory index covers %d bytes, want %d", idx.Size(), len(want))
			}
		})
	}
}
