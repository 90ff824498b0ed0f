package server

import (
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"regexp"
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

// WithDDITenant answers hawkBit DDI clients under tenant (CheckDDITenant)
// rather than ddi.DefaultTenant. A request for another tenant is a 404
// naming the one served.
func WithDDITenant(tenant string) Option { return func(s *Server) { s.ddiTenant = tenant } }

// WithDDIGatewayToken accepts Authorization: GatewayToken TOKEN on the DDI
// endpoints, from a gateway speaking for every controller of the tenant:
// the token whose SHA-256 (HashToken) is sha. The server keeps only sha.
func WithDDIGatewayToken(sha string) Option { return func(s *Server) { s.ddiGateway = sha } }

var ddiTenantRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// CheckDDITenant says what is wrong with a name as the DDI tenant, if
// anything: it must be 1 to 64 letters, digits, '_' or '-', and not the
// first segment of another of the server's paths.
func CheckDDITenant(name string) error {
	if !ddiTenantRE.MatchString(name) {
		return fmt.Errorf("DDI tenant %q: want 1 to 64 letters, digits, '_' or '-'", clipID(name))
	}
	if name == "api" || name == "ui" || name == "repo" {
		return fmt.Errorf("DDI tenant %q: /%s/ is the server's own", name, name)
	}
	return nil
}

// ddiPrefix is where the DDI endpoints are, under the server's tenant.
func (s *Server) ddiPrefix() string { return "/" + s.ddiTenant + "/controller/v1/" }

// routeDDI mounts the hawkBit DDI endpoints and the artifact upload.
func (s *Server) routeDDI() {
	p := s.ddiPrefix()
	s.mux.Handle("POST /api/v1/releases/{board}/{version}/artifacts", s.operator(store.Operator, "attach artifacts", s.addArtifact))
	s.mux.Handle("GET "+p+"{controller}", s.controller(s.ddiRoot))
	s.mux.Handle("GET "+p+"{controller}/deploymentBase/{action}", s.controller(s.ddiDeployment))
	s.mux.Handle("POST "+p+"{controller}/deploymentBase/{action}/feedback", s.controller(s.ddiFeedback))
	s.mux.Handle("GET "+p+"{controller}/deploymentBase/{action}/artifacts/{name}", s.controller(s.ddiDownload))
	s.mux.Handle("PUT "+p+"{controller}/configData", s.controller(s.ddiConfigData))
}

// otherTenant is the refusal of a request no route matched whose path is
// a DDI path under a tenant other than the server's, nil for any other.
func (s *Server) otherTenant(path string) *refusal {
	seg := strings.SplitN(path, "/", 5) // "", tenant, "controller", "v1", …
	if len(seg) < 5 || seg[2] != "controller" || seg[3] != "v1" || seg[1] == s.ddiTenant {
		return nil
	}
	return errorf(http.StatusNotFound, api.CodeNotFound, "hawkBit tenant %q: this server answers tenant %s", clipID(seg[1]), s.ddiTenant)
}

// controller authenticates a DDI client (ddiDevice), then runs h with the
// device it acts for.
func (s *Server) controller(h func(http.ResponseWriter, *http.Request, store.Device) error) http.Handler {
	return s.handle(func(w http.ResponseWriter, r *http.Request) error {
		d, err := s.ddiDevice(r)
		if err != nil {
			return err
		}
		if _, err := query(r); err != nil {
			return err
		}
		return h(w, r, d)
	})
}

// ddiDevice returns the device a DDI request acts for. With a target
// token (the device's own token, as the device API takes it), the path's
// controller ID must be that device's: another device's ID is a 403 that
// reads nothing. With the gateway token (WithDDIGatewayToken), it is the
// path's controller, which must be registered (404) and not revoked
// (401).
func (s *Server) ddiDevice(r *http.Request) (store.Device, error) {
	schemes := []string{"TargetToken"}
	if s.ddiGateway != "" {
		schemes = append(schemes, "GatewayToken")
	}
	scheme, sha, err := tokenHash(r, "target", schemes...)
	if err != nil {
		return store.Device{}, err
	}
	id := r.PathValue("controller")
	if scheme == "GatewayToken" {
		if !sameHash(s.ddiGateway, sha) {
			return store.Device{}, unauthorized("unknown gateway token")
		}
		return s.registeredDevice(r, id, errorf(http.StatusNotFound, api.CodeNotFound, "controller %q is not registered", clipID(id)))
	}
	d, err := s.deviceByToken(r, sha)
	if err != nil {
		return d, err
	}
	if id != d.ID {
		return store.Device{}, errorf(http.StatusForbidden, api.CodeForbidden, "controller %q: the target token is another controller's", clipID(id))
	}
	return d, nil
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
func (s *Server) ddiBase(r *http.Request, id string) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + s.ddiPrefix() + id
}

// ddiRoot: GET /TENANT/controller/v1/{controller}, the poll. It records
// the device as seen, and links the current action and, while the server
// has no attributes of the device, configData.
func (s *Server) ddiRoot(w http.ResponseWriter, r *http.Request, d store.Device) error {
	if err := s.store.Seen(r.Context(), d.ID, s.now().UTC()); err != nil {
		return storeError(err)
	}
	root := ddi.Root{Config: ddi.Config{Polling: ddi.Polling{Sleep: ddi.Sleep(time.Duration(s.pollInterval(d.ID)) * time.Second)}}, Links: map[string]ddi.Link{}}
	base := s.ddiBase(r, d.ID)
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
	base := fmt.Sprintf("%s/deploymentBase/%d", s.ddiBase(r, d.ID), a.RolloutID)
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
	now := s.now().UTC()
	sums, err := s.artifacts.Attach(r.Body, s.maxUpload, func(sums ddi.Sums) error {
		a := store.Artifact{Board: board, Version: version, Name: name, Size: sums.Size, SHA256: sums.SHA256, SHA1: sums.SHA1, MD5: sums.MD5, Created: now}
		ev := store.Event{At: now, Actor: "operator:" + op.Name, Action: "release.artifact", Target: board + "/" + version,
			Detail: fmt.Sprintf(`{"name": %q, "size": %d, "sha256": %q}`, name, sums.Size, sums.SHA256)}
		// A refused file stays until a collection: another release may
		// share it, and a later attach of the same bytes reuses it.
		return s.store.AddArtifact(r.Context(), a, ev)
	})
	switch {
	case errors.Is(err, ddi.ErrTooLarge):
		return tooLarge
	case err != nil:
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
