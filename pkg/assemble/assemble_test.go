package assemble

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/lifeboat-update/lifeboat/pkg/chunk"
	"github.com/lifeboat-update/lifeboat/pkg/store"
)

// memTarget is an in-memory Target that records what was written where.
type memTarget struct {
	mu      sync.Mutex
	b       []byte
	written int64
}

func (m *memTarget) ReadAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return bytes.NewReader(m.b).ReadAt(p, off)
}

func (m *memTarget) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.written += int64(len(p))
	return copy(m.b[off:], p), nil
}

var params = chunk.Params{Min: 4 << 10, Avg: 16 << 10, Max: 64 << 10}

func randomBytes(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// image returns random data with a long run of zeros in the middle.
func image(seed uint64) []byte {
	b := randomBytes(seed, 2<<20)
	clear(b[700<<10 : 1100<<10])
	return b
}

// makeIndex chunks data into a fresh Mem store.
func makeIndex(t *testing.T, data []byte) (*chunk.Index, *store.Mem) {
	t.Helper()
	c, err := chunk.NewChunker(params)
	if err != nil {
		t.Fatal(err)
	}
	x := chunk.NewIndex(params, chunk.SHA512256)
	x.Chunks, err = chunk.Scan(context.Background(), bytes.NewReader(data), int64(len(data)), c, x.Digest, chunk.ScanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m := store.NewMem()
	if _, err := store.AddChunks(context.Background(), m, bytes.NewReader(data), x.Chunks, nil); err != nil {
		t.Fatal(err)
	}
	return x, m
}

// edit returns a copy of data with a few regions overwritten.
func edit(data []byte) []byte {
	out := bytes.Clone(data)
	copy(out[100<<10:], randomBytes(99, 30<<10))
	copy(out[1500<<10:], randomBytes(98, 200<<10))
	return out
}

func TestAssembleFromStore(t *testing.T) {
	data := image(1)
	x, m := makeIndex(t, data)
	target := &memTarget{b: make([]byte, len(data))}
	st, err := Assemble(context.Background(), x, target, Options{Stores: []store.Store{m}, Fresh: true})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(target.b, data) {
		t.Fatal("Assemble wrote the wrong image")
	}
	if st.Zero.Chunks == 0 {
		t.Errorf("Assemble stats = %+v, want zero chunks settled without the store", st)
	}
	if got, want := st.Stores[0].Bytes+st.Zero.Bytes, int64(len(data)); got != want {
		t.Errorf("store+zero bytes = %d, want %d", got, want)
	}
	if got := int64(m.Gets()); got != st.Stores[0].Chunks {
		t.Errorf("store Gets = %d, want one per distinct non-zero chunk (%d)", got, st.Stores[0].Chunks)
	}
}

func TestAssembleZeroTail(t *testing.T) {
	// An image ending in zeros ends in a zero chunk shorter than the
	// maximum, which appears once: it must not be fetched.
	data := append(randomBytes(10, 1<<20), make([]byte, 1060921)...)
	x, m := makeIndex(t, data)
	last := x.Chunks[len(x.Chunks)-1]
	if last.Size == params.Max {
		t.Fatalf("test image's last chunk is %d bytes, want a short one", last.Size)
	}
	target := &memTarget{b: make([]byte, len(data))}
	st, err := Assemble(context.Background(), x, target, Options{Stores: []store.Store{m}, Fresh: true})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(target.b, data) {
		t.Fatal("Assemble wrote the wrong image")
	}
	if want := int64(len(data) - 1<<20); st.Zero.Bytes < want-int64(params.Max) {
		t.Errorf("zero bytes = %d, want about %d: the zero tail was fetched", st.Zero.Bytes, want)
	}
	if got := st.Zero.Bytes + st.Stores[0].Bytes; got != int64(len(data)) {
		t.Errorf("zero + store bytes = %d, want %d", got, len(data))
	}
	if st.Stores[0].Bytes > 1<<20+int64(params.Max) {
		t.Errorf("store bytes = %d, want at most the random part and one boundary chunk", st.Stores[0].Bytes)
	}
}

func TestAssembleWithSeed(t *testing.T) {
	old := image(2)
	newer := edit(old)
	x, m := makeIndex(t, newer)
	oldIdx, _ := makeIndex(t, old)
	for _, tc := range []struct {
		name string
		seed *Seed
	}{
		{"chunked on the fly", &Seed{Name: "old", R: bytes.NewReader(old), Size: int64(len(old))}},
		{"with index", &Seed{Name: "old", R: bytes.NewReader(old), Size: int64(len(old)), Index: oldIdx}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := &memTarget{b: make([]byte, len(newer))}
			st, err := Assemble(context.Background(), x, target, Options{Stores: []store.Store{m}, Seeds: []*Seed{tc.seed}, Fresh: true})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(target.b, newer) {
				t.Fatal("Assemble wrote the wrong image")
			}
			// The store serves exactly the distinct chunks the seed lacks.
			have := map[chunk.ID]bool{}
			for _, e := range oldIdx.Chunks {
				have[e.ID] = true
			}
			missing := map[chunk.ID]bool{}
			for _, e := range x.Chunks {
				if !have[e.ID] && e.ID != chunk.SHA512256.Sum(make([]byte, e.Size)) {
					missing[e.ID] = true
				}
			}
			if got := st.Stores[0].Chunks; got != int64(len(missing)) {
				t.Errorf("chunks from store = %d, want %d (missing from seed)", got, len(missing))
			}
			if st.Seeds[0].Chunks == 0 {
				t.Errorf("no chunks from the seed: %+v", st)
			}
		})
	}
}

func TestAssembleInPlace(t *testing.T) {
	old := image(3)
	newer := edit(old)
	x, m := makeIndex(t, newer)
	target := &memTarget{b: bytes.Clone(old)}
	st, err := Assemble(context.Background(), x, target, Options{Stores: []store.Store{m}, InPlace: true})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(target.b, newer) {
		t.Fatal("Assemble wrote the wrong image")
	}
	if st.InPlace.Chunks == 0 {
		t.Errorf("in-place chunks = 0, want the unchanged chunks kept")
	}
	if want := int64(len(newer)) - st.InPlace.Bytes; target.written != want {
		t.Errorf("bytes written = %d, want %d (only the chunks not already in place)", target.written, want)
	}
}

func TestAssembleRejectsBadChunks(t *testing.T) {
	data := randomBytes(4, 1<<20)
	x, m := makeIndex(t, data)
	victim := x.Chunks[3]

	corrupt := store.NewMem()
	for _, e := range x.Chunks {
		b, _ := m.Get(context.Background(), e.ID)
		if e.ID == victim.ID {
			raw := make([]byte, e.Size)
			copy(raw, data[e.Start:e.End()])
			raw[10] ^= 1
			b = chunk.Compress(nil, raw)
		}
		corrupt.Put(context.Background(), e.ID, b)
	}
	missing := store.NewMem()
	for _, e := range x.Chunks {
		if e.ID != victim.ID {
			b, _ := m.Get(context.Background(), e.ID)
			missing.Put(context.Background(), e.ID, b)
		}
	}
	for _, tc := range []struct {
		name  string
		store store.Store
		is    error
	}{
		{"flipped bit", corrupt, chunk.ErrCorrupt},
		{"missing chunk", missing, store.ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := &memTarget{b: make([]byte, len(data))}
			_, err := Assemble(context.Background(), x, target, Options{Stores: []store.Store{tc.store}, Fresh: true, Workers: 1})
			var ce *ChunkError
			if !errors.As(err, &ce) || !errors.Is(err, tc.is) {
				t.Fatalf("Assemble = %v, want a ChunkError wrapping %v", err, tc.is)
			}
			if ce.ID != victim.ID || ce.Offset != victim.Start || ce.Index != 3 {
				t.Errorf("ChunkError names chunk %d %s at %d, want 3 %s at %d", ce.Index, ce.ID, ce.Offset, victim.ID, victim.Start)
			}
			if !bytes.Equal(target.b[victim.Start:victim.End()], make([]byte, victim.Size)) {
				t.Errorf("bytes of the bad chunk reached the target")
			}
		})
	}
}

