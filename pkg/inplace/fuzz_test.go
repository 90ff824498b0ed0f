package inplace

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/lifeboat-update/lifeboat/pkg/chunk"
)

var update = flag.Bool("update", false, "rewrite testdata/journal (the format is Lifeboat's own: no peer writes it)")

// FuzzParseJournal: untrusted bytes never panic, and what parses encodes
// back to the same bytes.
func FuzzParseJournal(f *testing.F) {
	good, err := os.ReadFile(filepath.Join("testdata", "journal"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)-1])
	f.Add([]byte{})
	f.Add([]byte(journalMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseJournal(b)
		if err != nil {
			if !errors.Is(err, ErrBadJournal) {
				t.Fatalf("ParseJournal = %v, want ErrBadJournal", err)
			}
			return
		}
		out, err := s.MarshalBinary()
		if err != nil || !bytes.Equal(out, b) {
			t.Fatalf("ParseJournal(%x) = %+v, encodes to %x, %v", b, s, out, err)
		}
	})
}

// TestJournalGolden pins the format; go test -run Golden -update rewrites
// testdata/journal.
func TestJournalGolden(t *testing.T) {
	s := JournalState{Plan: [32]byte{0: 0xaa, 31: 0x55}, Done: 7, Ops: 42}
	b, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "journal")
	if *update {
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, want) {
		t.Errorf("MarshalBinary(%+v) = %x, want %x", s, b, want)
	}
	got, err := ParseJournal(want)
	if err != nil || got != s {
		t.Errorf("ParseJournal(golden) = %+v, %v, want %+v", got, err, s)
	}
}

// fuzzIndexes makes two releases from b: each byte is a chunk, its low
// nibble picks one of 16 contents (0 is zeros of the maximum size), the
// next bit which release it goes to.
func fuzzIndexes(b []byte) (old, new *chunk.Index, oldImg, newImg []byte, content map[chunk.ID][]byte) {
	content = make(map[chunk.ID][]byte)
	sym := func(s byte) chunk.ID {
		var c []byte
		if s == 0 {
			c = make([]byte, testParams.Max)
		} else {
			c = bytes.Repeat([]byte{s, s ^ 0x5a, 0x80 | s}, int(s)*7)
		}
		id := chunk.SHA256.Sum(c)
		content[id] = c
		return id
	}
	old, new = chunk.NewIndex(testParams, chunk.SHA256), chunk.NewIndex(testParams, chunk.SHA256)
	for _, v := range b {
		x, img := old, &oldImg
		if v&0x10 != 0 {
			x, img = new, &newImg
		}
		id := sym(v & 0x0f)
		c := content[id]
		x.Chunks = append(x.Chunks, chunk.Entry{Start: uint64(len(*img)), Size: uint64(len(c)), ID: id})
		*img = append(*img, c...)
	}
	return
}

// FuzzPlan plans random pairs of releases and runs each plan strictly.
func FuzzPlan(f *testing.F) {
	f.Add([]byte{1, 2, 3, 0x12, 0x11, 0x13}, int64(0))
	f.Add([]byte{1, 2, 3, 4, 0x14, 0x13, 0x12, 0x11, 0x10}, int64(200))
	f.Add([]byte{5, 5, 6, 0x16, 0x15, 0x15, 0x10, 0x17}, int64(1000))
	f.Fuzz(func(t *testing.T, b []byte, budget int64) {
		if len(b) > 400 {
			return
		}
		budget = max(budget, 0) % 4096
		old, new, oldImg, newImg, content := fuzzIndexes(b)
		p, err := NewPlan(old, new, PlanOptions{RAMBudget: budget, CommitBytes: 1 + budget})
		if err != nil {
			t.Fatalf("NewPlan = %v", err)
		}
		if err := simulate(p, old, new, oldImg, newImg, func(id chunk.ID) []byte { return content[id] }, budget); err != nil {
			t.Fatal(err)
		}
	})
}
