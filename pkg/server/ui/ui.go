// Package ui is the fleet server's web UI: server-rendered pages
// (html/template, which escapes everything) and a few embedded static
// files, no build step. It shows the fleet's overview, searches devices
// with pkg/server/filter's language, shows a device and its timeline,
// lists, creates and steers rollouts, and follows a rollout's waves live
// (a few lines of JavaScript reload the progress fragment every second).
//
// It calls the same operations as the API (Service, implemented by
// pkg/server's Server), with the same role checks. Operators sign in with
// their API token; the server keeps the session (a random ID in an
// HttpOnly, SameSite=Strict cookie, Secure over TLS) and the hash of the
// token, and checks the token again at every request, so a revoked token
// ends its sessions. Every form POST carries the session's CSRF token.
package ui

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lifeboat-update/lifeboat/pkg/api"
	"github.com/lifeboat-update/lifeboat/pkg/server/filter"
	"github.com/lifeboat-update/lifeboat/pkg/server/store"
)

// Service is what the UI does, the same operations the API's handlers
// call. Its errors are refusals with an HTTPStatus, or the server's own.
type Service interface {
	SignIn(ctx context.Context, token string) (store.OperatorToken, error)
	Authorize(ctx context.Context, tokenSHA256 string, min store.Role, what string) (store.OperatorToken, error)
	ParseFilter(field, text string) (filter.Expr, error)
	SearchDevices(ctx context.Context, e filter.Expr, after string, limit int) (api.DeviceList, error)
	Device(ctx context.Context, id string) (api.Device, error)
	Timeline(ctx context.Context, id string, after int64, limit int) (api.Timeline, error)
	DeviceCounts(ctx context.Context) (store.Counts, error)
	Releases(ctx context.Context) ([]api.ReleaseInfo, error)
	Groups(ctx context.Context) ([]api.Group, error)
	CreateRollout(ctx context.Context, op store.OperatorToken, c api.CreateRollout) (api.Rollout, error)
	Rollout(ctx context.Context, id int64) (api.Rollout, error)
	Rollouts(ctx context.Context) ([]api.Rollout, error)
	RolloutAction(ctx context.Context, op store.OperatorToken, id int64, t store.Transition) (api.Rollout, error)
}

// Settings of the UI.
const (
	// SessionLifetime is how long a sign-in lasts.
	SessionLifetime = 12 * time.Hour
	// PageSize is how many devices or reports a page shows.
	PageSize = 100
	// MaxFormSize bounds a form's body.
	MaxFormSize = 64 << 10
	cookieName  = "lifeboat_session"
)

//go:embed templates static
var files embed.FS

// UI is the web UI, an http.Handler for the paths under /ui/.
type UI struct {
	svc   Service
	log   *slog.Logger
	now   func() time.Time
	mux   *http.ServeMux
	pages map[string]*template.Template

	mu       sync.Mutex
	sessions map[string]session // by session ID
}

// session is a signed-in operator: the hash of the token they signed in
// with, and the CSRF token their forms carry.
type session struct {
	tokenSHA256 string
	csrf        string
	expires     time.Time
}

