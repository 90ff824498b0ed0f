package store

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/lifeboat-update/lifeboat/pkg/chunk"
)

func TestLocalRoundTrip(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "store") // NewLocal creates it
	l, err := NewLocal(dir)
	if err != nil {
		t.Fatalf("NewLocal(%q) = %v", dir, err)
	}
	for _, content := range []string{"a", "hello, chunk", string(make([]byte, 1<<16))} {
		id, b := testChunk(t, content)
		if has, err := l.Has(ctx, id); has || err != nil {
			t.Errorf("Has(%s) before Put = %v, %v, want false, nil", id, has, err)
		}
		if _, err := l.Get(ctx, id); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(%s) before Put = %v, want ErrNotFound", id, err)
		}
		if err := l.Put(ctx, id, b); err != nil {
			t.Fatalf("Put(%s) = %v", id, err)
		}
		// Putting it again is not an error.
		if err := l.Put(ctx, id, b); err != nil {
			t.Fatalf("second Put(%s) = %v", id, err)
		}
		h := id.String()
		want := filepath.Join(dir, h[:4], h+".cacnk")
		if got := l.Path(id); got != want {
			t.Errorf("Path(%s) = %q, want %q", id, got, want)
		}
		onDisk, err := os.ReadFile(want)
		if err != nil || !bytes.Equal(onDisk, b) {
			t.Errorf("ReadFile(%q) = %d bytes, %v, want the %d bytes put", want, len(onDisk), err, len(b))
		}
		got, err := l.Get(ctx, id)
		if err != nil || !bytes.Equal(got, b) {
			t.Errorf("Get(%s) = %d bytes, %v, want %d bytes", id, len(got), err, len(b))
		}
		if has, err := l.Has(ctx, id); !has || err != nil {
			t.Errorf("Has(%s) = %v, %v, want true, nil", id, has, err)
		}
		// Nothing but the chunk in its subdirectory: no temp file left.
		ents, err := os.ReadDir(filepath.Join(dir, h[:4]))
		if err != nil || len(ents) != 1 || ents[0].Name() != h+".cacnk" {
			t.Errorf("ReadDir(%s) = %v, %v, want just the chunk", h[:4], ents, err)
		}
	}
}

func TestLocalErrors(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	l, err := NewLocal(dir)
	if err != nil {
		t.Fatalf("NewLocal(%q) = %v", dir, err)
	}
	id, _ := testChunk(t, "dir in the way")
	// A directory where the chunk file should be: not "not found".
	if err := os.MkdirAll(l.Path(id), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err = l.Get(ctx, id)
	if err == nil || errors.Is(err, ErrNotFound) || !bytes.Contains([]byte(err.Error()), []byte(l.Path(id))) {
		t.Errorf("Get(%s) with a directory in place = %v, want an error naming %s", id, err, l.Path(id))
	}
	var nf *NotFoundError
	missing, _ := testChunk(t, "missing")
	if _, err := l.Get(ctx, missing); !errors.As(err, &nf) || nf.ID != missing || nf.Store != dir {
		t.Errorf("Get(missing) = %v, want *NotFoundError{%s, %s}", err, missing, dir)
	}

	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := NewLocal(file); err == nil {
		t.Errorf("NewLocal(%q) on a file = nil error, want one", file)
	}

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := l.Get(cctx, missing); !errors.Is(err, context.Canceled) {
		t.Errorf("Get(canceled ctx) = %v, want context.Canceled", err)
	}
}

func TestLocalConcurrentPut(t *testing.T) {
	ctx := context.Background()
	l, err := NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	id, b := testChunk(t, "same chunk from many writers")
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() { errs[i] = l.Put(ctx, id, b) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Put #%d = %v", i, err)
		}
	}
	if got, err := l.Get(ctx, id); err != nil || !bytes.Equal(got, b) {
		t.Errorf("Get(%s) = %d bytes, %v, want %d bytes", id, len(got), err, len(b))
	}
}

func TestLocalWalk(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	l, err := NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := map[chunk.ID]int64{}
	for _, c := range []string{"one", "two", "three"} {
		id, b := testChunk(t, c)
		if err := l.Put(ctx, id, b); err != nil {
			t.Fatal(err)
		}
		want[id] = int64(len(b))
	}
	// Things Walk must skip.
	some, _ := testChunk(t, "one")
	h := some.String()
	other, _ := testChunk(t, "not stored")
	oh := other.String()
	foreign := map[string]string{
		"README":                             "x",
		"zzzz/" + oh + ".cacnk":              "not a hex dir",
		"ABCD/" + oh + ".cacnk":              "upper-case dir",
		h[:4] + "/notes.txt":                 "foreign file",
		h[:4] + "/" + tmpPrefix + h + "-123": "temp file",
		h[:4] + "/" + oh + ".cacnk":          "wrong directory for its id",
		h[:4] + "/" + h + ".cacnk.tmp":       "other suffix",
	}
	for name, content := range foreign {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got := map[chunk.ID]int64{}
	var order []string
	err = l.Walk(ctx, func(id chunk.ID, size int64) error {
		got[id] = size
		order = append(order, id.String())
		return nil
	})
	if err != nil {
		t.Fatalf("Walk() = %v", err)
	}
	if len(got) != len(want) {
		t.Errorf("Walk() found %d chunks, want %d: %v", len(got), len(want), got)
	}
	for id, size := range want {
		if got[id] != size {
			t.Errorf("Walk() size of %s = %d, want %d", id, got[id], size)
		}
	}
	if !slices.IsSorted(order) {
		t.Errorf("Walk() order = %v, want sorted", order)
	}

	stop := errors.New("stop")
	calls := 0
	err = l.Walk(ctx, func(chunk.ID, int64) error { calls++; return stop })
	if err != stop || calls != 1 {
		t.Errorf("Walk(fn failing) = %v after %d calls, want %v after 1", err, calls, stop)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := l.Walk(cctx, func(chunk.ID, int64) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("Walk(canceled ctx) = %v, want context.Canceled", err)
	}
}
