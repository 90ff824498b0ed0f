// Package ddi is the wire side of hawkBit's Direct Device Integration
// (DDI) API, the one hawkBit clients such as swupdate's suricatta poll:
// the answers the server sends (the root poll, a deployment), the bodies
// devices send (feedback, config data) with their strict decoding, the
// mapping of feedback onto Lifeboat's api.Status, and the content-addressed
// store of the files operators attach to releases for DDI clients.
//
// pkg/server mounts the endpoints under /TENANT/controller/v1/, the tenant
// DefaultTenant unless configured otherwise.
package ddi

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/lifeboat-update/lifeboat/pkg/api"
)

// DefaultTenant is the hawkBit tenant the server answers unless told
// another: hawkBit's own default.
const DefaultTenant = "DEFAULT"

// Link is a hypermedia link.
type Link struct {
	Href string `json:"href"`
}

// Root answers a controller's poll: how long to sleep, and links to what
// it is to do (deploymentBase, configData).
type Root struct {
	Config Config          `json:"config"`
	Links  map[string]Link `json:"_links,omitempty"`
}

// Config is the polling configuration.
type Config struct {
	Polling Polling `json:"polling"`
}

// Polling says how long to sleep between polls, HH:MM:SS.
type Polling struct {
	Sleep string `json:"sleep"`
}

// Sleep formats d as hawkBit's HH:MM:SS.
func Sleep(d time.Duration) string {
	s := int64(d / time.Second)
	return fmt.Sprintf("%02d:%02d:%02d", s/3600, s/60%60, s%60)
}

// DeploymentBase is an action: a deployment to install.
type DeploymentBase struct {
	ID         string     `json:"id"`
	Deployment Deployment `json:"deployment"`
}

// Deployment says when to download and install (forced, attempt, skip) and
// what: the chunks.
type Deployment struct {
	Download string  `json:"download"`
	Update   string  `json:"update"`
	Chunks   []Chunk `json:"chunks"`
}

// Chunk is a software module: a part, its name and version, its files.
type Chunk struct {
	Part      string     `json:"part"`
	Version   string     `json:"version"`
	Name      string     `json:"name"`
	Artifacts []Artifact `json:"artifacts"`
}

// Artifact is a file to download, with its size, hashes and links
// (download-http, download).
type Artifact struct {
	Filename string          `json:"filename"`
	Hashes   Hashes          `json:"hashes"`
	Size     int64           `json:"size"`
	Links    map[string]Link `json:"_links"`
}

// Hashes are an artifact's digests, lower-case hex.
type Hashes struct {
	SHA1   string `json:"sha1"`
	MD5    string `json:"md5"`
	SHA256 string `json:"sha256"`
}

// Bounds of what a device sends.
const (
	MaxDetails      = 64   // details of one feedback
	MaxDetailLen    = 1024 // bytes of one detail
	MaxFeedbackTime = 64   // bytes of a time stamp
)

// Execution states of an action, as a device reports them.
const (
	Closed     = "closed"
	Proceeding = "proceeding"
	Canceled   = "canceled"
	Scheduled  = "scheduled"
	Rejected   = "rejected"
	Resumed    = "resumed"
	Download   = "download"
	Downloaded = "downloaded"
)

// Results of an action.
const (
	Success = "success"
	Failure = "failure"
	None    = "none"
)

// Feedback is a device's report on an action.
type Feedback struct {
	// ID is the action's ID, deprecated by hawkBit; a number or a string,
	// not read.
	ID     json.RawMessage `json:"id,omitempty"`
	Time   string          `json:"time,omitempty"`
	Status Status          `json:"status"`
}

// Status is where the action is.
type Status struct {
	Execution string   `json:"execution"`
	Result    Result   `json:"result"`
	Details   []string `json:"details,omitempty"`
	Code      *int     `json:"code,omitempty"`
}

// Result is the action's outcome so far.
type Result struct {
	Finished string    `json:"finished"`
	Progress *Progress `json:"progress,omitempty"`
}

// Progress counts steps: Cnt of Of.
type Progress struct {
	Cnt int `json:"cnt"`
	Of  int `json:"of"`
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", api.ErrInvalid, fmt.Sprintf(format, args...))
}

