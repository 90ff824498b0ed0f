package uboot

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/lifeboat-update/lifeboat/internal/testtool"
	"github.com/lifeboat-update/lifeboat/pkg/blockdev"
	"github.com/lifeboat-update/lifeboat/pkg/bootenv"
)

var update = flag.Bool("update", false, "regenerate testdata/ with the real mkenvimage, fw_setenv and fw_printenv")

// The interoperability tests. Images this package writes are read by
// fw_printenv (libubootenv-tool), whose output is kept in
// testdata/written-*.txt with the SHA-256 of the image; images made by
// mkenvimage (u-boot-tools) and fw_setenv are kept in testdata/*.img.gz
// with fw_printenv's view in testdata/*.txt, and read by this package;
// which copy fw_printenv takes for pairs of flags is kept in
// testdata/select-fw_printenv.txt. With the tools present the tests also
// run them live and compare with the golden files; -update rewrites them.

// goldenSize is the environment size of the golden images.
const goldenSize = 0x2000

func goldenVars() map[string]bootenv.Vars {
	many := bootenv.Vars{}
	for i := range 150 {
		many[fmt.Sprintf("var%03d", i)] = fmt.Sprintf("value %d %s", i, strings.Repeat("x", i%17))
	}
	return map[string]bootenv.Vars{
		"basic": {
			"BOOT_ORDER":  "A B",
			"BOOT_A_LEFT": "3",
			"BOOT_B_LEFT": "3",
			"bootcmd":     "run distro_bootcmd; echo done",
			"kv":          "a=b=c",
			"spaces":      "  leading and trailing  ",
			"bootdelay":   "0",
		},
		"many": many,
	}
}

// printenvText formats vars as fw_printenv prints them.
func printenvText(v bootenv.Vars) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(v)) {
		fmt.Fprintf(&b, "%s=%s\n", k, v[k])
	}
	return b.String()
}

// parsePrintenv parses fw_printenv output, dropping empty values (which
// U-Boot deletes on import).
func parsePrintenv(t *testing.T, s string) bootenv.Vars {
	t.Helper()
	v := bootenv.Vars{}
	for _, line := range strings.Split(strings.TrimSuffix(s, "\n"), "\n") {
		if line == "" {
			continue
		}
		k, val, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("fw_printenv line %q has no '='", line)
		}
		if val != "" {
			v[k] = val
		}
	}
	return v
}

func run(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

func writeConfig(t *testing.T, dir string, redundant bool) {
	t.Helper()
	c := fmt.Sprintf("env.img 0x0 %#x\n", goldenSize)
	if redundant {
		c += fmt.Sprintf("env.img %#x %#x\n", goldenSize, goldenSize)
	}
	if err := os.WriteFile(filepath.Join(dir, "fw_env.config"), []byte(c), 0o644); err != nil {
		t.Fatal(err)
	}
}

func goldenConfig(dir string, redundant bool) Config {
	c := Config{Copies: []Location{{Device: filepath.Join(dir, "env.img"), Size: goldenSize}}}
	if redundant {
		c.Copies = append(c.Copies, Location{Device: c.Copies[0].Device, Offset: goldenSize, Size: goldenSize})
	}
	return c
}

func compareGolden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (regenerate with go test -update)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s differs (-golden +now):\n%s", path, diff)
	}
}

// TestWrittenReadByFwPrintenv: environments Save writes, single and
// redundant, read by fw_printenv.
func TestWrittenReadByFwPrintenv(t *testing.T) {
	live := testtool.Have(t, "fw_printenv")
	if *update && !live {
		t.Fatal("-update needs fw_printenv")
	}
	ctx := context.Background()
	for _, redundant := range []bool{false, true} {
		for name, v := range goldenVars() {
			layout := map[bool]string{false: "single", true: "redundant"}[redundant]
			t.Run(layout+"-"+name, func(t *testing.T) {
				dir := t.TempDir()
				size := int64(goldenSize)
				if redundant {
					size *= 2
				}
				if err := os.WriteFile(filepath.Join(dir, "env.img"), make([]byte, size), 0o644); err != nil {
					t.Fatal(err)
				}
				e, err := Open(goldenConfig(dir, redundant), AllowSingleCopy())
				if err != nil {
					t.Fatal(err)
				}
				// Two saves, so that in the redundant layout the second
				// copy, with flags 2, is the one to take.
				for _, vv := range []bootenv.Vars{{"first": "save"}, v} {
					if err := e.Save(ctx, vv); err != nil {
						t.Fatal(err)
					}
				}
				e.Close()
				img, err := os.ReadFile(filepath.Join(dir, "env.img"))
				if err != nil {
					t.Fatal(err)
				}
				sum := sha256.Sum256(img)
				want := "sha256 " + hex.EncodeToString(sum[:]) + "\n" + printenvText(v)
				golden := filepath.Join("testdata", "written-"+layout+"-"+name+".txt")
				if live {
					writeConfig(t, dir, redundant)
					out := run(t, dir, "fw_printenv", "-c", "fw_env.config")
					compareGolden(t, golden, "sha256 "+hex.EncodeToString(sum[:])+"\n"+out)
				}
				g, err := os.ReadFile(golden)
				if err != nil {
					t.Fatalf("%v (regenerate with go test -update)", err)
				}
				if diff := cmp.Diff(want, string(g)); diff != "" {
					t.Errorf("image and fw_printenv's view of it, (-ours +golden):\n%s", diff)
				}
			})
		}
	}
}

