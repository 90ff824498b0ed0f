package chunk

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzReadIndex feeds the index parser arbitrary bytes. A parse either fails
// with ErrBadIndex or yields an index that writes back to the same bytes.
func FuzzReadIndex(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.caibx")
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		x, err := ReadIndex(bytes.NewReader(b))
		if err != nil {
			if !errors.Is(err, ErrBadIndex) {
				t.Fatalf("ReadIndex error %v does not wrap ErrBadIndex", err)
			}
			return
		}
		var out bytes.Buffer
		if _, err := x.WriteTo(&out); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), b) {
			t.Fatalf("ReadIndex accepted bytes that do not write back the same")
		}
	})
}

// FuzzDecode feeds the chunk decoder arbitrary bytes: it must never return
// more than the size limit, nor content that does not match the ID.
func FuzzDecode(f *testing.F) {
	content := []byte("hello, chunk")
	id := SHA512256.Sum(content)
	f.Add(Compress(nil, content))
	f.Add(Compress(nil, make([]byte, 5000)))
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := Decode(nil, SHA512256, id, b, 4096)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Decode error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		if len(out) > 4096 || !bytes.Equal(out, content) {
			t.Fatalf("Decode returned %d bytes that do not match the ID", len(out))
		}
	})
}

func TestReadIndexRejects(t *testing.T) {
	good, err := os.ReadFile("testdata/default.caibx")
	if err != nil {
		t.Fatal(err)
	}
	mut := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"truncated header", good[:30]},
		{"truncated table", good[:len(good)-50]},
		{"truncated tail", good[:len(good)-1]},
		{"trailing byte", append(bytes.Clone(good), 0)},
		{"wrong magic", mut(func(b []byte) []byte { b[8] ^= 1; return b })},
		{"min above avg", mut(func(b []byte) []byte { b[26] = 0xff; return b })},
		{"offsets not increasing", mut(func(b []byte) []byte { copy(b[64+40:], b[64:72]); return b })},
		{"bad tail marker", mut(func(b []byte) []byte { b[len(b)-1] ^= 1; return b })},
		{"bad tail size", mut(func(b []byte) []byte { b[len(b)-16] ^= 1; return b })},
	} {
		if _, err := ReadIndex(bytes.NewReader(tc.b)); !errors.Is(err, ErrBadIndex) {
			t.Errorf("ReadIndex(%s) = %v, want ErrBadIndex", tc.name, err)
		}
	}
}
