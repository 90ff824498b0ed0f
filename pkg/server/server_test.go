package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/lifeboat-update/lifeboat/pkg/api"
	"github.com/lifeboat-update/lifeboat/pkg/server/store"
	"github.com/lifeboat-update/lifeboat/pkg/server/store/storetest"
)

var t0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

// fixture is a server over a fresh store (SQLite or PostgreSQL: tests
// run on both, storetest.Run) holding an operator token
// per role (and a revoked one), and devices x and y, a revoked one and one
// whose token has expired.
type fixture struct {
	t     testing.TB
	srv   *Server
	st    *store.DB
	now   time.Time
	rng   *rand.ChaCha8
	op    map[string]string // operator tokens by name
	dev   map[string]string // device tokens by device ID
	devSH map[string]string // their hashes
}

func newFixture(t testing.TB, dsn string) *fixture {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := &fixture{t: t, st: st, now: t0, rng: rand.NewChaCha8([32]byte{1}),
		op: map[string]string{}, dev: map[string]string{}, devSH: map[string]string{}}
	f.srv = New(st, WithClock(func() time.Time { return f.now }), WithPollInterval(300*time.Second, 60*time.Second))
	ev := store.Event{At: t0, Actor: "cli", Action: "setup"}
	for _, name := range []string{"viewer", "operator", "admin", "revoked"} {
		tok, sha := f.token()
		role := store.Role(name)
		if name == "revoked" {
			role = store.Admin
		}
		if err := st.CreateOperatorToken(ctx, store.OperatorToken{TokenSHA256: sha, Name: name, Role: role, Created: t0}, ev); err != nil {
			t.Fatal(err)
		}
		f.op[name] = tok
	}
	if err := st.RevokeOperatorToken(ctx, "revoked", ev); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"dev-x", "dev-y", "dev-revoked", "dev-expired"} {
		tok, sha := f.token()
		d := store.Device{ID: id, Board: "qemu-x86_64", TokenSHA256: sha, Created: t0, InstalledVersion: "1.0"}
		if id == "dev-expired" {
			d.TokenExpires = t0.Add(-time.Second)
		}
		if err := st.RegisterDevice(ctx, d, ev); err != nil {
			t.Fatal(err)
		}
		f.dev[id], f.devSH[id] = tok, sha
	}
	if err := st.RevokeDevice(ctx, "dev-revoked", ev); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) token() (tok, sha string) {
	tok, sha, err := NewToken(f.rng)
	if err != nil {
		f.t.Fatal(err)
	}
	return tok, sha
}

// req is one request to the server.
type req struct {
	method, path string
	token        string // "" for none
	ctype        string // "" for none
	body         string
	chunked      bool // send the body with no length, as a stream
	header       map[string]string
}

// bodyReader is the request's body, nil for none.
func (r req) bodyReader() io.Reader {
	if r.body == "" {
		return nil
	}
	if r.chunked {
		return io.MultiReader(strings.NewReader(r.body)) // hides the length from NewRequest
	}
	return strings.NewReader(r.body)
}

// setHeaders sets the request's headers on hr.
func (r req) setHeaders(hr *http.Request) {
	if r.token != "" {
		hr.Header.Set("Authorization", "Bearer "+r.token)
	}
	if r.ctype != "" {
		hr.Header.Set("Content-Type", r.ctype)
	}
	for k, v := range r.header {
		hr.Header.Set(k, v)
	}
}

func (f *fixture) do(r req) *httptest.ResponseRecorder {
	f.t.Helper()
	hr := httptest.NewRequest(r.method, r.path, r.bodyReader())
	r.setHeaders(hr)
	w := httptest.NewRecorder()
	f.srv.ServeHTTP(w, hr)
	return w
}

// decodeJSON decodes a response body into v.
func decodeJSON(t testing.TB, w *httptest.ResponseRecorder, v any) {
	t.Helper()
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q, want application/json; body %q", ct, w.Body)
	}
	if err := json.Unmarshal(w.Body.Bytes(), v); err != nil {
		t.Fatalf("response %q: %v", w.Body, err)
	}
}

// snapshot is everything a request could change: every device whole, the
// audit log.
type snapshot struct {
	Devices  []store.Device
	Reports  map[string][]store.Report
	Events   []store.Event
	Groups   []store.Group
	Releases []store.Release
	Rollouts []rolloutSnapshot
}

type rolloutSnapshot struct {
	Rollout store.Rollout
	Waves   []store.WaveProgress
	Devices []store.RolloutDevice
}

func (f *fixture) snapshot() snapshot {
	f.t.Helper()
	ctx := context.Background()
	ds, err := f.st.SearchDevices(ctx, nil, t0, "", 1000)
	if err != nil {
		f.t.Fatal(err)
	}
	s := snapshot{Reports: map[string][]store.Report{}}
	for _, d := range ds {
		full, err := f.st.Device(ctx, d.ID)
		if err != nil {
			f.t.Fatal(err)
		}
		s.Devices = append(s.Devices, full)
		if s.Reports[d.ID], err = f.st.Timeline(ctx, d.ID, 0, 1000); err != nil {
			f.t.Fatal(err)
		}
	}
	if s.Events, err = f.st.Events(ctx, 0, 1000); err != nil {
		f.t.Fatal(err)
	}
	if s.Groups, err = f.st.Groups(ctx); err != nil {
		f.t.Fatal(err)
	}
	if s.Releases, err = f.st.Releases(ctx); err != nil {
		f.t.Fatal(err)
	}
	ros, err := f.st.Rollouts(ctx)
	if err != nil {
		f.t.Fatal(err)
	}
	for _, ro := range ros {
		var rs rolloutSnapshot
		if rs.Rollout, rs.Waves, err = f.st.Rollout(ctx, ro.ID); err != nil {
			f.t.Fatal(err)
		}
		if rs.Devices, err = f.st.RolloutDevices(ctx, ro.ID); err != nil {
			f.t.Fatal(err)
		}
		s.Rollouts = append(s.Rollouts, rs)
	}
	return s
}

