package store

import (
	"bytes"
	"context"
	"errors"
	"testing"
)

func TestMem(t *testing.T) {
	ctx := context.Background()
	m := NewMem()
	id, b := testChunk(t, "mem chunk")
	if _, err := m.Get(ctx, id); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(%s) on empty = %v, want ErrNotFound", id, err)
	}
	if has, err := m.Has(ctx, id); has || err != nil {
		t.Errorf("Has(%s) on empty = %v, %v, want false, nil", id, has, err)
	}
	if err := m.Put(ctx, id, b); err != nil {
		t.Fatalf("Put(%s) = %v", id, err)
	}
	b[0] ^= 0xff // Mem keeps its own copy
	got, err := m.Get(ctx, id)
	if err != nil || got[0] == b[0] {
		t.Errorf("Get(%s) = %x, %v, want the bytes as put", id, got, err)
	}
	got[0] ^= 0xff // and hands out copies
	again, _ := m.Get(ctx, id)
	if bytes.Equal(again, got) {
		t.Errorf("Get(%s) after changing the returned slice = %x, want unchanged", id, again)
	}
	if has, err := m.Has(ctx, id); !has || err != nil {
		t.Errorf("Has(%s) = %v, %v, want true, nil", id, has, err)
	}
	if got := m.Len(); got != 1 {
		t.Errorf("Len() = %d, want 1", got)
	}
	if got := m.Gets(); got != 3 {
		t.Errorf("Gets() = %d, want 3", got)
	}
}
