package loadgen

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lifeboat-update/lifeboat/pkg/api"
)

func TestDue(t *testing.T) {
	start := time.Unix(1000, 0)
	for _, tc := range []struct {
		rate float64
		i    int
		want time.Duration
	}{
		{3000, 0, 0},
		{3000, 3000, time.Second},
		{3000, 1500, 500 * time.Millisecond},
		{4, 1, 250 * time.Millisecond},
		{0.5, 3, 6 * time.Second},
	} {
		if got := Due(start, tc.rate, tc.i).Sub(start); got != tc.want {
			t.Errorf("Due(start, %v, %d) = start+%v, want start+%v", tc.rate, tc.i, got, tc.want)
		}
	}
	if got := Count(3000, time.Minute); got != 180000 {
		t.Errorf("Count(3000, 1m) = %d, want 180000", got)
	}
	if got := Count(3, 1500*time.Millisecond); got != 5 {
		t.Errorf("Count(3, 1.5s) = %d, want 5 (4.5 rounded up)", got)
	}
}

func TestKindN(t *testing.T) {
	for _, share := range []float64{0, 0.1, 0.25, 1} {
		reports, firstGap := 0, -1
		for i := range 1000 {
			if KindN(i, share) == Status {
				reports++
				if firstGap < 0 {
					firstGap = i
				}
			}
		}
		if want := int(share * 1000); reports != want {
			t.Errorf("KindN(0..999, %v): %d reports, want %d", share, reports, want)
		}
		if share > 0 && float64(firstGap) >= 1/share {
			t.Errorf("KindN(i, %v): first report at %d, want before %v (spread evenly)", share, firstGap, 1/share)
		}
	}
}

func TestDeviceFor(t *testing.T) {
	for _, n := range []int{1, 2, 3, 10, 1000, 1024, 999983} {
		seen := make([]bool, n)
		for i := range n {
			d := DeviceFor(i, n)
			if d < 0 || d >= n || seen[d] {
				t.Fatalf("DeviceFor(%d, %d) = %d: out of range or addressed twice in one pass", i, n, d)
			}
			seen[d] = true
		}
		if n > 10 && DeviceFor(1, n) == 1 {
			t.Errorf("DeviceFor(1, %d) = 1: want consecutive requests spread apart", n)
		}
		if got := DeviceFor(n, n); got != 0 {
			t.Errorf("DeviceFor(%d, %d) = %d, want 0 (the second pass starts over)", n, n, got)
		}
	}
}

