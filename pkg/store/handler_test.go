package store

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/lifeboat-update/lifeboat/pkg/chunk"
)

// serve runs one request through h.
func serve(h http.Handler, method, path string, body []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, "http://store.test/", bytes.NewReader(body))
	req.URL.Path = path // verbatim, so bad paths reach the handler
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

func TestHandlerGet(t *testing.T) {
	id, b := testChunk(t, "served")
	missing, _ := testChunk(t, "missing")
	h := NewHandler(memWith(t, "served"))
	good := chunkPath(id)
	hex := id.String()
	for _, tc := range []struct {
		name, method, path string
		code               int
		body               []byte
	}{
		{"get", http.MethodGet, good, http.StatusOK, b},
		{"head", http.MethodHead, good, http.StatusOK, nil},
		{"get missing", http.MethodGet, chunkPath(missing), http.StatusNotFound, nil},
		{"head missing", http.MethodHead, chunkPath(missing), http.StatusNotFound, nil},
		{"empty", http.MethodGet, "", http.StatusBadRequest, nil},
		{"root", http.MethodGet, "/", http.StatusBadRequest, nil},
		{"relative", http.MethodGet, good[1:], http.StatusBadRequest, nil},
		{"no dir", http.MethodGet, "/" + hex + ".cacnk", http.StatusBadRequest, nil},
		{"wrong dir", http.MethodGet, "/0000/" + hex + ".cacnk", http.StatusBadRequest, nil},
		{"upper dir", http.MethodGet, "/" + strings.ToUpper(hex[:4]) + "/" + hex + ".cacnk", http.StatusBadRequest, nil},
		{"upper id", http.MethodGet, "/" + hex[:4] + "/" + strings.ToUpper(hex) + ".cacnk", http.StatusBadRequest, nil},
		{"short id", http.MethodGet, "/" + hex[:4] + "/" + hex[:63] + ".cacnk", http.StatusBadRequest, nil},
		{"long id", http.MethodGet, "/" + hex[:4] + "/" + hex + "0.cacnk", http.StatusBadRequest, nil},
		{"not hex", http.MethodGet, "/" + hex[:4] + "/" + hex[:63] + "g.cacnk", http.StatusBadRequest, nil},
		{"no suffix", http.MethodGet, "/" + hex[:4] + "/" + hex, http.StatusBadRequest, nil},
		{"other suffix", http.MethodGet, "/" + hex[:4] + "/" + hex + ".caibx", http.StatusBadRequest, nil},
		{"trailing slash", http.MethodGet, good + "/", http.StatusBadRequest, nil},
		{"extra segment", http.MethodGet, "/x" + good, http.StatusBadRequest, nil},
		{"dot dot", http.MethodGet, "/" + hex[:4] + "/../" + hex + ".cacnk", http.StatusBadRequest, nil},
		{"post", http.MethodPost, good, http.StatusMethodNotAllowed, nil},
		{"put read-only", http.MethodPut, good, http.StatusMethodNotAllowed, nil},
		{"delete", http.MethodDelete, good, http.StatusMethodNotAllowed, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := serve(h, tc.method, tc.path, nil)
			if w.Code != tc.code {
				t.Fatalf("%s %q = %d %q, want %d", tc.method, tc.path, w.Code, w.Body, tc.code)
			}
			switch tc.code {
			case http.StatusOK:
				if got := w.Header().Get("Content-Type"); got != "application/octet-stream" {
					t.Errorf("%s %q Content-Type = %q, want application/octet-stream", tc.method, tc.path, got)
				}
				if tc.method == http.MethodGet {
					if !bytes.Equal(w.Body.Bytes(), tc.body) {
						t.Errorf("%s %q body = %d bytes, want %d", tc.method, tc.path, w.Body.Len(), len(tc.body))
					}
					if got, want := w.Header().Get("Content-Length"), len(tc.body); got != strconv.Itoa(want) {
						t.Errorf("%s %q Content-Length = %q, want %d", tc.method, tc.path, got, want)
					}
				}
			case http.StatusBadRequest:
				if body := w.Body.String(); strings.Count(body, "\n") != 1 || !strings.HasSuffix(body, "\n") {
					t.Errorf("%s %q body = %q, want one line", tc.method, tc.path, body)
				}
			case http.StatusMethodNotAllowed:
				if got := w.Header().Get("Allow"); got != "GET, HEAD" {
					t.Errorf("%s %q Allow = %q, want %q", tc.method, tc.path, got, "GET, HEAD")
				}
			}
		})
	}
}

