package ebg

import (
	"context"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/lifeboat-update/lifeboat/pkg/bootenv"
)

func TestEnvLoadSave(t *testing.T) {
	ctx := context.Background()
	c := cfg(7, Testing, "L:BOOT1:vmlinuz")
	c.WatchdogTimeoutSec = 30
	counter := UserVar{Key: "count", Type: TypeUint32, Data: binary.LittleEndian.AppendUint32(nil, 42)}
	blob := UserVar{Key: "blob", Type: 1 << 40, Data: []byte{1, 2, 3}} // a user-defined type bg_printenv does not print
	if err := c.SetUserVars([]UserVar{counter, blob, StringVar("note", "hi")}); err != nil {
		t.Fatal(err)
	}
	m := NewMem("BOOT1", c)
	e := NewEnv(m)
	v, err := e.Load(ctx)
	if err != nil {
		t.Fatalf("Load() = %v", err)
	}
	want := bootenv.Vars{VarKernelFile: "L:BOOT1:vmlinuz", VarKernelParams: "console=ttyS0", VarUState: "2", VarRevision: "7",
		VarWatchdog: "30", VarInProgress: "0", "count": "42", "note": "hi"}
	if d := cmp.Diff(want, v); d != "" {
		t.Fatalf("Load(): -want +got\n%s", d)
	}
	v["note"] = "changed"
	v["new"] = "x"
	if err := e.Save(ctx, v); err != nil {
		t.Fatalf("Save() = %v", err)
	}
	got, err := e.Config(ctx)
	if err != nil {
		t.Fatal(err)
	}
	uv, err := got.UserVars()
	if err != nil {
		t.Fatal(err)
	}
	wantUV := []UserVar{counter, blob, StringVar("new", "x"), StringVar("note", "changed")}
	if d := cmp.Diff(wantUV, uv); d != "" {
		t.Errorf("UserVars() after Save: -want +got\n%s", d)
	}
	// Changing the number makes it a string; removing it drops it.
	delete(v, "count")
	if err := e.Save(ctx, v); err != nil {
		t.Fatal(err)
	}
	got, _ = e.Config(ctx)
	uv, _ = got.UserVars()
	if d := cmp.Diff([]UserVar{blob, StringVar("new", "x"), StringVar("note", "changed")}, uv); d != "" {
		t.Errorf("UserVars() after removing count: -want +got\n%s", d)
	}

	for _, bad := range []bootenv.Vars{
		{VarRevision: "-1"}, {VarUState: "256"}, {VarWatchdog: "x"},
		{VarKernelFile: string(make([]byte, StringLength))},
	} {
		if err := e.Save(ctx, bad); err == nil {
			t.Errorf("Save(%v) = nil, want an error", bad)
		}
	}
}

func TestEnvCorrupt(t *testing.T) {
	ctx := context.Background()
	b, _ := cfg(1, OK, "k").MarshalBinary()
	b[100] ^= 1
	if _, err := NewEnv(NewMemBytes("x", b)).Load(ctx); !errors.Is(err, bootenv.ErrNoEnv) || !errors.Is(err, bootenv.ErrCorrupt) {
		t.Errorf("Load(bad CRC) = %v, want %v and %v", err, bootenv.ErrNoEnv, bootenv.ErrCorrupt)
	}
	if _, err := NewEnv(NewMemBytes("short", b[:Size-1])).Load(ctx); !errors.Is(err, bootenv.ErrCorrupt) {
		t.Errorf("Load(short) = %v, want %v", err, bootenv.ErrCorrupt)
	}
	c := cfg(1, OK, "k")
	c.SetUserVars([]UserVar{StringVar(VarRevision, "9")})
	if _, err := NewEnv(NewMem("clash", c)).Load(ctx); !errors.Is(err, ErrNameClash) {
		t.Errorf("Load(user variable %q) = %v, want %v", VarRevision, err, ErrNameClash)
	}
	c = cfg(1, OK, "k")
	c.User = make([]byte, UserDataSize)
	copy(c.User, "key\x00\xff\xff\xff\x00")
	if _, err := NewEnv(NewMem("uservars", c)).Load(ctx); !errors.Is(err, bootenv.ErrCorrupt) {
		t.Errorf("Load(user variable running past the area) = %v, want %v", err, bootenv.ErrCorrupt)
	}
	if err := NewEnv(NewMemBytes("small", make([]byte, 10))).Save(ctx, bootenv.Vars{}); !errors.Is(err, ErrFileSize) {
		t.Errorf("Save(10-byte file) = %v, want %v", err, ErrFileSize)
	}
}

func TestFilePart(t *testing.T) {
	ctx := context.Background()
	p := t.TempDir() + "/BGENV.DAT"
	if _, err := OpenFile(p); !errors.Is(err, bootenv.ErrNoEnv) {
		t.Errorf("OpenFile(missing) = %v, want %v", err, bootenv.ErrNoEnv)
	}
	b, _ := cfg(1, OK, "k").MarshalBinary()
	writeFile(t, p, b)
	f, err := OpenFile(p)
	if err != nil {
		t.Fatal(err)
	}
	e := NewEnv(f)
	v, err := e.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	v[VarRevision] = "5"
	if err := e.Save(ctx, v); err != nil {
		t.Fatalf("Save() = %v", err)
	}
	if got := f.Size(); got != Size {
		t.Errorf("Size() after Save = %d, want %d", got, Size)
	}
	c, err := e.Config(ctx)
	if err != nil || c.Revision != 5 {
		t.Errorf("Config() after Save = %+v, %v, want revision 5", c, err)
	}
}
