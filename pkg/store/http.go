package store

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/lifeboat-update/lifeboat/pkg/chunk"
)

// DefaultMaxChunkSize is the default limit on a chunk's stored (.cacnk)
// size: the zstd worst-case bound for casync's largest chunk, plus room
// for frame headers.
const DefaultMaxChunkSize int64 = chunk.SizeLimitMax + chunk.SizeLimitMax>>8 + 4<<10

// ErrTooLarge is wrapped by the error for a chunk body over the size limit.
var ErrTooLarge = errors.New("chunk exceeds size limit")

// StatusError is an HTTP response status that is neither success nor
// not-found.
type StatusError struct {
	StatusCode int
	Status     string // as in http.Response: "503 Service Unavailable"
}

func (e *StatusError) Error() string { return e.Status }

// HTTPStats counts an HTTP store's traffic.
type HTTPStats struct {
	Requests      int64 // requests sent, retries included
	Retries       int64 // attempts after the first, over all calls
	BytesReceived int64 // response body bytes read
}

// HTTP is a read-only store served over HTTP or HTTPS in casync's layout:
// chunk abcd… is at BASE/abcd/abcd….cacnk.
//
// Each attempt has its own timeout. Server errors (5xx), 429 and 408,
// network errors, timeouts and bodies cut short are retried with
// exponential backoff and full jitter; 404 and 410 are ErrNotFound; other
// statuses fail at once. At most a fixed number of requests are in flight
// at a time. An HTTP is safe for concurrent use.
type HTTP struct {
	prefix string // base URL ending in '/'
	name   string // prefix with any password redacted

	client      *http.Client
	sem         chan struct{}
	retries     int
	backoffBase time.Duration
	backoffMax  time.Duration
	maxSize     int64
	header      http.Header
	timeout     time.Duration

	requests atomic.Int64
	retried  atomic.Int64
	received atomic.Int64
}

var _ Store = (*HTTP)(nil)

// An HTTPOption configures NewHTTP.
type HTTPOption func(*httpConfig)

type httpConfig struct {
	client                  *http.Client
	concurrency, retries    int
	backoffBase, backoffMax time.Duration
	maxSize                 int64
	header                  http.Header
	timeout                 time.Duration
}

// WithClient sets the HTTP client. By default the store makes its own,
// on a transport that keeps as many idle connections as it has requests
// in flight.
func WithClient(c *http.Client) HTTPOption {
	return func(o *httpConfig) { o.client = c }
}

// WithConcurrency sets how many requests may be in flight at once
// (default 8).
func WithConcurrency(n int) HTTPOption {
	return func(o *httpConfig) { o.concurrency = n }
}

// WithRetries sets how many times a failed request is retried (default 4,
// so 5 attempts in all).
func WithRetries(n int) HTTPOption {
	return func(o *httpConfig) { o.retries = n }
}

// WithBackoff sets the wait before the first retry and the most any wait
// may be (default 100ms and 5s). The bound doubles with each retry and the
// wait is drawn uniformly below it.
func WithBackoff(base, max time.Duration) HTTPOption {
	return func(o *httpConfig) { o.backoffBase, o.backoffMax = base, max }
}

// WithMaxChunkSize sets the most bytes a response body may hold (default
// DefaultMaxChunkSize), so a hostile or broken server cannot feed the
// device endless data.
func WithMaxChunkSize(n int64) HTTPOption {
	return func(o *httpConfig) { o.maxSize = n }
}

// WithHeader adds a header to every request, such as an authorization
// token.
func WithHeader(key, value string) HTTPOption {
	return func(o *httpConfig) { o.header.Add(key, value) }
}

// WithTimeout sets how long one attempt, body included, may take
// (default 30s; 0 means no limit beyond the caller's context).
func WithTimeout(d time.Duration) HTTPOption {
	return func(o *httpConfig) { o.timeout = d }
}

