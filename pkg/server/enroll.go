package server

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/lifeboat-update/lifeboat/pkg/api"
	"github.com/lifeboat-update/lifeboat/pkg/server/mtls"
	"github.com/lifeboat-update/lifeboat/pkg/server/store"
)

// enroll: POST /api/v1/device/enroll, an api.Enrollment from a device
// with a verified client certificate. It registers the device the
// certificate names (201), recording the certificate's SHA-256; a device
// registered already is answered by enrolled. The device gets a token no
// one is given: it authenticates by certificate.
func (s *Server) enroll(w http.ResponseWriter, r *http.Request) error {
	id, err := certIdentity(r)
	if err != nil {
		return err
	}
	if id == nil {
		return unauthorized("enrollment needs a client certificate the device CA issued; none was verified")
	}
	if r.Header.Get("Authorization") != "" {
		return errorf(http.StatusBadRequest, api.CodeBadRequest, "enrollment is by client certificate alone: send no Authorization header")
	}
	var e api.Enrollment
	if err := decode(w, r, &e); err != nil {
		return err
	}
	_, sha, err := NewToken(rand.Reader)
	if err != nil {
		return err
	}
	now := s.now().UTC()
	d := store.Device{ID: id.DeviceID, Board: e.Board, TokenSHA256: sha, CertSHA256: id.SHA256, Created: now, InstalledVersion: e.Version}
	detail, _ := json.Marshal(map[string]string{"board": e.Board, "version": e.Version, "cert_sha256": id.SHA256})
	ev := store.Event{At: now, Actor: "device:" + d.ID, Action: "device.enroll", Target: d.ID, Detail: string(detail)}
	err = s.store.RegisterDevice(r.Context(), d, ev)
	if errors.Is(err, store.ErrExists) {
		return s.enrolled(w, r, *id, e)
	}
	if err != nil {
		return storeError(err)
	}
	w.Header().Set("Location", "/api/v1/devices/"+d.ID)
	writeJSON(w, http.StatusCreated, deviceView(d))
	return nil
}

// enrolled answers the enrollment of a device registered already, and
// changes nothing: 200 with the device when its board is the one sent
// (a device that enrolls again, not knowing its first answer arrived),
// 409 when it is another, 401 when the device is revoked.
func (s *Server) enrolled(w http.ResponseWriter, r *http.Request, id mtls.Identity, e api.Enrollment) error {
	d, err := s.deviceByCert(r, id)
	if err != nil {
		return err
	}
	if d.Board != e.Board {
		return errorf(http.StatusConflict, api.CodeConflict, "device %s is registered with board %s, not %s", d.ID, d.Board, e.Board)
	}
	writeJSON(w, http.StatusOK, deviceView(d))
	return nil
}
