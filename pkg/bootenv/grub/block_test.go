package grub

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/lifeboat-update/lifeboat/pkg/bootenv"
)

// block returns a BlockSize block: the signature, body, then '#' padding.
func block(body string) []byte {
	b := []byte(Signature + body)
	if len(b) < BlockSize {
		b = append(b, bytes.Repeat([]byte{'#'}, BlockSize-len(b))...)
	}
	return b
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		want bootenv.Vars // nil: want an error wrapping ErrCorrupt
	}{
		{"no variables", block(""), bootenv.Vars{}},
		{"one", block("a=1\n"), bootenv.Vars{"a": "1"}},
		{"comments anywhere", block("# c\na=1\n#\\\nstill comment\nb=2\n"), bootenv.Vars{"a": "1", "b": "2"}},
		{"escapes", block(`a=\\\` + "\n" + `\x` + "\nb=\n"), bootenv.Vars{"a": "\\\nx", "b": ""}},
		{"equals in value", block("a==b=\n"), bootenv.Vars{"a": "=b="}},
		{"no padding", block("x=" + strings.Repeat("y", BlockSize-len(Signature)-3) + "\n"), bootenv.Vars{"x": strings.Repeat("y", BlockSize-len(Signature)-3)}},
		{"empty", nil, nil},
		{"short", block("a=1\n")[:BlockSize-1], nil},
		{"long", append(block("a=1\n"), '#'), nil},
		{"twice as long", append(block("a=1\n"), block("")...), nil},
		{"no signature", append([]byte("# GRUB Environment Blocks"), block("")[len(Signature):]...), nil},
		{"signature without newline", bytes.Repeat([]byte{'#'}, BlockSize), nil},
		{"no equals", block("a\nb=1\n"), nil},
		{"empty line", block("\na=1\n"), nil},
		{"empty name", block("=1\n"), nil},
		{"backslash in name", block(`a\b=1` + "\n"), nil},
		{"twice", block("a=1\na=2\n"), nil},
		{"zeros for padding", append([]byte(Signature+"a=1\n"), make([]byte, BlockSize-len(Signature)-4)...), nil},
		{"garbage in padding", block("a=1\n###x"), nil},
		{"NUL in value", block("a=1\x002\n"), nil},
		{"line runs off", bytes.Repeat([]byte("a=1"), BlockSize)[:BlockSize], nil},
		{"value runs off", []byte(Signature + "a=" + strings.Repeat("y", BlockSize-len(Signature)-2)), nil},
		{"escape runs off", []byte(Signature + "a=" + strings.Repeat("y", BlockSize-len(Signature)-3) + `\`), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(bytes.NewReader(tc.in))
			if tc.want == nil {
				if !errors.Is(err, bootenv.ErrCorrupt) {
					t.Errorf("Parse(%q) = %v, %v, want an error wrapping ErrCorrupt", tc.in, got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q) = %v, want nil", tc.in, err)
			}
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Parse(%q) differs (-want +got):\n%s", tc.in, diff)
			}
			// What Parse accepts, GRUB reads the same.
			if g, ok := grubLoad(tc.in); !ok || !cmp.Equal(g, got, cmpopts.EquateEmpty()) {
				t.Errorf("GRUB would load %v, %v from %q; Parse = %v", g, ok, tc.in, got)
			}
		})
	}
}

func TestEncode(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      bootenv.Vars
		wantErr error
	}{
		{"nil", nil, nil},
		{"ab", bootenv.Vars{"BOOT_ORDER": "A B", "BOOT_A_LEFT": "3"}, nil},
		{"escapes", bootenv.Vars{"a": "\\\n\\\\\n\n", "b": "=", "c": "#"}, nil},
		{"empty name", bootenv.Vars{"": "x"}, ErrBadName},
		{"name with =", bootenv.Vars{"a=b": "x"}, ErrBadName},
		{"name with newline", bootenv.Vars{"a\nb": "x"}, ErrBadName},
		{"name with backslash", bootenv.Vars{`a\b`: "x"}, ErrBadName},
		{"comment name", bootenv.Vars{"#a": "x"}, ErrBadName},
		{"NUL value", bootenv.Vars{"a": "x\x00"}, ErrBadValue},
		{"fills the block", bootenv.Vars{"a": strings.Repeat("x", BlockSize-len(Signature)-len(Warning)-3)}, nil},
		{"one byte over", bootenv.Vars{"a": strings.Repeat("x", BlockSize-len(Signature)-len(Warning)-2)}, ErrTooLarge},
		{"escapes over", bootenv.Vars{"a": strings.Repeat("\n", 500)}, ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			err := Encode(&b, tc.in)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Encode(%q) = %v, want %v", tc.in, err, tc.wantErr)
			}
			if err != nil {
				if b.Len() != 0 {
					t.Errorf("Encode(%q) failed but wrote %d bytes, want 0", tc.in, b.Len())
				}
				return
			}
			if b.Len() != BlockSize {
				t.Errorf("Encode(%q) wrote %d bytes, want %d", tc.in, b.Len(), BlockSize)
			}
			got, err := Parse(bytes.NewReader(b.Bytes()))
			if err != nil {
				t.Fatalf("Parse(Encode(%q)) = %v, want nil", tc.in, err)
			}
			if diff := cmp.Diff(tc.in, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Parse(Encode(%q)) differs (-want +got):\n%s", tc.in, diff)
			}
		})
	}
}

// errWriter fails every write.
type errWriter struct{}

func (errWriter) Write([]byte) (int, error) { return 0, os.ErrClosed }

func TestEncodeWriteError(t *testing.T) {
	if err := Encode(errWriter{}, bootenv.Vars{"a": "1"}); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Encode(failing writer) = %v, want an error wrapping %v", err, os.ErrClosed)
	}
}

// FuzzParse feeds Parse hostile blocks. Whatever it accepts GRUB must read
// as the same variables, and Encode must write back (unless the header it
// adds makes them too large) as a block Parse reads the same.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.grubenv")
	for _, p := range seeds {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(block("a=1\n# c\nb=\\\\\\\n\n"))
	f.Add(block("a=1\n#"))
	f.Add([]byte(Signature))
	f.Fuzz(func(t *testing.T, in []byte) {
		v, err := Parse(bytes.NewReader(in))
		if err != nil {
			if !errors.Is(err, bootenv.ErrCorrupt) {
				t.Fatalf("Parse(%q) = %v, want nil or an error wrapping ErrCorrupt", in, err)
			}
			return
		}
		if g, ok := grubLoad(in); !ok || !cmp.Equal(g, v, cmpopts.EquateEmpty()) {
			t.Fatalf("Parse(%q) = %q, but GRUB would load %q, %v", in, v, g, ok)
		}
		var b bytes.Buffer
		if err := Encode(&b, v); err != nil {
			if errors.Is(err, ErrTooLarge) {
				return
			}
			t.Fatalf("Encode(Parse(%q)) = %v, want nil", in, err)
		}
		got, err := Parse(&b)
		if err != nil {
			t.Fatalf("Parse(Encode(%q)) = %v, want nil", v, err)
		}
		if diff := cmp.Diff(v, got, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("Parse(Encode(v)) differs from v (-want +got):\n%s", diff)
		}
	})
}
