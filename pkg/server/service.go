package server

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/lifeboat-update/lifeboat/pkg/api"
	"github.com/lifeboat-update/lifeboat/pkg/server/filter"
	"github.com/lifeboat-update/lifeboat/pkg/server/store"
)

// The operations below are what the API's handlers do once a request is
// decoded; the web UI (pkg/server/ui) calls the same ones. Their errors
// are refusals (HTTPStatus says which) or the server's own.

// HTTPStatus is the status a refusal is answered with.
func (e *refusal) HTTPStatus() int { return e.Status }

// Authorize returns the operator whose token has the SHA-256 tokenSHA256
// if it may do what, which needs role min: 401 for an unknown or revoked
// token, or one past its expiry, 403 for a role too low.
func (s *Server) Authorize(ctx context.Context, tokenSHA256 string, min store.Role, what string) (store.OperatorToken, error) {
	op, err := s.store.OperatorToken(ctx, tokenSHA256)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return op, unauthorized("unknown operator token")
	case err != nil:
		return op, err
	case !sameHash(op.TokenSHA256, tokenSHA256):
		return op, unauthorized("unknown operator token")
	case !op.RevokedAt.IsZero():
		return op, unauthorized("operator token %s was revoked at %s", op.Name, op.RevokedAt.Format(time.RFC3339))
	case !op.Expires.IsZero() && !s.now().Before(op.Expires):
		return op, unauthorized("operator token %s expired at %s", op.Name, op.Expires.Format(time.RFC3339))
	case op.Role.Rank() < min.Rank():
		return op, errorf(http.StatusForbidden, api.CodeForbidden, "operator %s has role %s; to %s needs role %s", op.Name, op.Role, what, min)
	}
	return op, nil
}

// SignIn returns the operator whose token is token (any role).
func (s *Server) SignIn(ctx context.Context, token string) (store.OperatorToken, error) {
	sha, err := HashToken(token)
	if err != nil {
		return store.OperatorToken{}, unauthorized("operator token: %v", err)
	}
	return s.Authorize(ctx, sha, store.Viewer, "sign in")
}

// ParseFilter parses a filter, refusing a bad one with its position and
// token, prefixed by field.
func (s *Server) ParseFilter(field, text string) (filter.Expr, error) {
	return parseFilter(field, text)
}

// SearchDevices returns up to limit devices e (nil: all) matches with IDs
// after after, and the ID to go on after when there are more.
func (s *Server) SearchDevices(ctx context.Context, e filter.Expr, after string, limit int) (api.DeviceList, error) {
	ds, err := s.store.SearchDevices(ctx, e, s.now().UTC(), after, limit+1)
	if err != nil {
		return api.DeviceList{}, storeError(err)
	}
	list := api.DeviceList{Devices: []api.Device{}}
	if len(ds) > limit {
		ds = ds[:limit]
		list.Next = ds[len(ds)-1].ID
	}
	for _, d := range ds {
		list.Devices = append(list.Devices, deviceView(d))
	}
	return list, nil
}

// Device returns the device id.
func (s *Server) Device(ctx context.Context, id string) (api.Device, error) {
	if err := api.CheckDeviceID(id); err != nil {
		return api.Device{}, badRequest(err)
	}
	d, err := s.store.Device(ctx, id)
	if err != nil {
		return api.Device{}, storeError(err)
	}
	return deviceView(d), nil
}

// Timeline returns up to limit of device id's status reports with IDs
// after after, oldest first.
func (s *Server) Timeline(ctx context.Context, id string, after int64, limit int) (api.Timeline, error) {
	if err := api.CheckDeviceID(id); err != nil {
		return api.Timeline{}, badRequest(err)
	}
	reps, err := s.store.Timeline(ctx, id, after, limit+1)
	if err != nil {
		return api.Timeline{}, storeError(err)
	}
	tl := api.Timeline{Reports: []api.TimelineEntry{}}
	if len(reps) > limit {
		reps = reps[:limit]
		tl.Next = reps[len(reps)-1].ID
	}
	for _, rep := range reps {
		tl.Reports = append(tl.Reports, api.TimelineEntry{ID: rep.ID, At: rep.At, Status: rep.Status})
	}
	return tl, nil
}