func TestPercentile(t *testing.T) {
	ms := func(vs ...int) []time.Duration {
		out := make([]time.Duration, len(vs))
		for i, v := range vs {
			out[i] = time.Duration(v) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	for _, tc := range []struct {
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{nil, 50, 0},
		{ms(7), 50, 7 * time.Millisecond},
		{ms(7), 99, 7 * time.Millisecond},
		{ms(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{ms(1, 2, 3, 4), 51, 3 * time.Millisecond},
		{ms(1, 2, 3, 4), 100, 4 * time.Millisecond},
		{ms(1, 2, 3, 4), 0, 1 * time.Millisecond},
		{ms(hundred...), 99, 99 * time.Millisecond},
		{ms(hundred...), 99.5, 100 * time.Millisecond},
	} {
		if got := Percentile(tc.sorted, tc.p); got != tc.want {
			t.Errorf("Percentile(%v, %v) = %v, want %v", tc.sorted, tc.p, got, tc.want)
		}
	}
}

func TestTally(t *testing.T) {
	got := tally([][]sample{
		{{Poll, 3 * time.Millisecond, 200}, {Poll, 1 * time.Millisecond, 304}, {Status, 5 * time.Millisecond, 204}},
		{{Poll, 2 * time.Millisecond, 401}, {Poll, 9 * time.Millisecond, 0}, {Status, 4 * time.Millisecond, 500}},
	})
	p, s := got[Poll], got[Status]
	if p.Count != 4 || p.OK != 2 || p.Errors["401"] != 1 || p.Errors["transport"] != 1 {
		t.Errorf("tally: poll = %+v, want 4 sent, 2 ok, one 401 and one transport error", p)
	}
	if p.P50 != Millis(2*time.Millisecond) || p.Max != Millis(9*time.Millisecond) {
		t.Errorf("tally: poll p50 %v max %v, want 2 ms and 9 ms", p.P50, p.Max)
	}
	if s.Count != 2 || s.OK != 1 || s.Errors["500"] != 1 {
		t.Errorf("tally: status = %+v, want 2 sent, 1 ok, one 500", s)
	}
	if r := (Result{Sent: 6, Kinds: got}); r.Failed() != 3 {
		t.Errorf("Result.Failed() = %d, want 3", r.Failed())
	}
}

func TestValidate(t *testing.T) {
	ok := Config{Server: "http://127.0.0.1:1", Devices: 1, Workers: 1}
	for name, mod := range map[string]func(*Config){
		"server":  func(c *Config) { c.Server = "127.0.0.1:1" },
		"devices": func(c *Config) { c.Devices = 0 },
		"workers": func(c *Config) { c.Workers = 0 },
		"status":  func(c *Config) { c.StatusShare = 1.5 },
		"batch":   func(c *Config) { c.Batch = 1001 },
	} {
		c := ok
		mod(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("Validate(%+v) = %v, want an error naming %s", c, err, name)
		}
	}
	if err := ok.Validate(); err != nil {
		t.Errorf("Validate(%+v) = %v, want nil", ok, err)
	}
}

// fakeServer answers the device and registration endpoints the way the
// fleet server does, checking each device's token.
type fakeServer struct {
	mu         sync.Mutex
	devices    map[string]bool // SHA-256 of registered tokens
	bulk       int             // bulk registration requests
	polls      int
	withETag   int
	reports    int
	lastReport api.Status
	rollouts   []api.CreateRollout
	started    []string
}

func (f *fakeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	raw, _ := hex.DecodeString(tok)
	sum := sha256.Sum256(raw)
	sha := hex.EncodeToString(sum[:])
	switch r.URL.Path {
	case "/api/v1/devices", "/api/v1/devices/bulk":
		if tok != "op" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var b api.BulkRegistration
		if r.URL.Path == "/api/v1/devices/bulk" {
			f.bulk++
			json.NewDecoder(r.Body).Decode(&b)
		} else {
			b.Devices = make([]api.Registration, 1)
			json.NewDecoder(r.Body).Decode(&b.Devices[0])
		}
		for _, reg := range b.Devices {
			if f.devices[reg.TokenSHA256] {
				w.WriteHeader(http.StatusConflict)
				return
			}
		}
		for _, reg := range b.Devices {
			f.devices[reg.TokenSHA256] = true
		}
		w.WriteHeader(http.StatusCreated)
	case "/api/v1/device/poll":
		if !f.devices[sha] {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		f.polls++
		w.Header().Set("ETag", `"e"`)
		if r.Header.Get("If-None-Match") == `"e"` {
			f.withETag++
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Write([]byte(`{}`))
	case "/api/v1/device/status":
		if !f.devices[sha] {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		f.reports++
		json.NewDecoder(r.Body).Decode(&f.lastReport)
		w.WriteHeader(http.StatusNoContent)
	case "/api/v1/rollouts":
		var c api.CreateRollout
		if tok != "op" || json.NewDecoder(r.Body).Decode(&c) != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		f.rollouts = append(f.rollouts, c)
		w.WriteHeader(http.StatusCreated)
		w.Write([]byte(`{"id": 7, "state": "created"}`))
	case "/api/v1/rollouts/7/start":
		f.started = append(f.started, r.Method)
		w.Write([]byte(`{"id": 7, "state": "running"}`))
	default:
		w.WriteHeader(http.StatusNotFound)
		w.Write([]byte(`{"error": "no such endpoint"}`))
	}
}

func TestRegisterAndRun(t *testing.T) {
	f := &fakeServer{devices: map[string]bool{}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	c := Config{Server: srv.URL, Seed: "t", Devices: 10, Board: "b", Version: "1", Workers: 1, Rate: 1000, Duration: 40 * time.Millisecond, StatusShare: 0.25, Batch: 4}
	// Devices 0 and 1 are registered already: their batch is sent again
	// one device at a time.
	f.devices[c.registration(DeviceN("t", 1)).TokenSHA256] = true
	if _, err := Register(t.Context(), Config{Server: srv.URL, Seed: "t", Devices: 1, Board: "b", Version: "1", Workers: 1}, "op"); err != nil {
		t.Fatal(err)
	}
	f.bulk = 0
	reg, err := Register(t.Context(), c, "op")
	if err != nil || reg.Devices != 8 || reg.Existing != 2 || len(f.devices) != 10 || f.bulk != 3 {
		t.Fatalf("Register = %+v, %v; server has %d devices after %d bulk requests, want 8 registered, 2 existing, 10 in all, in 3 batches",
			reg, err, len(f.devices), f.bulk)
	}
	// One worker: each request answered before the next is sent, so a
	// device's second poll carries the first's ETag.
	res, err := Run(t.Context(), c)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res.Sent != 40 || res.Failed() != 0 || res.Kinds[Status].Count != 10 || res.Kinds[Poll].Count != 30 {
		t.Errorf("Run = %+v, want 40 sent (30 polls, 10 reports), none failed", res)
	}
	if f.polls != 30 || f.reports != 10 || f.withETag != 20 {
		t.Errorf("server saw %d polls (%d with an ETag), %d reports; want 30 (20: every device's second and third poll), 10", f.polls, f.withETag, f.reports)
	}
	if _, err := Register(t.Context(), c, "wrong"); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("Register with a wrong token: %v, want an error naming the 401", err)
	}
}

func TestStartRollout(t *testing.T) {
	f := &fakeServer{devices: map[string]bool{}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	c := Config{Server: srv.URL, Seed: "t", Devices: 3, Board: "b", Version: "1", Installed: "2", Workers: 1, Rate: 1000, Duration: 3 * time.Millisecond, StatusShare: 1}
	ro, err := StartRollout(t.Context(), c, "op", "2", []string{"10%", "100%"})
	if err != nil || ro.ID != 7 {
		t.Fatalf("StartRollout = %+v, %v; want rollout 7", ro, err)
	}
	want := api.CreateRollout{Board: "b", Version: "2", Filter: "board=b", Waves: []string{"10%", "100%"}, SuccessThreshold: 1, ErrorThreshold: 0.99}
	if len(f.rollouts) != 1 || !reflect.DeepEqual(f.rollouts[0], want) || len(f.started) != 1 || f.started[0] != http.MethodPost {
		t.Errorf("server saw rollouts %+v, starts %v; want %+v, one POST start", f.rollouts, f.started, want)
	}
	if _, err := StartRollout(t.Context(), c, "op", "3", []string{"100%"}); err != nil {
		t.Fatal(err)
	}
	c.Server += "/nowhere"
	if _, err := StartRollout(t.Context(), c, "op", "2", []string{"100%"}); err == nil || !strings.Contains(err.Error(), "status 404: {\"error\": \"no such endpoint\"}") {
		t.Errorf("StartRollout against no endpoint: %v, want an error with the 404 and its body", err)
	}
	c.Server = srv.URL
	if _, err := Register(t.Context(), c, "op"); err != nil {
		t.Fatal(err)
	}
	// With Installed, reports say the release is installed.
	if res, err := Run(t.Context(), c); err != nil || res.Failed() != 0 || f.reports != 3 {
		t.Fatalf("Run = %+v, %v; want 3 reports, none failed", res, err)
	}
	if want := (api.Status{Phase: api.PhaseInstalled, InstalledVersion: "2"}); !reflect.DeepEqual(f.lastReport, want) {
		t.Errorf("report = %+v, want %+v", f.lastReport, want)
	}
}
