package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/lifeboat-update/lifeboat/pkg/api"
	"github.com/lifeboat-update/lifeboat/pkg/server/filter"
	"github.com/lifeboat-update/lifeboat/pkg/server/store"
)

// Page sizes of the listing endpoints.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func deviceView(d store.Device) api.Device {
	return api.Device{
		ID:               d.ID,
		Board:            d.Board,
		InstalledVersion: d.InstalledVersion,
		Created:          d.Created,
		LastSeen:         optTime(d.LastSeen),
		TokenExpires:     optTime(d.TokenExpires),
		CertSHA256:       d.CertSHA256,
		Revoked:          optTime(d.RevokedAt),
		Status:           d.Status,
		Attributes:       d.Attributes,
		Tags:             d.Tags,
	}
}

func actor(op store.OperatorToken) string { return "operator:" + op.Name }

// newDevice is the device reg registers at now: 400 for a token that has
// expired already.
func newDevice(reg api.Registration, now time.Time) (store.Device, error) {
	if reg.TokenExpires != nil && !reg.TokenExpires.After(now) {
		return store.Device{}, errorf(http.StatusBadRequest, api.CodeBadRequest, "token_expires %s: in the past", reg.TokenExpires.Format(time.RFC3339))
	}
	d := store.Device{
		ID:               reg.DeviceID,
		Board:            reg.Board,
		TokenSHA256:      reg.TokenSHA256,
		Created:          now,
		InstalledVersion: reg.Version,
	}
	if reg.TokenExpires != nil {
		d.TokenExpires = reg.TokenExpires.UTC()
	}
	return d, nil
}

// registerDevice: POST /api/v1/devices, an api.Registration.
func (s *Server) registerDevice(w http.ResponseWriter, r *http.Request, op store.OperatorToken) error {
	var reg api.Registration
	if err := decode(w, r, &reg); err != nil {
		return err
	}
	now := s.now().UTC()
	d, err := newDevice(reg, now)
	if err != nil {
		return err
	}
	detail, _ := json.Marshal(map[string]string{"board": reg.Board, "version": reg.Version})
	ev := store.Event{At: now, Actor: actor(op), Action: "device.register", Target: d.ID, Detail: string(detail)}
	if err := s.store.RegisterDevice(r.Context(), d, ev); err != nil {
		return storeError(err)
	}
	w.Header().Set("Location", "/api/v1/devices/"+d.ID)
	writeJSON(w, http.StatusCreated, deviceView(d))
	return nil
}

// registerDevices: POST /api/v1/devices/bulk, an api.BulkRegistration:
// every device or none, audited once with the count.
func (s *Server) registerDevices(w http.ResponseWriter, r *http.Request, op store.OperatorToken) error {
	var bulk api.BulkRegistration
	if err := decodeUpTo(w, r, &bulk, api.MaxBulkBodySize); err != nil {
		return err
	}
	now := s.now().UTC()
	ds := make([]store.Device, len(bulk.Devices))
	for i, reg := range bulk.Devices {
		d, err := newDevice(reg, now)
		if err != nil {
			return errorf(http.StatusBadRequest, api.CodeBadRequest, "devices[%d] (%s): %v", i, reg.DeviceID, err)
		}
		ds[i] = d
	}
	detail, _ := json.Marshal(map[string]any{"count": len(ds), "first": ds[0].ID, "last": ds[len(ds)-1].ID})
	ev := store.Event{At: now, Actor: actor(op), Action: "device.register_bulk", Target: fmt.Sprintf("%d devices", len(ds)), Detail: string(detail)}
	if err := s.store.RegisterDevices(r.Context(), ds, ev); err != nil {
		return storeError(err)
	}
	writeJSON(w, http.StatusCreated, api.BulkRegistered{Registered: len(ds)})
	return nil
}

// pathDevice returns the device ID in r's path, checked.
func pathDevice(r *http.Request) (string, error) {
	id := r.PathValue("id")
	if err := api.CheckDeviceID(id); err != nil {
		return "", badRequest(err)
	}
	return id, nil
}

// intParam parses the query parameter name as an integer from min to max,
// or returns def when it is absent.
func intParam(q map[string]string, name string, def, min, max int64) (int64, error) {
	v, ok := q[name]
	if !ok {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < min || n > max {
		return 0, errorf(http.StatusBadRequest, api.CodeBadRequest, "%s=%q: want an integer from %d to %d", name, v, min, max)
	}
	return n, nil
}

// listDevices: GET /api/v1/devices?q=FILTER&limit=N&after=ID, the
// devices FILTER (all, without it) matches.
func (s *Server) listDevices(w http.ResponseWriter, r *http.Request, _ store.OperatorToken) error {
	q, err := query(r, "q", "limit", "after")
	if err != nil {
		return err
	}
	limit, err := intParam(q, "limit", DefaultPageSize, 1, MaxPageSize)
	if err != nil {
		return err
	}
	after := q["after"]
	if _, ok := q["after"]; ok {
		if err := api.CheckDeviceID(after); err != nil {
			return badRequest(err)
		}
	}
	var e filter.Expr
	if text, ok := q["q"]; ok {
		if e, err = parseFilter("q", text); err != nil {
			return err
		}
	}
	list, err := s.SearchDevices(r.Context(), e, after, int(limit))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, list)
	return nil
}

// getDevice: GET /api/v1/devices/{id}.
func (s *Server) getDevice(w http.ResponseWriter, r *http.Request, _ store.OperatorToken) error {
	d, err := s.Device(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, d)
	return nil
}

// revokeDevice: POST /api/v1/devices/{id}/revoke. The device's token is
// refused from then on.
func (s *Server) revokeDevice(w http.ResponseWriter, r *http.Request, op store.OperatorToken) error {
	id, err := pathDevice(r)
	if err != nil {
		return err
	}
	ev := store.Event{At: s.now().UTC(), Actor: actor(op), Action: "device.revoke", Target: id}
	if err := s.store.RevokeDevice(r.Context(), id, ev); err != nil {
		return storeError(err)
	}
	d, err := s.store.Device(r.Context(), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, deviceView(d))
	return nil
}

// audit: GET /api/v1/audit?limit=N&before=ID, newest first.
func (s *Server) audit(w http.ResponseWriter, r *http.Request, _ store.OperatorToken) error {
	q, err := query(r, "limit", "before")
	if err != nil {
		return err
	}
	limit, err := intParam(q, "limit", DefaultPageSize, 1, MaxPageSize)
	if err != nil {
		return err
	}
	before, err := intParam(q, "before", 0, 1, 1<<62)
	if err != nil {
		return err
	}
	evs, err := s.store.Events(r.Context(), before, int(limit)+1)
	if err != nil {
		return err
	}
	log := api.AuditLog{Entries: []api.AuditEntry{}}
	if len(evs) > int(limit) {
		evs = evs[:limit]
		log.Next = evs[len(evs)-1].ID
	}
	for _, ev := range evs {
		log.Entries = append(log.Entries, api.AuditEntry{ID: ev.ID, At: ev.At, Actor: ev.Actor, Action: ev.Action, Target: ev.Target, Detail: ev.Detail})
	}
	writeJSON(w, http.StatusOK, log)
	return nil
}
