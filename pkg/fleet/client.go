// Package fleet is the device side of the fleet server's API (pkg/api,
// docs/server.md): a Client polls for the release the server assigns the
// device and reports its status and inventory, with the device's bearer
// token; a Reporter sends the status of an update as it goes, throttled,
// logging what fails rather than failing the update. The recovery ramdisk
// (uinit), the demo OS and the in-system CLI share them.
//
// The server is trusted for what to install, never for content: a device
// installs the release it names only if the repository's signed metadata
// holds it (release.Client.PlanVersion).
//
// TLS, and client certificates, are the *http.Client's business: the
// caller configures its Transport.
package fleet

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/lifeboat-update/lifeboat/pkg/api"
)

// The device API's paths, relative to the server's URL.
const (
	PollPath      = "api/v1/device/poll"
	StatusPath    = "api/v1/device/status"
	InventoryPath = "api/v1/device/inventory"
)

// Defaults of a Client.
const (
	DefaultRetries = 3
	DefaultBackoff = 500 * time.Millisecond
	DefaultTimeout = 30 * time.Second
)

// maxErrorBody bounds the error body a Client reads back.
const maxErrorBody = 4 << 10

// ServerError is the server's refusal: its HTTP status and the api.Error
// body it sent.
type ServerError struct {
	Op         string // what was asked: "poll", "status report", "inventory report"
	StatusCode int
	Code       string // api.Code*, when the body said
	Message    string // the body's error, or its text when it was not an api.Error
}

func (e *ServerError) Error() string {
	s := fmt.Sprintf("fleet server: %s: %d %s", e.Op, e.StatusCode, http.StatusText(e.StatusCode))
	if e.Code != "" {
		s += " (" + e.Code + ")"
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Client talks to one fleet server as one device. Its methods may be
// called from several goroutines.
type Client struct {
	base    *url.URL
	token   string
	hc      *http.Client
	retries int
	backoff time.Duration

	mu   sync.Mutex
	etag string    // of the last poll answer
	last *api.Poll // the last poll answer
}

// Option sets an optional setting of New.
type Option func(*Client)

// WithRetries makes a request that fails on the network or with a 5xx be
// sent again up to n more times, waiting first, then twice as long each
// time [DefaultRetries, DefaultBackoff]. A 4xx is never retried.
func WithRetries(n int, first time.Duration) Option {
	return func(c *Client) { c.retries, c.backoff = n, first }
}

// New returns a client of the fleet server at server (an http or https
// URL; the API's paths are under it) presenting token, over hc (nil: a
// client with DefaultTimeout per request).
func New(server, token string, hc *http.Client, opts ...Option) (*Client, error) {
	if err := api.CheckURL("fleet server", server); err != nil {
		return nil, err
	}
	u, err := url.Parse(server)
	if err != nil {
		return nil, err
	}
	if token == "" {
		return nil, errors.New("fleet server: no device token")
	}
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
	}
	if hc == nil {
		hc = &http.Client{Timeout: DefaultTimeout}
	}
	c := &Client{base: u, token: token, hc: hc, retries: DefaultRetries, backoff: DefaultBackoff}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// URL is the server's URL.
func (c *Client) URL() string { return c.base.String() }

// Poll asks the server for the release assigned to the device. It sends
// the last answer's ETag; on 304 it returns that answer again with fresh
// false. The answer is decoded strictly (api.Decode, at most
// api.MaxBodySize) and validated (api.Poll.Validate).
func (c *Client) Poll(ctx context.Context) (p *api.Poll, fresh bool, err error) {
	c.mu.Lock()
	etag, last := c.etag, c.last
	c.mu.Unlock()
	hdr := http.Header{}
	if etag != "" && last != nil {
		hdr.Set("If-None-Match", etag)
	}
	var poll api.Poll
	resp, err := c.do(ctx, "poll", http.MethodGet, PollPath, hdr, nil, func(resp *http.Response) error {
		if resp.StatusCode == http.StatusNotModified {
			return nil
		}
		return api.Decode(resp.Body, api.MaxBodySize, &poll)
	})
	if err != nil {
		return nil, false, err
	}
	if resp.StatusCode == http.StatusNotModified {
		if last == nil {
			return nil, false, errors.New("fleet server: poll: 304 Not Modified to a poll that sent no ETag")
		}
		return last, false, nil
	}
	c.mu.Lock()
	c.etag, c.last = resp.Header.Get("ETag"), &poll
	c.mu.Unlock()
	return &poll, true, nil
}

// ReportStatus sends a status report.
func (c *Client) ReportStatus(ctx context.Context, st api.Status) error {
	if err := st.Validate(); err != nil {
		return fmt.Errorf("status report: %w", err)
	}
	return c.send(ctx, "status report", http.MethodPost, StatusPath, st)
}

// ReportInventory replaces the device's inventory attributes.
func (c *Client) ReportInventory(ctx context.Context, inv api.Inventory) error {
	if err := inv.Validate(); err != nil {
		return fmt.Errorf("inventory report: %w", err)
	}
	return c.send(ctx, "inventory report", http.MethodPut, InventoryPath, inv)
}

func (c *Client) send(ctx context.Context, op, method, path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	hdr := http.Header{"Content-Type": {"application/json"}}
	_, err = c.do(ctx, op, method, path, hdr, b, nil)
	return err
}

// do sends a request, again after a network error or a 5xx, and hands a
// 2xx or 304 answer to read (nil: discard the body) before closing it.
func (c *Client) do(ctx context.Context, op, method, path string, hdr http.Header, body []byte, read func(*http.Response) error) (*http.Response, error) {
	u := c.base.JoinPath(path)
	wait := c.backoff
	for attempt := 0; ; attempt++ {
		resp, err := c.once(ctx, method, u.String(), hdr, body)
		if err == nil && resp.StatusCode < 500 {
			defer resp.Body.Close()
			if resp.StatusCode/100 != 2 && resp.StatusCode != http.StatusNotModified {
				return nil, serverError(op, resp)
			}
			if read == nil {
				_, err = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
				return resp, nil
			}
			if err := read(resp); err != nil {
				return nil, fmt.Errorf("fleet server: %s: %w", op, err)
			}
			return resp, nil
		}
		if err == nil {
			err = serverError(op, resp)
			resp.Body.Close()
		} else {
			err = fmt.Errorf("fleet server: %s: %w", op, err)
		}
		if ctx.Err() != nil || attempt >= c.retries {
			if attempt > 0 {
				err = fmt.Errorf("%w (after %d attempts)", err, attempt+1)
			}
			return nil, err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("%w (then %w)", err, ctx.Err())
		case <-t.C:
		}
		wait *= 2
	}
}

func (c *Client) once(ctx context.Context, method, u string, hdr http.Header, body []byte) (*http.Response, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, r)
	if err != nil {
		return nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	return c.hc.Do(req)
}

// serverError reads a refusal's body: an api.Error, or at least its text.
func serverError(op string, resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	e := &ServerError{Op: op, StatusCode: resp.StatusCode}
	var body api.Error
	if json.Unmarshal(b, &body) == nil && body.Error != "" {
		e.Code, e.Message = body.Code, body.Error
	} else {
		e.Message = strings.TrimSpace(string(b))
	}
	return e
}