// refusalCase is a request and the refusal it is to get.
type refusalCase struct {
	name   string
	req    req
	status int
	code   string
	msg    string
}

// checkRefusals sends each case's request in a subtest of its name: each
// gets its refusal (wantRefusal) and changes nothing in the store.
func (f *fixture) checkRefusals(t *testing.T, cases []refusalCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f.t = t
			before := f.snapshot()
			w := f.do(tc.req)
			wantRefusal(t, tc.req.method+" "+tc.req.path, w.Code, w.Header(), w.Body.Bytes(), tc.status, tc.code, tc.msg)
			if diff := cmp.Diff(before, f.snapshot()); diff != "" {
				t.Errorf("the refused request changed the store: -before +after\n%s", diff)
			}
		})
	}
	f.t = t
}

// wantRefusal checks that the response to what (its status, header and
// body) is the refusal wanted: status, an api.Error body with code and a
// message naming msg, WWW-Authenticate on a 401, Allow on a 405.
func wantRefusal(t *testing.T, what string, got int, h http.Header, body []byte, status int, code, msg string) {
	t.Helper()
	if got != status {
		t.Fatalf("%s = %d %q, want %d", what, got, body, status)
	}
	var e api.Error
	if ct := h.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%s: Content-Type %q, want application/json; body %q", what, ct, body)
	}
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("%s: response %q: %v", what, body, err)
	}
	if e.Code != code || !strings.Contains(e.Error, msg) {
		t.Errorf("%s = %+v, want code %s and a message naming %q", what, e, code, msg)
	}
	if status == http.StatusUnauthorized && h.Get("WWW-Authenticate") == "" {
		t.Errorf("%s: 401 without WWW-Authenticate", what)
	}
	if status == http.StatusMethodNotAllowed && h.Get("Allow") == "" {
		t.Errorf("%s: 405 without Allow", what)
	}
}

const validReg = `{"device_id": "dev-new", "board": "qemu-x86_64", "version": "1.0", "token_sha256": "%s"}`

func newReg(hash string) string { return fmt.Sprintf(validReg, hash) }

const validStatus = `{"phase": "idle", "progress": 0, "installed_version": "1.0", "transfer": {"fetched_bytes": 0, "image_bytes": 0}}`

// TestRefusals sends every class of bad request to every endpoint it
// applies to: each gets its status, its code and a message naming what was
// wrong, and changes nothing.
func TestRefusals(t *testing.T) { storetest.Run(t, testRefusals) }

