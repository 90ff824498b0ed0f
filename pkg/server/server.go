// Package server is the fleet server's HTTP API, an http.Handler over a
// store.Store.
//
// Two kinds of client call it, each with credentials of its own:
//
//   - operators (/api/v1/devices, groups, releases, rollouts, audit),
//     whose tokens carry a role: viewer < operator < admin. They search
//     devices with pkg/server/filter's language, tag and group them,
//     publish releases and run rollouts. Every change they make is written
//     to the audit log with the change itself.
//   - devices (/api/v1/device/...), which poll for the release their
//     rollout's wave assigns them and report their status and inventory;
//     a status report moves the device in its rollout, and the rollout's
//     thresholds are applied on it. A device is known by its token, or
//     by the client certificate it presents when the server terminates
//     TLS with a device CA (pkg/server/mtls), with which it may also
//     enroll itself (POST /api/v1/device/enroll): no path names a device,
//     so no device can address another's data.
//
// The web UI (pkg/server/ui) is served under /ui/, and hawkBit's DDI
// endpoints (pkg/server/ddi) under /TENANT/controller/v1/.
//
// With WithRepositories, the server also keeps the releases' repositories
// (pkg/server/repository) and serves them to devices at /repo/.
//
// The server keeps only the SHA-256 of each token. Request bodies are JSON
// (Content-Type application/json), at most api.MaxBodySize bytes, decoded
// strictly; every refusal is a 4xx with an api.Error body naming what was
// wrong, and changes nothing.
package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/lifeboat-update/lifeboat/pkg/api"
	"github.com/lifeboat-update/lifeboat/pkg/server/ddi"
	"github.com/lifeboat-update/lifeboat/pkg/server/repository"
	"github.com/lifeboat-update/lifeboat/pkg/server/store"
	"github.com/lifeboat-update/lifeboat/pkg/server/ui"
)

// Defaults for the poll interval a device is given.
const (
	DefaultPollInterval = 5 * time.Minute
	DefaultPollJitter   = time.Minute
)

// Server is the fleet server's API.
type Server struct {
	store     store.Store
	log       *slog.Logger
	now       func() time.Time
	interval  time.Duration
	jitter    time.Duration
	mux       *http.ServeMux
	repos     *repository.Repositories
	repoURL   string
	maxUpload int64
	artifacts *ddi.Files
	// ddiTenant is the hawkBit tenant the DDI endpoints answer under;
	// ddiGateway the SHA-256 of the DDI gateway token, "" for none.
	ddiTenant  string
	ddiGateway string
}

// Option sets an optional setting of New.
type Option func(*Server)

// WithLogger logs requests that fail on the server's side, and refused
// tokens, to l. The default discards them.
func WithLogger(l *slog.Logger) Option { return func(s *Server) { s.log = l } }

// WithClock makes the server read the time from now (tests).
func WithClock(now func() time.Time) Option { return func(s *Server) { s.now = now } }

// WithPollInterval sets the interval devices are told to poll at: interval
// plus up to jitter, spread over the fleet by device ID so that devices do
// not poll in step.
func WithPollInterval(interval, jitter time.Duration) Option {
	return func(s *Server) { s.interval, s.jitter = interval, jitter }
}

// WithRepositories keeps releases in repos, serves them at /repo/, and
// tells devices to read them at repoURL/NAME/ (a CDN or static server
// holding a copy of /repo/), or at this server's /repo/NAME/ when repoURL
// is "".
func WithRepositories(repos *repository.Repositories, repoURL string) Option {
	return func(s *Server) { s.repos, s.repoURL = repos, strings.TrimSuffix(repoURL, "/") }
}

// DefaultMaxUpload bounds a repository uploaded as a tar stream.
const DefaultMaxUpload = 16 << 30

// WithMaxUpload bounds the size of a repository uploaded as a tar stream.
func WithMaxUpload(n int64) Option { return func(s *Server) { s.maxUpload = n } }

