package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/lifeboat-update/lifeboat/pkg/api"
	"github.com/lifeboat-update/lifeboat/pkg/server/filter"
	"github.com/lifeboat-update/lifeboat/pkg/server/store"
)

// parseFilter parses a filter from a request, refusing a bad one with its
// position and token.
func parseFilter(field, text string) (filter.Expr, error) {
	e, err := filter.Parse(text)
	if err != nil {
		return nil, errorf(http.StatusBadRequest, api.CodeBadRequest, "%s: %v", field, err)
	}
	return e, nil
}

func detail(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// setTags: PUT /api/v1/devices/{id}/tags, an api.Tags that replaces the
// device's tags.
func (s *Server) setTags(w http.ResponseWriter, r *http.Request, op store.OperatorToken) error {
	id, err := pathDevice(r)
	if err != nil {
		return err
	}
	var t api.Tags
	if err := decode(w, r, &t); err != nil {
		return err
	}
	ev := store.Event{At: s.now().UTC(), Actor: actor(op), Action: "device.tags", Target: id, Detail: detail(t)}
	if err := s.store.SetTags(r.Context(), id, t.Tags, ev); err != nil {
		return storeError(err)
	}
	d, err := s.store.Device(r.Context(), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, deviceView(d))
	return nil
}

// timeline: GET /api/v1/devices/{id}/timeline?after=N&limit=N, the
// device's status reports, oldest first.
func (s *Server) timeline(w http.ResponseWriter, r *http.Request, _ store.OperatorToken) error {
	id, err := pathDevice(r)
	if err != nil {
		return err
	}
	q, err := query(r, "limit", "after")
	if err != nil {
		return err
	}
	limit, err := intParam(q, "limit", DefaultPageSize, 1, MaxPageSize)
	if err != nil {
		return err
	}
	after, err := intParam(q, "after", 0, 0, 1<<62)
	if err != nil {
		return err
	}
	tl, err := s.Timeline(r.Context(), id, after, int(limit))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, tl)
	return nil
}

// createGroup: POST /api/v1/groups, an api.Group.
func (s *Server) createGroup(w http.ResponseWriter, r *http.Request, op store.OperatorToken) error {
	var g api.Group
	if err := decode(w, r, &g); err != nil {
		return err
	}
	now := s.now().UTC()
	if g.Filter != "" {
		e, err := parseFilter("filter", g.Filter)
		if err != nil {
			return err
		}
		// Compiled once, so that a group it names must exist.
		if _, err := s.store.SearchDevices(r.Context(), e, now, "", 1); err != nil {
			return storeError(err)
		}
	}
	sg := store.Group{Name: g.Name, Filter: g.Filter, Members: g.Devices, Created: now}
	ev := store.Event{At: now, Actor: actor(op), Action: "group.create", Target: g.Name, Detail: detail(g)}
	err := s.store.CreateGroup(r.Context(), sg, ev)
	if errors.Is(err, store.ErrNotFound) {
		return errorf(http.StatusBadRequest, api.CodeBadRequest, "devices: %v", err)
	}
	if err != nil {
		return storeError(err)
	}
	g.Created = now
	w.Header().Set("Location", "/api/v1/groups/"+g.Name)
	writeJSON(w, http.StatusCreated, g)
	return nil
}

// listGroups: GET /api/v1/groups.
func (s *Server) listGroups(w http.ResponseWriter, r *http.Request, _ store.OperatorToken) error {
	if _, err := query(r); err != nil {
		return err
	}
	gs, err := s.Groups(r.Context())
	if err != nil {
		return err
	}
	list := api.GroupList{Groups: gs}
	writeJSON(w, http.StatusOK, list)
	return nil
}