func TestAssembleFailsOver(t *testing.T) {
	data := randomBytes(5, 1<<20)
	x, m := makeIndex(t, data)
	empty := store.NewMem()
	target := &memTarget{b: make([]byte, len(data))}
	st, err := Assemble(context.Background(), x, target, Options{Stores: []store.Store{empty, m}, Fresh: true})
	if err != nil {
		t.Fatal(err)
	}
	if st.Stores[0].Chunks != 0 || st.Stores[1].Chunks != int64(len(x.Chunks)) {
		t.Errorf("per-store chunks = %d, %d, want 0, %d", st.Stores[0].Chunks, st.Stores[1].Chunks, len(x.Chunks))
	}
}

func TestAssembleSeedMismatch(t *testing.T) {
	data := randomBytes(6, 1<<20)
	x, m := makeIndex(t, data)
	// The seed's index claims it holds the image, but its bytes differ.
	liar := bytes.Clone(data)
	liar[x.Chunks[2].Start+5] ^= 0xff
	target := &memTarget{b: make([]byte, len(data))}
	seed := &Seed{Name: "liar", R: bytes.NewReader(liar), Size: int64(len(liar)), Index: x}
	st, err := Assemble(context.Background(), x, target, Options{Stores: []store.Store{m}, Seeds: []*Seed{seed}, Fresh: true})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(target.b, data) {
		t.Fatal("Assemble wrote the wrong image")
	}
	if st.SeedMismatches != 1 || st.Stores[0].Chunks != 1 {
		t.Errorf("mismatches = %d, store chunks = %d, want 1 and 1", st.SeedMismatches, st.Stores[0].Chunks)
	}
}

