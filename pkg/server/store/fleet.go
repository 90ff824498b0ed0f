package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/lifeboat-update/lifeboat/pkg/api"
	"github.com/lifeboat-update/lifeboat/pkg/server/filter"
)

// More errors callers branch on.
var (
	// ErrInUse: a release a rollout still installs.
	ErrInUse = errors.New("in use")
	// ErrState: a rollout in a state the action does not apply to, or a
	// device already in a rollout.
	ErrState = errors.New("not in that state")
	// ErrNoDevices: a rollout's target matches no device.
	ErrNoDevices = errors.New("no device matches")
	// ErrBadFilter: a search or target the filter language refuses, or a
	// group it names that does not exist.
	ErrBadFilter = errors.New("bad filter")
)

// Group is a named set of devices: static (Members) or a filter.
type Group struct {
	Name    string
	Filter  string   // "" for a static group
	Members []string // a static group's device IDs, in order
	Created time.Time
}

// Release is a release registered from a repository.
type Release struct {
	Board, Version string
	// Repository is the name of the repository it came from.
	Repository string
	Created    time.Time
	// Indexes are the paths, under the repository's indexes/, of its
	// images' chunk indexes.
	Indexes []string
}

// RolloutState is where a rollout is.
type RolloutState string

// The states of a rollout. It is created, and started: running; pause
// and resume move it between running and paused; it ends completed,
// halted (its error threshold crossed) or cancelled.
const (
	Created   RolloutState = "created"
	Running   RolloutState = "running"
	Paused    RolloutState = "paused"
	Completed RolloutState = "completed"
	Halted    RolloutState = "halted"
	Cancelled RolloutState = "cancelled"
)

// Active says whether the rollout may still change: created, running or
// paused.
func (s RolloutState) Active() bool { return s == Created || s == Running || s == Paused }

// Transition is an operator's action on a rollout: the states it applies
// to, and the state it leads to.
type Transition struct {
	Name string
	From []RolloutState
	To   RolloutState
}

// The operators' actions.
var (
	Start  = Transition{"start", []RolloutState{Created}, Running}
	Pause  = Transition{"pause", []RolloutState{Running}, Paused}
	Resume = Transition{"resume", []RolloutState{Paused}, Running}
	Cancel = Transition{"cancel", []RolloutState{Created, Running, Paused}, Cancelled}
)

// DeviceState is where a device is in its rollout.
type DeviceState string

// The states of a device in a rollout.
const (
	Assigned   DeviceState = "assigned"   // its wave is (or will be) given the release; no report yet
	Installing DeviceState = "installing" // reported downloading, verifying, installing or rebooting
	Succeeded  DeviceState = "succeeded"  // reported the release installed
	Failed     DeviceState = "failed"     // reported a failure
)

// valid says whether s is one of the states above.
func (s DeviceState) valid() bool {
	return s == Assigned || s == Installing || s == Succeeded || s == Failed
}

// Wave is how far a wave reaches: Percent of the target devices, or Count
// of them, counted from the first device of the first wave.
type Wave struct {
	Percent float64 // 0 < Percent <= 100, or 0 with Count
	Count   int
}

// Rollout installs a release on the devices a filter chose, wave after wave.
type Rollout struct {
	ID             int64
	Board, Version string
	// Target is the filter that chose the devices (a group is group:NAME).
	Target string
	Waves  []Wave
	// Sizes are the waves' sizes, fixed when the rollout was created.
	Sizes            []int
	SuccessThreshold float64
	ErrorThreshold   float64
	State            RolloutState
	OpenWave         int // the last wave open, from 0
	Created, Updated time.Time
	Reason           string
}

// WaveProgress counts a wave's devices by state.
type WaveProgress struct {
	Size                                    int
	Open                                    bool
	Assigned, Installing, Succeeded, Failed int
}

// count is w's count of devices in state s, a valid one.
func (w *WaveProgress) count(s DeviceState) *int {
	switch s {
	case Assigned:
		return &w.Assigned
	case Installing:
		return &w.Installing
	case Succeeded:
		return &w.Succeeded
	}
	return &w.Failed
}

// RolloutDevice is a device in a rollout: its wave, from 0, and state.
type RolloutDevice struct {
	DeviceID string
	Wave     int
	State    DeviceState
	Updated  time.Time
}

// Assignment is the release a device is to install.
type Assignment struct {
	RolloutID      int64
	Board, Version string
	Repository     string
}

// Report is one status report of a device's timeline.
type Report struct {
	ID     int64
	At     time.Time
	Status api.Status
}