// New returns the UI over svc, logging failures to log and reading the
// time from now.
func New(svc Service, log *slog.Logger, now func() time.Time) *UI {
	transitions := []store.Transition{store.Start, store.Pause, store.Resume, store.Cancel}
	u := &UI{svc: svc, log: log, now: now, mux: http.NewServeMux(), pages: map[string]*template.Template{}, sessions: map[string]session{}}
	funcs := template.FuncMap{
		"can": func(op store.OperatorToken, role string) bool { return op.Role.Rank() >= store.Role(role).Rank() },
		"actions": func(state string) []string {
			var out []string
			for _, t := range transitions {
				for _, from := range t.From {
					if string(from) == state {
						out = append(out, t.Name)
					}
				}
			}
			return out
		},
		"when": func(t *time.Time) string {
			if t == nil {
				return "never"
			}
			return t.UTC().Format(time.RFC3339)
		},
		"add": func(a, b int) int { return a + b },
	}
	base := template.Must(template.New("").Funcs(funcs).ParseFS(files, "templates/layout.html", "templates/progress.html"))
	names, _ := fs.Glob(files, "templates/*.html")
	for _, n := range names {
		name := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if name == "layout" || name == "progress" {
			continue
		}
		u.pages[name] = template.Must(template.Must(base.Clone()).ParseFS(files, n))
	}
	static, _ := fs.Sub(files, "static")
	u.mux.Handle("GET /ui/static/", http.StripPrefix("/ui/static/", http.FileServerFS(static)))
	u.mux.HandleFunc("GET /ui/signin", u.signInForm)
	u.mux.HandleFunc("POST /ui/signin", u.signIn)
	u.mux.Handle("POST /ui/signout", u.page(store.Viewer, "sign out", u.signOut))
	u.mux.Handle("GET /ui/{$}", u.page(store.Viewer, "read devices", u.overview))
	u.mux.Handle("GET /ui/devices", u.page(store.Viewer, "read devices", u.devices))
	u.mux.Handle("GET /ui/devices/{id}", u.page(store.Viewer, "read devices", u.device))
	u.mux.Handle("GET /ui/rollouts", u.page(store.Viewer, "read rollouts", u.rollouts))
	u.mux.Handle("GET /ui/rollouts/new", u.page(store.Operator, "start rollouts", u.newRollout))
	u.mux.Handle("POST /ui/rollouts", u.page(store.Operator, "start rollouts", u.createRollout))
	u.mux.Handle("GET /ui/rollouts/{id}", u.page(store.Viewer, "read rollouts", u.rollout))
	u.mux.Handle("GET /ui/rollouts/{id}/progress", u.page(store.Viewer, "read rollouts", u.progress))
	for _, t := range transitions {
		// The same role and wording as the API's POST /api/v1/rollouts/{id}/NAME.
		u.mux.Handle("POST /ui/rollouts/{id}/"+t.Name, u.page(store.Operator, t.Name+" rollouts", u.action(t)))
	}
	return u
}

// ServeHTTP implements http.Handler.
func (u *UI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'; form-action 'self'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	if _, pattern := u.mux.Handler(r); pattern == "" {
		u.render(w, http.StatusNotFound, "error", &view{Title: "Not found", Error: "no page " + r.Method + " " + r.URL.Path})
		return
	}
	u.mux.ServeHTTP(w, r)
}

// view is what every page's template gets.
type view struct {
	Title string
	Op    store.OperatorToken
	CSRF  string
	Error string
	Data  any
}

// statusOf returns the status an error is answered with, and what the
// page says: a refusal's own, or 500 with the cause logged.
func (u *UI) statusOf(r *http.Request, err error) (int, string) {
	var hs interface{ HTTPStatus() int }
	if errors.As(err, &hs) {
		return hs.HTTPStatus(), err.Error()
	}
	u.log.Error("ui request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	return http.StatusInternalServerError, "internal error; the server's log has the cause"
}

func (u *UI) render(w http.ResponseWriter, status int, name string, v *view) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if err := u.pages[name].ExecuteTemplate(w, name, v); err != nil {
		u.log.Error("ui render", "page", name, "err", err)
	}
}

// fail renders err on the error page.
func (u *UI) fail(w http.ResponseWriter, r *http.Request, v *view, err error) {
	status, msg := u.statusOf(r, err)
	v.Title, v.Error = http.StatusText(status), msg
	u.render(w, status, "error", v)
}

