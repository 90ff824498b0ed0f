package server

import (
	"errors"
	"mime"
	"net/http"
	"time"

	"github.com/lifeboat-update/lifeboat/pkg/api"
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
	register := func(name string, p any) func([]store.Release) error {
		return func(rels []store.Release) error {
			added = rels
			ev := store.Event{At: s.now().UTC(), Actor: actor(op), Action: "release.publish", Target: name, Detail: detail(p)}
			return s.store.AddReleases(r.Context(), rels, ev)
		}
	}
	var err error
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt == "application/x-tar" {
		err = s.publishTar(w, r, register)
	} else {
		err = s.publishPath(w, r, register)
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

// publishPath imports the repository an api.Publish names.
func (s *Server) publishPath(w http.ResponseWriter, r *http.Request, register func(string, any) func([]store.Release) error) error {
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
func (s *Server) publishTar(w http.ResponseWriter, r *http.Request, register func(string, any) func([]store.Release) error) error {
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
	rels, err := s.store.Releases(r.Context())
	if err != nil {
		return err
	}
	list := api.ReleaseList{Releases: []api.ReleaseInfo{}}
	for _, rel := range rels {
		list.Releases = append(list.Releases, releaseView(rel))
	}
	writeJSON(w, http.StatusOK, list)
	return nil
}

// deleteRelease: DELETE /api/v1/releases/{board}/{version}. The release
// is unregistered, then the chunks and indexes no remaining release uses
// are removed; the answer says how many and how much.
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
	writeJSON(w, http.StatusOK, st)
	return nil
}
