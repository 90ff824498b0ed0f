package grub

import (
	"bytes"
	"flag"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/lifeboat-update/lifeboat/internal/testtool"
	"github.com/lifeboat-update/lifeboat/pkg/bootenv"
)

var update = flag.Bool("update", false, "regenerate testdata/ with the real grub-editenv")

// goldenCase is a grubenv made by grub-editenv: from `create` (or from
// Encode(base)), the edits ops, each the arguments after FILE.
type goldenCase struct {
	name string
	base bootenv.Vars // nil: start from `grub-editenv FILE create`
	ops  [][]string
	want bootenv.Vars
	// same: the file is what Encode(want) writes, byte for byte (sets in
	// name order from create).
	same bool
}

var goldenCases = []goldenCase{
	{
		name: "empty",
		want: bootenv.Vars{},
		same: true,
	},
	{
		name: "ab",
		ops:  [][]string{{"set", "BOOT_A_LEFT=3", "BOOT_B_LEFT=3", "BOOT_ORDER=A B"}},
		want: bootenv.Vars{"BOOT_A_LEFT": "3", "BOOT_B_LEFT": "3", "BOOT_ORDER": "A B"},
		same: true,
	},
	{
		name: "special",
		ops: [][]string{{"set",
			"A=has space",
			"B=x=y",
			`C=back\slash`,
			"D=\nnl",
			"E=",
			`F=trailing\`,
			"G=a\\\nb\\\\",
			"H=\r\t\x01 ctl",
			"I= lead and trail ",
			"J=#not a comment",
			"K=ünïcødé",
		}},
		want: bootenv.Vars{
			"A": "has space",
			"B": "x=y",
			"C": `back\slash`,
			"D": "\nnl",
			"E": "",
			"F": `trailing\`,
			"G": "a\\\nb\\\\",
			"H": "\r\t\x01 ctl",
			"I": " lead and trail ",
			"J": "#not a comment",
			"K": "ünïcødé",
		},
		same: true,
	},
	{
		name: "edited",
		ops: [][]string{
			{"set", "B=2", "A=1", "C=3"},
			{"unset", "B"},
			{"set", "A=longer than before"},
			{"set", "C=", "D=4"},
			{"unset", "missing"},
		},
		want: bootenv.Vars{"A": "longer than before", "C": "", "D": "4"},
	},
	{
		// Lines cross the boundary between the block's two sectors.
		name: "long",
		ops: [][]string{{"set",
			"V1=" + strings.Repeat("a", 200),
			"V2=" + strings.Repeat("b\\", 100),
			"V3=" + strings.Repeat("c\n", 80),
		}},
		want: bootenv.Vars{
			"V1": strings.Repeat("a", 200),
			"V2": strings.Repeat("b\\", 100),
			"V3": strings.Repeat("c\n", 80),
		},
		same: true,
	},
	{
		// The lines fill the block: no padding at all.
		name: "full",
		ops:  [][]string{{"set", "X=" + strings.Repeat("x", BlockSize-len(Signature)-len(Warning)-3)}},
		want: bootenv.Vars{"X": strings.Repeat("x", BlockSize-len(Signature)-len(Warning)-3)},
		same: true,
	},
	{
		// grub-editenv edits a block Lifeboat wrote.
		name: "ours-edited",
		base: bootenv.Vars{"BOOT_A_LEFT": "3", "BOOT_B_LEFT": "0", "BOOT_ORDER": "B A", "x": "a\nb"},
		ops:  [][]string{{"set", "BOOT_B_LEFT=2"}, {"unset", "BOOT_ORDER"}, {"set", "BOOT_ORDER=A B"}},
		want: bootenv.Vars{"BOOT_A_LEFT": "3", "BOOT_B_LEFT": "2", "BOOT_ORDER": "A B", "x": "a\nb"},
	},
}

// editenv runs grub-editenv FILE args.
func editenv(t *testing.T, file string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command("grub-editenv", append([]string{file}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("grub-editenv %s %q: %v\n%s", file, args, err, stderr.Bytes())
	}
	return out
}

// makeWithEditenv builds the case's grubenv with the real grub-editenv and
// returns its bytes.
func makeWithEditenv(t *testing.T, tc goldenCase) []byte {
	t.Helper()
	p := filepath.Join(t.TempDir(), "grubenv")
	if tc.base == nil {
		editenv(t, p, "create")
	} else {
		var b bytes.Buffer
		if err := Encode(&b, tc.base); err != nil {
			t.Fatalf("Encode(%v) = %v, want nil", tc.base, err)
		}
		if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, op := range tc.ops {
		editenv(t, p, op...)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// listing is what `grub-editenv FILE list` prints for a block Encode made
// of v: name=value lines in name order, values raw.
func listing(v bootenv.Vars) string {
	var s strings.Builder
	for _, k := range slices.Sorted(maps.Keys(v)) {
		s.WriteString(k + "=" + v[k] + "\n")
	}
	return s.String()
}

func golden(name, ext string) string { return filepath.Join("testdata", name+ext) }

// TestEditenvGolden reads grubenv files made by grub-editenv (create, set,
// unset; testdata/*.grubenv). With the tool present it makes them again and
// checks they have not changed; -update rewrites them.
func TestEditenvGolden(t *testing.T) {
	live := *update || testtool.Have(t, "grub-editenv")
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			path := golden(tc.name, ".grubenv")
			if live {
				b := makeWithEditenv(t, tc)
				if *update {
					if err := os.WriteFile(path, b, 0o644); err != nil {
						t.Fatal(err)
					}
				}
				old, err := os.ReadFile(path)
				if err != nil {
					t.Fatalf("%v (run go test -update)", err)
				}
				if !bytes.Equal(b, old) {
					t.Errorf("grub-editenv made %s differently from testdata (-update rewrites it):\n%q\nwant\n%q", tc.name, b, old)
				}
			}
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update)", err)
			}
			got, err := Parse(bytes.NewReader(b))
			if err != nil {
				t.Fatalf("Parse(%s) = %v, want nil", path, err)
			}
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Parse(%s) differs (-want +got):\n%s", path, diff)
			}
			if tc.same {
				var enc bytes.Buffer
				if err := Encode(&enc, tc.want); err != nil {
					t.Fatalf("Encode(%s vars) = %v, want nil", tc.name, err)
				}
				if !bytes.Equal(enc.Bytes(), b) {
					t.Errorf("Encode(%s vars) =\n%q\nwant grub-editenv's\n%q", tc.name, enc.Bytes(), b)
				}
			}
		})
	}
}

// TestEditenvListsOurs checks that grub-editenv reads what Encode writes:
// testdata/*.list is `grub-editenv FILE list` of Encode(want), made again
// and compared when the tool is present, rewritten by -update.
func TestEditenvListsOurs(t *testing.T) {
	live := *update || testtool.Have(t, "grub-editenv")
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			path := golden(tc.name, ".list")
			if live {
				p := filepath.Join(t.TempDir(), "grubenv")
				var b bytes.Buffer
				if err := Encode(&b, tc.want); err != nil {
					t.Fatalf("Encode(%s vars) = %v, want nil", tc.name, err)
				}
				if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				out := editenv(t, p, "list")
				if *update {
					if err := os.WriteFile(path, out, 0o644); err != nil {
						t.Fatal(err)
					}
				}
				old, err := os.ReadFile(path)
				if err != nil {
					t.Fatalf("%v (run go test -update)", err)
				}
				if !bytes.Equal(out, old) {
					t.Errorf("grub-editenv list of Encode(%s vars) = %q, testdata has %q (-update rewrites it)", tc.name, out, old)
				}
			}
			out, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update)", err)
			}
			if got, want := string(out), listing(tc.want); got != want {
				t.Errorf("grub-editenv list of Encode(%s vars) = %q, want %q", tc.name, got, want)
			}
		})
	}
}

// TestDocGrubCfg keeps the grub.cfg in docs/bootloader-grub.md and
// testdata/grub.cfg, the copy the boot tests can run, the same.
func TestDocGrubCfg(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "..", "docs", "bootloader-grub.md"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(filepath.Join("testdata", "grub.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(doc, append(append([]byte("```sh\n"), cfg...), "```\n"...)) {
		t.Errorf("docs/bootloader-grub.md does not show testdata/grub.cfg as its grub.cfg; copy one to the other")
	}
}