func testRefusals(t *testing.T, dsn string) {
	f := newFixture(t, dsn)
	const js = "application/json"
	unknown, _ := f.token()
	big := `{"attributes": {"a": "` + strings.Repeat("x", api.MaxBodySize) + `"}}`
	bigReg := `{"device_id": "dev-new", "board": "` + strings.Repeat("b", api.MaxBodySize) + `"}`
	manyAttrs := map[string]string{}
	for i := range api.MaxAttributes + 1 {
		manyAttrs[fmt.Sprint("k", i)] = "v"
	}
	many, _ := json.Marshal(api.Inventory{Attributes: manyAttrs})
	hashY := f.devSH["dev-y"]
	freshHash := strings.Repeat("0", 64)

	f.checkRefusals(t, []refusalCase{
		// Operator authentication and roles.
		{"register, no token", req{method: "POST", path: "/api/v1/devices", ctype: js, body: newReg(freshHash)}, 401, api.CodeUnauthorized, "no operator token"},
		{"register, unknown token", req{method: "POST", path: "/api/v1/devices", token: unknown, ctype: js, body: newReg(freshHash)}, 401, api.CodeUnauthorized, "unknown operator token"},
		{"register, malformed token", req{method: "POST", path: "/api/v1/devices", token: "letmein", ctype: js, body: newReg(freshHash)}, 401, api.CodeUnauthorized, "malformed token"},
		{"register, basic auth", req{method: "POST", path: "/api/v1/devices", header: map[string]string{"Authorization": "Basic YTpi"}, ctype: js, body: newReg(freshHash)}, 401, api.CodeUnauthorized, "want Bearer"},
		{"register, revoked operator", req{method: "POST", path: "/api/v1/devices", token: f.op["revoked"], ctype: js, body: newReg(freshHash)}, 401, api.CodeUnauthorized, "revoked"},
		{"register, device token", req{method: "POST", path: "/api/v1/devices", token: f.dev["dev-x"], ctype: js, body: newReg(freshHash)}, 401, api.CodeUnauthorized, "unknown operator token"},
		{"register, viewer", req{method: "POST", path: "/api/v1/devices", token: f.op["viewer"], ctype: js, body: newReg(freshHash)}, 403, api.CodeForbidden, "needs role operator"},
		// Registration bodies.
		{"register, text/plain", req{method: "POST", path: "/api/v1/devices", token: f.op["operator"], ctype: "text/plain", body: newReg(freshHash)}, 415, api.CodeUnsupportedType, "want application/json"},
		{"register, no content type", req{method: "POST", path: "/api/v1/devices", token: f.op["operator"], body: newReg(freshHash)}, 415, api.CodeUnsupportedType, "want application/json"},
		{"register, empty body", req{method: "POST", path: "/api/v1/devices", token: f.op["operator"], ctype: js}, 400, api.CodeBadRequest, "empty body"},
		{"register, not JSON", req{method: "POST", path: "/api/v1/devices", token: f.op["operator"], ctype: js, body: "device_id=x"}, 400, api.CodeBadRequest, "malformed JSON"},
		{"register, unknown field", req{method: "POST", path: "/api/v1/devices", token: f.op["operator"], ctype: js, body: `{"device_id": "d", "token": "secret"}`}, 400, api.CodeBadRequest, `unknown field "token"`},
		{"register, two objects", req{method: "POST", path: "/api/v1/devices", token: f.op["operator"], ctype: js, body: newReg(freshHash) + newReg(freshHash)}, 400, api.CodeBadRequest, "data after"},
		{"register, too large", req{method: "POST", path: "/api/v1/devices", token: f.op["operator"], ctype: js, body: bigReg}, 413, api.CodeTooLarge, "over 65536 bytes"},
		{"register, too large, streamed", req{method: "POST", path: "/api/v1/devices", token: f.op["operator"], ctype: js, body: bigReg, chunked: true}, 413, api.CodeTooLarge, "over 65536 bytes"},
		{"register, bad device ID", req{method: "POST", path: "/api/v1/devices", token: f.op["operator"], ctype: js, body: strings.Replace(newReg(freshHash), "dev-new", "dev/new", 1)}, 400, api.CodeBadRequest, "device_id"},
		{"register, bad hash", req{method: "POST", path: "/api/v1/devices", token: f.op["operator"], ctype: js, body: newReg("abc")}, 400, api.CodeBadRequest, "token_sha256"},
		{"register, expired already", req{method: "POST", path: "/api/v1/devices", token: f.op["operator"], ctype: js,
			body: `{"device_id": "dev-new", "board": "b", "version": "1", "token_sha256": "` + freshHash + `", "token_expires": "2020-01-01T00:00:00Z"}`}, 400, api.CodeBadRequest, "in the past"},
		{"register, bad time", req{method: "POST", path: "/api/v1/devices", token: f.op["operator"], ctype: js,
			body: `{"device_id": "dev-new", "board": "b", "version": "1", "token_sha256": "` + freshHash + `", "token_expires": "tomorrow"}`}, 400, api.CodeBadRequest, "malformed JSON"},
		{"register, ID taken", req{method: "POST", path: "/api/v1/devices", token: f.op["operator"], ctype: js, body: strings.Replace(newReg(freshHash), "dev-new", "dev-x", 1)}, 409, api.CodeConflict, "already exists"},
		{"register, token taken", req{method: "POST", path: "/api/v1/devices", token: f.op["operator"], ctype: js, body: newReg(hashY)}, 409, api.CodeConflict, "already exists"},
		// Listing and reading.
		{"list, no token", req{method: "GET", path: "/api/v1/devices"}, 401, api.CodeUnauthorized, "no operator token"},
		{"list, limit 0", req{method: "GET", path: "/api/v1/devices?limit=0", token: f.op["viewer"]}, 400, api.CodeBadRequest, "limit="},
		{"list, limit too big", req{method: "GET", path: "/api/v1/devices?limit=1001", token: f.op["viewer"]}, 400, api.CodeBadRequest, "from 1 to 1000"},
		{"list, limit not a number", req{method: "GET", path: "/api/v1/devices?limit=ten", token: f.op["viewer"]}, 400, api.CodeBadRequest, "limit="},
		{"list, limit twice", req{method: "GET", path: "/api/v1/devices?limit=1&limit=2", token: f.op["viewer"]}, 400, api.CodeBadRequest, "given 2 times"},
		{"list, bad after", req{method: "GET", path: "/api/v1/devices?after=a%2Fb", token: f.op["viewer"]}, 400, api.CodeBadRequest, "device_id"},
		{"list, unknown parameter", req{method: "GET", path: "/api/v1/devices?board=x", token: f.op["viewer"]}, 400, api.CodeBadRequest, `unknown query parameter "board"`},
		{"get, no token", req{method: "GET", path: "/api/v1/devices/dev-x"}, 401, api.CodeUnauthorized, "no operator token"},
		{"get, revoked operator", req{method: "GET", path: "/api/v1/devices/dev-x", token: f.op["revoked"]}, 401, api.CodeUnauthorized, "revoked"},
		{"get, unknown device", req{method: "GET", path: "/api/v1/devices/dev-nope", token: f.op["viewer"]}, 404, api.CodeNotFound, "dev-nope: not found"},
		{"get, bad ID", req{method: "GET", path: "/api/v1/devices/a%20b", token: f.op["viewer"]}, 400, api.CodeBadRequest, "device_id"},
		{"get, device token", req{method: "GET", path: "/api/v1/devices/dev-y", token: f.dev["dev-x"]}, 401, api.CodeUnauthorized, "unknown operator token"},
		// Revocation.
		{"revoke, no token", req{method: "POST", path: "/api/v1/devices/dev-x/revoke"}, 401, api.CodeUnauthorized, "no operator token"},
		{"revoke, viewer", req{method: "POST", path: "/api/v1/devices/dev-x/revoke", token: f.op["viewer"]}, 403, api.CodeForbidden, "to revoke devices needs role operator"},
		{"revoke, unknown device", req{method: "POST", path: "/api/v1/devices/dev-nope/revoke", token: f.op["operator"]}, 404, api.CodeNotFound, "dev-nope: not found"},
		{"revoke, again", req{method: "POST", path: "/api/v1/devices/dev-revoked/revoke", token: f.op["operator"]}, 409, api.CodeConflict, "already revoked"},
		{"revoke, by a device", req{method: "POST", path: "/api/v1/devices/dev-y/revoke", token: f.dev["dev-x"]}, 401, api.CodeUnauthorized, "unknown operator token"},
		// Audit log.
		{"audit, no token", req{method: "GET", path: "/api/v1/audit"}, 401, api.CodeUnauthorized, "no operator token"},
		{"audit, revoked admin", req{method: "GET", path: "/api/v1/audit", token: f.op["revoked"]}, 401, api.CodeUnauthorized, "revoked"},
		{"audit, viewer", req{method: "GET", path: "/api/v1/audit", token: f.op["viewer"]}, 403, api.CodeForbidden, "needs role admin"},
		{"audit, unknown parameter", req{method: "GET", path: "/api/v1/audit?after=1", token: f.op["admin"]}, 400, api.CodeBadRequest, `unknown query parameter "after"`},
		{"audit, operator", req{method: "GET", path: "/api/v1/audit", token: f.op["operator"]}, 403, api.CodeForbidden, "needs role admin"},
		{"audit, bad before", req{method: "GET", path: "/api/v1/audit?before=-1", token: f.op["admin"]}, 400, api.CodeBadRequest, "before="},
		// Routing.
		{"unknown endpoint", req{method: "GET", path: "/api/v1/nothing", token: f.op["admin"]}, 404, api.CodeNotFound, "no endpoint GET /api/v1/nothing"},
		{"wrong method", req{method: "DELETE", path: "/api/v1/devices/dev-x", token: f.op["admin"]}, 405, api.CodeMethodNotAllowed, "method DELETE not allowed"},
		{"inventory by POST", req{method: "POST", path: "/api/v1/device/inventory", token: f.dev["dev-x"], ctype: js, body: `{"attributes": {}}`}, 405, api.CodeMethodNotAllowed, "allowed: PUT"},
		// Device authentication.
		{"poll, no token", req{method: "GET", path: "/api/v1/device/poll"}, 401, api.CodeUnauthorized, "no device token"},
		{"poll, unknown token", req{method: "GET", path: "/api/v1/device/poll", token: unknown}, 401, api.CodeUnauthorized, "unknown device token"},
		{"poll, malformed token", req{method: "GET", path: "/api/v1/device/poll", token: f.dev["dev-x"][:63]}, 401, api.CodeUnauthorized, "malformed token"},
		{"poll, revoked", req{method: "GET", path: "/api/v1/device/poll", token: f.dev["dev-revoked"]}, 401, api.CodeUnauthorized, "dev-revoked: token revoked"},
		{"poll, expired", req{method: "GET", path: "/api/v1/device/poll", token: f.dev["dev-expired"]}, 401, api.CodeUnauthorized, "dev-expired: token expired"},
		{"poll, operator token", req{method: "GET", path: "/api/v1/device/poll", token: f.op["admin"]}, 401, api.CodeUnauthorized, "unknown device token"},
		{"poll, token hash as token", req{method: "GET", path: "/api/v1/device/poll", token: f.devSH["dev-x"]}, 401, api.CodeUnauthorized, "unknown device token"},
		{"poll, naming a device", req{method: "GET", path: "/api/v1/device/poll?device_id=dev-y", token: f.dev["dev-x"]}, 400, api.CodeBadRequest, `unknown query parameter "device_id"`},
		{"poll, device in the path", req{method: "GET", path: "/api/v1/device/dev-y/poll", token: f.dev["dev-x"]}, 404, api.CodeNotFound, "no endpoint"},
		{"enroll, plain HTTP", req{method: "POST", path: "/api/v1/device/enroll", ctype: js, body: `{"board": "b", "version": "1"}`}, 401, api.CodeUnauthorized, "needs a client certificate"},
		{"status, no token", req{method: "POST", path: "/api/v1/device/status", ctype: js, body: validStatus}, 401, api.CodeUnauthorized, "no device token"},
		{"status, unknown token", req{method: "POST", path: "/api/v1/device/status", token: unknown, ctype: js, body: validStatus}, 401, api.CodeUnauthorized, "unknown device token"},
		{"status, revoked", req{method: "POST", path: "/api/v1/device/status", token: f.dev["dev-revoked"], ctype: js, body: validStatus}, 401, api.CodeUnauthorized, "revoked"},
		{"status, expired", req{method: "POST", path: "/api/v1/device/status", token: f.dev["dev-expired"], ctype: js, body: validStatus}, 401, api.CodeUnauthorized, "expired"},
		{"inventory, no token", req{method: "PUT", path: "/api/v1/device/inventory", ctype: js, body: `{"attributes": {}}`}, 401, api.CodeUnauthorized, "no device token"},
		{"inventory, unknown token", req{method: "PUT", path: "/api/v1/device/inventory", token: unknown, ctype: js, body: `{"attributes": {}}`}, 401, api.CodeUnauthorized, "unknown device token"},
		{"inventory, expired", req{method: "PUT", path: "/api/v1/device/inventory", token: f.dev["dev-expired"], ctype: js, body: `{"attributes": {}}`}, 401, api.CodeUnauthorized, "expired"},
		{"inventory, revoked", req{method: "PUT", path: "/api/v1/device/inventory", token: f.dev["dev-revoked"], ctype: js, body: `{"attributes": {}}`}, 401, api.CodeUnauthorized, "revoked"},
		// Status bodies.
		{"status, text/plain", req{method: "POST", path: "/api/v1/device/status", token: f.dev["dev-x"], ctype: "text/plain", body: validStatus}, 415, api.CodeUnsupportedType, "want application/json"},
		{"status, not JSON", req{method: "POST", path: "/api/v1/device/status", token: f.dev["dev-x"], ctype: js, body: "{phase: idle}"}, 400, api.CodeBadRequest, "malformed JSON"},
		{"status, unknown phase", req{method: "POST", path: "/api/v1/device/status", token: f.dev["dev-x"], ctype: js, body: strings.Replace(validStatus, "idle", "dancing", 1)}, 400, api.CodeBadRequest, `phase "dancing"`},
		{"status, progress 2", req{method: "POST", path: "/api/v1/device/status", token: f.dev["dev-x"], ctype: js, body: strings.Replace(validStatus, `"progress": 0`, `"progress": 2`, 1)}, 400, api.CodeBadRequest, "progress 2"},
		{"status, failed without error", req{method: "POST", path: "/api/v1/device/status", token: f.dev["dev-x"], ctype: js, body: strings.Replace(validStatus, "idle", "failed", 1)}, 400, api.CodeBadRequest, "needs an error"},
		{"status, device_id field", req{method: "POST", path: "/api/v1/device/status", token: f.dev["dev-x"], ctype: js, body: strings.Replace(validStatus, "{", `{"device_id": "dev-y", `, 1)}, 400, api.CodeBadRequest, `unknown field "device_id"`},
		{"status, too large", req{method: "POST", path: "/api/v1/device/status", token: f.dev["dev-x"], ctype: js, body: big}, 413, api.CodeTooLarge, "over 65536 bytes"},
		// Inventory bodies.
		{"inventory, text/plain", req{method: "PUT", path: "/api/v1/device/inventory", token: f.dev["dev-x"], ctype: "text/plain", body: `{"attributes": {}}`}, 415, api.CodeUnsupportedType, "want application/json"},
		{"inventory, no attributes", req{method: "PUT", path: "/api/v1/device/inventory", token: f.dev["dev-x"], ctype: js, body: `{}`}, 400, api.CodeBadRequest, "attributes: missing"},
		{"inventory, too many", req{method: "PUT", path: "/api/v1/device/inventory", token: f.dev["dev-x"], ctype: js, body: string(many)}, 400, api.CodeBadRequest, "129 attributes, the most is 128"},
		{"inventory, bad name", req{method: "PUT", path: "/api/v1/device/inventory", token: f.dev["dev-x"], ctype: js, body: `{"attributes": {"a b": "c"}}`}, 400, api.CodeBadRequest, `attribute name "a b"`},
		{"inventory, NUL", req{method: "PUT", path: "/api/v1/device/inventory", token: f.dev["dev-x"], ctype: js, body: `{"attributes": {"a": "x\u0000y"}}`}, 400, api.CodeBadRequest, "attribute a: value holds a NUL byte"},
		{"inventory, too large", req{method: "PUT", path: "/api/v1/device/inventory", token: f.dev["dev-x"], ctype: js, body: big, chunked: true}, 413, api.CodeTooLarge, "over 65536 bytes"},
	})
}