// deleteGroup: DELETE /api/v1/groups/{name}.
func (s *Server) deleteGroup(w http.ResponseWriter, r *http.Request, op store.OperatorToken) error {
	name := r.PathValue("name")
	if err := api.CheckName("group", name); err != nil {
		return badRequest(err)
	}
	ev := store.Event{At: s.now().UTC(), Actor: actor(op), Action: "group.delete", Target: name}
	if err := s.store.DeleteGroup(r.Context(), name, ev); err != nil {
		return storeError(err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func rolloutView(ro store.Rollout, waves []store.WaveProgress) api.Rollout {
	v := api.Rollout{ID: ro.ID, Board: ro.Board, Version: ro.Version, Target: ro.Target, SuccessThreshold: ro.SuccessThreshold,
		ErrorThreshold: ro.ErrorThreshold, State: string(ro.State), Reason: ro.Reason, Created: ro.Created, Updated: ro.Updated}
	for _, w := range ro.Waves {
		if w.Percent > 0 {
			v.Waves = append(v.Waves, strconv.FormatFloat(w.Percent, 'f', -1, 64)+"%")
		} else {
			v.Waves = append(v.Waves, strconv.Itoa(w.Count))
		}
	}
	for _, w := range waves {
		v.Progress = append(v.Progress, api.WaveProgress{Size: w.Size, Open: w.Open, Assigned: w.Assigned, Installing: w.Installing, Succeeded: w.Succeeded, Failed: w.Failed})
	}
	return v
}

// createRollout: POST /api/v1/rollouts, an api.CreateRollout.
func (s *Server) createRollout(w http.ResponseWriter, r *http.Request, op store.OperatorToken) error {
	var c api.CreateRollout
	if err := decode(w, r, &c); err != nil {
		return err
	}
	ro, err := s.CreateRollout(r.Context(), op, c)
	if err != nil {
		return err
	}
	w.Header().Set("Location", fmt.Sprintf("/api/v1/rollouts/%d", ro.ID))
	writeJSON(w, http.StatusCreated, ro)
	return nil
}

func pathRollout(r *http.Request) (int64, error) {
	v := r.PathValue("id")
	id, err := strconv.ParseInt(v, 10, 64)
	if err != nil || id < 1 {
		return 0, errorf(http.StatusBadRequest, api.CodeBadRequest, "rollout ID %q: want a positive integer", v)
	}
	return id, nil
}

// getRollout: GET /api/v1/rollouts/{id}, with its waves' progress.
func (s *Server) getRollout(w http.ResponseWriter, r *http.Request, _ store.OperatorToken) error {
	id, err := pathRollout(r)
	if err != nil {
		return err
	}
	if _, err := query(r); err != nil {
		return err
	}
	ro, err := s.Rollout(r.Context(), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, ro)
	return nil
}

// rolloutDevices: GET /api/v1/rollouts/{id}/devices, each device's wave
// and state.
func (s *Server) rolloutDevices(w http.ResponseWriter, r *http.Request, _ store.OperatorToken) error {
	id, err := pathRollout(r)
	if err != nil {
		return err
	}
	if _, err := query(r); err != nil {
		return err
	}
	ds, err := s.store.RolloutDevices(r.Context(), id)
	if err != nil {
		return storeError(err)
	}
	out := api.RolloutDevices{Devices: []api.RolloutDevice{}}
	for _, d := range ds {
		out.Devices = append(out.Devices, api.RolloutDevice{DeviceID: d.DeviceID, Wave: d.Wave + 1, State: string(d.State), Updated: d.Updated})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// listRollouts: GET /api/v1/rollouts, newest first, without progress.
func (s *Server) listRollouts(w http.ResponseWriter, r *http.Request, _ store.OperatorToken) error {
	if _, err := query(r); err != nil {
		return err
	}
	ros, err := s.Rollouts(r.Context())
	if err != nil {
		return err
	}
	list := api.RolloutList{Rollouts: ros}
	writeJSON(w, http.StatusOK, list)
	return nil
}

// rolloutAction: POST /api/v1/rollouts/{id}/start|pause|resume|cancel.
func (s *Server) rolloutAction(t store.Transition) func(http.ResponseWriter, *http.Request, store.OperatorToken) error {
	return func(w http.ResponseWriter, r *http.Request, op store.OperatorToken) error {
		id, err := pathRollout(r)
		if err != nil {
			return err
		}
		if _, err := query(r); err != nil {
			return err
		}
		ro, err := s.RolloutAction(r.Context(), op, id, t)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, ro)
		return nil
	}
}
