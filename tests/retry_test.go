package tests

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-update/lifeboat/pkg/assemble"
	"github.com/lifeboat-update/lifeboat/pkg/store"
)

// TestExtractHTTPRetry checks that a chunk server that fails a request
// now and then costs retries, not the update.
func TestExtractHTTPRetry(t *testing.T) {
	data := randomImage(11, 3<<20)
	tests := []struct {
		name     string
		failures int // requests for the victim chunk that fail
		answer   func(w http.ResponseWriter, body []byte)
	}{
		{"500 once", 1, func(w http.ResponseWriter, _ []byte) {
			http.Error(w, "broken", http.StatusInternalServerError)
		}},
		{"503 thrice", 3, func(w http.ResponseWriter, _ []byte) {
			http.Error(w, "busy", http.StatusServiceUnavailable)
		}},
		{"body cut twice", 2, func(w http.ResponseWriter, body []byte) {
			cutBody(t, w, body)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBadRun(t, data)
			victim := b.victim.ID.String()
			body := readFile(t, b.chunkFile(t, b.victim.ID))
			srv := newChunkServer(t, b.store, func(w http.ResponseWriter, r *http.Request, id string, n int) bool {
				if id != victim || n > tt.failures {
					return false
				}
				tt.answer(w, body)
				return true
			})
			target := filepath.Join(t.TempDir(), "target.img")
			args := []string{"extract", "--json", "--progress=none", "--store=" + srv.URL, b.index, target}
			r := lifeboat(t, args...)
			if r.code != 0 {
				t.Fatalf("lifeboat %s: exit status %d\n%s", strings.Join(args, " "), r.code, r.stderr)
			}
			sameFile(t, target, b.img)
			stats := decodeStats(t, r.stdout)
			if stats.Retries != int64(tt.failures) {
				t.Errorf("stats.retries = %d, want %d", stats.Retries, tt.failures)
			}
			wantRequests(t, srv, b.victim.ID, tt.failures+1)
		})
	}
}

// TestHTTPStoreTimeout checks that a chunk server that never answers a
// request for one chunk fails the update within the per-attempt timeout
// and its retries, naming the chunk, and leaves no target behind. The CLI
// has no timeout flag and the default timeout is 30s, so this drives
// store.NewHTTP and assemble.Assemble in-process, as `lifeboat extract`
// does, with a short timeout.
func TestHTTPStoreTimeout(t *testing.T) {
	b := newBadRun(t, randomImage(12, 3<<20))
	victim := b.victim.ID.String()
	release := make(chan struct{})
	srv := newChunkServer(t, b.store, func(w http.ResponseWriter, r *http.Request, id string, n int) bool {
		if id != victim {
			return false
		}
		select {
		case <-r.Context().Done(): // the client gave up
		case <-release: // the test is over
		}
		return true
	})
	t.Cleanup(func() { close(release) }) // before srv.Close, which waits for handlers

	const timeout, retries = 200 * time.Millisecond, 2
	st, err := store.NewHTTP(srv.URL, store.WithTimeout(timeout), store.WithRetries(retries), store.WithBackoff(10*time.Millisecond, 50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	targetPath := filepath.Join(t.TempDir(), "target.img")
	target, err := assemble.OpenTarget(targetPath, int64(b.x.Size()))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = assemble.Assemble(t.Context(), b.x, target, assemble.Options{Stores: []store.Store{st}, Fresh: target.Fresh()})
	took := time.Since(start)
	if err == nil {
		target.Commit()
		t.Fatalf("Assemble(%s) with a server that never answers chunk %s = nil error, want a timeout", srv.URL, victim)
	}
	target.Abort()
	t.Logf("Assemble: %v after %v", err, took)
	var ce *assemble.ChunkError
	if !errors.As(err, &ce) || ce.ID != b.victim.ID || ce.Offset != b.victim.Start {
		t.Errorf("Assemble() = %v, want a *assemble.ChunkError for chunk %s at offset %d", err, victim, b.victim.Start)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Assemble() = %v, want it to wrap context.DeadlineExceeded", err)
	}
	for _, w := range []string{"giving up after 3 attempts", "timed out after 200ms"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("Assemble() = %q, want it to contain %q", err, w)
		}
	}
	// Three attempts of 200ms and two short waits; allow for a slow machine.
	if limit := 10 * time.Second; took > limit {
		t.Errorf("Assemble() took %v, want under %v", took, limit)
	}
	wantRequests(t, srv, b.victim.ID, retries+1)
	noTarget(t, targetPath)
}