func TestRegisterReadRevoke(t *testing.T) { storetest.Run(t, testRegisterReadRevoke) }

func testRegisterReadRevoke(t *testing.T, dsn string) {
	f := newFixture(t, dsn)
	hash := strings.Repeat("7", 64)
	body := `{"device_id": "SN-0042", "board": "qemu-x86_64", "version": "1.0", "token_sha256": "` + hash + `", "token_expires": "2027-01-01T00:00:00Z"}`
	w := f.do(req{method: "POST", path: "/api/v1/devices", token: f.op["operator"], ctype: "application/json; charset=utf-8", body: body})
	if w.Code != http.StatusCreated {
		t.Fatalf("register = %d %s, want 201", w.Code, w.Body)
	}
	if loc := w.Header().Get("Location"); loc != "/api/v1/devices/SN-0042" {
		t.Errorf("Location = %q", loc)
	}
	var created api.Device
	decodeJSON(t, w, &created)
	exp := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	want := api.Device{ID: "SN-0042", Board: "qemu-x86_64", InstalledVersion: "1.0", Created: t0, TokenExpires: &exp}
	if diff := cmp.Diff(want, created); diff != "" {
		t.Errorf("register answered -want +got:\n%s", diff)
	}
	d, err := f.st.Device(context.Background(), "SN-0042")
	if err != nil || d.TokenSHA256 != hash || !d.TokenExpires.Equal(exp) {
		t.Errorf("stored device = %+v, %v; want token hash %s expiring %v", d, err, hash, exp)
	}

	// A viewer reads it back.
	w = f.do(req{method: "GET", path: "/api/v1/devices/SN-0042", token: f.op["viewer"]})
	var got api.Device
	decodeJSON(t, w, &got)
	want.Attributes = nil // an empty inventory is left out
	if w.Code != 200 || !cmp.Equal(want, got) {
		t.Errorf("get = %d %+v, want 200 %+v", w.Code, got, want)
	}

	// Revoked, by an operator: the device's token stops working.
	f.now = t0.Add(time.Hour)
	w = f.do(req{method: "POST", path: "/api/v1/devices/dev-x/revoke", token: f.op["operator"]})
	decodeJSON(t, w, &got)
	if w.Code != 200 || got.Revoked == nil || !got.Revoked.Equal(f.now) {
		t.Errorf("revoke = %d %+v, want 200 revoked at %v", w.Code, got, f.now)
	}
	if w := f.do(req{method: "GET", path: "/api/v1/device/poll", token: f.dev["dev-x"]}); w.Code != 401 {
		t.Errorf("poll with the revoked token = %d, want 401", w.Code)
	}

	// Both changes are in the audit log, newest first, with who did them.
	w = f.do(req{method: "GET", path: "/api/v1/audit?limit=2", token: f.op["admin"]})
	var log api.AuditLog
	decodeJSON(t, w, &log)
	if len(log.Entries) != 2 || log.Next == 0 {
		t.Fatalf("audit = %+v, want 2 entries and a next page", log)
	}
	if e := log.Entries[0]; e.Action != "device.revoke" || e.Target != "dev-x" || e.Actor != "operator:operator" || !e.At.Equal(f.now) {
		t.Errorf("newest audit entry = %+v, want device.revoke of dev-x by operator:operator at %v", e, f.now)
	}
	if e := log.Entries[1]; e.Action != "device.register" || e.Target != "SN-0042" || !strings.Contains(e.Detail, `"version":"1.0"`) {
		t.Errorf("second audit entry = %+v, want device.register of SN-0042 with its version", e)
	}
	w = f.do(req{method: "GET", path: fmt.Sprintf("/api/v1/audit?before=%d", log.Next), token: f.op["admin"]})
	var older api.AuditLog
	decodeJSON(t, w, &older)
	if len(older.Entries) == 0 || older.Entries[0].ID >= log.Next || older.Next != 0 {
		t.Errorf("older audit page = %+v, want entries below %d and no next page", older, log.Next)
	}
}

