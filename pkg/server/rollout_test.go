package server

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-update/lifeboat/pkg/api"
	"github.com/lifeboat-update/lifeboat/pkg/server/store"
	"github.com/lifeboat-update/lifeboat/pkg/server/store/storetest"
)

// simDevice is a device of the simulated fleet: it polls, and installs
// what it is given, failing when told to.
type simDevice struct {
	id, token string
	version   string
	failures  int // how many installs fail before one succeeds
	installs  int // installs tried
}

// addFleet registers n devices of testBoard running 1.0.
func (f *fixture) addFleet(n int) []*simDevice {
	f.t.Helper()
	var ds []*simDevice
	for i := range n {
		tok, sha := f.token()
		d := &simDevice{id: fmt.Sprintf("sim-%03d", i), token: tok, version: "1.0"}
		if err := f.st.RegisterDevice(context.Background(), store.Device{ID: d.id, Board: testBoard, TokenSHA256: sha, Created: t0, InstalledVersion: "1.0"},
			store.Event{At: t0, Actor: "cli", Action: "setup"}); err != nil {
			f.t.Fatal(err)
		}
		ds = append(ds, d)
	}
	return ds
}

func (f *fixture) addRelease(version string) {
	f.t.Helper()
	if err := f.st.AddReleases(context.Background(), []store.Release{{Board: testBoard, Version: version, Repository: "main", Created: t0, Indexes: []string{}}},
		store.Event{At: t0, Actor: "cli", Action: "setup"}); err != nil {
		f.t.Fatal(err)
	}
}

// poll polls as d and returns the release it is given.
func (f *fixture) poll(d *simDevice) *api.Release {
	f.t.Helper()
	w := f.do(req{method: "GET", path: "/api/v1/device/poll", token: d.token})
	var p api.Poll
	decodeJSON(f.t, w, &p)
	if w.Code != 200 {
		f.t.Fatalf("poll by %s = %d %s", d.id, w.Code, w.Body)
	}
	if err := p.Validate(); err != nil {
		f.t.Fatalf("poll answer to %s %s: %v", d.id, w.Body, err)
	}
	return p.Release
}

func (f *fixture) report(d *simDevice, phase api.Phase, errMsg string) {
	f.t.Helper()
	body := fmt.Sprintf(`{"phase": %q, "progress": 0, "installed_version": %q, "error": %q, "transfer": {"fetched_bytes": 0, "image_bytes": 0}}`, phase, d.version, errMsg)
	if w := f.do(req{method: "POST", path: "/api/v1/device/status", token: d.token, ctype: "application/json", body: body}); w.Code != 204 {
		f.t.Fatalf("status %s by %s = %d %s", phase, d.id, w.Code, w.Body)
	}
}

// step has every device poll once and act on the answer: a device given
// a release it does not run reports downloading, then installed or
// failed. It returns how many devices acted.
func (f *fixture) step(fleet []*simDevice) int {
	acted := 0
	for _, d := range fleet {
		f.now = f.now.Add(time.Second)
		rel := f.poll(d)
		if rel == nil || rel.Version == d.version {
			continue
		}
		if !strings.HasSuffix(rel.RepositoryURL, "/repo/main/") {
			f.t.Errorf("%s told to read %s, want the server's /repo/main/", d.id, rel.RepositoryURL)
		}
		acted++
		d.installs++
		f.report(d, api.PhaseDownloading, "")
		if d.installs <= d.failures {
			f.report(d, api.PhaseFailed, "injected failure")
			continue
		}
		d.version = rel.Version
		f.report(d, api.PhaseInstalled, "")
	}
	return acted
}

func (f *fixture) rollout(id int64) api.Rollout {
	f.t.Helper()
	w := f.do(req{method: "GET", path: fmt.Sprintf("/api/v1/rollouts/%d", id), token: f.op["viewer"]})
	var ro api.Rollout
	decodeJSON(f.t, w, &ro)
	if w.Code != 200 {
		f.t.Fatalf("get rollout %d = %d %s", id, w.Code, w.Body)
	}
	return ro
}

// createRollout creates a rollout, which is not started.
func (f *fixture) createRollout(body string) api.Rollout {
	f.t.Helper()
	w := f.do(req{method: "POST", path: "/api/v1/rollouts", token: f.op["operator"], ctype: "application/json", body: body})
	var ro api.Rollout
	decodeJSON(f.t, w, &ro)
	if w.Code != http.StatusCreated || ro.State != "created" {
		f.t.Fatalf("create rollout = %d %s, want 201 and a created rollout", w.Code, w.Body)
	}
	return ro
}

