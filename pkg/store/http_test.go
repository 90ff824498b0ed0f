package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lifeboat-update/lifeboat/pkg/chunk"
)

// newServer starts a loopback server for h, closed when the test ends.
func newServer(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// newHTTP makes an HTTP store on base with tiny backoffs, then opts.
func newHTTP(t *testing.T, base string, opts ...HTTPOption) *HTTP {
	t.Helper()
	fast := []HTTPOption{WithBackoff(time.Millisecond, 2*time.Millisecond)}
	h, err := NewHTTP(base, append(fast, opts...)...)
	if err != nil {
		t.Fatalf("NewHTTP(%q) = %v", base, err)
	}
	return h
}

// failFirst answers the first n requests with status and passes the rest
// to next.
func failFirst(n int, status int, next http.Handler) http.Handler {
	var seen atomic.Int64
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if seen.Add(1) <= int64(n) {
			http.Error(w, "injected failure", status)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// cutBody answers with a Content-Length of len(body) but sends only half
// of body before closing the connection.
func cutBody(body []byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, bw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			panic(err)
		}
		defer conn.Close()
		fmt.Fprintf(bw, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", len(body))
		bw.Write(body[:len(body)/2])
		bw.Flush()
	})
}

func TestHTTPGet(t *testing.T) {
	ctx := context.Background()
	id, b := testChunk(t, "served over http")
	missing, _ := testChunk(t, "missing")
	mem := memWith(t, "served over http")

	for _, tc := range []struct {
		name     string
		handler  http.Handler
		path     string // appended to the server URL to make the base
		id       chunk.ID
		want     []byte
		wantErr  string // substring of the error; "" for none
		notFound bool
		requests int64
	}{
		{name: "ok", handler: NewHandler(mem), id: id, want: b, requests: 1},
		{name: "prefix", handler: http.StripPrefix("/store", NewHandler(mem)), path: "/store", id: id, want: b, requests: 1},
		{name: "prefix slash", handler: http.StripPrefix("/store", NewHandler(mem)), path: "/store/", id: id, want: b, requests: 1},
		{name: "404", handler: NewHandler(mem), id: missing, notFound: true, wantErr: "not found", requests: 1},
		{name: "410", handler: failFirst(10, http.StatusGone, nil), id: id, notFound: true, wantErr: "not found", requests: 1},
		{name: "403", handler: failFirst(10, http.StatusForbidden, nil), id: id, wantErr: ": 403 Forbidden", requests: 1},
		{name: "500 then ok", handler: failFirst(2, http.StatusInternalServerError, NewHandler(mem)), id: id, want: b, requests: 3},
		{name: "429 then ok", handler: failFirst(1, http.StatusTooManyRequests, NewHandler(mem)), id: id, want: b, requests: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t, tc.handler)
			h := newHTTP(t, srv.URL+tc.path)
			got, err := h.Get(ctx, tc.id)
			if tc.wantErr == "" {
				if err != nil || !bytes.Equal(got, tc.want) {
					t.Errorf("Get(%s) = %d bytes, %v, want %d bytes", tc.id, len(got), err, len(tc.want))
				}
			} else if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Get(%s) = %v, want error containing %q", tc.id, err, tc.wantErr)
			}
			if errors.Is(err, ErrNotFound) != tc.notFound {
				t.Errorf("errors.Is(%v, ErrNotFound) = %v, want %v", err, !tc.notFound, tc.notFound)
			}
			st := h.Stats()
			if st.Requests != tc.requests || st.Retries != tc.requests-1 {
				t.Errorf("Stats() = %+v, want %d requests and %d retries", st, tc.requests, tc.requests-1)
			}
			if tc.wantErr == "" && st.BytesReceived != int64(len(tc.want)) {
				t.Errorf("Stats().BytesReceived = %d, want %d", st.BytesReceived, len(tc.want))
			}
		})
	}
}