func TestHandlerError(t *testing.T) {
	id, _ := testChunk(t, "x")
	var log bytes.Buffer
	h := NewHandler(&failStore{name: "f", err: errors.New("disk on fire")},
		WithLogger(slog.New(slog.NewTextHandler(&log, nil))))
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		w := serve(h, method, chunkPath(id), nil)
		if w.Code != http.StatusInternalServerError {
			t.Errorf("%s %s = %d, want 500", method, chunkPath(id), w.Code)
		}
		if strings.Contains(w.Body.String(), "disk on fire") {
			t.Errorf("%s %s body = %q, want no internal detail", method, chunkPath(id), w.Body)
		}
	}
	if got := strings.Count(log.String(), "disk on fire"); got != 2 {
		t.Errorf("log = %q, want the error logged twice", log.String())
	}
}

func TestHandlerPut(t *testing.T) {
	ctx := context.Background()
	id, b := testChunk(t, "uploaded")
	_, other := testChunk(t, "something else")
	for _, tc := range []struct {
		name   string
		store  Store
		opts   []HandlerOption
		body   []byte
		code   int
		stored bool
	}{
		{name: "ok", store: NewMem(), opts: []HandlerOption{WithWrite()}, body: b, code: http.StatusCreated, stored: true},
		{name: "wrong content", store: NewMem(), opts: []HandlerOption{WithWrite()}, body: other, code: http.StatusBadRequest},
		{name: "not zstd", store: NewMem(), opts: []HandlerOption{WithWrite()}, body: []byte("garbage"), code: http.StatusBadRequest},
		{name: "wrong digest", store: NewMem(), opts: []HandlerOption{WithWrite(), WithDigest(chunk.SHA256)}, body: b, code: http.StatusBadRequest},
		{name: "too large", store: NewMem(), opts: []HandlerOption{WithWrite(), WithUploadLimit(16)}, body: make([]byte, 5000), code: http.StatusRequestEntityTooLarge},
		{name: "content over limit", store: NewMem(), opts: []HandlerOption{WithWrite(), WithUploadLimit(4)}, body: b, code: http.StatusBadRequest},
		{name: "not enabled", store: NewMem(), body: b, code: http.StatusMethodNotAllowed},
		{name: "read-only store", store: NewRouter(NewMem()), opts: []HandlerOption{WithWrite()}, body: b, code: http.StatusMethodNotAllowed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := NewHandler(tc.store, tc.opts...)
			w := serve(h, http.MethodPut, chunkPath(id), tc.body)
			if w.Code != tc.code {
				t.Errorf("PUT %s = %d %q, want %d", chunkPath(id), w.Code, w.Body, tc.code)
			}
			if has, _ := tc.store.Has(ctx, id); has != tc.stored {
				t.Errorf("Has(%s) after PUT = %v, want %v", id, has, tc.stored)
			}
		})
	}

	// With write enabled, OPTIONS is refused naming PUT too.
	w := serve(NewHandler(NewMem(), WithWrite()), http.MethodOptions, chunkPath(id), nil)
	if got, want := w.Header().Get("Allow"), "GET, HEAD, PUT"; w.Code != http.StatusMethodNotAllowed || got != want {
		t.Errorf("OPTIONS = %d with Allow %q, want 405 with %q", w.Code, got, want)
	}
}

func FuzzHandlerPath(f *testing.F) {
	id, _ := testChunk(f, "seed")
	hex := id.String()
	for _, s := range []string{
		chunkPath(id),
		"",
		"/",
		"/" + hex[:4] + "/",
		"/" + hex[:4] + "/" + hex,
		"/0000/" + hex + ".cacnk",
		"/" + hex[:4] + "/" + strings.ToUpper(hex) + ".cacnk",
		"/" + hex[:4] + "/" + hex + ".cacnk/",
		"/" + hex[:4] + "/../" + hex + ".cacnk",
		"//" + hex[:4] + "/" + hex + ".cacnk",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		id, err := ParseChunkPath(p)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("ParseChunkPath(%q) error %q spans lines", p, err)
			}
			return
		}
		// Anything accepted is exactly the canonical path of its ID.
		if got := chunkPath(id); got != p {
			t.Errorf("ParseChunkPath(%q) = %s, whose path is %q", p, id, got)
		}
	})
}
