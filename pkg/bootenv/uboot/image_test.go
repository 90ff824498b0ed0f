package uboot

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/lifeboat-update/lifeboat/pkg/bootenv"
)

// rawImage returns a copy of size bytes with data at the start of its
// data area, padded with pad, and a good CRC.
func rawImage(data string, size int, redundant bool, flags, pad byte) []byte {
	h := int(headerSize(redundant))
	b := bytes.Repeat([]byte{pad}, size)
	copy(b[h:], data)
	binary.LittleEndian.PutUint32(b, crc32.ChecksumIEEE(b[h:]))
	if redundant {
		b[4] = flags
	}
	return b
}

// TestReadImageImport checks the decoding against U-Boot's himport_r.
func TestReadImageImport(t *testing.T) {
	for _, tc := range []struct {
		name string
		data string
		pad  byte
		want bootenv.Vars
	}{
		{"empty", "\x00", 0, bootenv.Vars{}},
		{"empty 0xff padding", "\x00", 0xff, bootenv.Vars{}},
		{"simple", "a=1\x00b=x y\x00\x00", 0, bootenv.Vars{"a": "1", "b": "x y"}},
		{"0xff padding", "a=1\x00\x00", 0xff, bootenv.Vars{"a": "1"}},
		{"equals in value", "c=k=v\x00\x00", 0, bootenv.Vars{"c": "k=v"}},
		{"empty value deletes", "a=1\x00a=\x00b=2\x00\x00", 0, bootenv.Vars{"b": "2"}},
		{"name alone deletes", "a=1\x00a\x00\x00", 0, bootenv.Vars{}},
		{"later wins", "a=1\x00a=2\x00\x00", 0, bootenv.Vars{"a": "2"}},
		{"leading blanks", " \ta=1\x00\x00", 0, bootenv.Vars{"a": "1"}},
		{"comment", "#a=1\x00b=2\x00\x00", 0, bootenv.Vars{"b": "2"}},
		{"backslash escapes", `p=a\\b\=c\d` + "\x00\x00", 0, bootenv.Vars{"p": `a\b=cd`}},
		{"trailing backslash kept", "p=a\\\x00\x00", 0, bootenv.Vars{"p": `a\`}},
		{"no terminator", "a=1", 'x', bootenv.Vars{"a": "1" + string(bytes.Repeat([]byte{'x'}, 64-4-4))}},
		{"value with newline", "s=a\nb\x00\x00", 0, bootenv.Vars{"s": "a\nb"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, redundant := range []bool{false, true} {
				img := rawImage(tc.data, 64, redundant, 7, tc.pad)
				if tc.name == "no terminator" {
					img = rawImage(tc.data+string(bytes.Repeat([]byte{'x'}, 64)), 64, redundant, 7, 'x')
					tc.want = bootenv.Vars{"a": "1" + string(bytes.Repeat([]byte{'x'}, 64-int(headerSize(redundant))-3))}
				}
				got, err := ReadImage(bytes.NewReader(img), 64, redundant)
				if err != nil {
					t.Fatalf("ReadImage(%q, redundant=%v) = %v", tc.data, redundant, err)
				}
				if diff := cmp.Diff(tc.want, got.Vars); diff != "" {
					t.Errorf("ReadImage(%q, redundant=%v).Vars: (-want +got)\n%s", tc.data, redundant, diff)
				}
				if redundant && got.Flags != 7 {
					t.Errorf("ReadImage(redundant).Flags = %d, want 7", got.Flags)
				}
			}
		})
	}
}

func TestReadImageErrors(t *testing.T) {
	good := rawImage("a=1\x00\x00", 64, true, 1, 0)
	badCRC := append([]byte(nil), good...)
	badCRC[10] ^= 1
	flagsOnly := append([]byte(nil), good...)
	flagsOnly[4] = 99 // the CRC does not cover the flags
	for _, tc := range []struct {
		name    string
		img     []byte
		size    int64
		wantErr error
	}{
		{"bad CRC", badCRC, 64, ErrBadCRC},
		{"empty name", rawImage("=v\x00\x00", 64, true, 1, 0), 64, ErrImport},
		{"short", good[:40], 64, bootenv.ErrCorrupt},
		{"size too small", good, 5, nil},
		{"flags outside the CRC", flagsOnly, 64, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadImage(bytes.NewReader(tc.img), tc.size, true)
			switch {
			case tc.wantErr == nil && tc.name == "size too small":
				if err == nil {
					t.Errorf("ReadImage(size 5) = nil error, want one")
				}
			case tc.wantErr == nil:
				if err != nil {
					t.Errorf("ReadImage() = %v, want no error", err)
				}
			case !errors.Is(err, tc.wantErr) || !errors.Is(err, bootenv.ErrCorrupt):
				t.Errorf("ReadImage() = %v, want %v (and ErrCorrupt)", err, tc.wantErr)
			}
		})
	}
}

func TestEncode(t *testing.T) {
	v := bootenv.Vars{"b": "x y", "a": "1", "c": "k=v", "bs": `a\b`, "empty": ""}
	got, err := Image{Redundant: true, Flags: 5, Vars: v}.Encode(64)
	if err != nil {
		t.Fatal(err)
	}
	want := rawImage("a=1\x00b=x y\x00bs=a\\\\b\x00c=k=v\x00\x00", 64, true, 5, 0)
	if !bytes.Equal(got, want) {
		t.Errorf("Encode() =\n%q\nwant\n%q", got, want)
	}
	back, err := ReadImage(bytes.NewReader(got), 64, true)
	if err != nil {
		t.Fatal(err)
	}
	delete(v, "empty")
	if diff := cmp.Diff(v, back.Vars); diff != "" {
		t.Errorf("ReadImage(Encode()) (-want +got):\n%s", diff)
	}

	for _, tc := range []struct {
		name    string
		vars    bootenv.Vars
		size    int64
		wantErr error
	}{
		{"too large", bootenv.Vars{"a": string(bytes.Repeat([]byte{'x'}, 60))}, 64, ErrTooLarge},
		{"just fits", bootenv.Vars{"a": string(bytes.Repeat([]byte{'x'}, 64-5-4))}, 64, nil},
		{"equals in name", bootenv.Vars{"a=b": "1"}, 64, ErrBadName},
		{"empty name", bootenv.Vars{"": "1"}, 64, ErrBadName},
		{"comment name", bootenv.Vars{"#a": "1"}, 64, ErrBadName},
		{"blank name", bootenv.Vars{" a": "1"}, 64, ErrBadName},
		{"NUL in value", bootenv.Vars{"a": "1\x002"}, 64, ErrBadName},
	} {
		_, err := Image{Redundant: true, Vars: tc.vars}.Encode(tc.size)
		if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
			t.Errorf("%s: Encode() = %v, want %v", tc.name, err, tc.wantErr)
		}
	}
}

// TestSelect checks the choice between two copies against U-Boot's
// env_import_redund (Incremental) and env/flash.c (Boolean).
func TestSelect(t *testing.T) {
	for _, tc := range []struct {
		scheme FlagScheme
		valid  [2]bool
		flags  [2]byte
		want   int
	}{
		{Incremental, [2]bool{false, false}, [2]byte{1, 2}, -1},
		{Incremental, [2]bool{true, false}, [2]byte{1, 2}, 0},
		{Incremental, [2]bool{false, true}, [2]byte{2, 1}, 1},
		{Incremental, [2]bool{true, true}, [2]byte{1, 2}, 1},
		{Incremental, [2]bool{true, true}, [2]byte{2, 1}, 0},
		{Incremental, [2]bool{true, true}, [2]byte{3, 3}, 0},
		{Incremental, [2]bool{true, true}, [2]byte{255, 0}, 1},
		{Incremental, [2]bool{true, true}, [2]byte{0, 255}, 0},
		{Incremental, [2]bool{true, true}, [2]byte{254, 255}, 1},
		{Incremental, [2]bool{true, true}, [2]byte{1, 255}, 1},
		{Boolean, [2]bool{true, true}, [2]byte{1, 0}, 0},
		{Boolean, [2]bool{true, true}, [2]byte{0, 1}, 1},
		{Boolean, [2]bool{true, true}, [2]byte{1, 1}, 0},
		{Boolean, [2]bool{true, true}, [2]byte{0, 0}, 0},
		{Boolean, [2]bool{true, true}, [2]byte{0xff, 0xff}, 0},
		{Boolean, [2]bool{true, true}, [2]byte{0xff, 0}, 0},
		{Boolean, [2]bool{true, true}, [2]byte{0, 0xff}, 1},
		{Boolean, [2]bool{true, true}, [2]byte{1, 0xff}, 1},
		{Boolean, [2]bool{true, true}, [2]byte{0xff, 1}, 0},
		{Boolean, [2]bool{false, true}, [2]byte{1, 0}, 1},
		{Boolean, [2]bool{false, false}, [2]byte{1, 0}, -1},
	} {
		if got := Select(tc.scheme, tc.valid, tc.flags); got != tc.want {
			t.Errorf("Select(%v, %v, %v) = %d, want %d", tc.scheme, tc.valid, tc.flags, got, tc.want)
		}
	}
	// Every next flags value beats the current one.
	for _, s := range []FlagScheme{Incremental, Boolean} {
		for cur := range 256 {
			c := byte(cur)
			if s == Boolean {
				c = FlagObsolete
			}
			n := s.NextFlags(c)
			if Select(s, [2]bool{true, true}, [2]byte{c, n}) != 1 {
				t.Errorf("Select(%v, flags %d, %d) = 0, want the next (1)", s, c, n)
			}
		}
	}
}
