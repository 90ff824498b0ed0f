package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/lifeboat-update/lifeboat/pkg/api"
	"github.com/lifeboat-update/lifeboat/pkg/server/ddi"
	"github.com/lifeboat-update/lifeboat/pkg/server/store"
	"github.com/lifeboat-update/lifeboat/pkg/server/store/storetest"
)

// withDDI gives the fixture's server (with opts) an artifact store, a release 2.0
// with update.swu attached, and a running rollout of it to dev-x and
// dev-expired (so that one failure of dev-x does not halt it); it
// returns the file, the rollout's ID (dev-x's action) and the artifact
// store's directory.
func (f *fixture) withDDI(opts ...Option) (swu []byte, action int64, dir string) {
	f.t.Helper()
	dir = filepath.Join(f.t.TempDir(), "artifacts")
	files, err := ddi.OpenFiles(dir)
	if err != nil {
		f.t.Fatal(err)
	}
	f.srv = New(f.st, append([]Option{WithClock(func() time.Time { return f.now }), WithPollInterval(300*time.Second, 0), WithArtifacts(files), WithMaxUpload(1 << 20)}, opts...)...)
	f.addRelease("2.0")
	swu = []byte(strings.Repeat("swu bytes ", 100))
	w := f.do(req{method: "POST", path: "/api/v1/releases/" + testBoard + "/2.0/artifacts?name=update.swu", token: f.op["operator"], ctype: "application/octet-stream", body: string(swu)})
	if w.Code != 201 {
		f.t.Fatalf("attach = %d %s", w.Code, w.Body)
	}
	var a api.Artifact
	decodeJSON(f.t, w, &a)
	sum := sha256.Sum256(swu)
	if want := (api.Artifact{Board: testBoard, Version: "2.0", Name: "update.swu", Size: int64(len(swu)), SHA256: hex.EncodeToString(sum[:]), SHA1: a.SHA1, MD5: a.MD5}); a != want || len(a.SHA1) != 40 || len(a.MD5) != 32 {
		f.t.Fatalf("attach = %+v, want %+v", a, want)
	}
	ro := f.startRollout(`{"board": "` + testBoard + `", "version": "2.0", "filter": "id=dev-x or id=dev-expired", "waves": ["100%"], "success_threshold": 1, "error_threshold": 0.5}`)
	return swu, ro.ID, dir
}

func target(token string) map[string]string {
	return map[string]string{"Authorization": "TargetToken " + token}
}

// ddiGet reads a DDI resource as dev's target token.
func (f *fixture) ddiGet(dev, path string, v any) {
	f.t.Helper()
	w := f.do(req{method: "GET", path: path, header: target(f.dev[dev])})
	if w.Code != 200 {
		f.t.Fatalf("GET %s = %d %s", path, w.Code, w.Body)
	}
	decodeJSON(f.t, w, v)
}

func (f *fixture) feedback(dev string, action int64, body string) {
	f.t.Helper()
	path := fmt.Sprintf("/DEFAULT/controller/v1/%s/deploymentBase/%d/feedback", dev, action)
	if w := f.do(req{method: "POST", path: path, header: target(f.dev[dev]), ctype: "application/json", body: body}); w.Code != 200 {
		f.t.Fatalf("POST %s = %d %s", path, w.Code, w.Body)
	}
}

func fb(execution, finished string, cnt, of int, details ...string) string {
	return fmt.Sprintf(`{"id": 1, "time": "20261126T120000", "status": {"result": {"progress": {"cnt": %d, "of": %d}, "finished": %q}, "execution": %q, "details": %s}}`, cnt, of, finished, execution, jsonStrings(details))
}

func jsonStrings(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", s)
	}
	return "[" + strings.Join(q, ",") + "]"
}

// TestDDI: a hawkBit client's whole conversation. dev-x's poll links its
// action, the deployment lists the artifact with its hashes and a link
// that serves it (with ranges); feedback moves the device through the
// timeline and the rollout; once it succeeded, the poll links nothing.
// dev-y, in no rollout, is offered nothing.
func TestDDI(t *testing.T) { storetest.Run(t, testDDI) }

