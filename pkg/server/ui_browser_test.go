package server

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/lifeboat-update/lifeboat/internal/testtool"
	"github.com/lifeboat-update/lifeboat/pkg/api"
)

// TestUIBrowser drives the web UI in Debian's headless Chromium: an
// operator signs in, searches devices, creates and starts a rollout from
// the form, watches its progress change as devices report (the page is
// not reloaded), and pauses it.
func TestUIBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("drives a headless Chromium (a few seconds); make test runs it")
	}
	testtool.Require(t, "chromium")
	chromium, _ := exec.LookPath("chromium")

	// A server on loopback over a fresh SQLite database, with a release
	// published and devices registered through the API.
	f := newFixture(t)
	repo := newTestRepo(t)
	repo.add(testBoard, "2.0")
	f.withRepos(repo, "")
	if w := f.do(req{method: "POST", path: "/api/v1/releases", token: f.op["operator"], ctype: "application/json", body: publishBody("main", repo.dir)}); w.Code != http.StatusCreated {
		t.Fatalf("publish = %d %s", w.Code, w.Body)
	}
	devs := map[string]*simDevice{}
	for i, site := range []string{"depot-3", "depot-3", "depot-3", "depot-4"} {
		tok, sha := f.token()
		d := &simDevice{id: fmt.Sprintf("web-%d", i+1), token: tok, version: "1.0"}
		if w := f.do(req{method: "POST", path: "/api/v1/devices", token: f.op["operator"], ctype: "application/json",
			body: fmt.Sprintf(`{"device_id": %q, "board": %q, "version": "1.0", "token_sha256": %q}`, d.id, testBoard, sha)}); w.Code != http.StatusCreated {
			t.Fatalf("register %s = %d %s", d.id, w.Code, w.Body)
		}
		if w := f.do(req{method: "PUT", path: "/api/v1/device/inventory", token: tok, ctype: "application/json",
			body: fmt.Sprintf(`{"attributes": {"site": %q}}`, site)}); w.Code != http.StatusNoContent {
			t.Fatalf("inventory of %s = %d %s", d.id, w.Code, w.Body)
		}
		devs[d.id] = d
	}
	srv := httptest.NewServer(f.srv)
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ctx, cancel = chromedp.NewExecAllocator(ctx, append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium))...)
	defer cancel()
	ctx, cancel = chromedp.NewContext(ctx)
	defer cancel()
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return strings.TrimSpace(s)
	}
	// waitFor waits until the JavaScript expression is true in the page.
	waitFor := func(what, expr string) {
		t.Helper()
		if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(15*time.Second))); err != nil {
			t.Fatalf("waiting for %s (%s): %v", what, expr, err)
		}
	}

	start := time.Now()
	do("sign in",
		chromedp.Navigate(srv.URL+"/ui/devices"),
		chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), f.op["operator"]),
		chromedp.Click(chromedp.ID("signin")),
		chromedp.WaitVisible(chromedp.ID("q")))

	do("search with a bad filter",
		chromedp.SetValue(chromedp.ID("q"), "board="),
		chromedp.Click(chromedp.ID("search")),
		chromedp.WaitVisible(chromedp.ID("error")))
	if got := text("#error"); !strings.Contains(got, "q: filter: at 6 (end of text)") {
		t.Errorf("error shown for q=board= is %q, want the parser's position and token", got)
	}
	do("search",
		chromedp.SetValue(chromedp.ID("q"), "attr.site=depot-3 and status=none"),
		chromedp.Click(chromedp.ID("search")),
		chromedp.WaitVisible(chromedp.CSS(`#results a[href="/ui/devices/web-1"]`)))
	if got, want := strings.Fields(text("#results tbody")), "web-1 qemu-x86_64 1.0 none 2026-11-26T12:00:00Z web-2 qemu-x86_64 1.0 none 2026-11-26T12:00:00Z web-3 qemu-x86_64 1.0 none 2026-11-26T12:00:00Z"; strings.Join(got, " ") != want {
		t.Errorf("results = %q, want %q", strings.Join(got, " "), want)
	}

	do("create a rollout",
		chromedp.Navigate(srv.URL+"/ui/rollouts/new"),
		chromedp.WaitVisible(chromedp.ID("filter")),
		chromedp.SetValue(chromedp.ID("filter"), "attr.site=depot-3"),
		chromedp.SetValue(chromedp.ID("waves"), "1, 100%"),
		chromedp.SetValue(chromedp.ID("success"), "1"),
		chromedp.SetValue(chromedp.ID("errors"), "0.5"),
		chromedp.Click(chromedp.ID("create")),
		chromedp.WaitVisible(chromedp.ID("start")))
	if got := text("#state"); got != "created" {
		t.Fatalf("state after creating = %q, want created", got)
	}
	do("start it", chromedp.Click(chromedp.ID("start")), chromedp.WaitVisible(chromedp.ID("pause")))
	ro := f.rollout(1)
	if ro.State != "running" || ro.Target != "attr.site=depot-3" || len(ro.Progress) != 2 || ro.Progress[0].Size != 1 || ro.Progress[1].Size != 2 {
		t.Fatalf("rollout after starting = %+v, want running over depot-3 in waves of 1 and 2", ro)
	}

	// From here the page is not reloaded: a mark set on it must survive.
	do("mark the page", chromedp.Evaluate[chromedp.Void](`window.notReloaded = true`))
	var first *simDevice
	for id, wave := range f.waveOf(1) {
		if wave == 0 {
			first = devs[id]
		}
	}
	if rel := f.poll(first); rel == nil || rel.Version != "2.0" {
		t.Fatalf("%s polled %+v, want release 2.0", first.id, rel)
	}
	f.report(first, api.PhaseDownloading, "")
	waitFor("wave 1 installing", `document.querySelector("#wave-1 td:nth-child(5)").textContent === "1"`)
	first.version = "2.0"
	f.report(first, api.PhaseInstalled, "")
	waitFor("wave 1 succeeded and wave 2 open",
		`document.querySelector("#wave-1 .succeeded").textContent === "1" && document.querySelector("#wave-2 td:nth-child(3)").textContent === "open"`)
	waitFor("the page not reloaded", `window.notReloaded === true`)

	do("pause it", chromedp.Click(chromedp.ID("pause")), chromedp.WaitVisible(chromedp.ID("resume")))
	if got := text("#state"); got != "paused" {
		t.Errorf("state shown after pausing = %q, want paused", got)
	}
	if ro := f.rollout(1); ro.State != "paused" || ro.Progress[0].Succeeded != 1 || !ro.Progress[1].Open {
		t.Errorf("rollout after pausing = %+v, want paused, wave 1 succeeded, wave 2 open", ro)
	}
	t.Logf("browser steps took %v", time.Since(start).Round(time.Millisecond))
}
