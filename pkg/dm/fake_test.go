package dm

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestFake(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	f := NewFake(dir)
	table := []Target{{Length: 2048, Type: "linear", Params: "/dev/vdb 0"}}

	d, err := f.Create(ctx, "a", "UUID-A", table, ReadOnly)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Device{Name: "a", UUID: "UUID-A", Dev: Mkdev(FakeMajor, 0), Path: filepath.Join(dir, "a")}); d != want {
		t.Errorf("Create(a) = %+v, want %+v", d, want)
	}
	if _, err := os.Stat(d.Path); err != nil {
		t.Errorf("Create(a) made no file: %v", err)
	}
	if _, err := f.Create(ctx, "a", "", table, 0); !errors.Is(err, ErrExists) {
		t.Errorf("Create(a again) = %v, want ErrExists", err)
	}
	if _, err := f.Create(ctx, "b", "UUID-A", table, 0); !errors.Is(err, ErrExists) {
		t.Errorf("Create(b, same UUID) = %v, want ErrExists", err)
	}
	if _, err := f.Create(ctx, "c", "", []Target{{Start: 8, Length: 8, Type: "zero"}}, 0); !errors.Is(err, ErrBadTarget) {
		t.Errorf("Create(c, gap) = %v, want ErrBadTarget", err)
	}
	if _, err := f.Create(ctx, "a/b", "", table, 0); !errors.Is(err, ErrBadName) {
		t.Errorf("Create(a/b) = %v, want ErrBadName", err)
	}
	if _, err := f.Create(ctx, "b", "", table, 0); err != nil {
		t.Fatal(err)
	}

	if got, err := f.Table(ctx, "a"); err != nil || !cmp.Equal(got, table) {
		t.Errorf("Table(a) = %v, %v, want %v", got, err, table)
	}
	if err := f.SetStatus("a", 0, "V"); err != nil {
		t.Fatal(err)
	}
	if got, err := f.Status(ctx, "a"); err != nil || got[0].Params != "V" {
		t.Errorf("Status(a) = %v, %v, want status V", got, err)
	}
	if err := f.Suspend(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if info, err := f.Info(ctx, "a"); err != nil || !info.Suspended || !info.ReadOnly {
		t.Errorf("Info(a) = %+v, %v, want suspended read-only", info, err)
	}
	if err := f.Resume(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	list, err := f.List(ctx)
	want := []ListEntry{{Name: "a", Dev: Mkdev(FakeMajor, 0), UUID: "UUID-A"}, {Name: "b", Dev: Mkdev(FakeMajor, 1)}}
	if err != nil || !cmp.Equal(list, want) {
		t.Errorf("List() = %v, %v, want %v", list, err, want)
	}

	if err := f.SetOpen("a", 1); err != nil {
		t.Fatal(err)
	}
	if err := f.Remove(ctx, "a"); !errors.Is(err, ErrBusy) {
		t.Errorf("Remove(open a) = %v, want ErrBusy", err)
	}
	f.SetOpen("a", 0)
	if err := f.Remove(ctx, "a"); err != nil {
		t.Errorf("Remove(a) = %v", err)
	}
	if _, err := os.Stat(d.Path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Remove(a) left its file: %v", err)
	}
	for name, err := range map[string]error{
		"Remove":  f.Remove(ctx, "a"),
		"Suspend": f.Suspend(ctx, "a"),
		"Info":    func() error { _, err := f.Info(ctx, "a"); return err }(),
		"Table":   func() error { _, err := f.Table(ctx, "a"); return err }(),
		"Deps":    func() error { _, err := f.Deps(ctx, "a"); return err }(),
	} {
		if !errors.Is(err, ErrNoDevice) {
			t.Errorf("%s(removed a) = %v, want ErrNoDevice", name, err)
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := f.Create(cctx, "d", "", table, 0); !errors.Is(err, context.Canceled) {
		t.Errorf("Create(canceled) = %v, want context.Canceled", err)
	}
}
