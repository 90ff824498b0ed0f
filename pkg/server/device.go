package server

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"hash/fnv"
	"net/http"
	"strings"

	"github.com/lifeboat-update/lifeboat/pkg/api"
	"github.com/lifeboat-update/lifeboat/pkg/server/store"
)

// pollInterval is the interval device id is told to poll at: the base
// interval plus a share of the jitter window fixed by the device's ID. The
// share is the same at every poll, so that the answer, and its ETag, stay
// the same while nothing changes; across the fleet it spreads the polls.
func (s *Server) pollInterval(id string) int {
	base := int(s.interval.Seconds())
	window := int(s.jitter.Seconds())
	if window <= 0 {
		return max(base, 1)
	}
	h := fnv.New32a()
	h.Write([]byte(id))
	return max(base+int(h.Sum32()%uint32(window+1)), 1)
}

// etagMatches says whether an If-None-Match header names etag.
func etagMatches(header, etag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == "*" || t == etag {
			return true
		}
	}
	return false
}

// repositoryURL is where devices read repository name: under repoURL, or
// this server's /repo/ as the device reached it.
func (s *Server) repositoryURL(r *http.Request, name string) string {
	if s.repoURL != "" {
		return s.repoURL + "/" + name + "/"
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + "/repo/" + name + "/"
}

// poll: GET /api/v1/device/poll. The answer carries an ETag over its
// body; a device that sends it back in If-None-Match gets 304 and no body
// while its assignment and interval are unchanged.
func (s *Server) poll(w http.ResponseWriter, r *http.Request, d store.Device) error {
	if _, err := query(r); err != nil {
		return err
	}
	if err := s.store.Seen(r.Context(), d.ID, s.now().UTC()); err != nil {
		return storeError(err)
	}
	p := api.Poll{IntervalSeconds: s.pollInterval(d.ID)}
	a, err := s.store.Assignment(r.Context(), d.ID)
	if err != nil {
		return err
	}
	if a != nil {
		p.Release = &api.Release{Version: a.Version, RepositoryURL: s.repositoryURL(r, a.Repository)}
	}
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(b)
	etag := `"` + hex.EncodeToString(sum[:16]) + `"`
	h := w.Header()
	h.Set("ETag", etag)
	h.Set("Cache-Control", "private, no-cache")
	h.Set("Vary", "Authorization")
	if inm := r.Header.Get("If-None-Match"); inm != "" && etagMatches(inm, etag) {
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	h.Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	w.Write(append(b, '\n'))
	return nil
}

// reportStatus: POST /api/v1/device/status, an api.Status.
func (s *Server) reportStatus(w http.ResponseWriter, r *http.Request, d store.Device) error {
	var st api.Status
	if err := decode(w, r, &st); err != nil {
		return err
	}
	if err := s.store.ReportStatus(r.Context(), d.ID, st, s.now().UTC()); err != nil {
		return storeError(err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// reportInventory: PUT /api/v1/device/inventory, an api.Inventory that
// replaces the last.
func (s *Server) reportInventory(w http.ResponseWriter, r *http.Request, d store.Device) error {
	var inv api.Inventory
	if err := decode(w, r, &inv); err != nil {
		return err
	}
	if err := s.store.ReportInventory(r.Context(), d.ID, inv.Attributes, s.now().UTC()); err != nil {
		return storeError(err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