// DeviceCounts counts the devices by status, version and board.
func (s *Server) DeviceCounts(ctx context.Context) (store.Counts, error) {
	return s.store.DeviceCounts(ctx)
}

// Releases returns every release, by board and version.
func (s *Server) Releases(ctx context.Context) ([]api.ReleaseInfo, error) {
	rels, err := s.store.Releases(ctx)
	if err != nil {
		return nil, err
	}
	list := []api.ReleaseInfo{}
	for _, rel := range rels {
		list = append(list, releaseView(rel))
	}
	return list, nil
}

// Groups returns every group, by name.
func (s *Server) Groups(ctx context.Context) ([]api.Group, error) {
	gs, err := s.store.Groups(ctx)
	if err != nil {
		return nil, err
	}
	list := []api.Group{}
	for _, g := range gs {
		ag := api.Group{Name: g.Name, Filter: g.Filter, Created: g.Created}
		if g.Filter == "" {
			ag.Devices = append([]string{}, g.Members...)
		}
		list = append(list, ag)
	}
	return list, nil
}

// CreateRollout validates c and creates the rollout, not started, as op.
func (s *Server) CreateRollout(ctx context.Context, op store.OperatorToken, c api.CreateRollout) (api.Rollout, error) {
	if err := c.Validate(); err != nil {
		return api.Rollout{}, badRequest(err)
	}
	target, field := c.Filter, "filter"
	if c.Group != "" {
		target, field = "group:"+c.Group, "group"
	}
	e, err := parseFilter(field, target)
	if err != nil {
		return api.Rollout{}, err
	}
	now := s.now().UTC()
	ro := store.Rollout{Board: c.Board, Version: c.Version, Target: target, SuccessThreshold: c.SuccessThreshold,
		ErrorThreshold: c.ErrorThreshold, Created: now}
	for _, wv := range c.Waves {
		p, n, _ := api.ParseWave(wv) // Validate checked them
		ro.Waves = append(ro.Waves, store.Wave{Percent: p, Count: n})
	}
	ev := store.Event{At: now, Actor: actor(op), Action: "rollout.create", Detail: detail(c)}
	ro, err = s.store.CreateRollout(ctx, ro, e, ev)
	if err != nil {
		return api.Rollout{}, storeError(err)
	}
	return s.Rollout(ctx, ro.ID)
}

// Rollout returns a rollout with its waves' progress.
func (s *Server) Rollout(ctx context.Context, id int64) (api.Rollout, error) {
	ro, waves, err := s.store.Rollout(ctx, id)
	if err != nil {
		return api.Rollout{}, storeError(err)
	}
	return rolloutView(ro, waves), nil
}

// Rollouts returns every rollout, newest first, without progress.
func (s *Server) Rollouts(ctx context.Context) ([]api.Rollout, error) {
	ros, err := s.store.Rollouts(ctx)
	if err != nil {
		return nil, err
	}
	list := []api.Rollout{}
	for _, ro := range ros {
		list = append(list, rolloutView(ro, nil))
	}
	return list, nil
}

// RolloutAction applies t to rollout id as op.
func (s *Server) RolloutAction(ctx context.Context, op store.OperatorToken, id int64, t store.Transition) (api.Rollout, error) {
	ev := store.Event{At: s.now().UTC(), Actor: actor(op), Action: "rollout." + t.Name, Target: strconv.FormatInt(id, 10)}
	if _, err := s.store.SetRolloutState(ctx, id, t, ev); err != nil {
		return api.Rollout{}, storeError(err)
	}
	return s.Rollout(ctx, id)
}
