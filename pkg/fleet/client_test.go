package fleet

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lifeboat-update/lifeboat/pkg/api"
	"github.com/lifeboat-update/lifeboat/pkg/chunk"
	"github.com/lifeboat-update/lifeboat/pkg/fleet/fleettest"
	"github.com/lifeboat-update/lifeboat/pkg/identity"
	"github.com/lifeboat-update/lifeboat/pkg/publish"
	"github.com/lifeboat-update/lifeboat/pkg/release"
	"github.com/lifeboat-update/lifeboat/pkg/server/servertest"
	"github.com/lifeboat-update/lifeboat/pkg/slot"
)

const testBoard = "qemu-x86_64"

// newRepo makes a repository of releases 1 and 2 as lifeboat-release
// does, and returns its directory and root.json.
func newRepo(t *testing.T) (string, []byte) {
	t.Helper()
	ks, err := publish.GenerateKeySet(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	repo, err := publish.Init(dir, ks, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range []string{"1", "2"} {
		img := make([]byte, 128<<10)
		mrand.NewChaCha8([32]byte{byte(i)}).Read(img)
		p := filepath.Join(t.TempDir(), "rootfs.img")
		if err := os.WriteFile(p, img, 0o600); err != nil {
			t.Fatal(err)
		}
		im, err := repo.AddImage(t.Context(), "rootfs", p, publish.ImageOptions{Params: chunk.DefaultParams, Digest: chunk.SHA512256})
		if err != nil {
			t.Fatal(err)
		}
		if err := repo.AddRelease(release.Release{Board: testBoard, Version: v, Created: time.Now().UTC(), Images: []release.Image{im}}, ks); err != nil {
			t.Fatal(err)
		}
	}
	root, err := os.ReadFile(filepath.Join(dir, release.MetadataDir, "1.root.json"))
	if err != nil {
		t.Fatal(err)
	}
	return dir, root
}

// fixture is a real fleet server on loopback with the repository
// published and one device registered.
type fixture struct {
	srv *servertest.Server
	id  *identity.Identity
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir, root := newRepo(t)
	srv, err := servertest.Start(t.Context(), servertest.Options{Dir: t.TempDir(), Root: root})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	if err := srv.Publish(t.Context(), "main", dir); err != nil {
		t.Fatal(err)
	}
	id, err := identity.New("dev-1", testBoard, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := id.Registration("1")
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Register(t.Context(), reg); err != nil {
		t.Fatal(err)
	}
	return &fixture{srv: srv, id: id}
}

func (f *fixture) client(t *testing.T, opts ...Option) *Client {
	t.Helper()
	c, err := New(f.srv.URL, f.id.Token, nil, append([]Option{WithRetries(2, time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestPollAndReport(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	c := f.client(t)

	p, fresh, err := c.Poll(ctx)
	if err != nil || !fresh || p.Release != nil || p.IntervalSeconds < 1 {
		t.Fatalf("Poll() with no rollout = %+v, %v, %v; want a fresh answer with no release", p, fresh, err)
	}
	p2, fresh, err := c.Poll(ctx)
	if err != nil || fresh || p2 != p {
		t.Fatalf("Poll() again = %+v, %v, %v; want the same answer, not fresh (304)", p2, fresh, err)
	}

	r, err := f.srv.StartRollout(ctx, testBoard, "2", "id=dev-1")
	if err != nil {
		t.Fatal(err)
	}
	p, fresh, err = c.Poll(ctx)
	if err != nil || !fresh || p.Release == nil || p.Release.Version != "2" {
		t.Fatalf("Poll() with a rollout = %+v, %v, %v; want release 2", p, fresh, err)
	}
	if want := f.srv.URL + "/repo/main/"; p.Release.RepositoryURL != want {
		t.Errorf("repository_url = %q, want %q", p.Release.RepositoryURL, want)
	}
	if _, fresh, err := c.Poll(ctx); err != nil || fresh {
		t.Errorf("Poll() a third time = %v, %v; want 304", fresh, err)
	}

	// Status moves the device in the rollout.
	slots := []api.SlotState{{Name: "A", State: "good", TriesLeft: 3}, {Name: "B", State: "inactive"}}
	if err := c.ReportStatus(ctx, api.Status{Phase: api.PhaseDownloading, Progress: 0.5, InstalledVersion: "1", Slots: slots}); err != nil {
		t.Fatal(err)
	}
	if r, err = f.srv.Rollout(ctx, r.ID); err != nil || r.Progress[0].Installing != 1 {
		t.Fatalf("rollout after downloading = %+v, %v; want the device installing", r, err)
	}
	// The new system booted: the identity names the server.
	id := *f.id
	id.Server = f.srv.URL
	booted := slot.Status{Slots: []slot.SlotStatus{{Name: "A", State: slot.Good}, {Name: "B", State: slot.Good, TriesLeft: 3}}}
	if err := ReportInstalled(ctx, &id, nil, "2", booted); err != nil {
		t.Fatal(err)
	}
	if r, err = f.srv.Rollout(ctx, r.ID); err != nil || r.State != "completed" || r.Progress[0].Succeeded != 1 {
		t.Fatalf("rollout after installed = %+v, %v; want completed with the device succeeded", r, err)
	}
	if err := c.ReportInventory(ctx, api.Inventory{Attributes: map[string]string{"kernel": "6.1"}}); err != nil {
		t.Fatal(err)
	}
	d, err := f.srv.Device(ctx, "dev-1")
	if err != nil || d.InstalledVersion != "2" || d.Attributes["kernel"] != "6.1" || d.Status == nil || d.Status.Phase != api.PhaseInstalled {
		t.Errorf("device = %+v, %v; want version 2, installed, kernel 6.1", d, err)
	}

	// A bad report is refused before it is sent.
	if err := c.ReportStatus(ctx, api.Status{Phase: "dancing", InstalledVersion: "2"}); !errors.Is(err, api.ErrInvalid) {
		t.Errorf("ReportStatus(phase dancing) = %v, want api.ErrInvalid", err)
	}

	// A revoked token: 401, named, not retried.
	if err := f.srv.Revoke(ctx, "dev-1"); err != nil {
		t.Fatal(err)
	}
	err = c.ReportStatus(ctx, api.Status{Phase: api.PhaseIdle, InstalledVersion: "2"})
	var se *ServerError
	if !errors.As(err, &se) || se.StatusCode != http.StatusUnauthorized || se.Code != api.CodeUnauthorized || !strings.Contains(err.Error(), "401") {
		t.Errorf("ReportStatus with a revoked token = %v, want a ServerError naming 401", err)
	}
	if _, _, err := c.Poll(ctx); !errors.As(err, &se) || se.StatusCode != http.StatusUnauthorized {
		t.Errorf("Poll with a revoked token = %v, want 401", err)
	}
}

// flaky passes requests to the real server after failing the first
// fails of them with status.
type flaky struct {
	next   http.Handler
	status int
	fails  int
	seen   atomic.Int64
}

func (h *flaky) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if n := h.seen.Add(1); int(n) <= h.fails {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(h.status)
		w.Write([]byte(`{"error":"try later","code":"internal"}`))
		return
	}
	h.next.ServeHTTP(w, r)
}

func TestRetries(t *testing.T) {
	f := newFixture(t)
	u, err := url.Parse(f.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(u)
	for _, tc := range []struct {
		name     string
		status   int
		fails    int
		retries  int
		ok       bool
		attempts int64
	}{
		{"5xx then success", http.StatusServiceUnavailable, 2, 2, true, 3},
		{"5xx past the retries", http.StatusServiceUnavailable, 5, 2, false, 3},
		{"4xx not retried", http.StatusBadRequest, 5, 2, false, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &flaky{next: proxy, status: tc.status, fails: tc.fails}
			ts := httptest.NewServer(h)
			defer ts.Close()
			c, err := New(ts.URL, f.id.Token, ts.Client(), WithRetries(tc.retries, time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			_, _, err = c.Poll(t.Context())
			if (err == nil) != tc.ok || h.seen.Load() != tc.attempts {
				t.Errorf("Poll() = %v after %d attempts; want ok %v after %d", err, h.seen.Load(), tc.ok, tc.attempts)
			}
			var se *ServerError
			if !tc.ok && (!errors.As(err, &se) || se.StatusCode != tc.status || !strings.Contains(err.Error(), "try later")) {
				t.Errorf("Poll() = %v, want a ServerError naming %d and the body's error", err, tc.status)
			}
		})
	}
	// A server that is not there: a network error, retried, then named.
	ts := httptest.NewServer(http.NotFoundHandler())
	ts.Close()
	c, err := New(ts.URL, f.id.Token, nil, WithRetries(1, time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Poll(t.Context()); err == nil || !strings.Contains(err.Error(), "after 2 attempts") {
		t.Errorf("Poll() of a closed server = %v, want a network error after 2 attempts", err)
	}
	// A cancelled context stops the waits.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, _, err := c.Poll(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Poll(cancelled) = %v, want context.Canceled", err)
	}
}

func TestNew(t *testing.T) {
	for _, bad := range []string{"", "ftp://x/", "10.0.2.2:8080", "http://"} {
		if _, err := New(bad, "tok", nil); err == nil {
			t.Errorf("New(%q) = nil error, want the URL refused", bad)
		}
	}
	if _, err := New("http://x/", "", nil); err == nil {
		t.Error("New(no token) = nil error")
	}
	c, err := New("https://fleet.example/lifeboat", "tok", nil)
	if err != nil || c.URL() != "https://fleet.example/lifeboat/" {
		t.Errorf("New(with a path) = %v, %v; want the API under /lifeboat/", c.URL(), err)
	}
}

func TestReporter(t *testing.T) {
	rec := &fleettest.Server{}
	ts := httptest.NewServer(rec)
	defer ts.Close()
	c, err := New(ts.URL, "tok", ts.Client(), WithRetries(0, time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	var logged []string
	r := NewReporter(t.Context(), c, "1", func(format string, args ...any) { logged = append(logged, format) })
	clock := time.Unix(1700000000, 0)
	r.Throttle(0.25, time.Hour, func() time.Time { return clock })
	st := slot.Status{Slots: []slot.SlotStatus{{Name: "A", State: slot.Good, TriesLeft: 3}, {Name: "B", State: slot.Inactive}, {Name: slot.Recovery}}}
	r.Report(api.Status{Phase: api.PhaseDownloading, Slots: SlotStates(st)})
	r.Start("assemble", 1000)
	for range 1000 {
		r.Add(1) // a chunk at a time: reported at most every quarter
	}
	r.Done()
	r.Report(api.Status{Phase: api.PhaseInstalling, Progress: 1, Transfer: api.Transfer{FetchedBytes: 10, ImageBytes: 1000}})
	r.Phase(api.PhaseRebooting, 0)

	got := rec.Reports()
	var phases []api.Phase
	downloads := 0
	last := -1.0
	for _, s := range got {
		if s.InstalledVersion != "1" || len(s.Slots) != 2 {
			t.Errorf("report %+v: want installed 1 and slots A and B (recovery left out)", s)
		}
		if s.Phase == api.PhaseDownloading {
			downloads++
			if s.Progress < last {
				t.Errorf("downloading %v after %v: out of order", s.Progress, last)
			}
			last = s.Progress
			continue
		}
		phases = append(phases, s.Phase)
	}
	// The first report, then at most one per quarter of the image.
	if downloads < 1 || downloads > 5 {
		t.Errorf("%d downloading reports for 1000 additions, want 1 to 5 (every quarter)", downloads)
	}
	if want := []api.Phase{api.PhaseVerifying, api.PhaseInstalling, api.PhaseRebooting}; !slices.Equal(phases, want) {
		t.Errorf("phases %v, want %v after downloading", phases, want)
	}
	if s := got[len(got)-1]; s.Transfer.FetchedBytes != 10 {
		t.Errorf("rebooting carries transfer %+v, want the last reported", s.Transfer)
	}

	// A server that fails: logged, never returned.
	rec.SetFail(true)
	r.Failed("install", errors.New("disk on fire"))
	if len(logged) != 1 {
		t.Errorf("a failed report logged %d lines, want 1", len(logged))
	}
	if s := r.Status(); s.Phase != api.PhaseFailed || s.Error != "install: disk on fire" {
		t.Errorf("Status() after Failed = %+v", s)
	}
}

func TestInstalled(t *testing.T) {
	st := Installed("2", slot.Status{Slots: []slot.SlotStatus{{Name: "A", State: slot.Good}, {Name: "B", State: slot.Good, TriesLeft: 3}, {Name: slot.Recovery}}})
	if err := st.Validate(); err != nil || st.Phase != api.PhaseInstalled || st.InstalledVersion != "2" || len(st.Slots) != 2 {
		t.Errorf("Installed(2) = %+v, %v", st, err)
	}
}

// FuzzServerError reads whatever a server sends with a refusal: it never
// fails, and the error names the status.
func FuzzServerError(f *testing.F) {
	f.Add([]byte(`{"error":"token revoked","code":"unauthorized"}`))
	f.Add([]byte(`<html>bad gateway</html>`))
	f.Add([]byte(`{"error":`))
	f.Fuzz(func(t *testing.T, b []byte) {
		resp := &http.Response{StatusCode: 418, Body: httptestBody(b)}
		err := serverError("poll", resp)
		if !strings.Contains(err.Error(), "418") {
			t.Errorf("serverError = %q, want it to name 418", err)
		}
	})
}

func httptestBody(b []byte) *nopCloser { return &nopCloser{bytes.NewReader(b)} }

type nopCloser struct{ *bytes.Reader }

func (nopCloser) Close() error { return nil }
