package release

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// ErrNotFound is wrapped by a Fetcher's error for a file the repository
// does not have.
var ErrNotFound = errors.New("not found")

// Fetcher reads files of a repository: a web server, a CDN, a USB stick.
// Every read is capped: a file longer than max is refused as endless data.
type Fetcher interface {
	Fetch(ctx context.Context, name string, max int64) ([]byte, error)
}

// readCapped reads r up to max bytes and refuses more.
func readCapped(r io.Reader, name string, max int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if int64(len(b)) > max {
		return nil, refuse(ErrEndlessData, "%s is longer than the %d bytes allowed", name, max)
	}
	return b, nil
}

// checkName refuses repository names that could leave the repository.
func checkName(name string) error {
	if !fs.ValidPath(name) || strings.Contains(name, "\\") {
		return fmt.Errorf("repository path %q is not a plain relative path", name)
	}
	return nil
}

// DirFetcher reads a repository in a local directory: a USB bundle, or the
// release side's own repository.
type DirFetcher struct{ Dir string }

// Fetch reads Dir/name, at most max bytes.
func (d DirFetcher) Fetch(ctx context.Context, name string, max int64) ([]byte, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, err := os.Open(filepath.Join(d.Dir, filepath.FromSlash(name)))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", name, ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readCapped(f, name, max)
}

// HTTPFetcher reads a repository over HTTP(S).
type HTTPFetcher struct {
	Base   *url.URL
	Client *http.Client
	Header http.Header // sent with every request: a device token, say
}

// NewHTTPFetcher returns a fetcher for the repository at base.
func NewHTTPFetcher(base string, client *http.Client) (*HTTPFetcher, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("repository %q: %w", base, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("repository %q: want an http or https URL", base)
	}
	if client == nil {
		client = &http.Client{}
	}
	return &HTTPFetcher{Base: u, Client: client}, nil
}

// Fetch GETs base/name, at most max bytes.
func (h *HTTPFetcher) Fetch(ctx context.Context, name string, max int64) ([]byte, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	u := *h.Base
	u.Path = path.Join(u.Path, name)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	for k, v := range h.Header {
		req.Header[k] = v
	}
	resp, err := h.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u.Redacted(), err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return nil, fmt.Errorf("GET %s: %w", u.Redacted(), ErrNotFound)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("GET %s: %s", u.Redacted(), resp.Status)
	case resp.ContentLength > max:
		return nil, refuse(ErrEndlessData, "%s announces %d bytes, %d allowed", name, resp.ContentLength, max)
	}
	return readCapped(resp.Body, name, max)
}
