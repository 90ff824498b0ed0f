package server

import (
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/lifeboat-update/lifeboat/pkg/api"
	"github.com/lifeboat-update/lifeboat/pkg/server/ddi"
	"github.com/lifeboat-update/lifeboat/pkg/server/store"
)

// WithArtifacts keeps the files operators attach to releases for hawkBit
// DDI clients in files, and offers them to those clients.
func WithArtifacts(files *ddi.Files) Option { return func(s *Server) { s.artifacts = files } }

// ddiPrefix is where the DDI endpoints are, under the one tenant.
const ddiPrefix = "/" + ddi.Tenant + "/controller/v1/"

// routeDDI mounts the hawkBit DDI endpoints and the artifact upload.
func (s *Server) routeDDI() {
	s.mux.Handle("POST /api/v1/releases/{board}/{version}/artifacts", s.operator(store.Operator, "attach artifacts", s.addArtifact))
	s.mux.Handle("GET "+ddiPrefix+"{controller}", s.controller(s.ddiRoot))
	s.mux.Handle("GET "+ddiPrefix+"{controller}/deploymentBase/{action}", s.controller(s.ddiDeployment))
	s.mux.Handle("POST "+ddiPrefix+"{controller}/deploymentBase/{action}/feedback", s.controller(s.ddiFeedback))
	s.mux.Handle("GET "+ddiPrefix+"{controller}/deploymentBase/{action}/artifacts/{name}", s.controller(s.ddiDownload))
	s.mux.Handle("PUT "+ddiPrefix+"{controller}/configData", s.controller(s.ddiConfigData))
}

// controller authenticates a DDI client by its target token (the device's
// token, as the device API takes it) and checks that the path's
// controller ID is that device's: another device's ID is a 403 and reads
// nothing.
func (s *Server) controller(h func(http.ResponseWriter, *http.Request, store.Device) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := func() error {
			sha, err := tokenHash(r, "TargetToken", "target")
			if err != nil {
				return err
			}
			d, err := s.deviceByToken(r, sha)
			if err != nil {
				return err
			}
			if id := r.PathValue("controller"); id != d.ID {
				return errorf(http.StatusForbidden, api.CodeForbidden, "controller %q: the target token is another controller's", clipID(id))
			}
			if _, err := query(r); err != nil {
				return err
			}
			return h(w, r, d)
		}()
		if err != nil {
			s.respond(w, r, err)
		}
	})
}

func clipID(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// action is the deployment a DDI client is to install: its rollout's
// assignment and the release's artifacts. It is nil when the device has
// no assignment, runs it already, or the release has no artifact.
func (s *Server) action(r *http.Request, d store.Device) (*store.Assignment, []store.Artifact, error) {
	if s.artifacts == nil {
		return nil, nil, nil
	}
	a, err := s.store.Assignment(r.Context(), d.ID)
	if err != nil || a == nil || a.Version == d.InstalledVersion {
		return nil, nil, err
	}
	as, err := s.store.Artifacts(r.Context(), a.Board, a.Version)
	if err != nil || len(as) == 0 {
		return nil, nil, err
	}
	return a, as, nil
}

// actionOf returns the action the path names, which must be the device's
// current one; the rollout's ID is the action's.
func (s *Server) actionOf(r *http.Request, d store.Device) (*store.Assignment, []store.Artifact, error) {
	raw := r.PathValue("action")
	id, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || id <= 0 {
		return nil, nil, errorf(http.StatusBadRequest, api.CodeBadRequest, "action ID %q: want a positive integer", clipID(raw))
	}
	a, as, err := s.action(r, d)
	if err != nil {
		return nil, nil, err
	}
	if a == nil || a.RolloutID != id {
		return nil, nil, errorf(http.StatusNotFound, api.CodeNotFound, "controller %s has no action %d", d.ID, id)
	}
	return a, as, nil
}

// ddiBase is the URL of this server's DDI endpoints for a device, as the
// client reached it.
func ddiBase(r *http.Request, id string) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + ddiPrefix + id
}

