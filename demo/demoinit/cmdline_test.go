package demoinit

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseCmdline(t *testing.T) {
	root := bytes.Repeat([]byte{0xab}, 32)
	hexRoot := strings.Repeat("ab", 32)
	for _, tc := range []struct {
		in   string
		want Params
		err  bool
	}{
		{in: "", want: Params{Layout: "ab", Action: Poweroff}},
		{
			in:   "console=ttyS0 lifeboat.slot=B lifeboat.layout=small lifeboat.verity=8192:" + hexRoot + " lifeboat.demo=stay",
			want: Params{Slot: "B", Layout: "small", DataSize: 8192, RootHash: root, Action: Stay},
		},
		{in: "rauc.slot=B", want: Params{Slot: "B", Layout: "ab", Action: Poweroff}},
		{in: "rauc.slot=B lifeboat.slot=A", want: Params{Slot: "A", Layout: "ab", Action: Poweroff}},
		{in: "lifeboat.demo=reboot lifeboat.demo=poweroff", want: Params{Layout: "ab", Action: Poweroff}},
		{in: `"lifeboat.demo=reboot"`, want: Params{Layout: "ab", Action: Reboot}},
		{in: "lifeboat.demo=halt", err: true},
		{in: "lifeboat.layout=", err: true},
		{in: "lifeboat.verity=", err: true},
		{in: "lifeboat.verity=" + hexRoot, err: true},
		{in: "lifeboat.verity=4097:" + hexRoot, err: true},
		{in: "lifeboat.verity=-4096:" + hexRoot, err: true},
		{in: "lifeboat.verity=4096:" + hexRoot[2:], err: true},
		{in: "lifeboat.verity=4096:" + hexRoot + "ab", err: true},
		{in: "lifeboat.verity=4096:" + strings.Repeat("x", 64), err: true},
	} {
		got, err := ParseCmdline(tc.in)
		if tc.err {
			if !errors.Is(err, ErrCmdline) {
				t.Errorf("ParseCmdline(%q) = %v, want an error wrapping ErrCmdline", tc.in, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseCmdline(%q) = %v", tc.in, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("ParseCmdline(%q) (-want +got):\n%s", tc.in, diff)
		}
	}
}

// testdata/cmdline holds command lines as the recovery ramdisk's kexec
// and GRUB pass them.
func TestParseCmdlineFiles(t *testing.T) {
	for _, tc := range []struct {
		file     string
		slot     string
		dataSize int64
		err      bool
	}{
		{file: "kexec.txt", slot: "A", dataSize: 33554432},
		{file: "grub.txt", slot: "B", dataSize: 8388608},
		{file: "noverity.txt", slot: "A"},
		{file: "badhash.txt", err: true},
	} {
		b, err := os.ReadFile(filepath.Join("testdata", "cmdline", tc.file))
		if err != nil {
			t.Fatal(err)
		}
		p, err := ParseCmdline(string(b))
		if (err != nil) != tc.err {
			t.Errorf("ParseCmdline(%s) = %v, want error %v", tc.file, err, tc.err)
			continue
		}
		if err == nil && (string(p.Slot) != tc.slot || p.DataSize != tc.dataSize || (tc.dataSize == 0) != (p.RootHash == nil)) {
			t.Errorf("ParseCmdline(%s) = %+v, want slot %s, data size %d", tc.file, p, tc.slot, tc.dataSize)
		}
	}
}

func TestVerityParam(t *testing.T) {
	root := bytes.Repeat([]byte{0x01, 0xfe}, 16)
	s := VerityParam(1<<25, root)
	p, err := ParseCmdline("lifeboat.verity=" + s)
	if err != nil || p.DataSize != 1<<25 || !bytes.Equal(p.RootHash, root) {
		t.Errorf("ParseCmdline(VerityParam) = %+v, %v", p, err)
	}
}

func FuzzParseCmdline(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "cmdline", "*.txt"))
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseCmdline(s)
		if err != nil {
			if !errors.Is(err, ErrCmdline) {
				t.Fatalf("ParseCmdline(%q) = %v, not wrapping ErrCmdline", s, err)
			}
			return
		}
		if p.Layout == "" || (p.RootHash != nil) != (p.DataSize > 0) || p.RootHash != nil && len(p.RootHash) != rootHashSize {
			t.Fatalf("ParseCmdline(%q) = %+v", s, p)
		}
		switch p.Action {
		case Poweroff, Reboot, Stay:
		default:
			t.Fatalf("ParseCmdline(%q) action %q", s, p.Action)
		}
	})
}
