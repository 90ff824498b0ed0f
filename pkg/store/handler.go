package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/lifeboat-update/lifeboat/pkg/chunk"
)

// A HandlerOption configures NewHandler.
type HandlerOption func(*handler)

// WithLogger logs server-side failures (default: none).
func WithLogger(l *slog.Logger) HandlerOption {
	return func(h *handler) { h.log = l }
}

// WithWrite accepts PUT of chunks, if the store is a WriteStore (otherwise
// it has no effect). The handler stores an uploaded chunk only after
// verifying that it decodes to content matching the ID in its path.
func WithWrite() HandlerOption {
	return func(h *handler) { h.write = true }
}

// WithDigest sets the digest PUT verifies chunks with (default
// chunk.SHA512256).
func WithDigest(d chunk.Digest) HandlerOption {
	return func(h *handler) { h.digest = d }
}

// WithUploadLimit sets the largest chunk content a PUT may carry (default
// chunk.SizeLimitMax); the body may be at most its zstd bound. Verifying
// holds a buffer of this size per upload in progress, so a server that
// knows its chunk size should set it.
func WithUploadLimit(n int) HandlerOption {
	return func(h *handler) { h.maxSize = n }
}

type handler struct {
	store   Store
	ws      WriteStore // nil unless PUT is enabled
	write   bool
	digest  chunk.Digest
	maxSize int
	log     *slog.Logger
	allow   string
	bufs    sync.Pool // *[]byte for verifying uploads
}

// NewHandler serves s over HTTP in casync's layout: GET and HEAD of
// /abcd/abcd….cacnk, and PUT with WithWrite. To serve below a path prefix,
// wrap it: http.StripPrefix("/chunks", NewHandler(s)).
//
// Paths are checked strictly (lower-case hex, the directory equal to the
// ID's first four digits); a bad one is 400. A chunk the store lacks is
// 404, and a store failure is 500 and is logged. HEAD asks s.Has and so
// sends no Content-Length.
func NewHandler(s Store, opts ...HandlerOption) http.Handler {
	h := &handler{store: s, digest: chunk.SHA512256, maxSize: chunk.SizeLimitMax}
	for _, o := range opts {
		o(h)
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.maxSize <= 0 || h.maxSize > chunk.SizeLimitMax {
		h.maxSize = chunk.SizeLimitMax
	}
	h.allow = "GET, HEAD"
	if ws, ok := s.(WriteStore); ok && h.write {
		h.ws = ws
		h.allow = "GET, HEAD, PUT"
	}
	return h
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodGet || r.Method == http.MethodHead:
	case r.Method == http.MethodPut && h.ws != nil:
	default:
		w.Header().Set("Allow", h.allow)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	id, err := ParseChunkPath(r.URL.Path)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	switch r.Method {
	case http.MethodGet:
		h.get(w, r, id)
	case http.MethodHead:
		h.head(w, r, id)
	case http.MethodPut:
		h.put(w, r, id)
	}
}

func (h *handler) get(w http.ResponseWriter, r *http.Request, id chunk.ID) {
	b, err := h.store.Get(r.Context(), id)
	if err != nil {
		h.fail(w, r, id, err)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	w.Write(b)
}

func (h *handler) head(w http.ResponseWriter, r *http.Request, id chunk.ID) {
	ok, err := h.store.Has(r.Context(), id)
	if err == nil && !ok {
		err = &NotFoundError{ID: id, Store: h.store.String()}
	}
	if err != nil {
		h.fail(w, r, id, err)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.WriteHeader(http.StatusOK)
}

func (h *handler) put(w http.ResponseWriter, r *http.Request, id chunk.ID) {
	limit := int64(h.maxSize) + int64(h.maxSize)>>8 + 4<<10
	body, err := readBody(http.MaxBytesReader(w, r.Body, limit), r.ContentLength, limit)
	var mbe *http.MaxBytesError
	switch {
	case errors.Is(err, ErrTooLarge) || errors.As(err, &mbe):
		http.Error(w, fmt.Sprintf("chunk body over %d bytes", limit), http.StatusRequestEntityTooLarge)
		return
	case err != nil:
		http.Error(w, "read body: "+err.Error(), http.StatusBadRequest)
		return
	}
	if err := h.verify(id, body); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if err := h.ws.Put(r.Context(), id, body); err != nil {
		h.fail(w, r, id, err)
		return
	}
	w.WriteHeader(http.StatusCreated)
}

// verify decodes compressed into a pooled buffer and checks it against id.
func (h *handler) verify(id chunk.ID, compressed []byte) error {
	p, _ := h.bufs.Get().(*[]byte)
	if p == nil {
		p = new([]byte)
	}
	out, err := chunk.Decode(*p, h.digest, id, compressed, h.maxSize)
	if out != nil {
		*p = out[:0]
	}
	h.bufs.Put(p)
	return err
}

// fail answers a store error: 404 for a missing chunk, nothing for a
// client that went away, and 500 (logged) for the rest.
func (h *handler) fail(w http.ResponseWriter, r *http.Request, id chunk.ID, err error) {
	switch {
	case errors.Is(err, ErrNotFound):
		http.Error(w, "chunk not found", http.StatusNotFound)
	case r.Context().Err() != nil && errors.Is(err, context.Canceled):
		// The client is gone; no one reads an answer.
	default:
		h.log.ErrorContext(r.Context(), "chunk store failed",
			"method", r.Method, "chunk", id.String(), "store", h.store.String(), "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
	}
}

// ParseChunkPath parses "/abcd/abcd….cacnk" strictly.
func ParseChunkPath(p string) (chunk.ID, error) {
	const idLen = 2 * len(chunk.ID{})
	bad := func(why string) (chunk.ID, error) {
		return chunk.ID{}, fmt.Errorf("bad chunk path %q: %s (want /xxxx/<%d hex digits>%s)", p, why, idLen, chunkExt)
	}
	rest, ok := strings.CutPrefix(p, "/")
	if !ok {
		return bad("not absolute")
	}
	dir, name, ok := strings.Cut(rest, "/")
	if !ok {
		return bad("no directory")
	}
	if !isPrefixDir(dir) {
		return bad("directory is not 4 lower-case hex digits")
	}
	h, ok := strings.CutSuffix(name, chunkExt)
	if !ok {
		return bad("no " + chunkExt + " suffix")
	}
	if len(h) != idLen || !isLowerHex(h) {
		return bad("id is not " + strconv.Itoa(idLen) + " lower-case hex digits")
	}
	if h[:4] != dir {
		return bad("directory does not match id")
	}
	id, err := chunk.ParseID(h)
	if err != nil {
		return bad(err.Error())
	}
	return id, nil
}