func TestHTTPHas(t *testing.T) {
	ctx := context.Background()
	id, _ := testChunk(t, "has")
	missing, _ := testChunk(t, "missing")
	mem := memWith(t, "has")
	for _, tc := range []struct {
		name     string
		handler  http.Handler
		id       chunk.ID
		want     bool
		wantErr  bool
		requests int64
	}{
		{name: "present", handler: NewHandler(mem), id: id, want: true, requests: 1},
		{name: "missing", handler: NewHandler(mem), id: missing, requests: 1},
		{name: "503 then present", handler: failFirst(1, http.StatusServiceUnavailable, NewHandler(mem)), id: id, want: true, requests: 2},
		{name: "401", handler: failFirst(1, http.StatusUnauthorized, NewHandler(mem)), id: id, wantErr: true, requests: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var methods []string
			var mu sync.Mutex
			srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				methods = append(methods, r.Method)
				mu.Unlock()
				tc.handler.ServeHTTP(w, r)
			}))
			h := newHTTP(t, srv.URL)
			got, err := h.Has(ctx, tc.id)
			if got != tc.want || (err != nil) != tc.wantErr {
				t.Errorf("Has(%s) = %v, %v, want %v, error %v", tc.id, got, err, tc.want, tc.wantErr)
			}
			if st := h.Stats(); st.Requests != tc.requests {
				t.Errorf("Stats().Requests = %d, want %d", st.Requests, tc.requests)
			}
			for _, m := range methods {
				if m != http.MethodHead {
					t.Errorf("Has sent %s, want HEAD", m)
				}
			}
		})
	}
}

func TestHTTPGiveUp(t *testing.T) {
	ctx := context.Background()
	id, b := testChunk(t, strings.Repeat("a chunk long enough to cut in half ", 20))
	for _, tc := range []struct {
		name    string
		handler http.Handler
		cause   string // error after "giving up after 3 attempts: "
		is      error
	}{
		{
			name:    "503",
			handler: failFirst(100, http.StatusServiceUnavailable, nil),
			cause:   "503 Service Unavailable",
		},
		{
			name:    "cut body",
			handler: cutBody(b),
			cause:   "read body: unexpected EOF",
			is:      io.ErrUnexpectedEOF,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t, tc.handler)
			h := newHTTP(t, srv.URL, WithRetries(2))
			_, err := h.Get(ctx, id)
			want := fmt.Sprintf("GET %s%s: giving up after 3 attempts: %s", srv.URL, chunkPath(id), tc.cause)
			if err == nil || err.Error() != want {
				t.Errorf("Get(%s) = %v, want %s", id, err, want)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("errors.Is(%v, %v) = false, want true", err, tc.is)
			}
			if st := h.Stats(); st.Requests != 3 || st.Retries != 2 {
				t.Errorf("Stats() = %+v, want 3 requests, 2 retries", st)
			}
		})
	}

	var se *StatusError
	srv := newServer(t, failFirst(100, http.StatusBadGateway, nil))
	_, err := newHTTP(t, srv.URL, WithRetries(0)).Get(ctx, id)
	if !errors.As(err, &se) || se.StatusCode != http.StatusBadGateway {
		t.Errorf("Get(%s) = %v, want a *StatusError with code 502", id, err)
	}
}

func TestHTTPCutBodyThenOK(t *testing.T) {
	id, b := testChunk(t, strings.Repeat("cut once ", 50))
	var n atomic.Int64
	mem := memWith(t, strings.Repeat("cut once ", 50))
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			cutBody(b).ServeHTTP(w, r)
			return
		}
		NewHandler(mem).ServeHTTP(w, r)
	}))
	h := newHTTP(t, srv.URL)
	got, err := h.Get(context.Background(), id)
	if err != nil || !bytes.Equal(got, b) {
		t.Errorf("Get(%s) = %d bytes, %v, want %d bytes", id, len(got), err, len(b))
	}
	if st := h.Stats(); st.Retries != 1 {
		t.Errorf("Stats().Retries = %d, want 1", st.Retries)
	}
}

func TestHTTPTooLarge(t *testing.T) {
	id, _ := testChunk(t, "whatever")
	const limit = 1000
	big := bytes.Repeat([]byte{'x'}, 10*limit)
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
	}{
		{"content length", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", fmt.Sprint(len(big)))
			w.Write(big)
		}},
		{"chunked", func(w http.ResponseWriter, r *http.Request) {
			http.NewResponseController(w).Flush() // no Content-Length now
			w.Write(big)
		}},
		{"endless", func(w http.ResponseWriter, r *http.Request) {
			for r.Context().Err() == nil {
				if _, err := w.Write(big); err != nil {
					return
				}
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t, tc.handler)
			h := newHTTP(t, srv.URL, WithMaxChunkSize(limit))
			_, err := h.Get(context.Background(), id)
			if !errors.Is(err, ErrTooLarge) {
				t.Errorf("Get(%s) = %v, want ErrTooLarge", id, err)
			}
			if st := h.Stats(); st.Requests != 1 || st.BytesReceived > limit+1 {
				t.Errorf("Stats() = %+v, want 1 request and at most %d bytes", st, limit+1)
			}
		})
	}
}