// New returns the API over st.
func New(st store.Store, opts ...Option) *Server {
	s := &Server{
		store:     st,
		log:       slog.New(slog.DiscardHandler),
		now:       time.Now,
		interval:  DefaultPollInterval,
		jitter:    DefaultPollJitter,
		mux:       http.NewServeMux(),
		maxUpload: DefaultMaxUpload,
		ddiTenant: ddi.DefaultTenant,
	}
	for _, o := range opts {
		o(s)
	}
	s.mux.Handle("POST /api/v1/devices", s.operator(store.Operator, "register devices", s.registerDevice))
	s.mux.Handle("POST /api/v1/devices/bulk", s.operator(store.Operator, "register devices", s.registerDevices))
	s.mux.Handle("GET /api/v1/devices", s.operator(store.Viewer, "list devices", s.listDevices))
	s.mux.Handle("GET /api/v1/devices/{id}", s.operator(store.Viewer, "read devices", s.getDevice))
	s.mux.Handle("POST /api/v1/devices/{id}/revoke", s.operator(store.Operator, "revoke devices", s.revokeDevice))
	s.mux.Handle("PUT /api/v1/devices/{id}/tags", s.operator(store.Operator, "tag devices", s.setTags))
	s.mux.Handle("GET /api/v1/devices/{id}/timeline", s.operator(store.Viewer, "read devices", s.timeline))
	s.mux.Handle("POST /api/v1/groups", s.operator(store.Operator, "create groups", s.createGroup))
	s.mux.Handle("GET /api/v1/groups", s.operator(store.Viewer, "read groups", s.listGroups))
	s.mux.Handle("DELETE /api/v1/groups/{name}", s.operator(store.Operator, "delete groups", s.deleteGroup))
	s.mux.Handle("POST /api/v1/releases", s.operator(store.Operator, "publish releases", s.publish))
	s.mux.Handle("GET /api/v1/releases", s.operator(store.Viewer, "read releases", s.listReleases))
	s.mux.Handle("DELETE /api/v1/releases/{board}/{version}", s.operator(store.Admin, "delete releases", s.deleteRelease))
	s.mux.Handle("POST /api/v1/rollouts", s.operator(store.Operator, "start rollouts", s.createRollout))
	s.mux.Handle("GET /api/v1/rollouts", s.operator(store.Viewer, "read rollouts", s.listRollouts))
	s.mux.Handle("GET /api/v1/rollouts/{id}", s.operator(store.Viewer, "read rollouts", s.getRollout))
	s.mux.Handle("GET /api/v1/rollouts/{id}/devices", s.operator(store.Viewer, "read rollouts", s.rolloutDevices))
	for _, t := range []store.Transition{store.Start, store.Pause, store.Resume, store.Cancel} {
		s.mux.Handle("POST /api/v1/rollouts/{id}/"+t.Name, s.operator(store.Operator, t.Name+" rollouts", s.rolloutAction(t)))
	}
	s.mux.Handle("GET /api/v1/audit", s.operator(store.Admin, "read the audit log", s.audit))
	s.mux.Handle("GET /api/v1/device/poll", s.device(s.poll))
	s.mux.Handle("POST /api/v1/device/status", s.device(s.reportStatus))
	s.mux.Handle("PUT /api/v1/device/inventory", s.device(s.reportInventory))
	s.mux.Handle("POST /api/v1/device/enroll", s.handle(s.enroll))
	s.routeDDI()
	// The web UI: HTML pages over the same operations (pkg/server/ui).
	s.mux.Handle("/ui/", ui.New(s, s.log, s.now))
	if s.repos != nil {
		// Static files, for devices and CDNs: plain-text errors.
		s.mux.Handle("GET /repo/", http.StripPrefix("/repo", s.repos.Handler()))
	}
	return s
}

// ServeHTTP implements http.Handler. Requests no route matches get the
// same JSON error body as every other refusal.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h, pattern := s.mux.Handler(r)
	if pattern != "" {
		// The mux again, not h: it sets the path's wildcards on r.
		s.mux.ServeHTTP(w, r)
		return
	}
	// No pattern: the mux answers 405 with Allow when another method
	// would match, 404 otherwise (a path that only needs cleaning has a
	// pattern, and is redirected above). Keep its status and Allow,
	// replace its plain-text body.
	rec := &headerRecorder{header: http.Header{}}
	h.ServeHTTP(rec, r)
	if rec.status == http.StatusMethodNotAllowed {
		allow := rec.header.Get("Allow")
		w.Header().Set("Allow", allow)
		writeError(w, &refusal{http.StatusMethodNotAllowed, api.CodeMethodNotAllowed,
			fmt.Sprintf("method %s not allowed on %s (allowed: %s)", r.Method, r.URL.Path, allow)})
		return
	}
	if e := s.otherTenant(r.URL.Path); e != nil {
		writeError(w, e)
		return
	}
	writeError(w, &refusal{http.StatusNotFound, api.CodeNotFound, fmt.Sprintf("no endpoint %s %s", r.Method, r.URL.Path)})
}

// headerRecorder keeps a response's status and headers and drops its body.
type headerRecorder struct {
	header http.Header
	status int
}