func testDDI(t *testing.T, dsn string) {
	f := newFixture(t, dsn)
	swu, action, _ := f.withDDI()

	var root ddi.Root
	f.ddiGet("dev-y", "/DEFAULT/controller/v1/dev-y", &root)
	if _, ok := root.Links["deploymentBase"]; ok || root.Config.Polling.Sleep != "00:05:00" {
		t.Errorf("dev-y's root = %+v, want no deploymentBase, sleep 00:05:00", root)
	}
	f.ddiGet("dev-x", "/DEFAULT/controller/v1/dev-x", &root)
	base := fmt.Sprintf("http://example.com/DEFAULT/controller/v1/dev-x/deploymentBase/%d", action)
	if got := root.Links["deploymentBase"].Href; got != base {
		t.Fatalf("dev-x's deploymentBase = %q, want %q", got, base)
	}
	if got := root.Links["configData"].Href; got != "http://example.com/DEFAULT/controller/v1/dev-x/configData" {
		t.Errorf("configData link = %q", got)
	}
	var dep ddi.DeploymentBase
	f.ddiGet("dev-x", strings.TrimPrefix(base, "http://example.com"), &dep)
	s256 := sha256.Sum256(swu)
	want := ddi.DeploymentBase{ID: fmt.Sprint(action), Deployment: ddi.Deployment{Download: "forced", Update: "forced", Chunks: []ddi.Chunk{{
		Part: "os", Version: "2.0", Name: testBoard, Artifacts: []ddi.Artifact{{
			Filename: "update.swu", Size: int64(len(swu)),
			Hashes: ddi.Hashes{SHA256: hex.EncodeToString(s256[:]), SHA1: dep.Deployment.Chunks[0].Artifacts[0].Hashes.SHA1, MD5: dep.Deployment.Chunks[0].Artifacts[0].Hashes.MD5},
			Links:  map[string]ddi.Link{"download-http": {Href: base + "/artifacts/update.swu"}},
		}}}}}}
	if diff := cmp.Diff(want, dep); diff != "" {
		t.Fatalf("deployment: -want +got\n%s", diff)
	}
	dl := strings.TrimPrefix(base, "http://example.com") + "/artifacts/update.swu"
	w := f.do(req{method: "GET", path: dl, header: target(f.dev["dev-x"])})
	if w.Code != 200 || w.Body.String() != string(swu) {
		t.Fatalf("download = %d, %d bytes; want 200 and the %d bytes attached", w.Code, w.Body.Len(), len(swu))
	}
	w = f.do(req{method: "GET", path: dl, header: map[string]string{"Authorization": "TargetToken " + f.dev["dev-x"], "Range": "bytes=10-19"}})
	if w.Code != 206 || w.Body.String() != string(swu[10:20]) {
		t.Errorf("download of bytes 10-19 = %d %q, want 206 %q", w.Code, w.Body, swu[10:20])
	}

	// configData: the device's attributes, merged.
	for _, body := range []string{`{"data": {"hw": "rev-b"}}`, `{"data": {"serial": "42"}, "mode": "merge"}`} {
		if w := f.do(req{method: "PUT", path: "/DEFAULT/controller/v1/dev-x/configData", header: target(f.dev["dev-x"]), ctype: "application/json", body: body}); w.Code != 200 {
			t.Fatalf("configData %s = %d %s", body, w.Code, w.Body)
		}
	}
	d, _ := f.st.Device(context.Background(), "dev-x")
	if diff := cmp.Diff(map[string]string{"hw": "rev-b", "serial": "42"}, d.Attributes); diff != "" {
		t.Errorf("attributes after configData: -want +got\n%s", diff)
	}

	// Feedback: proceeding, a failure, then (a retry) success.
	steps := []struct {
		body    string
		phase   api.Phase
		version string
		errHas  string
		state   store.DeviceState
	}{
		{fb("proceeding", "none", 0, 1, "Installing Update Chunk Artifacts."), api.PhaseInstalling, "1.0", "", store.Installing},
		{fb("closed", "failure", 0, 1, "ERROR : HW compatibility not found"), api.PhaseFailed, "1.0", "HW compatibility not found", store.Failed},
		{fb("closed", "success", 1, 1, "Update Installed."), api.PhaseInstalled, "2.0", "", store.Succeeded},
	}
	for _, s := range steps {
		f.feedback("dev-x", action, s.body)
		d, _ := f.st.Device(context.Background(), "dev-x")
		if d.Status.Phase != s.phase || d.InstalledVersion != s.version || !strings.Contains(d.Status.Error, s.errHas) {
			t.Errorf("after %s: status %+v, version %s; want %s, %s, error naming %q", s.body, d.Status, d.InstalledVersion, s.phase, s.version, s.errHas)
		}
		rds, _ := f.st.RolloutDevices(context.Background(), action)
		for _, rd := range rds {
			if rd.DeviceID == "dev-x" && rd.State != s.state {
				t.Errorf("after %s: rollout state %s, want %s", s.body, rd.State, s.state)
			}
		}
	}
	tl, _ := f.st.Timeline(context.Background(), "dev-x", 0, 10)
	if len(tl) != 3 {
		t.Errorf("timeline has %d reports, want 3", len(tl))
	}
	ro, waves, _ := f.st.Rollout(context.Background(), action)
	if ro.State != store.Running || waves[0].Succeeded != 1 || waves[0].Failed != 0 {
		t.Errorf("rollout %s, %+v; want running, dev-x succeeded", ro.State, waves[0])
	}
	root = ddi.Root{}
	f.ddiGet("dev-x", "/DEFAULT/controller/v1/dev-x", &root)
	if len(root.Links) != 0 {
		t.Errorf("root after success = %+v, want no links (installed, attributes known)", root.Links)
	}
}