// toolImage is an environment image made by the real tools.
type toolImage struct {
	name      string
	redundant bool
	// make builds env.img in dir, whose fw_env.config is written, from
	// the variables in input.txt (key=value lines).
	make func(t *testing.T, dir string)
}

func toolImages() []toolImage {
	mkenv := func(args ...string) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) {
			run(t, dir, "mkenvimage", append(append([]string{"-s", fmt.Sprint(goldenSize)}, args...), "-o", "env.img", "input.txt")...)
		}
	}
	setenv := func(t *testing.T, dir string, redundant bool) {
		// Start from an image with two variables, then let fw_setenv
		// write the rest, twice in the redundant layout so both copies
		// are written.
		os.WriteFile(filepath.Join(dir, "start.txt"), []byte("BOOT_ORDER=B A\nold=1\n"), 0o644)
		args := []string{"-s", fmt.Sprint(goldenSize), "-o", "env.img", "start.txt"}
		if redundant {
			args = append([]string{"-r"}, args...)
		}
		run(t, dir, "mkenvimage", args...)
		if redundant {
			f, _ := os.OpenFile(filepath.Join(dir, "env.img"), os.O_RDWR, 0)
			f.Truncate(2 * goldenSize)
			f.Close()
		}
		os.WriteFile(filepath.Join(dir, "unset.txt"), []byte("old=\n"), 0o644)
		run(t, dir, "fw_setenv", "-c", "fw_env.config", "-s", "unset.txt")
		run(t, dir, "fw_setenv", "-c", "fw_env.config", "-s", "input.txt")
	}
	return []toolImage{
		{"mkenvimage", false, mkenv()},
		{"mkenvimage-p0", false, mkenv("-p", "0")},
		{"mkenvimage-r", true, func(t *testing.T, dir string) {
			mkenv("-r")(t, dir)
			f, _ := os.OpenFile(filepath.Join(dir, "env.img"), os.O_RDWR, 0)
			f.Truncate(2 * goldenSize)
			f.Close()
		}},
		{"fw_setenv-single", false, func(t *testing.T, dir string) { setenv(t, dir, false) }},
		{"fw_setenv-redundant", true, func(t *testing.T, dir string) { setenv(t, dir, true) }},
	}
}

// TestToolImagesReadByUs: images made by mkenvimage and fw_setenv, read by
// Load, which must see what fw_printenv sees (but for empty values, which
// U-Boot deletes).
func TestToolImagesReadByUs(t *testing.T) {
	live := testtool.Have(t, "mkenvimage") && testtool.Have(t, "fw_setenv") && testtool.Have(t, "fw_printenv")
	if *update && !live {
		t.Fatal("-update needs mkenvimage, fw_setenv and fw_printenv")
	}
	ctx := context.Background()
	input := printenvText(goldenVars()["basic"]) + "empty=\n"
	for _, ti := range toolImages() {
		t.Run(ti.name, func(t *testing.T) {
			imgGolden := filepath.Join("testdata", ti.name+".img.gz")
			txtGolden := filepath.Join("testdata", ti.name+".txt")
			if live {
				dir := t.TempDir()
				os.WriteFile(filepath.Join(dir, "input.txt"), []byte(input), 0o644)
				writeConfig(t, dir, ti.redundant)
				ti.make(t, dir)
				img, err := os.ReadFile(filepath.Join(dir, "env.img"))
				if err != nil {
					t.Fatal(err)
				}
				out := run(t, dir, "fw_printenv", "-c", "fw_env.config")
				if *update {
					testtool.WriteGzip(t, imgGolden, img)
				} else if !bytes.Equal(img, testtool.ReadGzip(t, imgGolden)) {
					t.Errorf("%s made now differs from %s", ti.name, imgGolden)
				}
				compareGolden(t, txtGolden, out)
			}
			img := testtool.ReadGzip(t, imgGolden)
			txt, err := os.ReadFile(txtGolden)
			if err != nil {
				t.Fatalf("%v (regenerate with go test -update)", err)
			}
			m := blockdev.NewMem(int64(len(img)))
			m.WriteAt(img, 0)
			e, err := New(goldenConfig("", ti.redundant), []Dev{m, m}[:len(goldenConfig("", ti.redundant).Copies)])
			if err != nil {
				t.Fatal(err)
			}
			got, err := e.Load(ctx)
			if err != nil {
				t.Fatalf("Load(%s) = %v", ti.name, err)
			}
			if diff := cmp.Diff(parsePrintenv(t, string(txt)), got); diff != "" {
				t.Errorf("Load(%s) differs from fw_printenv (-fw_printenv +ours):\n%s", ti.name, diff)
			}
			if strings.HasPrefix(ti.name, "mkenvimage") && !strings.Contains(string(txt), "\nempty=\n") {
				t.Errorf("fw_printenv of %s shows no empty=; the test no longer checks empty values", ti.name)
			}
		})
	}
}