func TestAssembleNoSource(t *testing.T) {
	data := randomBytes(7, 200<<10)
	x, _ := makeIndex(t, data)
	target := &memTarget{b: make([]byte, len(data))}
	if _, err := Assemble(context.Background(), x, target, Options{Fresh: true}); err == nil {
		t.Fatal("Assemble with no store and no seed succeeded")
	}
}

func TestAssembleCancelled(t *testing.T) {
	data := randomBytes(8, 1<<20)
	x, m := makeIndex(t, data)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	target := &memTarget{b: make([]byte, len(data))}
	if _, err := Assemble(ctx, x, target, Options{Stores: []store.Store{m}, Fresh: true}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Assemble(cancelled) = %v, want context.Canceled", err)
	}
}

func TestStream(t *testing.T) {
	data := image(11)
	x, m := makeIndex(t, data)
	var out bytes.Buffer
	st, err := Stream(context.Background(), x, &out, Options{Stores: []store.Store{m}, Workers: 3})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), data) {
		t.Fatal("Stream wrote the wrong image")
	}
	if st.Stores[0].Bytes != int64(len(data)) {
		t.Errorf("stream stats: %d bytes from the store, want %d", st.Stores[0].Bytes, len(data))
	}

	// A corrupt chunk stops the stream before any of its bytes.
	bad := store.NewMem()
	victim := x.Chunks[5]
	for _, e := range x.Chunks {
		b, _ := m.Get(context.Background(), e.ID)
		if e.ID == victim.ID {
			b = chunk.Compress(nil, make([]byte, e.Size))
		}
		bad.Put(context.Background(), e.ID, b)
	}
	out.Reset()
	_, err = Stream(context.Background(), x, &out, Options{Stores: []store.Store{bad}})
	var ce *ChunkError
	if !errors.As(err, &ce) || ce.Index != 5 || !errors.Is(err, chunk.ErrCorrupt) {
		t.Fatalf("Stream with a corrupt chunk = %v, want a ChunkError for chunk 5", err)
	}
	if uint64(out.Len()) != victim.Start {
		t.Errorf("Stream wrote %d bytes, want exactly the %d before the bad chunk", out.Len(), victim.Start)
	}
}