func randomHex() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// session returns the request's session, if it has a live one.
func (u *UI) session(r *http.Request) (string, session, bool) {
	c, err := r.Cookie(cookieName)
	if err != nil {
		return "", session{}, false
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	s, ok := u.sessions[c.Value]
	if ok && !u.now().Before(s.expires) {
		delete(u.sessions, c.Value)
		ok = false
	}
	return c.Value, s, ok
}

func (u *UI) endSession(w http.ResponseWriter, r *http.Request, id string) {
	u.mu.Lock()
	delete(u.sessions, id)
	u.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: "/ui/", MaxAge: -1, HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
}

// page runs h for a signed-in operator with at least role min (what
// names the action for a refusal), after checking a POST's CSRF token.
func (u *UI) page(min store.Role, what string, h func(http.ResponseWriter, *http.Request, *view) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v := &view{}
		id, s, ok := u.session(r)
		if !ok {
			if r.Method == http.MethodGet {
				http.Redirect(w, r, "/ui/signin?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			v.Title, v.Error = "Signed out", "not signed in, or the session expired: sign in again"
			u.render(w, http.StatusUnauthorized, "error", v)
			return
		}
		op, err := u.svc.Authorize(r.Context(), s.tokenSHA256, min, what)
		v.Op, v.CSRF = op, s.csrf
		if err != nil {
			if status, _ := u.statusOf(r, err); status == http.StatusUnauthorized {
				// The token was revoked since: so is the session.
				u.endSession(w, r, id)
				v.Op = store.OperatorToken{}
			}
			u.fail(w, r, v, err)
			return
		}
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, MaxFormSize)
			if err := r.ParseForm(); err != nil {
				v.Title, v.Error = "Bad request", "form: "+err.Error()
				u.render(w, http.StatusBadRequest, "error", v)
				return
			}
			if subtle.ConstantTimeCompare([]byte(r.PostForm.Get("csrf")), []byte(s.csrf)) != 1 {
				v.Title, v.Error = "Forbidden", "the form's CSRF token is missing or wrong: reload the page and try again"
				u.render(w, http.StatusForbidden, "error", v)
				return
			}
		}
		if err := h(w, r, v); err != nil {
			u.fail(w, r, v, err)
		}
	})
}

// next is where to go after signing in: a page of the UI, else its
// overview.
func next(r *http.Request) string {
	n := r.FormValue("next")
	if !strings.HasPrefix(n, "/ui/") || strings.ContainsAny(n, "\\\r\n") {
		return "/ui/"
	}
	return n
}

func (u *UI) signInForm(w http.ResponseWriter, r *http.Request) {
	u.render(w, http.StatusOK, "signin", &view{Title: "Sign in", Data: next(r)})
}

// signIn: POST /ui/signin, token=...: a new session for the operator.
func (u *UI) signIn(w http.ResponseWriter, r *http.Request) {
	// No session yet, so no CSRF token: a browser names the page that
	// posts the form, and another site's is refused (login CSRF).
	if o := r.Header.Get("Origin"); o != "" {
		if ou, err := url.Parse(o); err != nil || ou.Host != r.Host {
			u.render(w, http.StatusForbidden, "signin", &view{Title: "Sign in", Error: "sign-in form posted from " + o + ", not from this server", Data: "/ui/"})
			return
		}
	}
	r.Body = http.MaxBytesReader(w, r.Body, MaxFormSize)
	if err := r.ParseForm(); err != nil {
		u.render(w, http.StatusBadRequest, "signin", &view{Title: "Sign in", Error: "form: " + err.Error(), Data: "/ui/"})
		return
	}
	op, err := u.svc.SignIn(r.Context(), strings.TrimSpace(r.PostForm.Get("token")))
	if err != nil {
		status, msg := u.statusOf(r, err)
		u.log.Info("sign-in refused", "remote", r.RemoteAddr, "why", msg)
		u.render(w, status, "signin", &view{Title: "Sign in", Error: msg, Data: next(r)})
		return
	}
	id := randomHex()
	now := u.now()
	u.mu.Lock()
	for k, s := range u.sessions {
		if !now.Before(s.expires) {
			delete(u.sessions, k)
		}
	}
	u.sessions[id] = session{tokenSHA256: op.TokenSHA256, csrf: randomHex(), expires: now.Add(SessionLifetime)}
	u.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: id, Path: "/ui/", MaxAge: int(SessionLifetime / time.Second),
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, next(r), http.StatusSeeOther)
}

func (u *UI) signOut(w http.ResponseWriter, r *http.Request, _ *view) error {
	id, _, _ := u.session(r)
	u.endSession(w, r, id)
	http.Redirect(w, r, "/ui/signin", http.StatusSeeOther)
	return nil
}