func (h *headerRecorder) Header() http.Header { return h.header }
func (h *headerRecorder) WriteHeader(code int) {
	if h.status == 0 {
		h.status = code
	}
}
func (h *headerRecorder) Write(b []byte) (int, error) {
	h.WriteHeader(http.StatusOK)
	return len(b), nil
}

// refusal is an HTTP status and the api.Error body that goes with it: a
// request refused.
type refusal struct {
	Status int
	Code   string
	Msg    string
}

func (e *refusal) Error() string { return e.Msg }

func errorf(status int, code, format string, args ...any) *refusal {
	return &refusal{status, code, fmt.Sprintf(format, args...)}
}

func badRequest(err error) *refusal {
	return &refusal{http.StatusBadRequest, api.CodeBadRequest, err.Error()}
}

// storeError maps a store error to its refusal; any other error is the
// server's own (500).
func storeError(err error) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return &refusal{http.StatusNotFound, api.CodeNotFound, err.Error()}
	case errors.Is(err, store.ErrExists), errors.Is(err, store.ErrRevoked), errors.Is(err, store.ErrInUse), errors.Is(err, store.ErrState):
		return &refusal{http.StatusConflict, api.CodeConflict, err.Error()}
	case errors.Is(err, store.ErrBadFilter), errors.Is(err, store.ErrNoDevices), errors.Is(err, repository.ErrRefused), errors.Is(err, api.ErrInvalid):
		return &refusal{http.StatusBadRequest, api.CodeBadRequest, err.Error()}
	}
	return err
}

// respond writes err as an api.Error body: a refusal as itself, anything
// else as a 500 whose cause goes to the log, not to the client.
func (s *Server) respond(w http.ResponseWriter, r *http.Request, err error) {
	var e *refusal
	if !errors.As(err, &e) {
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		e = &refusal{http.StatusInternalServerError, api.CodeInternal, "internal error; the server's log has the cause"}
	}
	if e.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="lifeboat"`)
		s.log.Info("token refused", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr, "why", e.Msg)
	}
	writeError(w, e)
}

func writeError(w http.ResponseWriter, e *refusal) {
	writeJSON(w, e.Status, api.Error{Error: e.Msg, Code: e.Code})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Only the server's own types are written: a failure is a bug.
		panic(fmt.Sprintf("encode %T: %v", v, err))
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// decode reads r's body into v: Content-Type application/json, at most
// api.MaxBodySize bytes, one JSON value with no unknown fields, valid.
func decode(w http.ResponseWriter, r *http.Request, v api.Validator) error {
	return decodeUpTo(w, r, v, api.MaxBodySize)
}

// decodeUpTo is decode with a body of at most limit bytes.
func decodeUpTo(w http.ResponseWriter, r *http.Request, v api.Validator, limit int64) error {
	ct := r.Header.Get("Content-Type")
	if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
		return errorf(http.StatusUnsupportedMediaType, api.CodeUnsupportedType, "Content-Type %q: want application/json", ct)
	}
	tooLarge := errorf(http.StatusRequestEntityTooLarge, api.CodeTooLarge, "request body over %d bytes", limit)
	if r.ContentLength > limit {
		return tooLarge
	}
	err := api.Decode(http.MaxBytesReader(w, r.Body, limit), limit, v)
	var mbe *http.MaxBytesError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &mbe), errors.Is(err, api.ErrTooLarge):
		return tooLarge
	case errors.Is(err, api.ErrInvalid):
		return badRequest(err)
	}
	return errorf(http.StatusBadRequest, api.CodeBadRequest, "%v", err)
}

// query checks that r's query has no parameters but allowed, each at most
// once, and returns it.
func query(r *http.Request, allowed ...string) (map[string]string, error) {
	q := r.URL.Query()
	out := map[string]string{}
	for k, vs := range q {
		known := false
		for _, a := range allowed {
			known = known || a == k
		}
		switch {
		case !known && len(allowed) == 0:
			return nil, errorf(http.StatusBadRequest, api.CodeBadRequest, "unknown query parameter %q: %s takes none", k, r.URL.Path)
		case !known:
			return nil, errorf(http.StatusBadRequest, api.CodeBadRequest, "unknown query parameter %q: want %s", k, strings.Join(allowed, ", "))
		}
		if len(vs) != 1 {
			return nil, errorf(http.StatusBadRequest, api.CodeBadRequest, "query parameter %s given %d times", k, len(vs))
		}
		out[k] = vs[0]
	}
	return out, nil
}
