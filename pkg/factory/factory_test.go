package factory

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/lifeboat-update/lifeboat/pkg/chunk"
	"github.com/lifeboat-update/lifeboat/pkg/durable"
	"github.com/lifeboat-update/lifeboat/pkg/release"
)

func testIndex(t *testing.T) []byte {
	t.Helper()
	x := &chunk.Index{Params: chunk.DefaultParams, Digest: chunk.SHA512256, Chunks: []chunk.Entry{{Start: 0, Size: 1 << 16}}}
	var b bytes.Buffer
	if _, err := x.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func testRecord() Record {
	return Record{Board: "qemu-x86_64", Version: "1", Image: release.Image{
		Class: "rootfs", Size: 1 << 16, SHA256: strings.Repeat("ab", 32),
	}}
}

func TestWriteRead(t *testing.T) {
	fsys := durable.OS(t.TempDir())
	idx := testIndex(t)
	if _, _, err := Read(fsys); !errors.Is(err, ErrNoRecord) {
		t.Fatalf("Read(empty) = %v, want ErrNoRecord", err)
	}
	if err := Write(fsys, testRecord(), idx); err != nil {
		t.Fatal(err)
	}
	r, x, err := Read(fsys)
	if err != nil {
		t.Fatal(err)
	}
	if r.Version != "1" || r.Image.Class != "rootfs" || r.Image.Index.Path != IndexName("rootfs") || r.Image.Index.Length != int64(len(idx)) {
		t.Errorf("Read = %+v", r)
	}
	if len(x.Chunks) != 1 || x.Chunks[0].Size != 1<<16 {
		t.Errorf("index = %+v", x)
	}

	// A changed index no longer matches its record.
	bad := append([]byte{}, idx...)
	bad[len(bad)-1] ^= 1
	if err := durable.WriteFile(fsys, IndexName("rootfs"), bad, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Read(fsys); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("Read(changed index) = %v", err)
	}
}

func TestWriteRefuses(t *testing.T) {
	fsys := durable.OS(t.TempDir())
	for name, f := range map[string]func(r *Record){
		"no version": func(r *Record) { r.Version = "" },
		"bad class":  func(r *Record) { r.Image.Class = "../x" },
		"no size":    func(r *Record) { r.Image.Size = 0 },
		"bad sha":    func(r *Record) { r.Image.SHA256 = "ab" },
	} {
		r := testRecord()
		f(&r)
		if err := Write(fsys, r, testIndex(t)); err == nil {
			t.Errorf("%s: Write = nil", name)
		}
	}
	if err := Write(fsys, testRecord(), []byte("not an index")); err == nil {
		t.Error("Write(bad index) = nil")
	}
}
