package store

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
)

func TestRouterGet(t *testing.T) {
	ctx := context.Background()
	id, b := testChunk(t, "routed")
	errBoom := errors.New("boom")
	errDown := errors.New("down")
	for _, tc := range []struct {
		name      string
		stores    func() ([]Store, []*failStore)
		want      []byte
		notFound  bool
		is        []error
		contains  []string
		failCalls []int // calls each failStore saw
	}{
		{
			name: "failover to third",
			stores: func() ([]Store, []*failStore) {
				f := &failStore{name: "broken", err: errBoom}
				return []Store{f, NewMem(), memWith(t, "routed")}, []*failStore{f}
			},
			want:      b,
			failCalls: []int{1},
		},
		{
			name: "first wins",
			stores: func() ([]Store, []*failStore) {
				f := &failStore{name: "broken", err: errBoom}
				return []Store{memWith(t, "routed"), f}, []*failStore{f}
			},
			want:      b,
			failCalls: []int{0},
		},
		{
			name: "all not found",
			stores: func() ([]Store, []*failStore) {
				return []Store{NewMem(), NewMem()}, nil
			},
			notFound: true,
			contains: []string{"not found in router(mem, mem)"},
		},
		{
			name: "none",
			stores: func() ([]Store, []*failStore) {
				return nil, nil
			},
			notFound: true,
		},
		{
			name: "mixed",
			stores: func() ([]Store, []*failStore) {
				a := &failStore{name: "a", err: errBoom}
				c := &failStore{name: "c", err: errDown}
				return []Store{a, NewMem(), c}, []*failStore{a, c}
			},
			is:        []error{errBoom, errDown},
			contains:  []string{"a: boom", "mem: chunk " + id.String() + " not found", "c: down"},
			failCalls: []int{1, 1},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stores, fails := tc.stores()
			r := NewRouter(stores...)
			got, err := r.Get(ctx, id)
			if tc.want != nil && (err != nil || !bytes.Equal(got, tc.want)) {
				t.Errorf("Get(%s) = %d bytes, %v, want %d bytes", id, len(got), err, len(tc.want))
			}
			if tc.want == nil && err == nil {
				t.Errorf("Get(%s) = nil error, want one", id)
			}
			if errors.Is(err, ErrNotFound) != tc.notFound {
				t.Errorf("errors.Is(%v, ErrNotFound) = %v, want %v", err, !tc.notFound, tc.notFound)
			}
			var nf *NotFoundError
			if tc.notFound && (!errors.As(err, &nf) || nf.Store != r.String()) {
				t.Errorf("Get(%s) = %#v, want a *NotFoundError naming %s", id, err, r)
			}
			for _, target := range tc.is {
				if !errors.Is(err, target) {
					t.Errorf("errors.Is(%v, %v) = false, want true", err, target)
				}
			}
			for _, s := range tc.contains {
				if err == nil || !strings.Contains(err.Error(), s) {
					t.Errorf("Get(%s) = %v, want error containing %q", id, err, s)
				}
			}
			for i, f := range fails {
				if f.calls != tc.failCalls[i] {
					t.Errorf("store %s called %d times, want %d", f, f.calls, tc.failCalls[i])
				}
			}
		})
	}
}

func TestRouterCanceled(t *testing.T) {
	id, _ := testChunk(t, "x")
	f := &failStore{name: "f", err: errors.New("boom")}
	r := NewRouter(f, memWith(t, "x"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := r.Get(ctx, id); !errors.Is(err, context.Canceled) {
		t.Errorf("Get(canceled ctx) = %v, want context.Canceled", err)
	}
	if _, err := r.Has(ctx, id); !errors.Is(err, context.Canceled) {
		t.Errorf("Has(canceled ctx) = %v, want context.Canceled", err)
	}
	if f.calls != 0 {
		t.Errorf("store called %d times after cancel, want 0", f.calls)
	}
}

func TestRouterHas(t *testing.T) {
	ctx := context.Background()
	id, _ := testChunk(t, "x")
	boom := errors.New("boom")
	for _, tc := range []struct {
		name    string
		stores  []Store
		want    bool
		wantErr bool
	}{
		{"second has it", []Store{NewMem(), memWith(t, "x")}, true, false},
		{"failure then has it", []Store{&failStore{name: "f", err: boom}, memWith(t, "x")}, true, false},
		{"nobody", []Store{NewMem(), NewMem()}, false, false},
		{"nobody and a failure", []Store{NewMem(), &failStore{name: "f", err: boom}}, false, true},
	} {
		got, err := NewRouter(tc.stores...).Has(ctx, id)
		if got != tc.want || (err != nil) != tc.wantErr {
			t.Errorf("%s: Has(%s) = %v, %v, want %v, error %v", tc.name, id, got, err, tc.want, tc.wantErr)
		}
	}
}
