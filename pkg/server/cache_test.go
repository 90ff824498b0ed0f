package server

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/lifeboat-update/lifeboat/pkg/api"
	"github.com/lifeboat-update/lifeboat/pkg/server/store/storetest"
)

// TestPollSeesChanges: polls are answered from memory between changes
// (pkg/server/store), so each change that alters what a device is given
// must reach its next poll: a rollout started, paused, resumed; a device
// moved in its rollout; and a 304 must not outlive the answer it stands
// for. A revoked token is refused at the next request.
func TestPollSeesChanges(t *testing.T) { storetest.Run(t, testPollSeesChanges) }

func testPollSeesChanges(t *testing.T, dsn string) {
	f := newFixture(t, dsn)
	fleet := f.addFleet(2)
	f.addRelease("2.0")
	a, b := fleet[0], fleet[1]
	pollETag := func(d *simDevice, etag string) (int, string, *api.Release) {
		t.Helper()
		w := f.do(req{method: "GET", path: "/api/v1/device/poll", token: d.token, header: map[string]string{"If-None-Match": etag}})
		if w.Code == http.StatusNotModified {
			return w.Code, w.Header().Get("ETag"), nil
		}
		var p api.Poll
		decodeJSON(t, w, &p)
		return w.Code, w.Header().Get("ETag"), p.Release
	}
	code, etag, rel := pollETag(a, "")
	if code != 200 || rel != nil {
		t.Fatalf("poll before any rollout = %d %+v, want 200 and no release", code, rel)
	}
	if code, _, _ := pollETag(a, etag); code != http.StatusNotModified {
		t.Fatalf("poll again with its ETag = %d, want 304", code)
	}
	if f.poll(b) != nil {
		t.Fatal("b given a release before any rollout")
	}

	// Created, the rollout gives nothing; started, the next poll has it,
	// and the old ETag no longer matches.
	ro := f.createRollout(`{"board": "qemu-x86_64", "version": "2.0", "filter": "id=sim-000 or id=sim-001", "waves": ["100%"], "success_threshold": 1, "error_threshold": 0.9}`)
	if code, _, _ := pollETag(a, etag); code != http.StatusNotModified {
		t.Errorf("poll after the rollout was created, not started = %d, want 304", code)
	}
	if w := f.do(req{method: "POST", path: fmt.Sprintf("/api/v1/rollouts/%d/start", ro.ID), token: f.op["operator"]}); w.Code != 200 {
		t.Fatalf("start = %d %s", w.Code, w.Body)
	}
	code, etag2, rel := pollETag(a, etag)
	if code != 200 || rel == nil || rel.Version != "2.0" || etag2 == etag {
		t.Fatalf("poll with the old ETag after the start = %d %+v ETag %s, want 200, release 2.0 and a new ETag", code, rel, etag2)
	}
	if rel := f.poll(b); rel == nil || rel.Version != "2.0" {
		t.Errorf("b's poll after the start = %+v, want release 2.0", rel)
	}

	// a starts installing; paused, the rollout keeps the release for a
	// (installing) and takes it from b (not started) at their next polls.
	f.report(a, api.PhaseDownloading, "")
	if w := f.do(req{method: "POST", path: fmt.Sprintf("/api/v1/rollouts/%d/pause", ro.ID), token: f.op["operator"]}); w.Code != 200 {
		t.Fatalf("pause = %d %s", w.Code, w.Body)
	}
	if rel := f.poll(a); rel == nil || rel.Version != "2.0" {
		t.Errorf("a's poll, installing, after the pause = %+v, want release 2.0", rel)
	}
	if rel := f.poll(b); rel != nil {
		t.Errorf("b's poll after the pause = %+v, want none", rel)
	}
	// a fails: its report moves it out of installing, and its next poll,
	// the rollout still paused, has no release.
	f.report(a, api.PhaseFailed, "disk")
	if rel := f.poll(a); rel != nil {
		t.Errorf("a's poll after it failed in the paused rollout = %+v, want none", rel)
	}
	if w := f.do(req{method: "POST", path: fmt.Sprintf("/api/v1/rollouts/%d/resume", ro.ID), token: f.op["operator"]}); w.Code != 200 {
		t.Fatalf("resume = %d %s", w.Code, w.Body)
	}
	if rel := f.poll(b); rel == nil || rel.Version != "2.0" {
		t.Errorf("b's poll after the resume = %+v, want release 2.0", rel)
	}

	// Revoked through the API: the next request is refused.
	if w := f.do(req{method: "POST", path: "/api/v1/devices/" + b.id + "/revoke", token: f.op["operator"]}); w.Code != 200 {
		t.Fatalf("revoke = %d %s", w.Code, w.Body)
	}
	if w := f.do(req{method: "GET", path: "/api/v1/device/poll", token: b.token}); w.Code != http.StatusUnauthorized {
		t.Errorf("poll after the revocation = %d, want 401", w.Code)
	}
}