// clip shortens s for an error message.
func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// Validate checks every field of a feedback.
func (f *Feedback) Validate() error {
	if len(f.ID) > 64 {
		return invalid("id: %d bytes, the most is 64", len(f.ID))
	}
	if len(f.Time) > MaxFeedbackTime {
		return invalid("time: %d bytes, the most is %d", len(f.Time), MaxFeedbackTime)
	}
	return f.Status.validate()
}

func (s *Status) validate() error {
	switch s.Execution {
	case Closed, Proceeding, Canceled, Scheduled, Rejected, Resumed, Download, Downloaded:
	default:
		return invalid("status.execution %q: want closed, proceeding, canceled, scheduled, rejected, resumed, download or downloaded", clip(s.Execution))
	}
	switch s.Result.Finished {
	case Success, Failure, None:
	default:
		return invalid("status.result.finished %q: want success, failure or none", clip(s.Result.Finished))
	}
	if s.Execution == Closed && s.Result.Finished == None {
		return invalid("status.execution closed needs status.result.finished success or failure")
	}
	if p := s.Result.Progress; p != nil && (p.Cnt < 0 || p.Of < 0) {
		return invalid("status.result.progress %d of %d: want counts of 0 or more", p.Cnt, p.Of)
	}
	if len(s.Details) > MaxDetails {
		return invalid("status.details: %d, the most is %d", len(s.Details), MaxDetails)
	}
	for i, d := range s.Details {
		if len(d) > MaxDetailLen || !utf8.ValidString(d) {
			return invalid("status.details[%d]: want UTF-8 of at most %d bytes", i, MaxDetailLen)
		}
	}
	return nil
}

// ApiStatus maps the feedback onto a status report of a device running
// installed, for an action installing version: closed with success is
// installed (of version); failure, or an action canceled or rejected, is
// failed, its error the details; downloading (scheduled, resumed,
// download) and installing (downloaded, proceeding) otherwise, with the
// progress counted.
func (f *Feedback) ApiStatus(installed, version string) api.Status {
	st := api.Status{InstalledVersion: installed}
	s := f.Status
	if p := s.Result.Progress; p != nil && p.Of > 0 {
		st.Progress = math.Min(float64(p.Cnt)/float64(p.Of), 1)
	}
	switch {
	case s.Result.Finished == Failure, s.Execution == Canceled, s.Execution == Rejected:
		st.Phase = api.PhaseFailed
		st.Progress = 0
		why := "hawkBit feedback: " + s.Execution + ", " + s.Result.Finished
		if len(s.Details) > 0 {
			why += ": " + strings.Join(s.Details, "; ")
		}
		st.Error = strings.ToValidUTF8(why[:min(len(why), api.MaxErrorLen)], "")
	case s.Execution == Closed:
		st.Phase, st.Progress, st.InstalledVersion = api.PhaseInstalled, 1, version
	case s.Execution == Scheduled, s.Execution == Resumed, s.Execution == Download:
		st.Phase = api.PhaseDownloading
	default:
		st.Phase = api.PhaseInstalling
	}
	return st
}

// ConfigData is what a device says about itself: its attributes, merged
// into (the default), replacing, or removed from those the server has.
type ConfigData struct {
	ID     json.RawMessage   `json:"id,omitempty"`
	Time   string            `json:"time,omitempty"`
	Status *Status           `json:"status,omitempty"`
	Data   map[string]string `json:"data"`
	Mode   string            `json:"mode,omitempty"`
}

// Validate checks the mode and the attributes, as an api.Inventory's.
func (c *ConfigData) Validate() error {
	switch c.Mode {
	case "", "merge", "replace", "remove":
	default:
		return invalid("mode %q: want merge, replace or remove", clip(c.Mode))
	}
	if len(c.ID) > 64 || len(c.Time) > MaxFeedbackTime {
		return invalid("id or time over 64 bytes")
	}
	inv := api.Inventory{Attributes: c.Data}
	return inv.Validate()
}

// Apply returns the attributes the device has after c, given those it had.
func (c *ConfigData) Apply(had map[string]string) map[string]string {
	out := map[string]string{}
	if c.Mode != "replace" {
		for k, v := range had {
			out[k] = v
		}
	}
	for k, v := range c.Data {
		if c.Mode == "remove" {
			delete(out, k)
		} else {
			out[k] = v
		}
	}
	return out
}