// startRollout creates a rollout and starts it.
func (f *fixture) startRollout(body string) api.Rollout {
	f.t.Helper()
	ro := f.createRollout(body)
	w := f.do(req{method: "POST", path: fmt.Sprintf("/api/v1/rollouts/%d/start", ro.ID), token: f.op["operator"]})
	decodeJSON(f.t, w, &ro)
	if w.Code != http.StatusOK || ro.State != "running" {
		f.t.Fatalf("start rollout = %d %s, want 200 and a running rollout", w.Code, w.Body)
	}
	return ro
}

// waveOf maps each device to its wave, as the rollout fixed them.
func (f *fixture) waveOf(id int64) map[string]int {
	f.t.Helper()
	w := f.do(req{method: "GET", path: fmt.Sprintf("/api/v1/rollouts/%d/devices", id), token: f.op["viewer"]})
	var ds api.RolloutDevices
	decodeJSON(f.t, w, &ds)
	if w.Code != 200 {
		f.t.Fatalf("rollout devices = %d %s", w.Code, w.Body)
	}
	waves := map[string]int{}
	for _, d := range ds.Devices {
		waves[d.DeviceID] = d.Wave - 1
	}
	return waves
}

// TestRolloutCompletes: 100 devices, three waves; failures below the
// error threshold (one device a wave, which then retries and succeeds)
// do not stop it; every wave opens when the one before reaches the
// success threshold, and every device ends up running the release.
func TestRolloutCompletes(t *testing.T) { storetest.Run(t, testRolloutCompletes) }

func testRolloutCompletes(t *testing.T, dsn string) {
	f := newFixture(t, dsn)
	fleet := f.addFleet(100)
	f.addRelease("2.0")
	for _, d := range fleet {
		if w := f.do(req{method: "PUT", path: "/api/v1/device/inventory", token: d.token, ctype: "application/json", body: `{"attributes": {"fleet": "sim"}}`}); w.Code != 204 {
			t.Fatalf("inventory = %d", w.Code)
		}
	}
	body := `{"board": "qemu-x86_64", "version": "2.0", "filter": "attr.fleet=sim", "waves": ["10%", "50%", "100%"], "success_threshold": 0.9, "error_threshold": 0.2}`
	created := f.createRollout(body)
	for _, w := range created.Progress {
		if w.Open {
			t.Errorf("created rollout %+v has an open wave", created)
		}
	}
	for _, d := range fleet {
		if rel := f.poll(d); rel != nil {
			t.Fatalf("before the start, %s given %+v", d.id, rel)
		}
	}
	etags := map[string]string{}
	for _, d := range fleet {
		etags[d.id] = f.do(req{method: "GET", path: "/api/v1/device/poll", token: d.token}).Header().Get("ETag")
	}
	w := f.do(req{method: "POST", path: fmt.Sprintf("/api/v1/rollouts/%d/start", created.ID), token: f.op["operator"]})
	var ro api.Rollout
	decodeJSON(t, w, &ro)
	if ro.State != "running" || len(ro.Progress) != 3 || ro.Progress[0].Size != 10 || ro.Progress[1].Size != 40 || ro.Progress[2].Size != 50 ||
		!ro.Progress[0].Open || ro.Progress[1].Open {
		t.Fatalf("new rollout = %+v, want running with waves of 10, 40, 50, the first open", ro)
	}
	waves := f.waveOf(ro.ID)
	// One device of each wave fails once.
	failing := map[int]bool{}
	for _, d := range fleet {
		if w := waves[d.id]; !failing[w] {
			failing[w] = true
			d.failures = 1
		}
	}
	// Before the first round, only wave 1 is given the release: their
	// poll answer changed, so the ETag from before the start no longer
	// matches; the others' still does.
	for _, d := range fleet {
		w := f.do(req{method: "GET", path: "/api/v1/device/poll", token: d.token, header: map[string]string{"If-None-Match": etags[d.id]}})
		if want := map[bool]int{true: 200, false: 304}[waves[d.id] == 0]; w.Code != want {
			t.Errorf("poll by %s (wave %d) with the ETag from before the start = %d, want %d", d.id, waves[d.id]+1, w.Code, want)
		}
		if got := f.poll(d); (got != nil) != (waves[d.id] == 0) {
			t.Errorf("before any report, %s (wave %d) given %+v", d.id, waves[d.id]+1, got)
		}
	}
	maxWaveSeen := 0
	for round := 0; round < 10 && f.step(fleet) > 0; round++ {
		p := f.rollout(ro.ID)
		if p.State == "halted" {
			t.Fatalf("rollout halted: %s", p.Reason)
		}
		for i, w := range p.Progress {
			if w.Open {
				maxWaveSeen = max(maxWaveSeen, i)
			}
		}
	}
	p := f.rollout(ro.ID)
	if p.State != "completed" || maxWaveSeen != 2 {
		t.Errorf("rollout after the fleet settled = %+v, want completed with every wave opened", p)
	}
	for i, w := range p.Progress {
		if w.Succeeded != w.Size || w.Failed+w.Assigned+w.Installing != 0 {
			t.Errorf("wave %d = %+v, want all %d succeeded", i+1, w, w.Size)
		}
	}
	for _, d := range fleet {
		got, err := f.st.Device(context.Background(), d.id)
		if err != nil || got.InstalledVersion != "2.0" {
			t.Errorf("device %s = %+v, %v; want it on 2.0", d.id, got, err)
		}
	}
	// The devices outside the target were never given it.
	if rel := f.poll(&simDevice{id: "dev-x", token: f.dev["dev-x"]}); rel != nil {
		t.Errorf("dev-x, outside the target, given %+v", rel)
	}
}

