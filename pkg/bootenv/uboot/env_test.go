package uboot

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/lifeboat-update/lifeboat/pkg/blockdev"
	"github.com/lifeboat-update/lifeboat/pkg/bootenv"
)

func redundantConfig(dev string, size int64) Config {
	return Config{Copies: []Location{
		{Device: dev, Offset: 0, Size: size},
		{Device: dev, Offset: size, Size: size},
	}}
}

// put writes an image of v with flags as copy i of cfg on d.
func put(t *testing.T, d Dev, cfg Config, i int, v bootenv.Vars, flags byte) {
	t.Helper()
	b, err := Image{Redundant: cfg.Redundant(), Flags: flags, Vars: v}.Encode(cfg.Copies[i].Size)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.WriteAt(b, cfg.Copies[i].Offset); err != nil {
		t.Fatal(err)
	}
}

func TestLoadSelects(t *testing.T) {
	ctx := context.Background()
	cfg := redundantConfig("mem", 0x400)
	a, b := bootenv.Vars{"which": "a"}, bootenv.Vars{"which": "b"}
	for _, tc := range []struct {
		name       string
		fa, fb     byte
		corruptA   bool
		corruptB   bool
		importFail bool
		want       bootenv.Vars
		wantErr    error
	}{
		{name: "higher flags", fa: 4, fb: 5, want: b},
		{name: "higher flags first", fa: 6, fb: 5, want: a},
		{name: "equal flags take the first", fa: 5, fb: 5, want: a},
		{name: "wrap around", fa: 255, fb: 0, want: b},
		{name: "bad newer copy", fa: 4, fb: 5, corruptB: true, want: a},
		{name: "bad older copy", fa: 4, fb: 5, corruptA: true, want: b},
		{name: "both bad", fa: 4, fb: 5, corruptA: true, corruptB: true, wantErr: bootenv.ErrNoEnv},
		{name: "selected copy fails to import", fa: 4, fb: 5, importFail: true, wantErr: bootenv.ErrNoEnv},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := blockdev.NewMem(0x800)
			put(t, m, cfg, 0, a, tc.fa)
			put(t, m, cfg, 1, b, tc.fb)
			if tc.importFail {
				m.WriteAt(rawImage("=x\x00\x00", 0x400, true, tc.fb, 0), 0x400)
			}
			if tc.corruptA {
				m.WriteAt([]byte("X"), 0x10)
			}
			if tc.corruptB {
				m.WriteAt([]byte("X"), 0x410)
			}
			e, err := New(cfg, []Dev{m, m})
			if err != nil {
				t.Fatal(err)
			}
			got, err := e.Load(ctx)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("Load() = %v, %v; want error %v", got, err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Load() (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSaveAlternates(t *testing.T) {
	ctx := context.Background()
	cfg := redundantConfig("mem", 0x400)
	m := blockdev.NewMem(0x800)
	e, err := New(cfg, []Dev{m, m})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Load(ctx); !errors.Is(err, bootenv.ErrNoEnv) {
		t.Fatalf("Load() of a blank device = %v, want ErrNoEnv", err)
	}
	wantActive := []int{0, 1, 0, 1}
	for i, act := range wantActive {
		v := bootenv.Vars{"n": string(rune('0' + i)), "BOOT_ORDER": "A B"}
		if err := e.Save(ctx, v); err != nil {
			t.Fatalf("Save(%v) = %v", v, err)
		}
		got, err := e.Load(ctx)
		if err != nil || !cmp.Equal(got, v) {
			t.Fatalf("Load() after Save(%v) = %v, %v", v, got, err)
		}
		st, err := e.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.Active != act {
			t.Errorf("after save %d: Status().Active = %d, want %d", i, st.Active, act)
		}
	}
	if ops := m.Ops(); len(ops) == 0 || ops[len(ops)-1].Kind != blockdev.OpFlush {
		t.Errorf("Mem ops = %v, want a flush last", ops)
	}
}

func TestSaveSingleCopy(t *testing.T) {
	ctx := context.Background()
	cfg := Config{Copies: []Location{{Device: "mem", Size: 0x400}}}
	m := blockdev.NewMem(0x400)
	put(t, m, cfg, 0, bootenv.Vars{"a": "1"}, 0)
	e, err := New(cfg, []Dev{m})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Save(ctx, bootenv.Vars{"a": "2"}); !errors.Is(err, ErrSingleCopy) {
		t.Fatalf("Save() on a single copy = %v, want ErrSingleCopy", err)
	}
	e, err = New(cfg, []Dev{m}, AllowSingleCopy())
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Save(ctx, bootenv.Vars{"a": "2"}); err != nil {
		t.Fatalf("Save() with AllowSingleCopy = %v", err)
	}
	if got, err := e.Load(ctx); err != nil || got["a"] != "2" {
		t.Errorf("Load() = %v, %v; want a=2", got, err)
	}
}

// TestSaveFlash checks the MTD path: erase whole blocks before writing,
// keep what else they hold, and on NOR mark the old copy obsolete.
func TestSaveFlash(t *testing.T) {
	ctx := context.Background()
	for _, nor := range []bool{true, false} {
		f := NewMemFlash(0x4000, 0x1000, nor)
		cfg := Config{Copies: []Location{
			{Device: "/dev/mtd1", Offset: 0x0, Size: 0x800},
			{Device: "/dev/mtd1", Offset: 0x1000, Size: 0x800},
		}}
		other := []byte("data sharing the erase block")
		f.WriteAt(other, 0x1800)
		e, err := New(cfg, []Dev{f, f})
		if err != nil {
			t.Fatal(err)
		}
		wantScheme := map[bool]FlagScheme{true: Boolean, false: Incremental}[nor]
		for i := range 4 {
			v := bootenv.Vars{"i": string(rune('0' + i))}
			if err := e.Save(ctx, v); err != nil {
				t.Fatalf("nor=%v: Save(%v) = %v", nor, v, err)
			}
			got, err := e.Load(ctx)
			if err != nil || !cmp.Equal(got, v) {
				t.Fatalf("nor=%v: Load() = %v, %v; want %v", nor, got, err, v)
			}
		}
		st, _ := e.Status(ctx)
		if st.Scheme != wantScheme {
			t.Errorf("nor=%v: Status().Scheme = %v, want %v", nor, st.Scheme, wantScheme)
		}
		if nor && (st.Copies[1-st.Active].Flags != FlagObsolete || st.Copies[st.Active].Flags != FlagActive) {
			t.Errorf("NOR flags = %d, %d with copy %d active; want active 1, obsolete 0", st.Copies[0].Flags, st.Copies[1].Flags, st.Active)
		}
		got := make([]byte, len(other))
		f.ReadAt(got, 0x1800)
		if !bytes.Equal(got, other) {
			t.Errorf("nor=%v: data after the copy in its erase block = %q, want %q kept", nor, got, other)
		}
		if erases, _ := f.Counts(); erases != 4 {
			t.Errorf("nor=%v: %d erases for 4 saves, want 4", nor, erases)
		}
	}
}

func TestNewErrors(t *testing.T) {
	f := NewMemFlash(0x4000, 0x1000, true)
	nand := NewMemFlash(0x4000, 0x1000, false)
	m := blockdev.NewMem(0x4000)
	for _, tc := range []struct {
		name string
		cfg  Config
		devs []Dev
		opts []Option
	}{
		{"copies share an erase block", Config{Copies: []Location{{Device: "f", Size: 0x800}, {Device: "f", Offset: 0x800, Size: 0x800}}}, []Dev{f, f}, nil},
		{"beyond the end", Config{Copies: []Location{{Device: "f", Offset: 0x3800, Size: 0x1000}}}, []Dev{f}, nil},
		{"mixed schemes", Config{Copies: []Location{{Device: "f", Size: 0x800}, {Device: "m", Size: 0x800}}}, []Dev{f, m}, nil},
		{"boolean on NAND", Config{Copies: []Location{{Device: "n", Size: 0x800}, {Device: "n", Offset: 0x1000, Size: 0x800}}}, []Dev{nand, nand}, []Option{WithFlagScheme(Boolean)}},
		{"device count", redundantConfig("m", 0x800), []Dev{m}, nil},
		{"sector size not a multiple", Config{Copies: []Location{{Device: "f", Size: 0x800, SectorSize: 0x800}}}, []Dev{f}, nil},
	} {
		if _, err := New(tc.cfg, tc.devs, tc.opts...); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: New() = %v, want ErrConfig", tc.name, err)
		}
	}
}

func TestOpenFile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "env.img")
	if err := os.WriteFile(path, make([]byte, 0x3000), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseConfig(bytes.NewReader([]byte(path + " -0x2000 0x1000\n" + path + " -0x1000 0x1000\n")))
	if err != nil {
		t.Fatal(err)
	}
	e, err := Open(cfg)
	if err != nil {
		t.Fatalf("Open(%v) = %v", cfg, err)
	}
	v := bootenv.Vars{"BOOT_ORDER": "B A"}
	if err := e.Save(ctx, v); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	im, err := ReadImage(bytes.NewReader(b[0x1000:]), 0x1000, true)
	if err != nil || !cmp.Equal(im.Vars, v) {
		t.Errorf("copy 1 at -0x2000 = %v, %v; want %v", im.Vars, err, v)
	}
}
