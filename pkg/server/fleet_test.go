package server

import (
	"context"
	"fmt"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/lifeboat-update/lifeboat/pkg/api"
	"github.com/lifeboat-update/lifeboat/pkg/server/store/storetest"
)

// search lists the IDs of the devices q matches, through every page.
func (f *fixture) search(q string) ([]string, *httptest.ResponseRecorder) {
	f.t.Helper()
	var ids []string
	after := ""
	for {
		path := "/api/v1/devices?limit=2&q=" + url.QueryEscape(q)
		if after != "" {
			path += "&after=" + after
		}
		w := f.do(req{method: "GET", path: path, token: f.op["viewer"]})
		if w.Code != 200 {
			return nil, w
		}
		var page api.DeviceList
		decodeJSON(f.t, w, &page)
		for _, d := range page.Devices {
			ids = append(ids, d.ID)
		}
		if after = page.Next; after == "" {
			return ids, nil
		}
	}
}

func TestSearch(t *testing.T) { storetest.Run(t, testSearch) }

func testSearch(t *testing.T, dsn string) {
	f := newFixture(t, dsn)
	ctx := context.Background()
	const js = "application/json"
	// dev-x: site depot-3, tags field and north, failed an hour ago.
	// dev-y: site depot-4, tag field, installed 2.0 two days ago.
	f.now = t0.Add(-48 * time.Hour)
	f.do(req{method: "PUT", path: "/api/v1/device/inventory", token: f.dev["dev-y"], ctype: js, body: `{"attributes": {"site": "depot-4", "hw": "B 2"}}`})
	f.do(req{method: "POST", path: "/api/v1/device/status", token: f.dev["dev-y"], ctype: js, body: strings.Replace(strings.Replace(validStatus, "idle", "installed", 1), `"1.0"`, `"2.0"`, 1)})
	f.now = t0.Add(-time.Hour)
	f.do(req{method: "PUT", path: "/api/v1/device/inventory", token: f.dev["dev-x"], ctype: js, body: `{"attributes": {"site": "depot-3"}}`})
	f.do(req{method: "POST", path: "/api/v1/device/status", token: f.dev["dev-x"], ctype: js, body: `{"phase": "failed", "progress": 0, "error": "disk", "installed_version": "1.0", "transfer": {"fetched_bytes": 0, "image_bytes": 0}}`})
	f.now = t0
	for id, tags := range map[string]string{"dev-x": `["field", "north"]`, "dev-y": `["field"]`} {
		if w := f.do(req{method: "PUT", path: "/api/v1/devices/" + id + "/tags", token: f.op["operator"], ctype: js, body: `{"tags": ` + tags + `}`}); w.Code != 200 {
			t.Fatalf("set tags = %d %s", w.Code, w.Body)
		}
	}
	for _, g := range []string{`{"name": "pair", "devices": ["dev-x", "dev-revoked"]}`, `{"name": "depot4", "filter": "attr.site=depot-4"}`, `{"name": "either", "filter": "group:pair or group:depot4"}`} {
		if w := f.do(req{method: "POST", path: "/api/v1/groups", token: f.op["operator"], ctype: js, body: g}); w.Code != 201 {
			t.Fatalf("create group %s = %d %s", g, w.Code, w.Body)
		}
	}
	all := []string{"dev-expired", "dev-revoked", "dev-x", "dev-y"}
	for _, tc := range []struct {
		q    string
		want []string
	}{
		{"board=qemu-x86_64", all},
		{"board=other", nil},
		{"version=2.0", []string{"dev-y"}},
		{"version!=2.0", []string{"dev-expired", "dev-revoked", "dev-x"}},
		{"status=failed", []string{"dev-x"}},
		{"status=none", []string{"dev-expired", "dev-revoked"}},
		{"attr.site=depot-3", []string{"dev-x"}},
		{`attr.hw="B 2"`, []string{"dev-y"}},
		{"attr.site!=depot-3", []string{"dev-expired", "dev-revoked", "dev-y"}},
		{"last_seen<2h", []string{"dev-x"}},
		{"last_seen>1d", []string{"dev-expired", "dev-revoked", "dev-y"}},
		{"not last_seen<2h", []string{"dev-expired", "dev-revoked", "dev-y"}},
		{"tag:field and not tag:north", []string{"dev-y"}},
		{"tag:north or status=installed", []string{"dev-x", "dev-y"}},
		{"group:pair", []string{"dev-revoked", "dev-x"}},
		{"group:depot4", []string{"dev-y"}},
		{"group:either and not id=dev-revoked", []string{"dev-x", "dev-y"}},
		{"(tag:field or id=dev-expired) and (last_seen>1d or status=failed)", []string{"dev-expired", "dev-x", "dev-y"}},
		// A value is a value, never SQL.
		{`attr.site="x' OR 1=1 --"`, nil},
	} {
		got, w := f.search(tc.q)
		if w != nil || !cmp.Equal(got, tc.want) {
			t.Errorf("search %q = %v (%v), want %v", tc.q, got, w, tc.want)
		}
	}
	d, _ := f.st.Device(ctx, "dev-x")
	if !cmp.Equal(d.Tags, []string{"field", "north"}) {
		t.Errorf("dev-x tags = %v", d.Tags)
	}
	w := f.do(req{method: "GET", path: "/api/v1/groups", token: f.op["viewer"]})
	var gl api.GroupList
	decodeJSON(t, w, &gl)
	want := api.GroupList{Groups: []api.Group{
		{Name: "depot4", Filter: "attr.site=depot-4", Created: t0},
		{Name: "either", Filter: "group:pair or group:depot4", Created: t0},
		{Name: "pair", Devices: []string{"dev-revoked", "dev-x"}, Created: t0},
	}}
	if diff := cmp.Diff(want, gl); diff != "" {
		t.Errorf("groups -want +got:\n%s", diff)
	}
	if w := f.do(req{method: "DELETE", path: "/api/v1/groups/pair", token: f.op["operator"]}); w.Code != 204 {
		t.Errorf("delete group = %d %s", w.Code, w.Body)
	}
	if _, w := f.search("group:either"); w == nil || w.Code != 400 || !strings.Contains(w.Body.String(), "group pair") {
		t.Errorf("search through a deleted group = %v, want 400 naming it", w)
	}
	evs, _ := f.st.Events(ctx, 0, 3)
	if evs[0].Action != "group.delete" || evs[0].Target != "pair" || evs[2].Action != "group.create" {
		t.Errorf("audit = %+v, want the group changes", evs)
	}
}