// TestRolloutHalts: failures above the error threshold in the second wave
// halt the rollout on their own; the third wave never gets the release,
// nor do second-wave devices that had not started.
func TestRolloutHalts(t *testing.T) { storetest.Run(t, testRolloutHalts) }

func testRolloutHalts(t *testing.T, dsn string) {
	f := newFixture(t, dsn)
	fleet := f.addFleet(100)
	f.addRelease("2.0")
	members := make([]string, len(fleet))
	for i, d := range fleet {
		members[i] = fmt.Sprintf("%q", d.id)
	}
	if w := f.do(req{method: "POST", path: "/api/v1/groups", token: f.op["operator"], ctype: "application/json",
		body: `{"name": "sim", "devices": [` + strings.Join(members, ",") + `]}`}); w.Code != 201 {
		t.Fatalf("create group = %d %s", w.Code, w.Body)
	}
	ro := f.startRollout(`{"board": "qemu-x86_64", "version": "2.0", "group": "sim", "waves": ["10", "50", "100%"], "success_threshold": 1, "error_threshold": 0.2}`)
	waves := f.waveOf(ro.ID)
	// 15 of wave 2's 40 devices fail for good: 15 of 50 is over 0.2.
	n := 0
	for _, d := range fleet {
		if waves[d.id] == 1 && n < 15 {
			d.failures, n = 1000, n+1
		}
	}
	for round := 0; round < 10 && f.step(fleet) > 0; round++ {
	}
	p := f.rollout(ro.ID)
	if p.State != "halted" || !strings.Contains(p.Reason, "over the error threshold 0.2") {
		t.Fatalf("rollout = %+v, want halted by the error threshold", p)
	}
	if p.Progress[0].Succeeded != 10 || p.Progress[2].Open || p.Progress[2].Succeeded+p.Progress[2].Failed+p.Progress[2].Installing != 0 {
		t.Errorf("progress = %+v, want wave 1 succeeded and wave 3 never opened", p.Progress)
	}
	if failed := p.Progress[1].Failed; failed != 11 {
		t.Errorf("wave 2 has %d failed, want 11: it halts at the first failure over the threshold", failed)
	}
	for _, d := range fleet {
		if rel := f.poll(d); rel != nil && waves[d.id] == 2 {
			t.Errorf("%s of wave 3 given %+v after the halt", d.id, rel)
		}
		if got, _ := f.st.Device(context.Background(), d.id); waves[d.id] == 2 && got.InstalledVersion != "1.0" {
			t.Errorf("%s of wave 3 runs %s", d.id, got.InstalledVersion)
		}
	}
	// A halted rollout cannot be resumed or paused; a new one may target
	// the same devices.
	for _, action := range []string{"start", "resume", "pause", "cancel"} {
		w := f.do(req{method: "POST", path: fmt.Sprintf("/api/v1/rollouts/%d/%s", ro.ID, action), token: f.op["operator"]})
		if w.Code != 409 || !strings.Contains(w.Body.String(), "is halted") {
			t.Errorf("%s of a halted rollout = %d %s, want 409", action, w.Code, w.Body)
		}
	}
}