type overview struct {
	Counts   store.Counts
	Rollouts []api.Rollout // the active ones
}

func (u *UI) overview(w http.ResponseWriter, r *http.Request, v *view) error {
	var o overview
	var err error
	if o.Counts, err = u.svc.DeviceCounts(r.Context()); err != nil {
		return err
	}
	ros, err := u.svc.Rollouts(r.Context())
	if err != nil {
		return err
	}
	for _, ro := range ros {
		if store.RolloutState(ro.State).Active() {
			o.Rollouts = append(o.Rollouts, ro)
		}
	}
	v.Title, v.Data = "Fleet", o
	u.render(w, http.StatusOK, "overview", v)
	return nil
}

type search struct {
	Query   string
	Devices api.DeviceList
}

// devices: GET /ui/devices?q=FILTER&after=ID. A filter that does not
// parse is shown above the form, a 400.
func (u *UI) devices(w http.ResponseWriter, r *http.Request, v *view) error {
	q := r.URL.Query()
	s := search{Query: q.Get("q")}
	v.Title, v.Data = "Devices", &s
	after := q.Get("after")
	err := func() error {
		if after != "" {
			if err := api.CheckDeviceID(after); err != nil {
				return badRequest("after: " + err.Error())
			}
		}
		var e filter.Expr
		if strings.TrimSpace(s.Query) != "" {
			var err error
			if e, err = u.svc.ParseFilter("q", s.Query); err != nil {
				return err
			}
		}
		var err error
		s.Devices, err = u.svc.SearchDevices(r.Context(), e, after, PageSize)
		return err
	}()
	status := http.StatusOK
	if err != nil {
		status, v.Error = u.statusOf(r, err)
	}
	u.render(w, status, "devices", v)
	return nil
}

type deviceDetail struct {
	Device   api.Device
	Timeline api.Timeline
}

// device: GET /ui/devices/{id}?after=N, the device and its timeline.
func (u *UI) device(w http.ResponseWriter, r *http.Request, v *view) error {
	var dd deviceDetail
	var err error
	if dd.Device, err = u.svc.Device(r.Context(), r.PathValue("id")); err != nil {
		return err
	}
	var after int64
	if a := r.URL.Query().Get("after"); a != "" {
		if after, err = strconv.ParseInt(a, 10, 64); err != nil || after < 0 {
			v.Title, v.Error = "Bad request", "after="+strconv.Quote(a)+": want a report ID, 0 or more"
			u.render(w, http.StatusBadRequest, "error", v)
			return nil
		}
	}
	if dd.Timeline, err = u.svc.Timeline(r.Context(), dd.Device.ID, after, PageSize); err != nil {
		return err
	}
	v.Title, v.Data = "Device "+dd.Device.ID, dd
	u.render(w, http.StatusOK, "device", v)
	return nil
}

func (u *UI) rollouts(w http.ResponseWriter, r *http.Request, v *view) error {
	ros, err := u.svc.Rollouts(r.Context())
	if err != nil {
		return err
	}
	v.Title, v.Data = "Rollouts", ros
	u.render(w, http.StatusOK, "rollouts", v)
	return nil
}

// rolloutForm is the creation form: its fields as typed, and the choices.
type rolloutForm struct {
	Release, Filter, Group, Waves string
	Success, Errors               string
	Releases                      []api.ReleaseInfo
	Groups                        []api.Group
}

func (u *UI) renderForm(w http.ResponseWriter, r *http.Request, v *view, status int, f *rolloutForm) error {
	var err error
	if f.Releases, err = u.svc.Releases(r.Context()); err != nil {
		return err
	}
	if f.Groups, err = u.svc.Groups(r.Context()); err != nil {
		return err
	}
	v.Title, v.Data = "New rollout", f
	u.render(w, status, "newrollout", v)
	return nil
}

func (u *UI) newRollout(w http.ResponseWriter, r *http.Request, v *view) error {
	return u.renderForm(w, r, v, http.StatusOK, &rolloutForm{Waves: "1, 50%, 100%", Success: "0.9", Errors: "0.1"})
}