// Fleet holds what operators organise devices by: tags, groups,
// releases, rollouts.
type Fleet interface {
	// SearchDevices returns up to limit devices matching e (nil: all)
	// with IDs after after, in ID order; times in e are relative to now.
	// A filter naming a group that is not there is ErrBadFilter.
	SearchDevices(ctx context.Context, e filter.Expr, now time.Time, after string, limit int) ([]Device, error)
	// SetTags replaces id's tags, recording ev.
	SetTags(ctx context.Context, id string, tags []string, ev Event) error
	// CreateGroup adds g, recording ev: ErrExists, or ErrNotFound for a
	// member that is not a device.
	CreateGroup(ctx context.Context, g Group, ev Event) error
	// Groups returns every group, by name.
	Groups(ctx context.Context) ([]Group, error)
	// DeleteGroup removes a group, recording ev.
	DeleteGroup(ctx context.Context, name string, ev Event) error
	// Timeline returns up to limit of id's status reports with IDs after
	// after, oldest first.
	Timeline(ctx context.Context, id string, after int64, limit int) ([]Report, error)
	// AddReleases registers rs, recording ev: ErrExists if any is.
	AddReleases(ctx context.Context, rs []Release, ev Event) error
	// Releases returns every release, by board and version.
	Releases(ctx context.Context) ([]Release, error)
	// DeleteRelease removes a release no active rollout installs
	// (ErrInUse), recording ev.
	DeleteRelease(ctx context.Context, board, version string, ev Event) error
	// CreateRollout creates r, not started, over the devices of its board that are not
	// revoked and match target, fixing their waves by the hash of their
	// IDs; it returns the rollout with its ID and wave sizes. A device
	// already in an active rollout is ErrState; no device, ErrNoDevices.
	CreateRollout(ctx context.Context, r Rollout, target filter.Expr, ev Event) (Rollout, error)
	// Rollout returns a rollout and its waves' progress.
	Rollout(ctx context.Context, id int64) (Rollout, []WaveProgress, error)
	// RolloutDevices returns a rollout's devices, by wave then ID.
	RolloutDevices(ctx context.Context, id int64) ([]RolloutDevice, error)
	// Rollouts returns every rollout, newest first.
	Rollouts(ctx context.Context) ([]Rollout, error)
	// SetRolloutState applies t to a rollout, recording ev, and then its
	// policy; ErrState when the rollout is in none of t's From states.
	SetRolloutState(ctx context.Context, id int64, t Transition, ev Event) (Rollout, error)
	// Assignment returns the release device id is to install, or nil.
	Assignment(ctx context.Context, id string) (*Assignment, error)
	// DeviceCounts counts every device (revoked ones too) by the phase
	// of its last status ("none" before the first), installed version
	// and board.
	DeviceCounts(ctx context.Context) (Counts, error)
}

// Counts is how many devices there are, by status, version and board.
type Counts struct {
	Total                        int
	ByStatus, ByVersion, ByBoard map[string]int
}

// ResolveWaves turns waves into sizes for n devices: each wave reaches a
// count or a share of n (rounded up), the last reaches all n.
func ResolveWaves(waves []Wave, n int) []int {
	sizes := make([]int, len(waves))
	done := 0
	for i, w := range waves {
		reach := w.Count
		if w.Percent > 0 {
			reach = int(math.Ceil(w.Percent * float64(n) / 100))
		}
		if i == len(waves)-1 || reach > n {
			reach = n
		}
		reach = max(reach, done)
		sizes[i] = reach - done
		done = reach
	}
	return sizes
}

// advance is the rollout's policy, applied after every report and on
// resume: it halts a running rollout whose failed devices, over the waves
// open, are more than the error threshold; it opens the next wave while
// the last open one's succeeded share reaches the success threshold (an
// empty wave reaches it); it completes the rollout when every wave is
// open and every device has finished, and none of the above halted it.
func advance(r Rollout, waves []WaveProgress) (state RolloutState, open int, reason string) {
	state, open, reason = r.State, r.OpenWave, r.Reason
	if state != Running {
		return
	}
	for {
		size, failed := 0, 0
		for _, w := range waves[:open+1] {
			size += w.Size
			failed += w.Failed
		}
		if size > 0 && float64(failed)/float64(size) > r.ErrorThreshold {
			return Halted, open, fmt.Sprintf("%d of the %d devices in waves 1 to %d failed, over the error threshold %g", failed, size, open+1, r.ErrorThreshold)
		}
		w := waves[open]
		if w.Size > 0 && float64(w.Succeeded)/float64(w.Size) < r.SuccessThreshold {
			return
		}
		if open < len(waves)-1 {
			open++
			waves[open].Open = true
			continue
		}
		for _, w := range waves {
			if w.Assigned+w.Installing > 0 {
				return
			}
		}
		return Completed, open, ""
	}
}

// deviceState is where a status report puts a device in a rollout of
// version; "" leaves it where it is.
func deviceState(st api.Status, version string) DeviceState {
	switch st.Phase {
	case api.PhaseDownloading, api.PhaseVerifying, api.PhaseInstalling, api.PhaseRebooting:
		return Installing
	case api.PhaseFailed:
		return Failed
	case api.PhaseInstalled, api.PhaseIdle:
		if st.InstalledVersion == version {
			return Succeeded
		}
	}
	return ""
}