func TestTimeline(t *testing.T) { storetest.Run(t, testTimeline) }

func testTimeline(t *testing.T, dsn string) {
	f := newFixture(t, dsn)
	for i, phase := range []string{"downloading", "installing", "installed"} {
		f.now = t0.Add(time.Duration(i) * time.Minute)
		body := strings.Replace(validStatus, "idle", phase, 1)
		if w := f.do(req{method: "POST", path: "/api/v1/device/status", token: f.dev["dev-x"], ctype: "application/json", body: body}); w.Code != 204 {
			t.Fatal(w.Body)
		}
	}
	var phases []string
	var times []time.Time
	next := "0"
	for next != "" {
		w := f.do(req{method: "GET", path: "/api/v1/devices/dev-x/timeline?limit=2&after=" + next, token: f.op["viewer"]})
		var tl api.Timeline
		decodeJSON(t, w, &tl)
		for _, r := range tl.Reports {
			phases = append(phases, string(r.Status.Phase))
			times = append(times, r.At)
		}
		next = ""
		if tl.Next != 0 {
			next = fmt.Sprint(tl.Next)
		}
	}
	if !cmp.Equal(phases, []string{"downloading", "installing", "installed"}) || !times[2].Equal(t0.Add(2*time.Minute)) {
		t.Errorf("timeline = %v at %v, want the three reports in order", phases, times)
	}
	w := f.do(req{method: "GET", path: "/api/v1/devices/dev-y/timeline", token: f.op["viewer"]})
	if w.Code != 200 || !strings.Contains(w.Body.String(), `"reports":[]`) {
		t.Errorf("timeline of a device that never reported = %d %s", w.Code, w.Body)
	}
}

// TestFleetRefusals: every new endpoint refuses each class of bad request
// with its status, code and a message naming what was wrong, and changes
// nothing.
func TestFleetRefusals(t *testing.T) { storetest.Run(t, testFleetRefusals) }