// parse turns the form into the API's request, naming the field that
// is wrong.
func (f *rolloutForm) parse() (api.CreateRollout, error) {
	board, version, ok := strings.Cut(f.Release, "/")
	if !ok {
		return api.CreateRollout{}, errors.New("release: choose one")
	}
	c := api.CreateRollout{Board: board, Version: version, Filter: strings.TrimSpace(f.Filter), Group: f.Group}
	for _, wv := range strings.Split(f.Waves, ",") {
		if wv = strings.TrimSpace(wv); wv != "" {
			c.Waves = append(c.Waves, wv)
		}
	}
	var err error
	if c.SuccessThreshold, err = strconv.ParseFloat(strings.TrimSpace(f.Success), 64); err != nil {
		return c, errors.New("success threshold " + strconv.Quote(f.Success) + ": want a number above 0 and at most 1")
	}
	if c.ErrorThreshold, err = strconv.ParseFloat(strings.TrimSpace(f.Errors), 64); err != nil {
		return c, errors.New("error threshold " + strconv.Quote(f.Errors) + ": want a number from 0 to below 1")
	}
	return c, nil
}

// createRollout: POST /ui/rollouts, the creation form. A refusal shows
// the form again, as typed, with why.
func (u *UI) createRollout(w http.ResponseWriter, r *http.Request, v *view) error {
	pf := r.PostForm
	f := &rolloutForm{Release: pf.Get("release"), Filter: pf.Get("filter"), Group: pf.Get("group"), Waves: pf.Get("waves"),
		Success: pf.Get("success_threshold"), Errors: pf.Get("error_threshold")}
	c, err := f.parse()
	status := http.StatusBadRequest
	if err == nil {
		var ro api.Rollout
		if ro, err = u.svc.CreateRollout(r.Context(), v.Op, c); err == nil {
			http.Redirect(w, r, "/ui/rollouts/"+strconv.FormatInt(ro.ID, 10), http.StatusSeeOther)
			return nil
		}
		status, _ = u.statusOf(r, err)
		if status == http.StatusInternalServerError {
			return err
		}
	}
	v.Error = err.Error()
	return u.renderForm(w, r, v, status, f)
}

func pathRollout(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id < 1 {
		return 0, badRequest("rollout ID " + strconv.Quote(r.PathValue("id")) + ": want a positive integer")
	}
	return id, nil
}

// badRequest is a refusal of the UI's own.
type badRequest string

func (b badRequest) Error() string   { return string(b) }
func (b badRequest) HTTPStatus() int { return http.StatusBadRequest }

func (u *UI) rolloutPage(w http.ResponseWriter, r *http.Request, v *view, page string) error {
	id, err := pathRollout(r)
	if err != nil {
		return err
	}
	ro, err := u.svc.Rollout(r.Context(), id)
	if err != nil {
		return err
	}
	v.Title, v.Data = "Rollout "+strconv.FormatInt(id, 10), ro
	u.render(w, http.StatusOK, page, v)
	return nil
}

// rollout: GET /ui/rollouts/{id}, with its live progress and actions.
func (u *UI) rollout(w http.ResponseWriter, r *http.Request, v *view) error {
	return u.rolloutPage(w, r, v, "rollout")
}

// progress: GET /ui/rollouts/{id}/progress, the fragment the rollout's
// page reloads.
func (u *UI) progress(w http.ResponseWriter, r *http.Request, v *view) error {
	return u.rolloutPage(w, r, v, "progressfragment")
}

// action: POST /ui/rollouts/{id}/start|pause|resume|cancel.
func (u *UI) action(t store.Transition) func(http.ResponseWriter, *http.Request, *view) error {
	return func(w http.ResponseWriter, r *http.Request, v *view) error {
		id, err := pathRollout(r)
		if err != nil {
			return err
		}
		if _, err := u.svc.RolloutAction(r.Context(), v.Op, id, t); err != nil {
			return err
		}
		http.Redirect(w, r, "/ui/rollouts/"+strconv.FormatInt(id, 10), http.StatusSeeOther)
		return nil
	}
}