// NewHTTP returns a store reading chunks below base, an http or https URL.
func NewHTTP(base string, opts ...HTTPOption) (*HTTP, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("http store: %w", err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("http store %q: scheme must be http or https", u.Redacted())
	case u.Host == "":
		return nil, fmt.Errorf("http store %q: no host", u.Redacted())
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return nil, fmt.Errorf("http store %q: base URL may not have a query or fragment", u.Redacted())
	}
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
		if u.RawPath != "" {
			u.RawPath += "/"
		}
	}
	c := httpConfig{
		concurrency: 8,
		retries:     4,
		backoffBase: 100 * time.Millisecond,
		backoffMax:  5 * time.Second,
		maxSize:     DefaultMaxChunkSize,
		header:      make(http.Header),
		timeout:     30 * time.Second,
	}
	for _, o := range opts {
		o(&c)
	}
	switch {
	case c.concurrency < 1:
		return nil, fmt.Errorf("http store: concurrency %d is below 1", c.concurrency)
	case c.retries < 0:
		return nil, fmt.Errorf("http store: negative retries %d", c.retries)
	case c.backoffBase < 0 || c.backoffMax < c.backoffBase:
		return nil, fmt.Errorf("http store: backoff %v..%v is not a range", c.backoffBase, c.backoffMax)
	case c.maxSize < 1:
		return nil, fmt.Errorf("http store: max chunk size %d is below 1", c.maxSize)
	case c.timeout < 0:
		return nil, fmt.Errorf("http store: negative timeout %v", c.timeout)
	}
	if c.client == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = c.concurrency
		c.client = &http.Client{Transport: t}
	}
	return &HTTP{
		prefix:      u.String(),
		name:        u.Redacted(),
		client:      c.client,
		sem:         make(chan struct{}, c.concurrency),
		retries:     c.retries,
		backoffBase: c.backoffBase,
		backoffMax:  c.backoffMax,
		maxSize:     c.maxSize,
		header:      c.header,
		timeout:     c.timeout,
	}, nil
}

// String returns the base URL, without any password.
func (h *HTTP) String() string { return h.name }

// Stats returns the store's counters so far.
func (h *HTTP) Stats() HTTPStats {
	return HTTPStats{
		Requests:      h.requests.Load(),
		Retries:       h.retried.Load(),
		BytesReceived: h.received.Load(),
	}
}

// Get fetches chunk id with GET.
func (h *HTTP) Get(ctx context.Context, id chunk.ID) ([]byte, error) {
	return h.do(ctx, http.MethodGet, id)
}

