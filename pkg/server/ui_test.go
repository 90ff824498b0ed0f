package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"html/template"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/lifeboat-update/lifeboat/pkg/server/store"
)

// uiClient is an operator's browser session with the web UI, driven
// through the handler: its cookie and its forms' CSRF token.
type uiClient struct {
	f      *fixture
	cookie *http.Cookie
	csrf   string
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`)

// uiDo sends a request to the UI with c's cookie (if any) and a form body
// (if form is not nil).
func (f *fixture) uiDo(c *uiClient, method, path string, form url.Values) *httptest.ResponseRecorder {
	f.t.Helper()
	var hr *http.Request
	if form != nil {
		hr = httptest.NewRequest(method, path, strings.NewReader(form.Encode()))
		hr.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		hr = httptest.NewRequest(method, path, nil)
	}
	if c != nil && c.cookie != nil {
		hr.AddCookie(c.cookie)
	}
	w := httptest.NewRecorder()
	f.srv.ServeHTTP(w, hr)
	if c != nil {
		if m := csrfRE.FindStringSubmatch(w.Body.String()); m != nil {
			c.csrf = m[1]
		}
	}
	return w
}

// signIn signs in to the UI with the fixture's operator token name.
func (f *fixture) signIn(name string) *uiClient {
	f.t.Helper()
	w := f.uiDo(nil, "POST", "/ui/signin", url.Values{"token": {f.op[name]}})
	if w.Code != http.StatusSeeOther {
		f.t.Fatalf("sign in as %s = %d %s, want 303", name, w.Code, w.Body)
	}
	c := &uiClient{f: f}
	for _, ck := range w.Result().Cookies() {
		if ck.Name == "lifeboat_session" {
			c.cookie = ck
		}
	}
	if c.cookie == nil {
		f.t.Fatalf("sign in as %s set no session cookie: %v", name, w.Header())
	}
	if w := f.uiDo(c, "GET", "/ui/", nil); w.Code != 200 || c.csrf == "" {
		f.t.Fatalf("overview as %s = %d, CSRF %q; want 200 and a CSRF token", name, w.Code, c.csrf)
	}
	return c
}

// TestUISignIn: the sign-in form takes an operator's API token and sets
// the session cookie; a bad, unknown or revoked token is refused saying
// why; pages send a visitor without a session to sign in, and a session
// ends with its token.
func TestUISignIn(t *testing.T) {
	f := newFixture(t)
	w := f.uiDo(nil, "GET", "/ui/devices?q=board%3Dx", nil)
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/ui/signin?next=%2Fui%2Fdevices%3Fq%3Dboard%253Dx" {
		t.Errorf("GET /ui/devices signed out = %d to %q, want 303 to the sign-in form with next", w.Code, w.Header().Get("Location"))
	}
	if w := f.uiDo(nil, "GET", "/ui/signin?next=/ui/devices", nil); w.Code != 200 || !strings.Contains(w.Body.String(), `name="next" value="/ui/devices"`) {
		t.Errorf("GET /ui/signin = %d %s, want 200 and the form with next", w.Code, w.Body)
	}
	if w := f.uiDo(nil, "POST", "/ui/rollouts", url.Values{}); w.Code != http.StatusUnauthorized {
		t.Errorf("POST /ui/rollouts signed out = %d, want 401", w.Code)
	}
	unknown, _ := f.token()
	for _, tc := range []struct{ name, token, msg string }{
		{"malformed", "letmein", "malformed token"},
		{"unknown", unknown, "unknown operator token"},
		{"revoked", f.op["revoked"], "was revoked"},
		{"device's", f.dev["dev-x"], "unknown operator token"},
	} {
		w := f.uiDo(nil, "POST", "/ui/signin", url.Values{"token": {tc.token}})
		if w.Code != http.StatusUnauthorized || !strings.Contains(w.Body.String(), tc.msg) || len(w.Result().Cookies()) != 0 {
			t.Errorf("sign in with a %s token = %d, cookies %v, body %s; want 401 saying %q and no cookie", tc.name, w.Code, w.Result().Cookies(), w.Body, tc.msg)
		}
	}

	// A sign-in posted from another site is refused.
	hr := httptest.NewRequest("POST", "/ui/signin", strings.NewReader(url.Values{"token": {f.op["viewer"]}}.Encode()))
	hr.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	hr.Header.Set("Origin", "https://evil.example")
	w = httptest.NewRecorder()
	f.srv.ServeHTTP(w, hr)
	if w.Code != http.StatusForbidden || len(w.Result().Cookies()) != 0 || !strings.Contains(w.Body.String(), "posted from https://evil.example") {
		t.Errorf("sign in from another origin = %d, cookies %v; want 403 and no cookie", w.Code, w.Result().Cookies())
	}

	// The cookie: HttpOnly, SameSite=Strict, for /ui/; Secure over TLS.
	for _, overTLS := range []bool{false, true} {
		hr := httptest.NewRequest("POST", "/ui/signin", strings.NewReader(url.Values{"token": {f.op["viewer"]}, "next": {"/ui/rollouts"}}.Encode()))
		hr.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if overTLS {
			hr.TLS = &tls.ConnectionState{}
		}
		w := httptest.NewRecorder()
		f.srv.ServeHTTP(w, hr)
		cs := w.Result().Cookies()
		if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/ui/rollouts" || len(cs) != 1 {
			t.Fatalf("sign in (TLS %v) = %d to %q, cookies %v; want 303 to next and one cookie", overTLS, w.Code, w.Header().Get("Location"), cs)
		}
		if c := cs[0]; !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/ui/" || c.Secure != overTLS || len(c.Value) != 64 || strings.Contains(c.Value, f.op["viewer"]) {
			t.Errorf("session cookie (TLS %v) = %+v, want HttpOnly, SameSite=Strict, Path /ui/, Secure %v, a random ID", overTLS, c, overTLS)
		}
	}
	// next must be a page of the UI.
	for _, next := range []string{"//evil.example/", "https://evil.example/ui/", "/api/v1/devices"} {
		w := f.uiDo(nil, "POST", "/ui/signin", url.Values{"token": {f.op["viewer"]}, "next": {next}})
		if got := w.Header().Get("Location"); got != "/ui/" {
			t.Errorf("sign in with next=%q goes to %q, want /ui/", next, got)
		}
	}

	// Signing out ends the session (with the CSRF token only).
	c := f.signIn("viewer")
	if w := f.uiDo(c, "POST", "/ui/signout", url.Values{}); w.Code != http.StatusForbidden {
		t.Errorf("sign out without the CSRF token = %d, want 403", w.Code)
	}
	if w := f.uiDo(c, "POST", "/ui/signout", url.Values{"csrf": {c.csrf}}); w.Code != http.StatusSeeOther {
		t.Errorf("sign out = %d, want 303", w.Code)
	}
	if w := f.uiDo(c, "GET", "/ui/", nil); w.Code != http.StatusSeeOther {
		t.Errorf("GET /ui/ after signing out = %d, want 303 to sign in", w.Code)
	}

	// Revoking the token ends its sessions.
	c = f.signIn("operator")
	if err := f.st.RevokeOperatorToken(context.Background(), "operator", store.Event{At: t0, Actor: "cli", Action: "token.revoke"}); err != nil {
		t.Fatal(err)
	}
	if w := f.uiDo(c, "GET", "/ui/", nil); w.Code != http.StatusUnauthorized || !strings.Contains(w.Body.String(), "was revoked") {
		t.Errorf("GET /ui/ with a revoked token's session = %d %s, want 401 saying it was revoked", w.Code, w.Body)
	}
	if w := f.uiDo(c, "GET", "/ui/", nil); w.Code != http.StatusSeeOther {
		t.Errorf("GET /ui/ again = %d, want 303: the session is gone", w.Code)
	}
}

// TestUIPages reads every page as a viewer: its status and what it shows,
// and the refusals of bad input, shown on the page.
func TestUIPages(t *testing.T) {
	f := newFixture(t)
	f.addRelease("2.0")
	f.report(&simDevice{id: "dev-x", token: f.dev["dev-x"], version: "1.0"}, "failed", "disk <full>")
	if w := f.do(req{method: "PUT", path: "/api/v1/device/inventory", token: f.dev["dev-y"], ctype: "application/json",
		body: `{"attributes": {"site": "<script>alert(1)</script>"}}`}); w.Code != 204 {
		t.Fatalf("inventory = %d %s", w.Code, w.Body)
	}
	ro := f.createRollout(`{"board": "qemu-x86_64", "version": "2.0", "filter": "id=dev-y", "waves": ["100%"], "success_threshold": 1, "error_threshold": 0}`)
	var logged bytes.Buffer
	f.srv = New(f.st, WithClock(func() time.Time { return f.now }), WithLogger(slog.New(slog.NewTextHandler(&logged, nil))))
	c := f.signIn("viewer")
	for _, tc := range []struct {
		path   string
		status int
		want   []string
	}{
		{"/ui/", 200, []string{"4 devices.", `status%3Dfailed">failed</a></td><td>1</td>`, `status%3Dnone">none</a></td><td>3</td>`, "<td>1.0</td><td>4</td>", "<td>qemu-x86_64</td><td>4</td>", `href="/ui/rollouts/1"`}},
		{"/ui/devices", 200, []string{"4 devices", "dev-expired", "dev-revoked", "dev-x", "dev-y"}},
		{"/ui/devices?q=status%3Dfailed", 200, []string{"1 devices", `href="/ui/devices/dev-x"`, "<td>failed</td>"}},
		{"/ui/devices?q=", 200, []string{"4 devices"}},
		{"/ui/devices?q=board%3D", 400, []string{`id="error">q: filter: at 6 (end of text)`, `value="board="`, "0 devices"}},
		{"/ui/devices?q=group%3Dnorth", 400, []string{"group"}},
		{"/ui/devices?q=group:north", 400, []string{"north"}},
		{"/ui/devices?after=a%2Fb", 400, []string{"after: "}},
		{"/ui/devices/dev-x", 200, []string{"failed: disk &lt;full&gt;", "<td>failed</td>", "<td>disk &lt;full&gt;</td>"}},
		{"/ui/devices/dev-y", 200, []string{"&lt;script&gt;alert(1)&lt;/script&gt;"}},
		{"/ui/devices/dev-x?after=x", 400, []string{"after=&#34;x&#34;: want a report ID"}},
		{"/ui/devices/dev-nope", 404, []string{"dev-nope: not found"}},
		{"/ui/devices/a%20b", 400, []string{"device_id"}},
		{"/ui/rollouts", 200, []string{`href="/ui/rollouts/1"`, "<td>id=dev-y</td><td>created</td>"}},
		{"/ui/rollouts/1", 200, []string{`data-refresh="/ui/rollouts/1/progress"`, `<strong id="state">created</strong>`, `<tr id="wave-1"><td>1</td><td>1</td><td>closed</td><td>1</td>`}},
		{"/ui/rollouts/1/progress", 200, []string{`<strong id="state">created</strong>`}},
		{"/ui/rollouts/9", 404, []string{"not found"}},
		{"/ui/rollouts/x", 400, []string{`rollout ID &#34;x&#34;: want a positive integer`}},
		{"/ui/rollouts/new", 403, []string{"operator viewer has role viewer; to start rollouts needs role operator"}},
		{"/ui/nothing", 404, []string{"no page GET /ui/nothing"}},
		{"/ui/static/ui.css", 200, []string{"border-collapse"}},
		{"/ui/static/ui.js", 200, []string{"data-refresh"}},
	} {
		w := f.uiDo(c, "GET", tc.path, nil)
		if w.Code != tc.status {
			t.Errorf("GET %s = %d, want %d; body %s", tc.path, w.Code, tc.status, w.Body)
			continue
		}
		for _, s := range tc.want {
			if !strings.Contains(w.Body.String(), s) {
				t.Errorf("GET %s: body does not hold %q:\n%s", tc.path, s, w.Body)
			}
		}
		if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
			t.Errorf("GET %s: Content-Security-Policy %q", tc.path, csp)
		}
	}
	if logged.Len() != 0 {
		t.Errorf("pages answered, refusals included, logged:\n%s", &logged)
	}
	// Only an operator sees the actions and the new rollout link.
	for _, s := range []string{`id="new"`} {
		if w := f.uiDo(c, "GET", "/ui/rollouts", nil); strings.Contains(w.Body.String(), s) {
			t.Errorf("a viewer's rollouts page holds %q", s)
		}
	}
	if w := f.uiDo(c, "GET", "/ui/rollouts/"+strconv.FormatInt(ro.ID, 10), nil); strings.Contains(w.Body.String(), `id="start"`) {
		t.Errorf("a viewer's rollout page has a start button")
	}
	op := f.signIn("operator")
	if w := f.uiDo(op, "GET", "/ui/rollouts/"+strconv.FormatInt(ro.ID, 10), nil); !strings.Contains(w.Body.String(), `id="start"`) || !strings.Contains(w.Body.String(), `id="cancel"`) || strings.Contains(w.Body.String(), `id="pause"`) {
		t.Errorf("an operator's page of a created rollout: want start and cancel, no pause:\n%s", w.Body)
	}
}