// selectCases are pairs of copies, each a flags byte or bad CRC.
var selectCases = [][2]int{
	{1, 2}, {2, 1}, {3, 3}, {0, 0}, {255, 0}, {0, 255}, {254, 255}, {255, 254},
	{1, 255}, {128, 3}, {-1, 5}, {5, -1}, {-1, -1},
}

// TestSelectMatchesFwPrintenv: which copy fw_printenv takes from a file
// (the incremental scheme) for pairs of flags and bad CRCs, against Select.
func TestSelectMatchesFwPrintenv(t *testing.T) {
	live := testtool.Have(t, "fw_printenv")
	if *update && !live {
		t.Fatal("-update needs fw_printenv")
	}
	var got strings.Builder
	var ours strings.Builder
	for _, c := range selectCases {
		var img []byte
		var valid [2]bool
		var flags [2]byte
		for i, f := range c {
			b, err := Image{Redundant: true, Flags: byte(f), Vars: bootenv.Vars{"copy": fmt.Sprint(i + 1)}}.Encode(goldenSize)
			if err != nil {
				t.Fatal(err)
			}
			if f < 0 {
				b[100] ^= 0xff
			}
			valid[i], flags[i] = f >= 0, byte(f)
			img = append(img, b...)
		}
		line := fmt.Sprintf("%d %d -> ", c[0], c[1])
		switch s := Select(Incremental, valid, flags); s {
		case -1:
			fmt.Fprintf(&ours, "%snone\n", line)
		default:
			fmt.Fprintf(&ours, "%scopy=%d\n", line, s+1)
		}
		if live {
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, "env.img"), img, 0o644)
			writeConfig(t, dir, true)
			cmd := exec.Command("fw_printenv", "-c", "fw_env.config", "copy")
			cmd.Dir = dir
			out, err := cmd.Output()
			switch {
			case err != nil:
				fmt.Fprintf(&got, "%snone\n", line)
			default:
				fmt.Fprintf(&got, "%s%s", line, out)
			}
		}
	}
	golden := filepath.Join("testdata", "select-fw_printenv.txt")
	if live {
		compareGolden(t, golden, got.String())
	}
	g, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (regenerate with go test -update)", err)
	}
	if diff := cmp.Diff(string(g), ours.String()); diff != "" {
		t.Errorf("Select() differs from fw_printenv (-fw_printenv +Select):\n%s", diff)
	}
}

// TestTakeTurnsWithFwSetenv: Save and fw_setenv take turns on one
// redundant environment, each reading what the other wrote, the flags
// counting up across both.
func TestTakeTurnsWithFwSetenv(t *testing.T) {
	testtool.Require(t, "fw_setenv", "fw_printenv")
	ctx := context.Background()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "env.img"), make([]byte, 2*goldenSize), 0o644)
	writeConfig(t, dir, true)
	e, err := Open(goldenConfig(dir, true))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	v := bootenv.Vars{"BOOT_ORDER": "A B", "BOOT_A_LEFT": "3"}
	for i := range 4 {
		v["round"] = fmt.Sprint(i)
		if err := e.Save(ctx, v); err != nil {
			t.Fatal(err)
		}
		if out := run(t, dir, "fw_printenv", "-c", "fw_env.config"); out != printenvText(v) {
			t.Fatalf("round %d: fw_printenv after Save = %q, want %q", i, out, printenvText(v))
		}
		os.WriteFile(filepath.Join(dir, "set.txt"), []byte(fmt.Sprintf("BOOT_A_LEFT=%d\nBOOT_ORDER=B A\n", 2-i%3)), 0o644)
		run(t, dir, "fw_setenv", "-c", "fw_env.config", "-s", "set.txt")
		v["BOOT_A_LEFT"], v["BOOT_ORDER"] = fmt.Sprint(2-i%3), "B A"
		got, err := e.Load(ctx)
		if err != nil || !cmp.Equal(got, v) {
			t.Fatalf("round %d: Load() after fw_setenv = %v, %v; want %v", i, got, err, v)
		}
	}
	st, err := e.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if f := st.Copies[st.Active].Flags; f != 8 {
		t.Errorf("flags of the active copy after 8 writes = %d, want 8", f)
	}
}