// TestRolloutPauseResumeCancel: a paused rollout gives no release to a
// device that has not started, and keeps it for one installing; resume
// gives it again; a cancelled one gives none and cannot be resumed. Each
// action is audited.
func TestRolloutPauseResumeCancel(t *testing.T) { storetest.Run(t, testRolloutPauseResumeCancel) }

func testRolloutPauseResumeCancel(t *testing.T, dsn string) {
	f := newFixture(t, dsn)
	fleet := f.addFleet(4)
	f.addRelease("2.0")
	ro := f.startRollout(`{"board": "qemu-x86_64", "version": "2.0", "filter": "id=sim-000 or id=sim-001", "waves": ["100%"], "success_threshold": 1, "error_threshold": 0.5}`)
	a, b := fleet[0], fleet[1]
	f.report(a, api.PhaseDownloading, "")
	act := func(action string, status int) api.Rollout {
		t.Helper()
		w := f.do(req{method: "POST", path: fmt.Sprintf("/api/v1/rollouts/%d/%s", ro.ID, action), token: f.op["operator"]})
		var got api.Rollout
		if w.Code == 200 {
			decodeJSON(t, w, &got)
		}
		if w.Code != status {
			t.Fatalf("%s = %d %s, want %d", action, w.Code, w.Body, status)
		}
		return got
	}
	if got := act("pause", 200); got.State != "paused" || got.Reason != "paused by operator:operator" {
		t.Errorf("paused rollout = %+v", got)
	}
	if rel := f.poll(a); rel == nil || rel.Version != "2.0" {
		t.Errorf("installing device while paused given %+v, want 2.0 still", rel)
	}
	if rel := f.poll(b); rel != nil {
		t.Errorf("device not started while paused given %+v, want none", rel)
	}
	act("pause", 409)
	if got := act("resume", 200); got.State != "running" || got.Reason != "" {
		t.Errorf("resumed rollout = %+v", got)
	}
	if rel := f.poll(b); rel == nil {
		t.Error("device not started given nothing after resume")
	}
	act("resume", 409)
	if got := act("cancel", 200); got.State != "cancelled" {
		t.Errorf("cancelled rollout = %+v", got)
	}
	if rel := f.poll(b); rel != nil {
		t.Errorf("device not started given %+v after cancel", rel)
	}
	act("resume", 409)
	act("start", 409)
	act("cancel", 409)
	// A rollout not started yet may be cancelled too.
	other := f.createRollout(`{"board": "qemu-x86_64", "version": "2.0", "filter": "id=sim-002", "waves": ["100%"], "success_threshold": 1, "error_threshold": 0}`)
	w := f.do(req{method: "POST", path: fmt.Sprintf("/api/v1/rollouts/%d/cancel", other.ID), token: f.op["operator"]})
	if w.Code != 200 || !strings.Contains(w.Body.String(), `"state":"cancelled"`) {
		t.Errorf("cancel of a created rollout = %d %s, want 200 cancelled", w.Code, w.Body)
	}
	// Reports after the cancel move nothing.
	f.report(b, api.PhaseFailed, "late")
	if p := f.rollout(ro.ID); p.State != "cancelled" || p.Progress[0].Failed != 0 {
		t.Errorf("rollout after a late failure = %+v, want cancelled, no failure counted", p)
	}
	evs, _ := f.st.Events(context.Background(), 0, 10)
	var actions []string
	for _, ev := range evs[2:7] {
		actions = append(actions, ev.Action+" "+ev.Target+" "+ev.Actor)
	}
	want := fmt.Sprintf("rollout.cancel %[1]d operator:operator,rollout.resume %[1]d operator:operator,rollout.pause %[1]d operator:operator,"+
		"rollout.start %[1]d operator:operator,rollout.create %[1]d operator:operator", ro.ID)
	if strings.Join(actions, ",") != want {
		t.Errorf("audit = %v, want %s", actions, want)
	}
}
