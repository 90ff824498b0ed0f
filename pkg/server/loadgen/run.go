package loadgen

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lifeboat-update/lifeboat/pkg/api"
)

// Config is a load to run against a server.
type Config struct {
	// Server is the server's base URL, http://HOST:PORT.
	Server string
	// Seed names the fleet (DeviceN); Devices is its size.
	Seed    string
	Devices int
	// Board and Version are what registered devices are flashed with.
	Board, Version string
	// Installed is the release Run's status reports say is installed:
	// "" for Version, idle (the fleet at rest); another, installed (each
	// report moves its device on in a rollout of that release).
	Installed string
	// Workers bounds the requests in flight.
	Workers int
	// Rate is the requests per second Run sends, for Duration;
	// StatusShare of them (0 to 1) are status reports, the rest polls.
	Rate        float64
	Duration    time.Duration
	StatusShare float64
	// Batch is how many devices one registration request carries
	// (Register): 1 to api.MaxBulkRegistrations, 0 for the most.
	Batch int
	// Client sends the requests; nil for one sized for Workers.
	Client *http.Client
}

func (c *Config) batch() int {
	if c.Batch == 0 {
		return api.MaxBulkRegistrations
	}
	return c.Batch
}

// Validate refuses a config that cannot run.
func (c *Config) Validate() error {
	if err := c.checkServer(); err != nil {
		return err
	}
	switch {
	case c.Devices < 1:
		return fmt.Errorf("devices %d: want 1 or more", c.Devices)
	case c.Workers < 1:
		return fmt.Errorf("workers %d: want 1 or more", c.Workers)
	case c.Batch < 0 || c.Batch > api.MaxBulkRegistrations:
		return fmt.Errorf("batch %d: want 1 to %d, or 0 for the most", c.Batch, api.MaxBulkRegistrations)
	case !(c.StatusShare >= 0 && c.StatusShare <= 1):
		return fmt.Errorf("status share %v: want 0 to 1", c.StatusShare)
	}
	return nil
}

func (c *Config) checkServer() error {
	if !strings.HasPrefix(c.Server, "http://") && !strings.HasPrefix(c.Server, "https://") {
		return fmt.Errorf("server %q: want an http:// or https:// URL", c.Server)
	}
	return nil
}

func (c *Config) client() *http.Client {
	if c.Client != nil {
		return c.Client
	}
	return &http.Client{Transport: &http.Transport{
		MaxIdleConns:        c.Workers,
		MaxIdleConnsPerHost: c.Workers,
		IdleConnTimeout:     time.Minute,
	}, Timeout: time.Minute}
}

// Registered is what Register did.
type Registered struct {
	Devices int `json:"devices"`
	// Existing counts the devices registered before (409).
	Existing int            `json:"existing"`
	Errors   map[string]int `json:"errors,omitempty"`
	Seconds  float64        `json:"seconds"`
	PerSec   float64        `json:"per_second"`
}

// Register registers devices 0 to Devices-1 of the fleet with
// operatorToken through POST /api/v1/devices/bulk, Batch devices to a
// request (api.MaxBulkRegistrations when 0), Workers requests at a time.
// A batch refused because a device of it is registered (409) is sent
// again one device at a time (POST /api/v1/devices), so that the devices
// registered before count as Existing and the others are registered. Any
// other refusal is an error, counted by status once for each device of
// its request, and the first is returned.
func Register(ctx context.Context, c Config, operatorToken string) (Registered, error) {
	if err := c.Validate(); err != nil {
		return Registered{}, err
	}
	cl := c.client()
	batch := c.batch()
	var (
		next     atomic.Int64
		mu       sync.Mutex
		res      = Registered{Errors: map[string]int{}}
		firstErr error
		wg       sync.WaitGroup
	)
	count := func(code, n int, err error) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case code == http.StatusCreated:
			res.Devices += n
		case code == http.StatusConflict:
			res.Existing += n
		default:
			res.Errors[errorKey(code)] += n
			if firstErr == nil {
				firstErr = err
			}
		}
	}
	start := time.Now()
	for range c.Workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				first := int(next.Add(int64(batch))) - batch
				if first >= c.Devices {
					return
				}
				regs := make([]api.Registration, 0, batch)
				for i := first; i < min(first+batch, c.Devices); i++ {
					regs = append(regs, c.registration(DeviceN(c.Seed, i)))
				}
				code, err := post(ctx, cl, c.Server+"/api/v1/devices/bulk", operatorToken, api.BulkRegistration{Devices: regs})
				if code != http.StatusConflict {
					count(code, len(regs), err)
					continue
				}
				for _, reg := range regs {
					code, err := post(ctx, cl, c.Server+"/api/v1/devices", operatorToken, reg)
					count(code, 1, err)
				}
			}
		})
	}
	wg.Wait()
	res.Seconds = time.Since(start).Seconds()
	res.PerSec = float64(res.Devices+res.Existing) / res.Seconds
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	return res, firstErr
}

