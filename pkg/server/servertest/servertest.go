// Package servertest runs a fleet server (pkg/server) on loopback, as
// `lifeboat-server serve --root` runs it with its embedded defaults
// (SQLite in a directory, the release storage beside it), with an admin
// token, and makes the operator's calls a test or the demo needs over
// HTTP: publish a repository by path, register a device, create and
// start a rollout, read a rollout, a device, its timeline, and a page of
// the web UI signed in with the token.
package servertest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/lifeboat-update/lifeboat/pkg/api"
	"github.com/lifeboat-update/lifeboat/pkg/identity"
	"github.com/lifeboat-update/lifeboat/pkg/release"
	"github.com/lifeboat-update/lifeboat/pkg/server"
	"github.com/lifeboat-update/lifeboat/pkg/server/repository"
	"github.com/lifeboat-update/lifeboat/pkg/server/store"
)

// Options say how to run the server.
type Options struct {
	// Dir receives the database (fleet.db) and the release storage
	// (data/).
	Dir string
	// Root is the repositories' trusted root.json.
	Root []byte
	// Listen is the address to listen on [127.0.0.1:0].
	Listen string
	// Server are more options of server.New (a clock, a poll interval).
	Server []server.Option
}

// Server is a fleet server on loopback.
type Server struct {
	// URL is where the host reaches it: http://127.0.0.1:PORT.
	URL string
	// Port is the port it listens on.
	Port int
	// AdminToken is an admin operator's token.
	AdminToken string

	st         *store.DB
	srv        *http.Server
	hc         *http.Client
	chunkBytes atomic.Int64
}

// Start runs a server until Close.
func Start(ctx context.Context, opt Options) (*Server, error) {
	if opt.Listen == "" {
		opt.Listen = "127.0.0.1:0"
	}
	repos, err := repository.Open(filepath.Join(opt.Dir, "data"), opt.Root, time.Now)
	if err != nil {
		return nil, err
	}
	st, err := store.Open(ctx, filepath.Join(opt.Dir, "fleet.db"))
	if err != nil {
		return nil, err
	}
	tok, sha, err := server.NewToken(rand.Reader)
	if err != nil {
		st.Close()
		return nil, err
	}
	now := time.Now().UTC()
	ev := store.Event{At: now, Actor: "cli", Action: "token.create", Target: "admin", Detail: `{"role":"admin"}`}
	if err := st.CreateOperatorToken(ctx, store.OperatorToken{TokenSHA256: sha, Name: "admin", Role: store.Admin, Created: now}, ev); err != nil {
		st.Close()
		return nil, err
	}
	ln, err := net.Listen("tcp", opt.Listen)
	if err != nil {
		st.Close()
		return nil, err
	}
	s := &Server{AdminToken: tok, st: st, Port: ln.Addr().(*net.TCPAddr).Port}
	s.URL = fmt.Sprintf("http://%s", ln.Addr())
	h := server.New(st, append([]server.Option{server.WithRepositories(repos, "")}, opt.Server...)...)
	s.srv = &http.Server{Handler: s.count(h), ReadHeaderTimeout: 10 * time.Second}
	s.hc = &http.Client{Timeout: time.Minute}
	go s.srv.Serve(ln)
	return s, nil
}

// count counts the bytes of chunks the handler sends (/repo/NAME/store/).
func (s *Server) count(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rest, ok := strings.CutPrefix(r.URL.Path, "/repo/"); ok {
			if _, p, _ := strings.Cut(rest, "/"); strings.HasPrefix(p, release.StoreDir+"/") {
				w = &counter{ResponseWriter: w, n: &s.chunkBytes}
			}
		}
		h.ServeHTTP(w, r)
	})
}

type counter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (c *counter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// ChunkBytes are the bytes of chunk files the server sent so far.
func (s *Server) ChunkBytes() int64 { return s.chunkBytes.Load() }

// ResetChunkBytes starts counting again from 0.
func (s *Server) ResetChunkBytes() { s.chunkBytes.Store(0) }

// Close stops the server and closes its database.
func (s *Server) Close() error {
	return errors.Join(s.srv.Close(), s.st.Close())
}

// call sends an operator's request with the admin token and decodes a
// 2xx answer into out (nil: none).
func (s *Server) call(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.URL+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+s.AdminToken)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(b))
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(b, out)
}

// Publish publishes the repository in dir, on the server's disk, as name.
func (s *Server) Publish(ctx context.Context, name, dir string) error {
	return s.call(ctx, http.MethodPost, "/api/v1/releases", api.Publish{Repository: name, Path: dir}, nil)
}

// Register registers a device as the manufacturing line's flash mode
// printed it.
func (s *Server) Register(ctx context.Context, reg identity.Registration) error {
	in := api.Registration{DeviceID: reg.DeviceID, Board: reg.Board, Version: reg.Version, TokenSHA256: reg.TokenSHA256}
	return s.call(ctx, http.MethodPost, "/api/v1/devices", in, nil)
}

// StartRollout creates a rollout of board's version over the devices the
// filter matches, in one wave, and starts it.
func (s *Server) StartRollout(ctx context.Context, board, version, filter string) (*api.Rollout, error) {
	var r api.Rollout
	in := api.CreateRollout{Board: board, Version: version, Filter: filter, Waves: []string{"100%"}, SuccessThreshold: 1}
	if err := s.call(ctx, http.MethodPost, "/api/v1/rollouts", in, &r); err != nil {
		return nil, err
	}
	if err := s.call(ctx, http.MethodPost, fmt.Sprintf("/api/v1/rollouts/%d/start", r.ID), nil, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// Rollout reads a rollout with its progress.
func (s *Server) Rollout(ctx context.Context, id int64) (*api.Rollout, error) {
	var r api.Rollout
	return &r, s.call(ctx, http.MethodGet, fmt.Sprintf("/api/v1/rollouts/%d", id), nil, &r)
}

// Device reads a device.
func (s *Server) Device(ctx context.Context, id string) (*api.Device, error) {
	var d api.Device
	return &d, s.call(ctx, http.MethodGet, "/api/v1/devices/"+url.PathEscape(id), nil, &d)
}

// Timeline reads a device's status reports after report after, oldest
// first.
func (s *Server) Timeline(ctx context.Context, id string, after int64) ([]api.TimelineEntry, error) {
	var tl api.Timeline
	err := s.call(ctx, http.MethodGet, fmt.Sprintf("/api/v1/devices/%s/timeline?after=%d&limit=1000", url.PathEscape(id), after), nil, &tl)
	return tl.Reports, err
}

// UIPage signs in to the web UI with the admin token, as a person would
// with the form, and returns the HTML of the page at path (under /ui/).
func (s *Server) UIPage(ctx context.Context, path string) (string, error) {
	jar, err := cookiejar.New(nil)
	if err != nil {
		return "", err
	}
	hc := &http.Client{Jar: jar, Timeout: time.Minute}
	form := url.Values{"token": {s.AdminToken}, "next": {path}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+"/ui/signin", strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := hc.Do(req) // follows the redirect to path
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != path {
		return "", fmt.Errorf("sign in to the UI and open %s: %s at %s", path, resp.Status, resp.Request.URL.Path)
	}
	return string(b), nil
}

// Revoke revokes a device's token.
func (s *Server) Revoke(ctx context.Context, id string) error {
	return s.call(ctx, http.MethodPost, "/api/v1/devices/"+url.PathEscape(id)+"/revoke", nil, nil)
}