func TestListPages(t *testing.T) { storetest.Run(t, testListPages) }

func testListPages(t *testing.T, dsn string) {
	f := newFixture(t, dsn)
	var ids []string
	next := ""
	for range 10 {
		path := "/api/v1/devices?limit=3"
		if next != "" {
			path += "&after=" + next
		}
		w := f.do(req{method: "GET", path: path, token: f.op["viewer"]})
		var page api.DeviceList
		decodeJSON(t, w, &page)
		if w.Code != 200 || len(page.Devices) > 3 {
			t.Fatalf("GET %s = %d with %d devices", path, w.Code, len(page.Devices))
		}
		for _, d := range page.Devices {
			ids = append(ids, d.ID)
			if d.Attributes != nil {
				t.Errorf("listed device %s carries attributes", d.ID)
			}
		}
		if next = page.Next; next == "" {
			break
		}
	}
	if want := []string{"dev-expired", "dev-revoked", "dev-x", "dev-y"}; !cmp.Equal(ids, want) {
		t.Errorf("pages of 3 = %v, want %v", ids, want)
	}
}

func TestPoll(t *testing.T) { storetest.Run(t, testPoll) }

func testPoll(t *testing.T, dsn string) {
	f := newFixture(t, dsn)
	f.now = t0.Add(time.Minute)
	w := f.do(req{method: "GET", path: "/api/v1/device/poll", token: f.dev["dev-x"]})
	var p api.Poll
	decodeJSON(t, w, &p)
	if w.Code != 200 || p.Release != nil || p.IntervalSeconds < 300 || p.IntervalSeconds > 360 {
		t.Errorf("poll = %d %+v, want 200, no release, an interval from 300 to 360 s", w.Code, p)
	}
	if err := p.Validate(); err != nil {
		t.Errorf("poll answer %s does not pass the device's checks: %v", w.Body, err)
	}
	if !strings.Contains(w.Body.String(), `"release":null`) {
		t.Errorf("poll body %s does not say release null", w.Body)
	}
	etag := w.Header().Get("ETag")
	if len(etag) < 3 || etag[0] != '"' || w.Header().Get("Cache-Control") != "private, no-cache" {
		t.Errorf("poll headers ETag %q, Cache-Control %q", etag, w.Header().Get("Cache-Control"))
	}
	if d, _ := f.st.Device(context.Background(), "dev-x"); !d.LastSeen.Equal(f.now) {
		t.Errorf("last seen %v after a poll at %v", d.LastSeen, f.now)
	}

	// The same answer again: 304, no body, still seen.
	f.now = t0.Add(2 * time.Minute)
	for _, inm := range []string{etag, `"other", ` + etag, "W/" + etag, "*"} {
		w = f.do(req{method: "GET", path: "/api/v1/device/poll", token: f.dev["dev-x"], header: map[string]string{"If-None-Match": inm}})
		if w.Code != http.StatusNotModified || w.Body.Len() != 0 || w.Header().Get("ETag") != etag {
			t.Errorf("poll with If-None-Match %s = %d, %d bytes, ETag %q; want 304, none, %s", inm, w.Code, w.Body.Len(), w.Header().Get("ETag"), etag)
		}
	}
	if d, _ := f.st.Device(context.Background(), "dev-x"); !d.LastSeen.Equal(f.now) {
		t.Errorf("last seen %v after a 304 poll at %v", d.LastSeen, f.now)
	}
	w = f.do(req{method: "GET", path: "/api/v1/device/poll", token: f.dev["dev-x"], header: map[string]string{"If-None-Match": `"stale"`}})
	if w.Code != 200 {
		t.Errorf("poll with a stale ETag = %d, want 200", w.Code)
	}

	// Another interval is another answer: the old ETag no longer matches.
	f.srv.interval = time.Hour
	w = f.do(req{method: "GET", path: "/api/v1/device/poll", token: f.dev["dev-x"], header: map[string]string{"If-None-Match": etag}})
	if w.Code != 200 || w.Header().Get("ETag") == etag {
		t.Errorf("poll after the interval changed = %d, ETag %q; want 200 and a new ETag", w.Code, w.Header().Get("ETag"))
	}
}