// blockingServer starts a server whose handler signals on arrived (if
// not nil) and then waits for the client to go away or the test to end.
func blockingServer(t *testing.T, arrived chan<- struct{}) *httptest.Server {
	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if arrived != nil {
			arrived <- struct{}{}
		}
		select {
		case <-r.Context().Done():
		case <-done:
		}
	}))
	t.Cleanup(func() {
		close(done) // before Close, which waits for handlers
		srv.Close()
	})
	return srv
}

func TestHTTPContext(t *testing.T) {
	id, _ := testChunk(t, "slow")

	t.Run("deadline", func(t *testing.T) {
		srv := blockingServer(t, nil)
		h := newHTTP(t, srv.URL)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := h.Get(ctx, id)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Get(%s) = %v, want context.DeadlineExceeded", id, err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("Get(%s) took %v after a 50ms deadline", id, d)
		}
		if st := h.Stats(); st.Retries != 0 {
			t.Errorf("Stats().Retries = %d, want 0", st.Retries)
		}
	})

	t.Run("cancel during backoff", func(t *testing.T) {
		arrived := make(chan struct{}, 1)
		srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			arrived <- struct{}{}
		}))
		// An hour's backoff: only a wait that heeds ctx lets this return.
		h := newHTTP(t, srv.URL, WithBackoff(time.Hour, time.Hour))
		ctx, cancel := context.WithCancel(context.Background())
		go func() { <-arrived; cancel() }()
		if _, err := h.Get(ctx, id); !errors.Is(err, context.Canceled) {
			t.Errorf("Get(%s) = %v, want context.Canceled", id, err)
		}
	})

	t.Run("wait", func(t *testing.T) {
		h := newHTTP(t, "http://127.0.0.1/", WithBackoff(time.Hour, time.Hour))
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := h.wait(ctx, 1); !errors.Is(err, context.Canceled) {
			t.Errorf("wait(canceled ctx, 1) = %v, want context.Canceled", err)
		}
	})

	t.Run("attempt timeout", func(t *testing.T) {
		srv := blockingServer(t, nil)
		h := newHTTP(t, srv.URL, WithTimeout(20*time.Millisecond), WithRetries(1))
		_, err := h.Get(context.Background(), id)
		if err == nil || !strings.Contains(err.Error(), "giving up after 2 attempts: attempt timed out after 20ms") {
			t.Errorf("Get(%s) = %v, want giving up after 2 timed-out attempts", id, err)
		}
	})

	t.Run("canceled waiting for a slot", func(t *testing.T) {
		arrived := make(chan struct{})
		srv := blockingServer(t, arrived)
		h := newHTTP(t, srv.URL, WithConcurrency(1))
		hold, release := context.WithCancel(context.Background())
		defer release()
		go h.Get(hold, id) // takes the only slot
		<-arrived
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := h.Get(ctx, id); !errors.Is(err, context.Canceled) {
			t.Errorf("Get(%s) with no free slot = %v, want context.Canceled", id, err)
		}
	})
}

func TestHTTPConcurrency(t *testing.T) {
	const limit, total = 3, 12
	mem := NewMem()
	var ids []chunk.ID
	for i := range total {
		id, b := testChunk(t, fmt.Sprint("chunk ", i))
		mem.Put(context.Background(), id, b)
		ids = append(ids, id)
	}
	var cur, peak atomic.Int64
	arrived := make(chan struct{})
	release := make(chan struct{})
	inner := NewHandler(mem)
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := cur.Add(1)
		defer cur.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		arrived <- struct{}{}
		<-release
		inner.ServeHTTP(w, r)
	}))
	h := newHTTP(t, srv.URL, WithConcurrency(limit))

	var wg sync.WaitGroup
	errs := make([]error, total)
	for i, id := range ids {
		wg.Go(func() { _, errs[i] = h.Get(context.Background(), id) })
	}
	// Let requests through one at a time, and only while limit are held.
	for range limit {
		<-arrived
	}
	for range total - limit {
		release <- struct{}{}
		<-arrived
	}
	for range limit {
		release <- struct{}{}
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Get(%s) = %v", ids[i], err)
		}
	}
	if p := peak.Load(); p != limit {
		t.Errorf("peak requests in flight = %d, want %d", p, limit)
	}
}

