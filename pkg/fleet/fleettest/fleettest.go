// Package fleettest is a fake fleet server for the tests of the device
// side (pkg/fleet and its users): it answers polls with a fixed answer
// and records the status and inventory reports it is sent, decoded as
// the real server decodes them. Tests that need the real server's behaviour (ETags,
// rollouts) use pkg/server/servertest instead.
package fleettest

import (
	"encoding/json"
	"net/http"
	"slices"
	"sync"

	"github.com/lifeboat-update/lifeboat/pkg/api"
)

// Server is an http.Handler serving the device API's poll, status
// report and inventory. Its zero value answers polls with no release, every 60 s.
type Server struct {
	// Token, if set, is the only bearer token accepted (others: 401).
	Token string

	mu      sync.Mutex
	poll    *api.Poll
	fail    bool
	reports []api.Status
	inv     *api.Inventory
}

// SetPoll sets the poll's answer.
func (s *Server) SetPoll(p api.Poll) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.poll = &p
}

// SetFail makes every request fail with a 500, or not.
func (s *Server) SetFail(fail bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = fail
}

// Reports returns the status reports received, in order.
func (s *Server) Reports() []api.Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.reports)
}

// Inventory returns the last inventory received, or nil.
func (s *Server) Inventory() *api.Inventory {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inv
}

// Phases returns the phases reported, each run of the same phase once.
func (s *Server) Phases() []api.Phase {
	var out []api.Phase
	for _, st := range s.Reports() {
		if len(out) == 0 || out[len(out)-1] != st.Phase {
			out = append(out, st.Phase)
		}
	}
	return out
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(api.Error{Error: msg, Code: code})
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.fail:
		writeError(w, http.StatusInternalServerError, api.CodeInternal, "the fake fails")
	case s.Token != "" && r.Header.Get("Authorization") != "Bearer "+s.Token:
		writeError(w, http.StatusUnauthorized, api.CodeUnauthorized, "unknown token")
	case r.Method == http.MethodGet && r.URL.Path == "/api/v1/device/poll":
		p := api.Poll{IntervalSeconds: 60}
		if s.poll != nil {
			p = *s.poll
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(p)
	case r.Method == http.MethodPost && r.URL.Path == "/api/v1/device/status":
		var st api.Status
		if err := api.Decode(r.Body, api.MaxBodySize, &st); err != nil {
			writeError(w, http.StatusBadRequest, api.CodeBadRequest, err.Error())
			return
		}
		s.reports = append(s.reports, st)
		w.WriteHeader(http.StatusNoContent)
	case r.Method == http.MethodPut && r.URL.Path == "/api/v1/device/inventory":
		var inv api.Inventory
		if err := api.Decode(r.Body, api.MaxBodySize, &inv); err != nil {
			writeError(w, http.StatusBadRequest, api.CodeBadRequest, err.Error())
			return
		}
		s.inv = &inv
		w.WriteHeader(http.StatusNoContent)
	default:
		writeError(w, http.StatusNotFound, api.CodeNotFound, "no endpoint "+r.Method+" "+r.URL.Path)
	}
}
