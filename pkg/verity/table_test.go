package verity

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/lifeboat-update/lifeboat/pkg/dm"
)

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// readTables returns the lines of testdata/tables.txt.
func readTables(t testing.TB) []string {
	t.Helper()
	f, err := os.Open("testdata/tables.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		if l := s.Text(); l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	return lines
}

func TestTableString(t *testing.T) {
	// The example of the kernel's verity.rst: a 1 GiB sda1 with its tree
	// on sda2 after veritysetup's superblock.
	doc := Table{
		DataDev: "/dev/sda1", HashDev: "/dev/sda2",
		Params:         Params{HashAlg: "sha256", DataBlockSize: 4096, HashBlockSize: 4096, Version: 1, Salt: mustHex(t, "1234"+strings.Repeat("0", 60))},
		DataBlocks:     262144,
		HashStartBlock: 1,
		RootHash:       mustHex(t, "4392712ba01368efdf14b05c76f9e4df0d53664630b5d48632ed17a137f39076"),
	}
	want := readTables(t)
	for i, tt := range []struct {
		name  string
		table Table
	}{
		{"verity.rst", doc},
		{"no salt", Table{DataDev: "7:0", HashDev: "7:1", Params: DefaultParams(), DataBlocks: 256, HashStartBlock: 1,
			RootHash: mustHex(t, "e8499670a02a546306eae5aa92326ac6c003ab65d79eaf3ead53735b42d37a41")}},
		{"restart", Table{DataDev: "254:0", HashDev: "254:0", Params: DefaultParams(), DataBlocks: 256, HashStartBlock: 257, ErrorMode: RestartOnCorruption,
			RootHash: mustHex(t, "e8499670a02a546306eae5aa92326ac6c003ab65d79eaf3ead53735b42d37a41")}},
		{"format 0, all options", Table{DataDev: "8:16", HashDev: "8:32", Params: Params{HashAlg: "sha1", Version: 0, Salt: []byte{0x5a, 0xc3, 0x01, 0xfe}},
			DataBlocks: 2048, ErrorMode: PanicOnCorruption, IgnoreZeroBlocks: true, CheckAtMostOnce: true,
			RootHash: mustHex(t, "3c0b4ab9f3cf79b6ec8e1ff7f4e0d5fa2e4f6bc1")}},
	} {
		if err := tt.table.Validate(); err != nil {
			t.Errorf("%s: Validate() = %v", tt.name, err)
		}
		if got := tt.table.String(); got != want[i] {
			t.Errorf("%s: String() =\n%s\nwant\n%s", tt.name, got, want[i])
		}
		got, err := ParseTable(want[i])
		if err != nil {
			t.Errorf("ParseTable(%s): %v", tt.name, err)
			continue
		}
		w := tt.table
		w.Params = w.Params.withDefaults()
		if diff := cmp.Diff(w, got); diff != "" {
			t.Errorf("ParseTable(%s) differs (-want +got):\n%s", tt.name, diff)
		}
	}
	if got, want := doc.Target(), (dm.Target{Length: 2097152, Type: "verity", Params: want[0]}); got != want {
		t.Errorf("Target() = %v, want %v (the 2097152 sectors of verity.rst)", got, want)
	}
}

func TestNewTable(t *testing.T) {
	// The tree after 1 MiB of data in the same file, its superblock at
	// 1 MiB + 512: the top hash block is at the next 4 KiB boundary.
	p := DefaultParams()
	tree, err := Layout(p, 1<<20, 1<<20+512)
	if err != nil {
		t.Fatal(err)
	}
	root := bytes.Repeat([]byte{1}, 32)
	got := NewTable(tree, "/dev/vda", "/dev/vda", root)
	want := Table{DataDev: "/dev/vda", HashDev: "/dev/vda", Params: tree.Params, DataBlocks: 256, HashStartBlock: 257, RootHash: root}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("NewTable() differs (-want +got):\n%s", diff)
	}
}

func TestTableErrors(t *testing.T) {
	good := Table{DataDev: "/dev/vda", HashDev: "/dev/vdb", Params: DefaultParams(), DataBlocks: 1, RootHash: make([]byte, 32)}
	for _, tt := range []struct {
		name string
		edit func(*Table)
	}{
		{"short root", func(t *Table) { t.RootHash = t.RootHash[:31] }},
		{"no data", func(t *Table) { t.DataBlocks = 0 }},
		{"space in device", func(t *Table) { t.DataDev = "/dev/a b" }},
		{"no hash device", func(t *Table) { t.HashDev = "" }},
		{"bad algorithm", func(t *Table) { t.Params.HashAlg = "md5" }},
		{"bad mode", func(t *Table) { t.ErrorMode = 7 }},
	} {
		tab := good
		tt.edit(&tab)
		if err := tab.Validate(); !errors.Is(err, ErrBadTable) {
			t.Errorf("Validate(%s) = %v, want ErrBadTable", tt.name, err)
		}
	}
	line := good.String()
	for _, s := range []string{
		"",
		strings.Replace(line, "4096 4096", "4096 4000", 1),
		line + " 1",
		line + " 2 restart_on_corruption",
		line + " 1 ignore_corruption",
		line + " 2 restart_on_corruption panic_on_corruption",
		line + " 2 ignore_zero_blocks ignore_zero_blocks",
		line + " 0",
		strings.TrimSuffix(line, "-") + "xy",
		strings.Replace(line, "sha256", "md5", 1),
		"x" + line,
	} {
		if _, err := ParseTable(s); !errors.Is(err, ErrBadTable) {
			t.Errorf("ParseTable(%q) = %v, want ErrBadTable", s, err)
		}
	}
}

func FuzzParseTable(f *testing.F) {
	for _, l := range readTables(f) {
		f.Add(l)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tab, err := ParseTable(s)
		if err != nil {
			if !errors.Is(err, ErrBadTable) {
				t.Fatalf("ParseTable(%q) = %v, want an ErrBadTable", s, err)
			}
			return
		}
		again, err := ParseTable(tab.String())
		if err != nil {
			t.Fatalf("ParseTable(String()) of %q: %v", s, err)
		}
		if !cmp.Equal(tab, again) {
			t.Fatalf("ParseTable(String()) = %+v, want %+v", again, tab)
		}
	})
}