func TestHTTPHeader(t *testing.T) {
	id, _ := testChunk(t, "auth")
	var got string
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Get("Authorization")
		http.NotFound(w, r)
	}))
	h := newHTTP(t, srv.URL, WithHeader("Authorization", "Bearer token"))
	h.Get(context.Background(), id)
	if got != "Bearer token" {
		t.Errorf("Authorization header = %q, want %q", got, "Bearer token")
	}
}

func TestNewHTTP(t *testing.T) {
	for _, tc := range []struct {
		base    string
		opts    []HTTPOption
		wantErr string // substring; "" for success
		name    string // String() on success
	}{
		{base: "http://host/store", name: "http://host/store/"},
		{base: "HTTPS://host/store/", name: "https://host/store/"},
		{base: "https://user:secret@host/", name: "https://user:xxxxx@host/"},
		{base: "ftp://host/store", wantErr: "scheme must be http or https"},
		{base: "/var/store", wantErr: "scheme must be http or https"},
		{base: "", wantErr: "scheme must be http or https"},
		{base: "http:///store", wantErr: "no host"},
		{base: "http://host/store?x=1", wantErr: "query"},
		{base: "http://host/", opts: []HTTPOption{WithConcurrency(0)}, wantErr: "concurrency"},
		{base: "http://host/", opts: []HTTPOption{WithRetries(-1)}, wantErr: "retries"},
		{base: "http://host/", opts: []HTTPOption{WithBackoff(time.Second, time.Millisecond)}, wantErr: "backoff"},
		{base: "http://host/", opts: []HTTPOption{WithMaxChunkSize(0)}, wantErr: "max chunk size"},
		{base: "http://host/", opts: []HTTPOption{WithTimeout(-1)}, wantErr: "timeout"},
	} {
		h, err := NewHTTP(tc.base, tc.opts...)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("NewHTTP(%q) = %v, want success", tc.base, err)
		case tc.wantErr == "" && h.String() != tc.name:
			t.Errorf("NewHTTP(%q).String() = %q, want %q", tc.base, h.String(), tc.name)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("NewHTTP(%q) = %v, want error containing %q", tc.base, err, tc.wantErr)
		}
	}
}

func TestBackoff(t *testing.T) {
	for _, tc := range []struct {
		base, max time.Duration
		attempt   int
		bound     time.Duration
	}{
		{100 * time.Millisecond, 5 * time.Second, 1, 100 * time.Millisecond},
		{100 * time.Millisecond, 5 * time.Second, 3, 400 * time.Millisecond},
		{100 * time.Millisecond, 5 * time.Second, 10, 5 * time.Second},
		{time.Second, math.MaxInt64, 200, math.MaxInt64},
		{0, 0, 5, 0},
	} {
		for range 100 {
			if d := backoff(tc.base, tc.max, tc.attempt); d < 0 || d > tc.bound {
				t.Errorf("backoff(%v, %v, %d) = %v, want in [0, %v]", tc.base, tc.max, tc.attempt, d, tc.bound)
			}
		}
	}
}

func TestReadBody(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789"), 100)
	for _, tc := range []struct {
		name        string
		size, limit int64
		tooLarge    bool
	}{
		{"exact hint", 1000, 1000, false},
		{"no hint", -1, 1000, false},
		{"small hint", 10, 5000, false},
		{"hint over limit", 1000, 999, true},
		{"body over limit", -1, 999, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readBody(bytes.NewReader(data), tc.size, tc.limit)
			if tc.tooLarge {
				if !errors.Is(err, ErrTooLarge) {
					t.Errorf("readBody(%d, %d) = %v, want ErrTooLarge", tc.size, tc.limit, err)
				}
				return
			}
			if err != nil || !bytes.Equal(got, data) {
				t.Errorf("readBody(%d, %d) = %d bytes, %v, want %d bytes", tc.size, tc.limit, len(got), err, len(data))
			}
			if tc.size == int64(len(data)) && cap(got) != len(data)+1 {
				t.Errorf("readBody(%d, %d) cap = %d, want %d (no regrowth)", tc.size, tc.limit, cap(got), len(data)+1)
			}
		})
	}
}
