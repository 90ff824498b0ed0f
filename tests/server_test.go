package tests

import (
	"net/http"
	"net/http/httptest"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/lifeboat-update/lifeboat/pkg/chunk"
	"github.com/lifeboat-update/lifeboat/pkg/store"
)

// fault may answer a request itself, in place of the store: n counts the
// requests for the same chunk so far, this one included. It reports
// whether it answered.
type fault func(w http.ResponseWriter, r *http.Request, id string, n int) bool

// chunkServer serves a store directory over loopback as `lifeboat-release
// chunk-server` does (store.NewHandler), behind a middleware that counts
// the requests and the response body bytes it sends and may inject faults.
type chunkServer struct {
	*httptest.Server
	requests atomic.Int64
	sent     atomic.Int64 // response body bytes written by the store's handler

	mu   sync.Mutex
	hits map[string]int // requests per chunk ID
}

func newChunkServer(t *testing.T, dir string, f fault) *chunkServer {
	t.Helper()
	l, err := store.NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	s := &chunkServer{hits: make(map[string]int)}
	h := store.NewHandler(l)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		id := strings.TrimSuffix(path.Base(r.URL.Path), ".cacnk")
		s.mu.Lock()
		s.hits[id]++
		n := s.hits[id]
		s.mu.Unlock()
		if f != nil && f(w, r, id, n) {
			return
		}
		h.ServeHTTP(&countingWriter{ResponseWriter: w, n: &s.sent}, r)
	}))
	t.Cleanup(s.Close)
	return s
}

// requestsFor returns how many requests asked for chunk id.
func (s *chunkServer) requestsFor(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits[id]
}

// fetched returns the chunks that were asked for, sorted.
func (s *chunkServer) fetched() []chunk.ID {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []chunk.ID
	for h := range s.hits {
		if id, err := chunk.ParseID(h); err == nil {
			ids = append(ids, id)
		}
	}
	slices.SortFunc(ids, compareIDs)
	return ids
}

// countingWriter counts the body bytes written through it.
type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (w *countingWriter) Write(b []byte) (int, error) {
	n, err := w.ResponseWriter.Write(b)
	w.n.Add(int64(n))
	return n, err
}