// TestUIRolloutForms: the creation form and the actions' buttons. Bad
// input is shown on the form, as typed; a POST without the session's
// CSRF token, or by a viewer, is refused; no refusal changes anything.
func TestUIRolloutForms(t *testing.T) {
	f := newFixture(t)
	f.addRelease("2.0")
	op, viewer := f.signIn("operator"), f.signIn("viewer")
	if w := f.uiDo(op, "GET", "/ui/rollouts/new", nil); w.Code != 200 || !strings.Contains(w.Body.String(), `<option value="qemu-x86_64/2.0">`) {
		t.Fatalf("GET /ui/rollouts/new = %d %s, want 200 and the release to choose", w.Code, w.Body)
	}
	valid := url.Values{"release": {"qemu-x86_64/2.0"}, "filter": {"id=dev-x or id=dev-y"}, "group": {""}, "waves": {"1, 100%"},
		"success_threshold": {"1"}, "error_threshold": {"0"}}
	with := func(c *uiClient, k, v string) url.Values {
		out := url.Values{"csrf": {c.csrf}}
		for kk, vv := range valid {
			out[kk] = vv
		}
		if k != "" {
			out[k] = []string{v}
		}
		return out
	}
	for _, tc := range []struct {
		name   string
		c      *uiClient
		path   string
		form   url.Values
		status int
		msg    string
	}{
		{"no CSRF token", op, "/ui/rollouts", with(op, "csrf", ""), 403, "CSRF token is missing or wrong"},
		{"another session's CSRF token", op, "/ui/rollouts", with(op, "csrf", viewer.csrf), 403, "CSRF token is missing or wrong"},
		{"viewer", viewer, "/ui/rollouts", with(viewer, "", ""), 403, "to start rollouts needs role operator"},
		{"no release", op, "/ui/rollouts", with(op, "release", ""), 400, "release: choose one"},
		{"unknown release", op, "/ui/rollouts", with(op, "release", "qemu-x86_64/9.9"), 404, "9.9"},
		{"bad filter", op, "/ui/rollouts", with(op, "filter", "id=="), 400, "filter: at 3"},
		{"filter and group", op, "/ui/rollouts", with(op, "group", "north"), 400, "want one of filter and group"},
		{"unknown group", op, "/ui/rollouts", with(op, "filter", ""), 400, ""},
		{"waves shrink", op, "/ui/rollouts", with(op, "waves", "50%, 10%, 100%"), 400, "waves must grow"},
		{"last wave", op, "/ui/rollouts", with(op, "waves", "1, 50%"), 400, "want 100%"},
		{"threshold not a number", op, "/ui/rollouts", with(op, "success_threshold", "most"), 400, `success threshold &#34;most&#34;: want a number`},
		{"threshold out of range", op, "/ui/rollouts", with(op, "error_threshold", "1.5"), 400, "error_threshold 1.5"},
		{"no device", op, "/ui/rollouts", with(op, "filter", "id=dev-nope"), 400, "no device matches"},
		{"oversized form", op, "/ui/rollouts", with(op, "filter", strings.Repeat("x", 70<<10)), 400, "form: "},
		{"action, no CSRF token", op, "/ui/rollouts/1/start", url.Values{}, 403, "CSRF token is missing or wrong"},
		{"action, viewer", viewer, "/ui/rollouts/1/start", url.Values{"csrf": {viewer.csrf}}, 403, "to start rollouts needs role operator"},
		{"action, unknown rollout", op, "/ui/rollouts/1/start", url.Values{"csrf": {op.csrf}}, 404, "not found"},
		{"action, bad ID", op, "/ui/rollouts/0/start", url.Values{"csrf": {op.csrf}}, 400, "want a positive integer"},
		{"unknown action", op, "/ui/rollouts/1/explode", url.Values{"csrf": {op.csrf}}, 404, "no page POST"},
	} {
		if tc.name == "unknown group" {
			tc.form.Set("group", "north")
			tc.msg = "north"
		}
		before := f.snapshot()
		w := f.uiDo(tc.c, "POST", tc.path, tc.form)
		if w.Code != tc.status || !strings.Contains(w.Body.String(), tc.msg) {
			t.Errorf("%s: POST %s = %d %s; want %d saying %q", tc.name, tc.path, w.Code, w.Body, tc.status, tc.msg)
		}
		if diff := cmp.Diff(before, f.snapshot()); diff != "" {
			t.Errorf("%s: refused, yet changed (-before +after):\n%s", tc.name, diff)
		}
		// A refused creation shows the form again, as typed.
		if tc.path == "/ui/rollouts" && tc.status == 400 && tc.name != "oversized form" {
			for _, field := range []string{"waves", "filter"} {
				if !strings.Contains(w.Body.String(), `name="`+field+`" id="`) || !strings.Contains(w.Body.String(), `value="`+template.HTMLEscapeString(tc.form.Get(field))+`"`) {
					t.Errorf("%s: the form again does not hold %s %q:\n%s", tc.name, field, tc.form.Get(field), w.Body)
				}
			}
		}
	}

	// Created, started, paused, resumed, cancelled from the pages.
	w := f.uiDo(op, "POST", "/ui/rollouts", with(op, "", ""))
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/ui/rollouts/1" {
		t.Fatalf("create = %d to %q %s, want 303 to /ui/rollouts/1", w.Code, w.Header().Get("Location"), w.Body)
	}
	ro := f.rollout(1)
	if ro.State != "created" || ro.Target != "id=dev-x or id=dev-y" || !cmp.Equal(ro.Waves, []string{"1", "100%"}) || ro.SuccessThreshold != 1 || ro.ErrorThreshold != 0 {
		t.Errorf("rollout created from the form = %+v", ro)
	}
	for _, step := range []struct {
		action, state string
		status        int
	}{
		{"pause", "created", 409},
		{"start", "running", 303},
		{"start", "running", 409},
		{"pause", "paused", 303},
		{"resume", "running", 303},
		{"cancel", "cancelled", 303},
		{"resume", "cancelled", 409},
	} {
		before := f.snapshot()
		w := f.uiDo(op, "POST", "/ui/rollouts/1/"+step.action, url.Values{"csrf": {op.csrf}})
		if w.Code != step.status || f.rollout(1).State != step.state {
			t.Errorf("%s = %d %s, state %s; want %d and %s", step.action, w.Code, w.Body, f.rollout(1).State, step.status, step.state)
		}
		if step.status == 409 {
			if diff := cmp.Diff(before, f.snapshot()); diff != "" {
				t.Errorf("%s refused, yet changed:\n%s", step.action, diff)
			}
		}
	}
	evs, err := f.st.Events(context.Background(), 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ev := range evs[:5] {
		got = append(got, ev.Actor+" "+ev.Action)
	}
	want := []string{"operator:operator rollout.cancel", "operator:operator rollout.resume", "operator:operator rollout.pause", "operator:operator rollout.start", "operator:operator rollout.create"}
	if !cmp.Equal(got, want) {
		t.Errorf("audit log = %q, want %q", got, want)
	}
}