// ddiRoot: GET /DEFAULT/controller/v1/{controller}, the poll. It records
// the device as seen, and links the current action and, while the server
// has no attributes of the device, configData.
func (s *Server) ddiRoot(w http.ResponseWriter, r *http.Request, d store.Device) error {
	if err := s.store.Seen(r.Context(), d.ID, s.now().UTC()); err != nil {
		return storeError(err)
	}
	root := ddi.Root{Config: ddi.Config{Polling: ddi.Polling{Sleep: ddi.Sleep(time.Duration(s.pollInterval(d.ID)) * time.Second)}}, Links: map[string]ddi.Link{}}
	base := ddiBase(r, d.ID)
	a, _, err := s.action(r, d)
	if err != nil {
		return err
	}
	if a != nil {
		root.Links["deploymentBase"] = ddi.Link{Href: fmt.Sprintf("%s/deploymentBase/%d", base, a.RolloutID)}
	}
	full, err := s.store.Device(r.Context(), d.ID)
	if err != nil {
		return storeError(err)
	}
	if len(full.Attributes) == 0 {
		root.Links["configData"] = ddi.Link{Href: base + "/configData"}
	}
	w.Header().Set("Cache-Control", "private, no-cache")
	writeJSON(w, http.StatusOK, root)
	return nil
}

// ddiDeployment: GET …/deploymentBase/{action}, the release as one chunk
// of its artifacts, to download and install at once.
func (s *Server) ddiDeployment(w http.ResponseWriter, r *http.Request, d store.Device) error {
	a, as, err := s.actionOf(r, d)
	if err != nil {
		return err
	}
	base := fmt.Sprintf("%s/deploymentBase/%d", ddiBase(r, d.ID), a.RolloutID)
	c := ddi.Chunk{Part: "os", Version: a.Version, Name: a.Board}
	for _, art := range as {
		c.Artifacts = append(c.Artifacts, ddi.Artifact{
			Filename: art.Name,
			Hashes:   ddi.Hashes{SHA1: art.SHA1, MD5: art.MD5, SHA256: art.SHA256},
			Size:     art.Size,
			Links:    map[string]ddi.Link{"download-http": {Href: base + "/artifacts/" + art.Name}},
		})
	}
	writeJSON(w, http.StatusOK, ddi.DeploymentBase{ID: strconv.FormatInt(a.RolloutID, 10),
		Deployment: ddi.Deployment{Download: "forced", Update: "forced", Chunks: []ddi.Chunk{c}}})
	return nil
}