func TestPollIntervalSpread(t *testing.T) {
	s := New(nil, WithPollInterval(300*time.Second, 60*time.Second))
	seen := map[int]bool{}
	for i := range 200 {
		iv := s.pollInterval(fmt.Sprint("SN-", i))
		if iv < 300 || iv > 360 {
			t.Fatalf("pollInterval(SN-%d) = %d, want 300 to 360", i, iv)
		}
		seen[iv] = true
	}
	if len(seen) < 30 {
		t.Errorf("200 devices got %d different intervals, want them spread over the 61 of the window", len(seen))
	}
	if a, b := s.pollInterval("SN-1"), s.pollInterval("SN-1"); a != b {
		t.Errorf("pollInterval(SN-1) = %d then %d, want the same", a, b)
	}
	if iv := New(nil, WithPollInterval(0, 0)).pollInterval("x"); iv != 1 {
		t.Errorf("pollInterval with no interval = %d, want 1", iv)
	}
}

func TestReports(t *testing.T) { storetest.Run(t, testReports) }

func testReports(t *testing.T, dsn string) {
	f := newFixture(t, dsn)
	f.now = t0.Add(time.Minute)
	status := `{"phase": "failed", "progress": 0.5, "error": "slot B: write: no space left", "installed_version": "1.1",
		"slots": [{"name": "A", "state": "good", "tries_left": 0}], "transfer": {"fetched_bytes": 1000, "image_bytes": 4096}}`
	if w := f.do(req{method: "POST", path: "/api/v1/device/status", token: f.dev["dev-x"], ctype: "application/json", body: status}); w.Code != 204 || w.Body.Len() != 0 {
		t.Fatalf("status = %d %s, want 204", w.Code, w.Body)
	}
	inv := `{"attributes": {"kernel": "6.1", "hw": "B2"}}`
	if w := f.do(req{method: "PUT", path: "/api/v1/device/inventory", token: f.dev["dev-x"], ctype: "application/json", body: inv}); w.Code != 204 {
		t.Fatalf("inventory = %d %s, want 204", w.Code, w.Body)
	}
	w := f.do(req{method: "GET", path: "/api/v1/devices/dev-x", token: f.op["viewer"]})
	var d api.Device
	decodeJSON(t, w, &d)
	want := api.Device{ID: "dev-x", Board: "qemu-x86_64", InstalledVersion: "1.1", Created: t0, LastSeen: &f.now,
		Status: &api.Status{Phase: api.PhaseFailed, Progress: 0.5, Error: "slot B: write: no space left", InstalledVersion: "1.1",
			Slots: []api.SlotState{{Name: "A", State: "good"}}, Transfer: api.Transfer{FetchedBytes: 1000, ImageBytes: 4096}},
		Attributes: map[string]string{"kernel": "6.1", "hw": "B2"}}
	if diff := cmp.Diff(want, d); diff != "" {
		t.Errorf("device after its reports -want +got:\n%s", diff)
	}
}