// TestDDIRefusals: every DDI endpoint and the upload refuse bad input
// with the right 4xx and a message naming what was wrong, and change
// nothing.
func TestDDIRefusals(t *testing.T) { storetest.Run(t, testDDIRefusals) }

func testDDIRefusals(t *testing.T, dsn string) {
	f := newFixture(t, dsn)
	_, action, dir := f.withDDI()
	const js = "application/json"
	x := f.dev["dev-x"]
	unknown, _ := f.token()
	root := "/DEFAULT/controller/v1/dev-x"
	dep := fmt.Sprintf("%s/deploymentBase/%d", root, action)
	good := fb("proceeding", "none", 0, 1)
	big := `{"status": {"execution": "proceeding", "result": {"finished": "none"}, "details": ["` + strings.Repeat("x", api.MaxBodySize) + `"]}}`
	up := "/api/v1/releases/" + testBoard + "/2.0/artifacts"
	bin := "application/octet-stream"
	for _, tc := range []struct {
		name   string
		req    req
		status int
		code   string
		msg    string
	}{
		{"root, no token", req{method: "GET", path: root}, 401, api.CodeUnauthorized, "want Authorization: TargetToken"},
		{"root, bearer", req{method: "GET", path: root, token: x}, 401, api.CodeUnauthorized, "want TargetToken"},
		{"root, gateway token", req{method: "GET", path: root, header: map[string]string{"Authorization": "GatewayToken " + x}}, 401, api.CodeUnauthorized, "want TargetToken"},
		{"root, unknown token", req{method: "GET", path: root, header: target(unknown)}, 401, api.CodeUnauthorized, "unknown device token"},
		{"root, revoked", req{method: "GET", path: "/DEFAULT/controller/v1/dev-revoked", header: target(f.dev["dev-revoked"])}, 401, api.CodeUnauthorized, "revoked"},
		{"root, another's", req{method: "GET", path: root, header: target(f.dev["dev-y"])}, 403, api.CodeForbidden, "another controller's"},
		{"root, query", req{method: "GET", path: root + "?c=1", header: target(x)}, 400, api.CodeBadRequest, `unknown query parameter "c"`},
		{"root, other tenant", req{method: "GET", path: "/acme/controller/v1/dev-x", header: target(x)}, 404, api.CodeNotFound, `tenant "acme": this server answers tenant DEFAULT`},
		{"root, expired", req{method: "GET", path: "/DEFAULT/controller/v1/dev-expired", header: target(f.dev["dev-expired"])}, 401, api.CodeUnauthorized, "dev-expired: token expired"},
		{"deployment, another's", req{method: "GET", path: dep, header: target(f.dev["dev-y"])}, 403, api.CodeForbidden, "another controller's"},
		{"deployment, malformed action", req{method: "GET", path: root + "/deploymentBase/one", header: target(x)}, 400, api.CodeBadRequest, `action ID "one"`},
		{"deployment, unknown action", req{method: "GET", path: root + "/deploymentBase/999", header: target(x)}, 404, api.CodeNotFound, "no action 999"},
		{"deployment, none for dev-y", req{method: "GET", path: fmt.Sprintf("/DEFAULT/controller/v1/dev-y/deploymentBase/%d", action), header: target(f.dev["dev-y"])}, 404, api.CodeNotFound, fmt.Sprintf("no action %d", action)},
		{"download, unknown name", req{method: "GET", path: dep + "/artifacts/other.swu", header: target(x)}, 404, api.CodeNotFound, `no artifact "other.swu"`},
		{"download, another's", req{method: "GET", path: dep + "/artifacts/update.swu", header: target(f.dev["dev-y"])}, 403, api.CodeForbidden, "another controller's"},
		{"feedback, unknown action", req{method: "POST", path: root + "/deploymentBase/999/feedback", header: target(x), ctype: js, body: good}, 404, api.CodeNotFound, "no action 999"},
		{"feedback, another's", req{method: "POST", path: dep + "/feedback", header: target(f.dev["dev-y"]), ctype: js, body: good}, 403, api.CodeForbidden, "another controller's"},
		{"feedback, text/plain", req{method: "POST", path: dep + "/feedback", header: target(x), ctype: "text/plain", body: good}, 415, api.CodeUnsupportedType, "want application/json"},
		{"feedback, not JSON", req{method: "POST", path: dep + "/feedback", header: target(x), ctype: js, body: "{status: closed}"}, 400, api.CodeBadRequest, "malformed JSON"},
		{"feedback, unknown field", req{method: "POST", path: dep + "/feedback", header: target(x), ctype: js, body: strings.Replace(good, "{", `{"controller": "dev-y", `, 1)}, 400, api.CodeBadRequest, `unknown field "controller"`},
		{"feedback, bad execution", req{method: "POST", path: dep + "/feedback", header: target(x), ctype: js, body: fb("dancing", "none", 0, 1)}, 400, api.CodeBadRequest, `status.execution "dancing"`},
		{"feedback, bad result", req{method: "POST", path: dep + "/feedback", header: target(x), ctype: js, body: fb("closed", "maybe", 0, 1)}, 400, api.CodeBadRequest, `status.result.finished "maybe"`},
		{"feedback, closed without result", req{method: "POST", path: dep + "/feedback", header: target(x), ctype: js, body: fb("closed", "none", 0, 1)}, 400, api.CodeBadRequest, "closed needs"},
		{"feedback, negative progress", req{method: "POST", path: dep + "/feedback", header: target(x), ctype: js, body: fb("proceeding", "none", -1, 1)}, 400, api.CodeBadRequest, "progress -1 of 1"},
		{"feedback, too large", req{method: "POST", path: dep + "/feedback", header: target(x), ctype: js, body: big}, 413, api.CodeTooLarge, "over 65536 bytes"},
		{"feedback, too large, streamed", req{method: "POST", path: dep + "/feedback", header: target(x), ctype: js, body: big, chunked: true}, 413, api.CodeTooLarge, "over 65536 bytes"},
		{"configData, bad mode", req{method: "PUT", path: root + "/configData", header: target(x), ctype: js, body: `{"data": {}, "mode": "append"}`}, 400, api.CodeBadRequest, `mode "append"`},
		{"configData, bad name", req{method: "PUT", path: root + "/configData", header: target(x), ctype: js, body: `{"data": {"a b": "c"}}`}, 400, api.CodeBadRequest, `attribute name "a b"`},
		{"configData, another's", req{method: "PUT", path: "/DEFAULT/controller/v1/dev-y/configData", header: target(x), ctype: js, body: `{"data": {}}`}, 403, api.CodeForbidden, "another controller's"},
		{"attach, viewer", req{method: "POST", path: up + "?name=b.swu", token: f.op["viewer"], ctype: bin, body: "b"}, 403, api.CodeForbidden, "needs role operator"},
		{"attach, device token", req{method: "POST", path: up + "?name=b.swu", token: x, ctype: bin, body: "b"}, 401, api.CodeUnauthorized, "unknown operator token"},
		{"attach, no name", req{method: "POST", path: up, token: f.op["operator"], ctype: bin, body: "b"}, 400, api.CodeBadRequest, `artifact name ""`},
		{"attach, path as name", req{method: "POST", path: up + "?name=../x", token: f.op["operator"], ctype: bin, body: "b"}, 400, api.CodeBadRequest, `artifact name "../x"`},
		{"attach, unknown parameter", req{method: "POST", path: up + "?name=b.swu&board=x", token: f.op["operator"], ctype: bin, body: "b"}, 400, api.CodeBadRequest, `unknown query parameter "board"`},
		{"attach, JSON", req{method: "POST", path: up + "?name=b.swu", token: f.op["operator"], ctype: js, body: "{}"}, 415, api.CodeUnsupportedType, "want application/octet-stream"},
		{"attach, unknown release", req{method: "POST", path: "/api/v1/releases/" + testBoard + "/9.9/artifacts?name=b.swu", token: f.op["operator"], ctype: bin, body: "b"}, 404, api.CodeNotFound, "release qemu-x86_64 9.9"},
		{"attach, name taken", req{method: "POST", path: up + "?name=update.swu", token: f.op["operator"], ctype: bin, body: "b"}, 409, api.CodeConflict, "artifact update.swu"},
		{"attach, too large", req{method: "POST", path: up + "?name=b.swu", token: f.op["operator"], ctype: bin, body: strings.Repeat("b", 1<<20+1)}, 413, api.CodeTooLarge, "over 1048576 bytes"},
		{"attach, too large, streamed", req{method: "POST", path: up + "?name=b.swu", token: f.op["operator"], ctype: bin, body: strings.Repeat("b", 1<<20+1), chunked: true}, 413, api.CodeTooLarge, "over 1048576 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.t = t
			before := f.snapshot()
			arts, _ := f.st.Artifacts(context.Background(), testBoard, "2.0")
			stored, _ := os.ReadDir(dir)
			w := f.do(tc.req)
			wantRefusal(t, tc.req.method+" "+tc.req.path, w.Code, w.Header(), w.Body.Bytes(), tc.status, tc.code, tc.msg)
			if diff := cmp.Diff(before, f.snapshot()); diff != "" {
				t.Errorf("the refused request changed the store: -before +after\n%s", diff)
			}
			if after, _ := f.st.Artifacts(context.Background(), testBoard, "2.0"); !cmp.Equal(arts, after) {
				t.Errorf("the refused request changed the artifacts: %v, then %v", arts, after)
			}
			if after, _ := os.ReadDir(dir); len(after) != len(stored) {
				t.Errorf("the refused request left a file in the artifact store: %d files, then %d", len(stored), len(after))
			}
		})
	}
	// A server without artifact storage says so.
	f.t = t
	f.srv = New(f.st, WithClock(func() time.Time { return f.now }))
	if w := f.do(req{method: "POST", path: up + "?name=b.swu", token: f.op["operator"], ctype: bin, body: "b"}); w.Code != http.StatusConflict || !strings.Contains(w.Body.String(), "keeps no artifacts") {
		t.Errorf("attach without storage = %d %s, want 409 naming the missing storage", w.Code, w.Body)
	}
}