// ddiFeedback: POST …/deploymentBase/{action}/feedback, a ddi.Feedback,
// stored as the status report it maps to: it joins the timeline and
// moves the device in its rollout as a native report does.
func (s *Server) ddiFeedback(w http.ResponseWriter, r *http.Request, d store.Device) error {
	var f ddi.Feedback
	if err := decode(w, r, &f); err != nil {
		return err
	}
	a, _, err := s.actionOf(r, d)
	if err != nil {
		return err
	}
	if err := s.store.ReportStatus(r.Context(), d.ID, f.ApiStatus(d.InstalledVersion, a.Version), s.now().UTC()); err != nil {
		return storeError(err)
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

// ddiDownload: GET …/deploymentBase/{action}/artifacts/{name}, with HEAD
// and byte ranges.
func (s *Server) ddiDownload(w http.ResponseWriter, r *http.Request, d store.Device) error {
	_, as, err := s.actionOf(r, d)
	if err != nil {
		return err
	}
	name := r.PathValue("name")
	for _, art := range as {
		if art.Name != name {
			continue
		}
		f, err := s.artifacts.Open(art.SHA256)
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("artifact %s of %s %s: its file is gone: %w", name, art.Board, art.Version, err)
		}
		if err != nil {
			return err
		}
		defer f.Close()
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("ETag", `"`+art.SHA256+`"`)
		http.ServeContent(w, r, "", art.Created, f)
		return nil
	}
	return errorf(http.StatusNotFound, api.CodeNotFound, "action %s has no artifact %q", r.PathValue("action"), clipID(name))
}

// ddiConfigData: PUT …/configData, a ddi.ConfigData: the device's
// attributes, as an inventory report.
func (s *Server) ddiConfigData(w http.ResponseWriter, r *http.Request, d store.Device) error {
	var c ddi.ConfigData
	if err := decode(w, r, &c); err != nil {
		return err
	}
	full, err := s.store.Device(r.Context(), d.ID)
	if err != nil {
		return storeError(err)
	}
	inv := api.Inventory{Attributes: c.Apply(full.Attributes)}
	if err := inv.Validate(); err != nil {
		return badRequest(err)
	}
	if err := s.store.ReportInventory(r.Context(), d.ID, inv.Attributes, s.now().UTC()); err != nil {
		return storeError(err)
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

// addArtifact: POST /api/v1/releases/{board}/{version}/artifacts?name=NAME
// with the file as an application/octet-stream body, at most
// --max-upload bytes.
func (s *Server) addArtifact(w http.ResponseWriter, r *http.Request, op store.OperatorToken) error {
	q, err := query(r, "name")
	if err != nil {
		return err
	}
	board, version, name := r.PathValue("board"), r.PathValue("version"), q["name"]
	if !validArtifactName(name) {
		return errorf(http.StatusBadRequest, api.CodeBadRequest, "artifact name %q: want 1 to 128 letters, digits, '.', '_' or '-', not starting with '.'", clipID(name))
	}
	if s.artifacts == nil {
		return errorf(http.StatusConflict, api.CodeConflict, "the server keeps no artifacts: start it with --root and --data")
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/octet-stream" {
		return errorf(http.StatusUnsupportedMediaType, api.CodeUnsupportedType, "Content-Type %q: want application/octet-stream", ct)
	}
	// Refuse what the store would refuse before the bytes are stored.
	if err := s.canAttach(r, board, version, name); err != nil {
		return err
	}
	tooLarge := errorf(http.StatusRequestEntityTooLarge, api.CodeTooLarge, "artifact over %d bytes", s.maxUpload)
	if r.ContentLength > s.maxUpload {
		return tooLarge
	}
	sums, err := s.artifacts.Put(r.Body, s.maxUpload)
	if errors.Is(err, ddi.ErrTooLarge) {
		return tooLarge
	}
	if err != nil {
		return err
	}
	now := s.now().UTC()
	a := store.Artifact{Board: board, Version: version, Name: name, Size: sums.Size, SHA256: sums.SHA256, SHA1: sums.SHA1, MD5: sums.MD5, Created: now}
	ev := store.Event{At: now, Actor: "operator:" + op.Name, Action: "release.artifact", Target: board + "/" + version,
		Detail: fmt.Sprintf(`{"name": %q, "size": %d, "sha256": %q}`, name, sums.Size, sums.SHA256)}
	if err := s.store.AddArtifact(r.Context(), a, ev); err != nil {
		// The file stays: another release may share it, and a later
		// attach of the same bytes reuses it.
		return storeError(err)
	}
	writeJSON(w, http.StatusCreated, api.Artifact{Board: board, Version: version, Name: name, Size: sums.Size, SHA256: sums.SHA256, SHA1: sums.SHA1, MD5: sums.MD5})
	return nil
}

// canAttach refuses an attach to a release that is not there (404) or
// of a name it has (409), as AddArtifact would, before the upload is read.
func (s *Server) canAttach(r *http.Request, board, version, name string) error {
	rs, err := s.store.Releases(r.Context())
	if err != nil {
		return err
	}
	for _, rel := range rs {
		if rel.Board != board || rel.Version != version {
			continue
		}
		as, err := s.store.Artifacts(r.Context(), board, version)
		if err != nil {
			return err
		}
		for _, a := range as {
			if a.Name == name {
				return storeError(fmt.Errorf("release %s %s: artifact %s: %w", board, version, name, store.ErrExists))
			}
		}
		return nil
	}
	return storeError(fmt.Errorf("release %s %s: %w", board, version, store.ErrNotFound))
}

func validArtifactName(n string) bool {
	if n == "" || len(n) > 128 || n[0] == '.' {
		return false
	}
	return strings.Trim(n, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == ""
}