// Has asks for chunk id with HEAD.
func (h *HTTP) Has(ctx context.Context, id chunk.ID) (bool, error) {
	_, err := h.do(ctx, http.MethodHead, id)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// do runs method on chunk id's URL with the retry policy.
func (h *HTTP) do(ctx context.Context, method string, id chunk.ID) ([]byte, error) {
	hex := id.String()
	rel := hex[:4] + "/" + hex + chunkExt
	target, name := h.prefix+rel, h.name+rel
	for attempt := 1; ; attempt++ {
		body, err := h.attempt(ctx, method, target, id)
		if err == nil {
			return body, nil
		}
		if cerr := ctx.Err(); cerr != nil {
			return nil, fmt.Errorf("%s %s: %w", method, name, cerr)
		}
		var nf *NotFoundError
		if errors.As(err, &nf) {
			return nil, err
		}
		var re *retryable
		if !errors.As(err, &re) {
			return nil, fmt.Errorf("%s %s: %w", method, name, err)
		}
		if attempt > h.retries {
			return nil, fmt.Errorf("%s %s: giving up after %d attempts: %w", method, name, attempt, re.err)
		}
		h.retried.Add(1)
		if err := h.wait(ctx, attempt); err != nil {
			return nil, fmt.Errorf("%s %s: %w (after %d attempts, last: %w)", method, name, err, attempt, re.err)
		}
	}
}

// retryable marks an attempt's error as worth another attempt.
type retryable struct{ err error }

func (r *retryable) Error() string { return r.err.Error() }
func (r *retryable) Unwrap() error { return r.err }

// attempt makes one request, holding a slot of the semaphore throughout.
func (h *HTTP) attempt(ctx context.Context, method, target string, id chunk.ID) ([]byte, error) {
	select {
	case h.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-h.sem }()

	actx, cancel := ctx, context.CancelFunc(func() {})
	if h.timeout > 0 {
		actx, cancel = context.WithTimeout(ctx, h.timeout)
	}
	defer cancel()
	timedOut := func(err error) error {
		if actx.Err() != nil && ctx.Err() == nil {
			err = fmt.Errorf("attempt timed out after %v: %w", h.timeout, err)
		}
		return &retryable{err}
	}

	req, err := http.NewRequestWithContext(actx, method, target, nil)
	if err != nil {
		return nil, err
	}
	req.Header = h.header.Clone()
	h.requests.Add(1)
	resp, err := h.client.Do(req)
	if err != nil {
		var cert *tls.CertificateVerificationError
		if errors.As(err, &cert) {
			return nil, err // another attempt will not fix a certificate
		}
		return nil, timedOut(err)
	}
	defer resp.Body.Close()

	switch code := resp.StatusCode; {
	case code == http.StatusOK:
	case code == http.StatusNotFound || code == http.StatusGone:
		drain(resp.Body)
		return nil, &NotFoundError{ID: id, Store: h.name}
	case code >= 500 || code == http.StatusTooManyRequests || code == http.StatusRequestTimeout:
		drain(resp.Body)
		return nil, &retryable{&StatusError{StatusCode: code, Status: resp.Status}}
	default:
		drain(resp.Body)
		return nil, &StatusError{StatusCode: code, Status: resp.Status}
	}
	if method == http.MethodHead {
		return nil, nil
	}
	body, err := readBody(resp.Body, resp.ContentLength, h.maxSize)
	h.received.Add(int64(len(body)))
	switch {
	case errors.Is(err, ErrTooLarge):
		return nil, err
	case err != nil:
		return nil, timedOut(fmt.Errorf("read body: %w", err))
	}
	return body, nil
}

// wait sleeps before retry number attempt (from 1), or until ctx is done.
func (h *HTTP) wait(ctx context.Context, attempt int) error {
	d := backoff(h.backoffBase, h.backoffMax, attempt)
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// backoff draws the wait before retry number attempt (from 1): uniform in
// [0, min(max, base·2^(attempt-1))], "full jitter".
func backoff(base, max time.Duration, attempt int) time.Duration {
	limit := base
	for i := 1; i < attempt && limit < max; i++ {
		if limit > max/2 {
			limit = max
			break
		}
		limit *= 2
	}
	limit = min(limit, max)
	if limit <= 0 {
		return 0
	}
	// rand.N uses the runtime's per-goroutine generator: safe for
	// concurrent use and no shared state of ours.
	if limit == math.MaxInt64 {
		return rand.N(limit)
	}
	return rand.N(limit + 1)
}

// drain reads a little of an unwanted body so the connection can be reused.
func drain(r io.Reader) {
	io.Copy(io.Discard, io.LimitReader(r, 4<<10))
}

// readBody reads r to EOF into a buffer sized from the size hint (-1 when
// unknown). A body over limit bytes is an error wrapping ErrTooLarge. The
// bytes read are returned even on error, for accounting.
func readBody(r io.Reader, size, limit int64) ([]byte, error) {
	if size > limit {
		return nil, fmt.Errorf("body of %d bytes: %w (%d bytes)", size, ErrTooLarge, limit)
	}
	// One byte past the size lets the final read see EOF without growing.
	c := size + 1
	if size < 0 {
		c = min(64<<10, limit+1)
	}
	buf := make([]byte, 0, c)
	lr := io.LimitReader(r, limit+1)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := lr.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > limit {
			return buf, fmt.Errorf("body: %w (%d bytes)", ErrTooLarge, limit)
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}