func testFleetRefusals(t *testing.T, dsn string) {
	f := newFixture(t, dsn)
	repo := newTestRepo(t)
	repo.add(testBoard, "1.0")
	repo.add(testBoard, "2.0")
	f.withRepos(repo, "https://cdn.example/lifeboat")
	const js = "application/json"
	if w := f.do(req{method: "POST", path: "/api/v1/releases", token: f.op["operator"], ctype: js, body: publishBody("main", repo.dir)}); w.Code != 201 {
		t.Fatalf("publish = %d %s", w.Code, w.Body)
	}
	if w := f.do(req{method: "POST", path: "/api/v1/groups", token: f.op["operator"], ctype: js, body: `{"name": "north", "devices": ["dev-x"]}`}); w.Code != 201 {
		t.Fatalf("group = %d %s", w.Code, w.Body)
	}
	ro := f.startRollout(`{"board": "qemu-x86_64", "version": "2.0", "filter": "id=dev-y", "waves": ["100%"], "success_threshold": 1, "error_threshold": 0}`)
	rpath := fmt.Sprintf("/api/v1/rollouts/%d", ro.ID)
	// dev-y is told to read the CDN.
	if rel := f.poll(&simDevice{id: "dev-y", token: f.dev["dev-y"]}); rel == nil || rel.RepositoryURL != "https://cdn.example/lifeboat/main/" {
		t.Errorf("dev-y given %+v, want 2.0 from the CDN", rel)
	}
	unknown, _ := f.token()
	big := `{"tags": ["` + strings.Repeat("x", api.MaxBodySize) + `"]}`
	rollout := func(repl ...string) string {
		b := `{"board": "qemu-x86_64", "version": "2.0", "filter": "id=dev-x", "waves": ["1", "100%"], "success_threshold": 1, "error_threshold": 0.5}`
		for i := 0; i < len(repl); i += 2 {
			b = strings.Replace(b, repl[i], repl[i+1], 1)
		}
		return b
	}
	f.checkRefusals(t, []refusalCase{
		// Tags.
		{"tags, no token", req{method: "PUT", path: "/api/v1/devices/dev-x/tags", ctype: js, body: `{"tags": []}`}, 401, api.CodeUnauthorized, "no operator token"},
		{"tags, revoked", req{method: "PUT", path: "/api/v1/devices/dev-x/tags", token: f.op["revoked"], ctype: js, body: `{"tags": []}`}, 401, api.CodeUnauthorized, "revoked"},
		{"tags, unknown token", req{method: "PUT", path: "/api/v1/devices/dev-x/tags", token: unknown, ctype: js, body: `{"tags": []}`}, 401, api.CodeUnauthorized, "unknown operator token"},
		{"tags, device token", req{method: "PUT", path: "/api/v1/devices/dev-x/tags", token: f.dev["dev-x"], ctype: js, body: `{"tags": []}`}, 401, api.CodeUnauthorized, "unknown operator token"},
		{"tags, viewer", req{method: "PUT", path: "/api/v1/devices/dev-x/tags", token: f.op["viewer"], ctype: js, body: `{"tags": []}`}, 403, api.CodeForbidden, "to tag devices needs role operator"},
		{"tags, unknown device", req{method: "PUT", path: "/api/v1/devices/dev-nope/tags", token: f.op["operator"], ctype: js, body: `{"tags": []}`}, 404, api.CodeNotFound, "dev-nope: not found"},
		{"tags, bad ID", req{method: "PUT", path: "/api/v1/devices/a%20b/tags", token: f.op["operator"], ctype: js, body: `{"tags": []}`}, 400, api.CodeBadRequest, "device_id"},
		{"tags, missing", req{method: "PUT", path: "/api/v1/devices/dev-x/tags", token: f.op["operator"], ctype: js, body: `{}`}, 400, api.CodeBadRequest, "tags: missing"},
		{"tags, bad tag", req{method: "PUT", path: "/api/v1/devices/dev-x/tags", token: f.op["operator"], ctype: js, body: `{"tags": ["a b"]}`}, 400, api.CodeBadRequest, `tags[0] "a b"`},
		{"tags, twice", req{method: "PUT", path: "/api/v1/devices/dev-x/tags", token: f.op["operator"], ctype: js, body: `{"tags": ["a", "a"]}`}, 400, api.CodeBadRequest, "given twice"},
		{"tags, too large", req{method: "PUT", path: "/api/v1/devices/dev-x/tags", token: f.op["operator"], ctype: js, body: big}, 413, api.CodeTooLarge, "over 65536 bytes"},
		{"tags, text/plain", req{method: "PUT", path: "/api/v1/devices/dev-x/tags", token: f.op["operator"], ctype: "text/plain", body: `{"tags": []}`}, 415, api.CodeUnsupportedType, "want application/json"},
		{"tags, malformed", req{method: "PUT", path: "/api/v1/devices/dev-x/tags", token: f.op["operator"], ctype: js, body: `{"tags": "a"}`}, 400, api.CodeBadRequest, "malformed JSON"},
		// Search.
		{"search, bad filter", req{method: "GET", path: "/api/v1/devices?q=" + url.QueryEscape("board=x and"), token: f.op["viewer"]}, 400, api.CodeBadRequest, "q: filter: at 11 (end of text): want a condition"},
		{"search, NUL", req{method: "GET", path: "/api/v1/devices?q=" + url.QueryEscape("attr.a=\"x\x00\""), token: f.op["viewer"]}, 400, api.CodeBadRequest, `q: filter: at 9, "\x00": a NUL`},
		{"search, not UTF-8", req{method: "GET", path: "/api/v1/devices?q=" + url.QueryEscape("board=\"\xff\""), token: f.op["viewer"]}, 400, api.CodeBadRequest, `q: filter: at 7, "\xff": a NUL or a byte that is not UTF-8`},
		{"search, bad token", req{method: "GET", path: "/api/v1/devices?q=" + url.QueryEscape("board?x"), token: f.op["viewer"]}, 400, api.CodeBadRequest, `at 5, "?": unexpected character`},
		{"search, unknown group", req{method: "GET", path: "/api/v1/devices?q=group:south", token: f.op["viewer"]}, 400, api.CodeBadRequest, "group south: bad filter: no such group"},
		{"search, q twice", req{method: "GET", path: "/api/v1/devices?q=tag:a&q=tag:b", token: f.op["viewer"]}, 400, api.CodeBadRequest, "given 2 times"},
		{"search, device token", req{method: "GET", path: "/api/v1/devices?q=tag:a", token: f.dev["dev-x"]}, 401, api.CodeUnauthorized, "unknown operator token"},
		// Timeline.
		{"timeline, no token", req{method: "GET", path: "/api/v1/devices/dev-x/timeline"}, 401, api.CodeUnauthorized, "no operator token"},
		{"timeline, unknown device", req{method: "GET", path: "/api/v1/devices/dev-nope/timeline", token: f.op["viewer"]}, 404, api.CodeNotFound, "dev-nope: not found"},
		{"timeline, bad after", req{method: "GET", path: "/api/v1/devices/dev-x/timeline?after=-1", token: f.op["viewer"]}, 400, api.CodeBadRequest, "after="},
		{"timeline, by the device", req{method: "GET", path: "/api/v1/devices/dev-x/timeline", token: f.dev["dev-x"]}, 401, api.CodeUnauthorized, "unknown operator token"},
		// Groups.
		{"group, viewer", req{method: "POST", path: "/api/v1/groups", token: f.op["viewer"], ctype: js, body: `{"name": "g", "filter": "tag:a"}`}, 403, api.CodeForbidden, "to create groups needs role operator"},
		{"group, revoked", req{method: "POST", path: "/api/v1/groups", token: f.op["revoked"], ctype: js, body: `{"name": "g", "filter": "tag:a"}`}, 401, api.CodeUnauthorized, "revoked"},
		{"group, both", req{method: "POST", path: "/api/v1/groups", token: f.op["operator"], ctype: js, body: `{"name": "g", "filter": "tag:a", "devices": []}`}, 400, api.CodeBadRequest, "want one of filter and devices"},
		{"group, neither", req{method: "POST", path: "/api/v1/groups", token: f.op["operator"], ctype: js, body: `{"name": "g"}`}, 400, api.CodeBadRequest, "want one of filter and devices"},
		{"group, bad name", req{method: "POST", path: "/api/v1/groups", token: f.op["operator"], ctype: js, body: `{"name": "a/b", "filter": "tag:a"}`}, 400, api.CodeBadRequest, `name "a/b"`},
		{"group, bad filter", req{method: "POST", path: "/api/v1/groups", token: f.op["operator"], ctype: js, body: `{"name": "g", "filter": "tag:a or"}`}, 400, api.CodeBadRequest, "filter: filter: at 8 (end of text)"},
		{"group, NUL in filter", req{method: "POST", path: "/api/v1/groups", token: f.op["operator"], ctype: js, body: `{"name": "g", "filter": "board=\"a\u0000\""}`}, 400, api.CodeBadRequest, `filter: filter: at 8, "\x00": a NUL`},
		{"group, filter naming no group", req{method: "POST", path: "/api/v1/groups", token: f.op["operator"], ctype: js, body: `{"name": "g", "filter": "group:g"}`}, 400, api.CodeBadRequest, "group g: bad filter: no such group"},
		{"group, unknown device", req{method: "POST", path: "/api/v1/groups", token: f.op["operator"], ctype: js, body: `{"name": "g", "devices": ["dev-x", "dev-nope"]}`}, 400, api.CodeBadRequest, "device dev-nope: not found"},
		{"group, bad device", req{method: "POST", path: "/api/v1/groups", token: f.op["operator"], ctype: js, body: `{"name": "g", "devices": ["a b"]}`}, 400, api.CodeBadRequest, `devices[0]: device_id "a b"`},
		{"group, exists", req{method: "POST", path: "/api/v1/groups", token: f.op["operator"], ctype: js, body: `{"name": "north", "devices": []}`}, 409, api.CodeConflict, "group north: already exists"},
		{"group, created given", req{method: "POST", path: "/api/v1/groups", token: f.op["operator"], ctype: js, body: `{"name": "g", "filter": "tag:a", "created": "2020-01-01T00:00:00Z"}`}, 400, api.CodeBadRequest, "created: set by the server"},
		{"group, too large", req{method: "POST", path: "/api/v1/groups", token: f.op["operator"], ctype: js, body: big, chunked: true}, 413, api.CodeTooLarge, "over 65536"},
		{"groups, no token", req{method: "GET", path: "/api/v1/groups"}, 401, api.CodeUnauthorized, "no operator token"},
		{"groups, parameter", req{method: "GET", path: "/api/v1/groups?name=x", token: f.op["viewer"]}, 400, api.CodeBadRequest, `unknown query parameter "name"`},
		{"delete group, viewer", req{method: "DELETE", path: "/api/v1/groups/north", token: f.op["viewer"]}, 403, api.CodeForbidden, "needs role operator"},
		{"delete group, unknown", req{method: "DELETE", path: "/api/v1/groups/south", token: f.op["operator"]}, 404, api.CodeNotFound, "group south: not found"},
		{"delete group, bad name", req{method: "DELETE", path: "/api/v1/groups/a%20b", token: f.op["operator"]}, 400, api.CodeBadRequest, `group "a b"`},
		// Releases.
		{"publish, no token", req{method: "POST", path: "/api/v1/releases", ctype: js, body: publishBody("main", repo.dir)}, 401, api.CodeUnauthorized, "no operator token"},
		{"publish, viewer", req{method: "POST", path: "/api/v1/releases", token: f.op["viewer"], ctype: js, body: publishBody("main", repo.dir)}, 403, api.CodeForbidden, "to publish releases needs role operator"},
		{"publish, again", req{method: "POST", path: "/api/v1/releases", token: f.op["operator"], ctype: js, body: publishBody("main", repo.dir)}, 409, api.CodeConflict, "repository main: every release it lists is registered already"},
		{"publish, unknown field", req{method: "POST", path: "/api/v1/releases", token: f.op["operator"], ctype: js, body: `{"repository": "main", "path": "/x", "url": "http://x"}`}, 400, api.CodeBadRequest, `unknown field "url"`},
		{"publish, too large", req{method: "POST", path: "/api/v1/releases", token: f.op["operator"], ctype: js, body: big, chunked: true}, 413, api.CodeTooLarge, "over 65536"},
		{"publish, text/plain", req{method: "POST", path: "/api/v1/releases", token: f.op["operator"], ctype: "text/plain", body: publishBody("main", repo.dir)}, 415, api.CodeUnsupportedType, "want application/json (a path) or application/x-tar (an upload)"},
		{"publish, parameter", req{method: "POST", path: "/api/v1/releases?repository=x", token: f.op["operator"], ctype: js, body: publishBody("main", repo.dir)}, 400, api.CodeBadRequest, `unknown query parameter "repository"`},
		{"publish, device token", req{method: "POST", path: "/api/v1/releases", token: f.dev["dev-x"], ctype: js, body: publishBody("main", repo.dir)}, 401, api.CodeUnauthorized, "unknown operator token"},
		{"releases, no token", req{method: "GET", path: "/api/v1/releases"}, 401, api.CodeUnauthorized, "no operator token"},
		{"delete release, operator", req{method: "DELETE", path: "/api/v1/releases/qemu-x86_64/1.0", token: f.op["operator"]}, 403, api.CodeForbidden, "to delete releases needs role admin"},
		{"delete release, revoked admin", req{method: "DELETE", path: "/api/v1/releases/qemu-x86_64/1.0", token: f.op["revoked"]}, 401, api.CodeUnauthorized, "revoked"},
		{"delete release, unknown", req{method: "DELETE", path: "/api/v1/releases/qemu-x86_64/9.9", token: f.op["admin"]}, 404, api.CodeNotFound, "release qemu-x86_64 9.9: not found"},
		{"delete release, bad version", req{method: "DELETE", path: "/api/v1/releases/qemu-x86_64/1%2F0", token: f.op["admin"]}, 400, api.CodeBadRequest, `version "1/0"`},
		{"delete release, in use", req{method: "DELETE", path: "/api/v1/releases/qemu-x86_64/2.0", token: f.op["admin"]}, 409, api.CodeConflict, fmt.Sprintf("in use by rollout %d, which is active", ro.ID)},
		// Rollouts.
		{"rollout, no token", req{method: "POST", path: "/api/v1/rollouts", ctype: js, body: rollout()}, 401, api.CodeUnauthorized, "no operator token"},
		{"rollout, viewer", req{method: "POST", path: "/api/v1/rollouts", token: f.op["viewer"], ctype: js, body: rollout()}, 403, api.CodeForbidden, "to start rollouts needs role operator"},
		{"rollout, device token", req{method: "POST", path: "/api/v1/rollouts", token: f.dev["dev-x"], ctype: js, body: rollout()}, 401, api.CodeUnauthorized, "unknown operator token"},
		{"rollout, unknown release", req{method: "POST", path: "/api/v1/rollouts", token: f.op["operator"], ctype: js, body: rollout(`"2.0"`, `"3.0"`)}, 404, api.CodeNotFound, "release qemu-x86_64 3.0: not found"},
		{"rollout, no target", req{method: "POST", path: "/api/v1/rollouts", token: f.op["operator"], ctype: js, body: rollout(`"filter": "id=dev-x", `, "")}, 400, api.CodeBadRequest, "want one of filter and group"},
		{"rollout, bad filter", req{method: "POST", path: "/api/v1/rollouts", token: f.op["operator"], ctype: js, body: rollout("id=dev-x", "id=")}, 400, api.CodeBadRequest, "filter: filter: at 3 (end of text): want a value"},
		{"rollout, unknown group", req{method: "POST", path: "/api/v1/rollouts", token: f.op["operator"], ctype: js, body: rollout(`"filter": "id=dev-x"`, `"group": "south"`)}, 400, api.CodeBadRequest, "group south: bad filter: no such group"},
		{"rollout, no devices", req{method: "POST", path: "/api/v1/rollouts", token: f.op["operator"], ctype: js, body: rollout("id=dev-x", "tag:none")}, 400, api.CodeBadRequest, "no device matches of board qemu-x86_64"},
		{"rollout, device busy", req{method: "POST", path: "/api/v1/rollouts", token: f.op["operator"], ctype: js, body: rollout("id=dev-x", "id=dev-y")}, 409, api.CodeConflict, fmt.Sprintf("device dev-y is in rollout %d, which is active", ro.ID)},
		{"rollout, last wave", req{method: "POST", path: "/api/v1/rollouts", token: f.op["operator"], ctype: js, body: rollout(`"100%"`, `"50%"`)}, 400, api.CodeBadRequest, `last wave "50%": want 100%`},
		{"rollout, shrinking waves", req{method: "POST", path: "/api/v1/rollouts", token: f.op["operator"], ctype: js, body: rollout(`["1", `, `["50%", "10%", `)}, 400, api.CodeBadRequest, "waves must grow"},
		{"rollout, bad wave", req{method: "POST", path: "/api/v1/rollouts", token: f.op["operator"], ctype: js, body: rollout(`"1"`, `"0"`)}, 400, api.CodeBadRequest, `wave "0"`},
		{"rollout, no waves", req{method: "POST", path: "/api/v1/rollouts", token: f.op["operator"], ctype: js, body: rollout(`["1", "100%"]`, `[]`)}, 400, api.CodeBadRequest, "0 waves"},
		{"rollout, success 0", req{method: "POST", path: "/api/v1/rollouts", token: f.op["operator"], ctype: js, body: rollout(`"success_threshold": 1`, `"success_threshold": 0`)}, 400, api.CodeBadRequest, "success_threshold 0"},
		{"rollout, error 1", req{method: "POST", path: "/api/v1/rollouts", token: f.op["operator"], ctype: js, body: rollout(`"error_threshold": 0.5`, `"error_threshold": 1`)}, 400, api.CodeBadRequest, "error_threshold 1"},
		{"rollout, bad board", req{method: "POST", path: "/api/v1/rollouts", token: f.op["operator"], ctype: js, body: rollout("qemu-x86_64", "qemu x86")}, 400, api.CodeBadRequest, `board "qemu x86"`},
		{"rollout, not JSON", req{method: "POST", path: "/api/v1/rollouts", token: f.op["operator"], ctype: js, body: "board=x"}, 400, api.CodeBadRequest, "malformed JSON"},
		{"rollout, too large", req{method: "POST", path: "/api/v1/rollouts", token: f.op["operator"], ctype: js, body: big}, 413, api.CodeTooLarge, "over 65536"},
		{"rollout, get unknown", req{method: "GET", path: "/api/v1/rollouts/999", token: f.op["viewer"]}, 404, api.CodeNotFound, "rollout 999: not found"},
		{"rollout, get bad ID", req{method: "GET", path: "/api/v1/rollouts/abc", token: f.op["viewer"]}, 400, api.CodeBadRequest, `rollout ID "abc"`},
		{"rollout, get no token", req{method: "GET", path: rpath}, 401, api.CodeUnauthorized, "no operator token"},
		{"rollout, devices unknown", req{method: "GET", path: "/api/v1/rollouts/999/devices", token: f.op["viewer"]}, 404, api.CodeNotFound, "rollout 999: not found"},
		{"rollouts, by a device", req{method: "GET", path: "/api/v1/rollouts", token: f.dev["dev-y"]}, 401, api.CodeUnauthorized, "unknown operator token"},
		{"pause, viewer", req{method: "POST", path: rpath + "/pause", token: f.op["viewer"]}, 403, api.CodeForbidden, "to pause rollouts needs role operator"},
		{"resume, running", req{method: "POST", path: rpath + "/resume", token: f.op["operator"]}, 409, api.CodeConflict, "is running: not in that state to resume"},
		{"start, running", req{method: "POST", path: rpath + "/start", token: f.op["operator"]}, 409, api.CodeConflict, "is running: not in that state to start"},
		{"start, viewer", req{method: "POST", path: rpath + "/start", token: f.op["viewer"]}, 403, api.CodeForbidden, "to start rollouts needs role operator"},
		{"cancel, unknown", req{method: "POST", path: "/api/v1/rollouts/999/cancel", token: f.op["operator"]}, 404, api.CodeNotFound, "rollout 999: not found"},
		{"cancel, by the device", req{method: "POST", path: rpath + "/cancel", token: f.dev["dev-y"]}, 401, api.CodeUnauthorized, "unknown operator token"},
		{"pause, GET", req{method: "GET", path: rpath + "/pause", token: f.op["operator"]}, 405, api.CodeMethodNotAllowed, "allowed: POST"},
		// Devices reach no other device's rollout, and no operator endpoint.
		{"device probes the rollout", req{method: "GET", path: rpath + "/devices", token: f.dev["dev-x"]}, 401, api.CodeUnauthorized, "unknown operator token"},
		{"device probes another timeline", req{method: "GET", path: "/api/v1/devices/dev-y/timeline", token: f.dev["dev-x"]}, 401, api.CodeUnauthorized, "unknown operator token"},
		{"device tags itself", req{method: "PUT", path: "/api/v1/devices/dev-x/tags", token: f.dev["dev-x"], ctype: js, body: `{"tags": ["admin"]}`}, 401, api.CodeUnauthorized, "unknown operator token"},
		{"no repo endpoint", req{method: "POST", path: "/repo/main/metadata/root.json", token: f.op["admin"]}, 405, api.CodeMethodNotAllowed, "allowed: GET, HEAD"},
	})
	// Without release storage, release requests say how to get it.
	f.srv = New(f.st)
	w := f.do(req{method: "POST", path: "/api/v1/releases", token: f.op["operator"], ctype: js, body: publishBody("main", repo.dir)})
	if w.Code != 409 || !strings.Contains(w.Body.String(), "start it with --root") {
		t.Errorf("publish without storage = %d %s", w.Code, w.Body)
	}
}
