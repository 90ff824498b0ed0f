package uboot

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseConfig(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     Config
	}{
		{
			name: "single file",
			in:   "flash1.img 0x0 0x40000\n",
			want: Config{Copies: []Location{{Device: "flash1.img", Size: 0x40000}}},
		},
		{
			name: "redundant MTD with comments",
			in: "# QEMU virt, second flash bank\n\n" +
				"/dev/mtd1 0x0 0x40000 0x40000 1\n" +
				"  /dev/mtd1\t0x40000 0x40000 0x40000 1 # second copy\n",
			want: Config{Copies: []Location{
				{Device: "/dev/mtd1", Offset: 0, Size: 0x40000, SectorSize: 0x40000, Sectors: 1},
				{Device: "/dev/mtd1", Offset: 0x40000, Size: 0x40000, SectorSize: 0x40000, Sectors: 1},
			}},
		},
		{
			name: "sizes are hex without 0x, offsets C integers",
			in:   "/dev/mmcblk0 4194304 4000\n/dev/mmcblk0 0x404000 0x4000\n",
			want: Config{Copies: []Location{
				{Device: "/dev/mmcblk0", Offset: 4194304, Size: 0x4000},
				{Device: "/dev/mmcblk0", Offset: 0x404000, Size: 0x4000},
			}},
		},
		{
			name: "octal and negative offsets, nolock",
			in:   "/dev/sda -0x8000 0x4000 0x200 0x20 1\n/dev/sda 010000 0x4000\n",
			want: Config{Copies: []Location{
				{Device: "/dev/sda", Offset: -0x8000, Size: 0x4000, SectorSize: 0x200, Sectors: 0x20, NoLock: true},
				{Device: "/dev/sda", Offset: 010000, Size: 0x4000},
			}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseConfig(strings.NewReader(tc.in))
			if err != nil {
				t.Fatalf("ParseConfig(%q) = %v", tc.in, err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ParseConfig(%q) (-want +got):\n%s", tc.in, diff)
			}
			again, err := ParseConfig(strings.NewReader(got.String()))
			if err != nil || !cmp.Equal(again, got) {
				t.Errorf("ParseConfig(%q.String()) = %v, %v; want %v", got, again, err, got)
			}
		})
	}
}

func TestParseConfigErrors(t *testing.T) {
	for _, in := range []string{
		"",
		"# only a comment\n",
		"dev 0\n",
		"dev 0 0x1000 1 1 1 extra\n",
		"dev zero 0x1000\n",
		"dev 0 0x\n",
		"dev 0 -0x10\n",
		"dev 0 0x10g\n",
		"dev 1_000 0x1000\n",
		"dev 0 0x0\n",
		"dev 0 0x4\n",
		"dev 0 0x1000\ndev 0x1000 0x1000\ndev 0x2000 0x1000\n",
		"dev 0 0x1000\ndev2 0 0x2000\n",
		"dev 0 0x1000\ndev 0x800 0x1000\n",
		"dev 0 0x1000 0x1000\ndev 0x1000 0x800 0x2000\n",
		"dev 0 0x1000 0x100 4\n",
		"dev 0 0x1000 0 0 x\n",
		"dev 0 0x1000 0 0 -1\n",
		"dev 0 0x2000000\n",
	} {
		if c, err := ParseConfig(strings.NewReader(in)); !errors.Is(err, ErrConfig) {
			t.Errorf("ParseConfig(%q) = %v, %v; want an error wrapping ErrConfig", in, c, err)
		}
	}
}