func gateway(token string) map[string]string {
	return map[string]string{"Authorization": "GatewayToken " + token}
}

// TestDDIGateway: with a tenant of its own and a gateway token, the
// server answers that tenant only; the gateway token acts for any
// registered controller, not revoked, through the whole conversation;
// target tokens still work. Every refusal names why and changes nothing.
func TestDDIGateway(t *testing.T) { storetest.Run(t, testDDIGateway) }

func testDDIGateway(t *testing.T, dsn string) {
	f := newFixture(t, dsn)
	gw, gwSHA := f.token()
	_, action, _ := f.withDDI(WithDDITenant("acme"), WithDDIGatewayToken(gwSHA))
	root := "/acme/controller/v1/dev-x"
	dep := fmt.Sprintf("%s/deploymentBase/%d", root, action)
	unknown, _ := f.token()
	f.checkRefusals(t, []refusalCase{
		{"DEFAULT tenant", req{method: "GET", path: "/DEFAULT/controller/v1/dev-x", header: gateway(gw)}, 404, api.CodeNotFound, `tenant "DEFAULT": this server answers tenant acme`},
		{"DEFAULT tenant, feedback", req{method: "POST", path: fmt.Sprintf("/DEFAULT/controller/v1/dev-x/deploymentBase/%d/feedback", action), header: gateway(gw), ctype: "application/json", body: fb("proceeding", "none", 0, 1)}, 404, api.CodeNotFound, "this server answers tenant acme"},
		{"unknown gateway token", req{method: "GET", path: root, header: gateway(unknown)}, 401, api.CodeUnauthorized, "unknown gateway token"},
		{"a device's token as gateway token", req{method: "GET", path: root, header: gateway(f.dev["dev-x"])}, 401, api.CodeUnauthorized, "unknown gateway token"},
		{"gateway token as target token", req{method: "GET", path: root, header: target(gw)}, 401, api.CodeUnauthorized, "unknown device token"},
		{"gateway token as bearer", req{method: "GET", path: root, token: gw}, 401, api.CodeUnauthorized, "want TargetToken or GatewayToken"},
		{"malformed gateway token", req{method: "GET", path: root, header: gateway("letmein")}, 401, api.CodeUnauthorized, "malformed token"},
		{"no token", req{method: "GET", path: root}, 401, api.CodeUnauthorized, "want Authorization: TargetToken TOKEN or GatewayToken TOKEN"},
		{"gateway, unregistered controller", req{method: "GET", path: "/acme/controller/v1/dev-nope", header: gateway(gw)}, 404, api.CodeNotFound, `controller "dev-nope" is not registered`},
		{"gateway, revoked controller", req{method: "GET", path: "/acme/controller/v1/dev-revoked", header: gateway(gw)}, 401, api.CodeUnauthorized, "dev-revoked: revoked at"},
		{"gateway, operator endpoint", req{method: "GET", path: "/api/v1/devices", header: gateway(gw)}, 401, api.CodeUnauthorized, "want Bearer"},
		{"gateway, device endpoint", req{method: "GET", path: "/api/v1/device/poll", token: gw}, 401, api.CodeUnauthorized, "unknown device token"},
		{"target token, another's", req{method: "GET", path: dep, header: target(f.dev["dev-y"])}, 403, api.CodeForbidden, "another controller's"},
	})

	// The gateway acts for dev-x: the poll links its action under the
	// tenant, feedback moves it in its rollout. dev-y, by its own
	// target token, is served too.
	var r ddi.Root
	w := f.do(req{method: "GET", path: root, header: gateway(gw)})
	decodeJSON(t, w, &r)
	if want := "http://example.com" + dep; w.Code != 200 || r.Links["deploymentBase"].Href != want {
		t.Fatalf("gateway poll for dev-x = %d %+v, want deploymentBase %s", w.Code, r, want)
	}
	if w := f.do(req{method: "POST", path: dep + "/feedback", header: gateway(gw), ctype: "application/json", body: fb("closed", "success", 1, 1)}); w.Code != 200 {
		t.Fatalf("gateway feedback = %d %s", w.Code, w.Body)
	}
	if d, _ := f.st.Device(context.Background(), "dev-x"); d.InstalledVersion != "2.0" || d.Status.Phase != api.PhaseInstalled {
		t.Errorf("dev-x after the gateway's feedback: %s, %+v; want 2.0 installed", d.InstalledVersion, d.Status)
	}
	f.ddiGet("dev-y", "/acme/controller/v1/dev-y", &r)
	if w := f.do(req{method: "GET", path: "/acme/controller/v1/dev-y", header: gateway(gw)}); w.Code != 200 {
		t.Errorf("gateway poll for dev-y = %d %s", w.Code, w.Body)
	}
	if d, _ := f.st.Device(context.Background(), "dev-y"); d.LastSeen.IsZero() {
		t.Error("dev-y's polls did not record it as seen")
	}
}

func TestCheckDDITenant(t *testing.T) {
	for _, ok := range []string{"DEFAULT", "acme", "fleet_2-north", strings.Repeat("a", 64)} {
		if err := CheckDDITenant(ok); err != nil {
			t.Errorf("CheckDDITenant(%q) = %v", ok, err)
		}
	}
	for bad, msg := range map[string]string{"": "want 1 to 64", "a/b": "want 1 to 64", "a.b": "want 1 to 64", strings.Repeat("a", 65): "want 1 to 64", "api": "the server's own", "ui": "the server's own", "repo": "the server's own"} {
		if err := CheckDDITenant(bad); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("CheckDDITenant(%q) = %v, want an error naming %q", bad, err, msg)
		}
	}
}