// TestDeviceIsolation: device X's token reaches X's data and nothing of
// Y's, whatever X sends.
func TestDeviceIsolation(t *testing.T) { storetest.Run(t, testDeviceIsolation) }

func testDeviceIsolation(t *testing.T, dsn string) {
	f := newFixture(t, dsn)
	y := func() store.Device {
		d, err := f.st.Device(context.Background(), "dev-y")
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	before := y()
	x := f.dev["dev-x"]
	const js = "application/json"
	for _, r := range []req{
		{method: "GET", path: "/api/v1/device/poll", token: x},
		{method: "POST", path: "/api/v1/device/status", token: x, ctype: js, body: strings.Replace(validStatus, `"1.0"`, `"6.6.6"`, 1)},
		{method: "PUT", path: "/api/v1/device/inventory", token: x, ctype: js, body: `{"attributes": {"owner": "x"}}`},
		// Every way X might name Y.
		{method: "GET", path: "/api/v1/devices/dev-y", token: x},
		{method: "POST", path: "/api/v1/devices/dev-y/revoke", token: x},
		{method: "GET", path: "/api/v1/devices", token: x},
		{method: "GET", path: "/api/v1/device/poll?device_id=dev-y", token: x},
		{method: "PUT", path: "/api/v1/device/inventory?device_id=dev-y", token: x, ctype: js, body: `{"attributes": {"owner": "x"}}`},
		{method: "PUT", path: "/api/v1/device/dev-y/inventory", token: x, ctype: js, body: `{"attributes": {"owner": "x"}}`},
		{method: "POST", path: "/api/v1/device/status", token: x, ctype: js, body: strings.Replace(validStatus, "{", `{"device_id": "dev-y", `, 1)},
		{method: "GET", path: "/api/v1/device/poll", header: map[string]string{"Authorization": "Bearer " + x + " " + f.dev["dev-y"]}},
	} {
		w := f.do(r)
		if strings.Contains(w.Body.String(), "dev-y") && w.Code < 400 {
			t.Errorf("%s %s with X's token = %d %s: names dev-y", r.method, r.path, w.Code, w.Body)
		}
	}
	if diff := cmp.Diff(before, y()); diff != "" {
		t.Errorf("dev-y changed by dev-x's requests: -before +after\n%s", diff)
	}
	xd, _ := f.st.Device(context.Background(), "dev-x")
	if xd.InstalledVersion != "6.6.6" || xd.Attributes["owner"] != "x" {
		t.Errorf("dev-x = %+v: its own reports did not land", xd)
	}
}

func TestInternalErrorHidesCause(t *testing.T) { storetest.Run(t, testInternalErrorHidesCause) }

func testInternalErrorHidesCause(t *testing.T, dsn string) {
	f := newFixture(t, dsn)
	var logs bytes.Buffer
	f.srv = New(f.st, WithLogger(slogTo(&logs)))
	f.st.Close() // every query fails from now on
	w := f.do(req{method: "GET", path: "/api/v1/devices", token: f.op["viewer"]})
	var e api.Error
	decodeJSON(t, w, &e)
	if w.Code != 500 || e.Code != api.CodeInternal || strings.Contains(e.Error, "closed") {
		t.Errorf("with the store closed = %d %+v, want 500 internal without the cause", w.Code, e)
	}
	if !strings.Contains(logs.String(), "closed") {
		t.Errorf("log %q lacks the cause", logs.String())
	}
}

func slogTo(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

// TestConcurrentDevices: devices reporting at once all get through, each
// to its own row (SQLite's writers wait for each other, none is refused
// as busy; PostgreSQL's serializable transactions that clash run again).
func TestConcurrentDevices(t *testing.T) { storetest.Run(t, testConcurrentDevices) }

func testConcurrentDevices(t *testing.T, dsn string) {
	f := newFixture(t, dsn)
	const devices, rounds = 8, 10
	ctx := context.Background()
	toks := make([]string, devices)
	for i := range toks {
		var sha string
		toks[i], sha = f.token()
		d := store.Device{ID: fmt.Sprint("c-", i), Board: "b", TokenSHA256: sha, Created: t0, InstalledVersion: "1.0"}
		if err := f.st.RegisterDevice(ctx, d, store.Event{At: t0, Actor: "cli", Action: "setup"}); err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewServer(f.srv)
	defer srv.Close()
	errc := make(chan error, devices)
	for i, tok := range toks {
		go func() {
			errc <- func() error {
				for r := range rounds {
					for _, rq := range []struct{ method, path, body string }{
						{"GET", "/api/v1/device/poll", ""},
						{"POST", "/api/v1/device/status", strings.Replace(validStatus, `"1.0"`, fmt.Sprintf(`"%d.%d"`, i, r), 1)},
						{"PUT", "/api/v1/device/inventory", fmt.Sprintf(`{"attributes": {"round": "%d", "me": "%d"}}`, r, i)},
					} {
						req, _ := http.NewRequest(rq.method, srv.URL+rq.path, strings.NewReader(rq.body))
						req.Header.Set("Authorization", "Bearer "+tok)
						req.Header.Set("Content-Type", "application/json")
						resp, err := srv.Client().Do(req)
						if err != nil {
							return err
						}
						b, _ := io.ReadAll(resp.Body)
						resp.Body.Close()
						if resp.StatusCode >= 300 {
							return fmt.Errorf("%s %s = %d %s", rq.method, rq.path, resp.StatusCode, b)
						}
					}
				}
				return nil
			}()
		}()
	}
	for range devices {
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}
	for i := range devices {
		d, err := f.st.Device(ctx, fmt.Sprint("c-", i))
		want := map[string]string{"round": fmt.Sprint(rounds - 1), "me": fmt.Sprint(i)}
		if err != nil || d.InstalledVersion != fmt.Sprintf("%d.%d", i, rounds-1) || !cmp.Equal(d.Attributes, want) {
			t.Errorf("device c-%d = %+v, %v; want its own last reports", i, d, err)
		}
	}
}