// registration is the registration of d.
func (c *Config) registration(d Device) api.Registration {
	raw, _ := hex.DecodeString(d.Token) // DeviceN's tokens are hex
	sum := sha256.Sum256(raw)
	return api.Registration{DeviceID: d.ID, Board: c.Board, Version: c.Version, TokenSHA256: hex.EncodeToString(sum[:])}
}

// post sends v to url as an operator's registration: code is its answer's
// status, and err says why it is neither 201 nor 409.
func post(ctx context.Context, cl *http.Client, url, operatorToken string, v any) (int, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return 0, err
	}
	code, _, err := send(ctx, cl, http.MethodPost, url, operatorToken, "", body)
	if err == nil && code != http.StatusCreated && code != http.StatusConflict {
		err = fmt.Errorf("POST %s: status %d", url, code)
	}
	return code, err
}

// Rollout is what StartRollout did.
type Rollout struct {
	ID int64 `json:"id"`
	// CreateSeconds is how long its creation took, StartSeconds its start.
	CreateSeconds float64 `json:"create_seconds"`
	StartSeconds  float64 `json:"start_seconds"`
}

// StartRollout creates a rollout of release version of c.Board over
// every device of that board that is not revoked, in waves
// (api.CreateRollout's), with operatorToken, and starts it. The
// thresholds let no failure halt it and open the next wave once every
// device of the last open one succeeded. Of c it uses Server, Board and
// Client.
func StartRollout(ctx context.Context, c Config, operatorToken, version string, waves []string) (Rollout, error) {
	if err := c.checkServer(); err != nil {
		return Rollout{}, err
	}
	cl := c.client()
	var ro struct {
		ID int64 `json:"id"`
	}
	start := time.Now()
	err := operatorJSON(ctx, cl, c.Server+"/api/v1/rollouts", operatorToken, http.StatusCreated,
		api.CreateRollout{Board: c.Board, Version: version, Filter: "board=" + c.Board, Waves: waves, SuccessThreshold: 1, ErrorThreshold: 0.99}, &ro)
	if err != nil {
		return Rollout{}, err
	}
	res := Rollout{ID: ro.ID, CreateSeconds: time.Since(start).Seconds()}
	start = time.Now()
	if err := operatorJSON(ctx, cl, fmt.Sprintf("%s/api/v1/rollouts/%d/start", c.Server, ro.ID), operatorToken, http.StatusOK, nil, nil); err != nil {
		return res, err
	}
	res.StartSeconds = time.Since(start).Seconds()
	return res, nil
}

// operatorJSON POSTs in (none when nil) to url with operatorToken, wants
// status want, and decodes the answer into out (unless nil).
func operatorJSON(ctx context.Context, cl *http.Client, url, operatorToken string, want int, in, out any) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return err
		}
	}
	req, err := newRequest(ctx, http.MethodPost, url, operatorToken, body)
	if err != nil {
		return err
	}
	resp, err := cl.Do(req)
	if err != nil {
		return fmt.Errorf("POST %s: %w", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("POST %s: read answer: %w", url, err)
	}
	if resp.StatusCode != want {
		return fmt.Errorf("POST %s: status %d: %s", url, resp.StatusCode, bytes.TrimSpace(b))
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("POST %s: answer: %w", url, err)
	}
	return nil
}

// send sends one request and reads its answer through; code is 0 when
// there was none.
func send(ctx context.Context, cl *http.Client, method, url, token, ifNoneMatch string, body []byte) (code int, etag string, err error) {
	req, err := newRequest(ctx, method, url, token, body)
	if err != nil {
		return 0, "", err
	}
	if ifNoneMatch != "" {
		req.Header.Set("If-None-Match", ifNoneMatch)
	}
	resp, err := cl.Do(req)
	if err != nil {
		return 0, "", fmt.Errorf("%s %s: %w", method, url, err)
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return 0, "", fmt.Errorf("%s %s: read answer: %w", method, url, err)
	}
	return resp.StatusCode, resp.Header.Get("ETag"), nil
}

// newRequest is a request with token, and body (none when nil) as JSON.
func newRequest(ctx context.Context, method, url, token string, body []byte) (*http.Request, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return req, nil
}

func errorKey(code int) string {
	if code == 0 {
		return "transport"
	}
	return strconv.Itoa(code)
}

