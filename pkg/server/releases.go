package server

import (
	"errors"
	"mime"
	"net/http"
	"time"

	"github.com/lifeboat-update/lifeboat/pkg/api"
	"github.com/lifeboat-update/lifeboat/pkg/server/repository"
	"github.com/lifeboat-update/lifeboat/pkg/server/store"
)

// noRepositories refuses release requests on a server started without
// release storage.
func (s *Server) noRepositories() error {
	if s.repos == nil {
		return errorf(http.StatusConflict, api.CodeConflict, "this server keeps no releases: start it with --root (the trusted root.json) and --data")
	}
	return nil
}

func releaseView(r store.Release) api.ReleaseInfo {
	return api.ReleaseInfo{Board: r.Board, Version: r.Version, Repository: r.Repository, Created: r.Created}
}

// publish: POST /api/v1/releases, an api.Publish (the repository at a
// path on the server), or ?repository=NAME with an application/x-tar body
// (the repository's directory, uploaded): the repository is verified and
// copied in, and its releases registered.
func (s *Server) publish(w http.ResponseWriter, r *http.Request, op store.OperatorToken) error {
	if err := s.noRepositories(); err != nil {
		return err
	}
	var added []store.Release
	register := func(name string, p any) repository.Registrar {
		return repository.Registrar{
			Check: func(rels []store.Release) error {
				var err error
				added, err = s.newReleases(r, name, rels)
				return err
			},
			Register: func([]store.Release) error {
				ev := store.Event{At: s.now().UTC(), Actor: actor(op), Action: "release.publish", Target: name, Detail: detail(p)}
				return s.store.AddReleases(r.Context(), added, ev)
			},
		}
	}
	var err error
	switch mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt {
	case "application/x-tar":
		err = s.publishTar(w, r, register)
	case "application/json":
		err = s.publishPath(w, r, register)
	default:
		return errorf(http.StatusUnsupportedMediaType, api.CodeUnsupportedType, "Content-Type %q: want application/json (a path) or application/x-tar (an upload)", r.Header.Get("Content-Type"))
	}
	if err != nil {
		return storeError(err)
	}
	list := api.ReleaseList{Releases: []api.ReleaseInfo{}}
	for _, rel := range added {
		list.Releases = append(list.Releases, releaseView(rel))
	}
	writeJSON(w, http.StatusCreated, list)
	return nil
}

// newReleases returns the releases of rels, from repository name, that
// are not registered yet: publishing a repository again registers the
// versions added since. New metadata that drops a release still
// registered is refused: devices would be sent to a release the
// repository no longer lists.
func (s *Server) newReleases(r *http.Request, name string, rels []store.Release) ([]store.Release, error) {
	have, err := s.store.Releases(r.Context())
	if err != nil {
		return nil, err
	}
	type key struct{ board, version string }
	listed := map[key]bool{}
	for _, rel := range rels {
		listed[key{rel.Board, rel.Version}] = true
	}
	mine := map[key]bool{}
	for _, h := range have {
		if h.Repository != name {
			if listed[key{h.Board, h.Version}] {
				return nil, errorf(http.StatusConflict, api.CodeConflict, "release %s %s: %v from repository %s", h.Board, h.Version, store.ErrExists, h.Repository)
			}
			continue
		}
		if !listed[key{h.Board, h.Version}] {
			return nil, errorf(http.StatusConflict, api.CodeConflict, "release %s %s of repository %s is registered, and the new metadata does not list it: delete it first", h.Board, h.Version, name)
		}
		mine[key{h.Board, h.Version}] = true
	}
	var fresh []store.Release
	for _, rel := range rels {
		if !mine[key{rel.Board, rel.Version}] {
			fresh = append(fresh, rel)
		}
	}
	if len(fresh) == 0 {
		return nil, errorf(http.StatusConflict, api.CodeConflict, "repository %s: every release it lists is registered already", name)
	}
	return fresh, nil
}

// publishPath imports the repository an api.Publish names.
func (s *Server) publishPath(w http.ResponseWriter, r *http.Request, register func(string, any) repository.Registrar) error {
	if _, err := query(r); err != nil {
		return err
	}
	var p api.Publish
	if err := decode(w, r, &p); err != nil {
		return err
	}
	return s.repos.Import(r.Context(), p.Repository, p.Path, register(p.Repository, p))
}

// publishTar imports the repository uploaded as the body, a tar stream,
// as ?repository=NAME.
func (s *Server) publishTar(w http.ResponseWriter, r *http.Request, register func(string, any) repository.Registrar) error {
	q, err := query(r, "repository")
	if err != nil {
		return err
	}
	name := q["repository"]
	if err := api.CheckName("repository", name); err != nil {
		return badRequest(err)
	}
	tooLarge := errorf(http.StatusRequestEntityTooLarge, api.CodeTooLarge, "upload over %d bytes", s.maxUpload)
	if r.ContentLength > s.maxUpload {
		return tooLarge
	}
	// A repository takes longer than the server's request timeouts: this
	// request gets an hour.
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Now().Add(time.Hour))
	rc.SetWriteDeadline(time.Now().Add(time.Hour))
	body := http.MaxBytesReader(w, r.Body, s.maxUpload)
	err = s.repos.ImportTar(r.Context(), name, body, register(name, map[string]string{"repository": name, "upload": "tar"}))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return tooLarge
	}
	return err
}

// listReleases: GET /api/v1/releases.
func (s *Server) listReleases(w http.ResponseWriter, r *http.Request, _ store.OperatorToken) error {
	if _, err := query(r); err != nil {
		return err
	}
	rels, err := s.Releases(r.Context())
	if err != nil {
		return err
	}
	list := api.ReleaseList{Releases: rels}
	writeJSON(w, http.StatusOK, list)
	return nil
}

// deleteRelease: DELETE /api/v1/releases/{board}/{version}. The release
// is unregistered, then the chunks, indexes and DDI artifacts no remaining
// release uses are removed; the answer says how many and how much.
func (s *Server) deleteRelease(w http.ResponseWriter, r *http.Request, op store.OperatorToken) error {
	if err := s.noRepositories(); err != nil {
		return err
	}
	if _, err := query(r); err != nil {
		return err
	}
	board, version := r.PathValue("board"), r.PathValue("version")
	if err := api.CheckRelease(board, version); err != nil {
		return badRequest(err)
	}
	ev := store.Event{At: s.now().UTC(), Actor: actor(op), Action: "release.delete", Target: board + "/" + version}
	if err := s.store.DeleteRelease(r.Context(), board, version, ev); err != nil {
		return storeError(err)
	}
	st, err := s.repos.Collect(r.Context(), s.store.Releases)
	if err != nil {
		return err
	}
	if s.artifacts != nil {
		st.Artifacts, st.ArtifactBytes, err = s.artifacts.Collect(r.Context(), s.store.ArtifactDigests)
		if err != nil {
			return err
		}
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}