// Result is what Run measured.
type Result struct {
	Devices int     `json:"devices"`
	Target  float64 `json:"target_per_second"`
	// Sent counts the requests sent, Seconds the time from the first's
	// due time to the last answer, PerSec the answers per second.
	Sent    int                 `json:"sent"`
	Seconds float64             `json:"seconds"`
	PerSec  float64             `json:"per_second"`
	Kinds   map[Kind]*Latencies `json:"kinds"`
}

// Failed counts the requests that did not get the answer they expect.
func (r Result) Failed() int {
	n := 0
	for _, l := range r.Kinds {
		n += l.Count - l.OK
	}
	return n
}

type job struct {
	i   int
	due time.Time
}

type sample struct {
	kind Kind
	lat  time.Duration
	code int
}

// Run sends Count(Rate, Duration) requests, request i due at start +
// i/Rate, of KindN(i) to device DeviceFor(i), and measures each from when
// it was due to its answer. Workers send them; when all are busy, due
// requests wait, and their wait counts in their latency.
func Run(ctx context.Context, c Config) (Result, error) {
	if err := c.Validate(); err != nil {
		return Result{}, err
	}
	if !(c.Rate > 0) || c.Duration <= 0 {
		return Result{}, fmt.Errorf("rate %v for %v: want a positive rate and duration", c.Rate, c.Duration)
	}
	cl := c.client()
	st := api.Status{Phase: api.PhaseIdle, InstalledVersion: c.Version}
	if c.Installed != "" && c.Installed != c.Version {
		st = api.Status{Phase: api.PhaseInstalled, InstalledVersion: c.Installed}
	}
	status, err := json.Marshal(st)
	if err != nil {
		return Result{}, err
	}
	var (
		etags   sync.Map // device index → ETag of its last poll answer
		jobs    = make(chan job, c.Workers)
		samples = make([][]sample, c.Workers)
		wg      sync.WaitGroup
	)
	n := Count(c.Rate, c.Duration)
	for w := range c.Workers {
		wg.Go(func() {
			for j := range jobs {
				k := KindN(j.i, c.StatusShare)
				di := DeviceFor(j.i, c.Devices)
				d := DeviceN(c.Seed, di)
				var code int
				if k == Status {
					code, _, _ = send(ctx, cl, http.MethodPost, c.Server+"/api/v1/device/status", d.Token, "", status)
				} else {
					inm, _ := etags.Load(di)
					s, _ := inm.(string)
					var etag string
					code, etag, _ = send(ctx, cl, http.MethodGet, c.Server+"/api/v1/device/poll", d.Token, s, nil)
					if code == http.StatusOK && etag != "" {
						etags.Store(di, etag)
					}
				}
				samples[w] = append(samples[w], sample{k, time.Since(j.due), code})
			}
		})
	}
	start := time.Now()
	t := time.NewTimer(0)
	sent := 0
dispatch:
	for ; sent < n; sent++ {
		due := Due(start, c.Rate, sent)
		if d := time.Until(due); d > 0 {
			t.Reset(d)
			select {
			case <-ctx.Done():
				break dispatch
			case <-t.C:
			}
		}
		select {
		case <-ctx.Done():
			break dispatch
		case jobs <- job{sent, due}:
		}
	}
	close(jobs)
	wg.Wait()
	res := Result{Devices: c.Devices, Target: c.Rate, Sent: sent, Seconds: time.Since(start).Seconds(), Kinds: map[Kind]*Latencies{}}
	res.PerSec = float64(sent) / res.Seconds
	res.Kinds = tally(samples)
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("load stopped after %d of %d requests: %w", sent, n, err)
	}
	return res, nil
}

// tally summarises the samples by kind.
func tally(samples [][]sample) map[Kind]*Latencies {
	lat := map[Kind][]time.Duration{}
	ok := map[Kind]int{}
	errs := map[Kind]map[string]int{}
	for _, ss := range samples {
		for _, s := range ss {
			lat[s.kind] = append(lat[s.kind], s.lat)
			if expected(s.kind, s.code) {
				ok[s.kind]++
				continue
			}
			if errs[s.kind] == nil {
				errs[s.kind] = map[string]int{}
			}
			errs[s.kind][errorKey(s.code)]++
		}
	}
	out := map[Kind]*Latencies{}
	for k, l := range lat {
		s := summarise(l, ok[k], errs[k])
		out[k] = &s
	}
	return out
}

func expected(k Kind, code int) bool {
	if k == Status {
		return code == http.StatusNoContent
	}
	return code == http.StatusOK || code == http.StatusNotModified
}
