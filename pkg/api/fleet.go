package api

import (
	"fmt"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Limits on what operators send about the fleet.
const (
	MaxTags         = 32   // tags on a device
	MaxGroupMembers = 1000 // devices listed in a static group
	MaxFilterLen    = 2048 // a filter's text
	MaxWaves        = 16   // waves of a rollout
	MaxPathLen      = 4096 // a repository's path on the server
)

// nameRE is a tag, group or repository name. It starts with a letter or
// digit, so that no name is "." or "..": a repository's name is a
// directory's.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// CheckName says what is wrong with a tag, group or repository name: 1 to
// 64 letters, digits, '.', '_' or '-', starting with a letter or digit.
func CheckName(field, name string) error {
	if !nameRE.MatchString(name) {
		return invalid("%s %q: want 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit", field, clip(name))
	}
	return nil
}

func checkFilterText(field, f string) error {
	switch {
	case len(f) > MaxFilterLen:
		return invalid("%s: %d bytes, the most is %d", field, len(f), MaxFilterLen)
	case !utf8.ValidString(f):
		return invalid("%s: not UTF-8", field)
	}
	return nil
}

// Tags replaces a device's tags.
type Tags struct {
	Tags []string `json:"tags"`
}

// Validate checks every tag.
func (t *Tags) Validate() error {
	if t.Tags == nil {
		return invalid("tags: missing; send [] for none")
	}
	if len(t.Tags) > MaxTags {
		return invalid("%d tags, the most is %d", len(t.Tags), MaxTags)
	}
	seen := map[string]bool{}
	for i, tag := range t.Tags {
		if err := CheckName(fmt.Sprintf("tags[%d]", i), tag); err != nil {
			return err
		}
		if seen[tag] {
			return invalid("tags[%d]: tag %s given twice", i, tag)
		}
		seen[tag] = true
	}
	return nil
}

// Group is a named set of devices: a static list (Devices) or a filter
// evaluated at each use (Filter), one of the two.
type Group struct {
	Name   string `json:"name"`
	Filter string `json:"filter,omitempty"`
	// Devices is a static group's members; [] is an empty static group,
	// null a filter group.
	Devices []string  `json:"devices"`
	Created time.Time `json:"created,omitzero"`
}

// Validate checks a group to create.
func (g *Group) Validate() error {
	if err := CheckName("name", g.Name); err != nil {
		return err
	}
	if !g.Created.IsZero() {
		return invalid("created: set by the server")
	}
	if (g.Filter == "") == (g.Devices == nil) {
		return invalid("group %s: want one of filter and devices", g.Name)
	}
	if err := checkFilterText("filter", g.Filter); err != nil {
		return err
	}
	if len(g.Devices) > MaxGroupMembers {
		return invalid("%d devices, the most is %d", len(g.Devices), MaxGroupMembers)
	}
	seen := map[string]bool{}
	for i, id := range g.Devices {
		if err := CheckDeviceID(id); err != nil {
			return invalid("devices[%d]: %v", i, strings.TrimPrefix(err.Error(), ErrInvalid.Error()+": "))
		}
		if seen[id] {
			return invalid("devices[%d]: device %s given twice", i, id)
		}
		seen[id] = true
	}
	return nil
}

// GroupList is every group.
type GroupList struct {
	Groups []Group `json:"groups"`
}

// Publish registers the releases of a repository made by lifeboat-release,
// found at Path on the server, under the name Repository. The server
// verifies its metadata against its own trusted root, and copies what it
// serves (metadata, indexes, chunks) into its storage.
type Publish struct {
	Repository string `json:"repository"`
	Path       string `json:"path"`
}

// Validate checks the name and path.
func (p *Publish) Validate() error {
	if err := CheckName("repository", p.Repository); err != nil {
		return err
	}
	switch {
	case len(p.Path) > MaxPathLen:
		return invalid("path: %d bytes, the most is %d", len(p.Path), MaxPathLen)
	case !path.IsAbs(p.Path) || path.Clean(p.Path) != p.Path:
		return invalid("path %q: want a clean absolute path", clip(p.Path))
	}
	return nil
}

// ReleaseInfo is a release registered on the server.
type ReleaseInfo struct {
	Board      string    `json:"board"`
	Version    string    `json:"version"`
	Repository string    `json:"repository"`
	Created    time.Time `json:"created"`
}

// ReleaseList is every release, by board and version.
type ReleaseList struct {
	Releases []ReleaseInfo `json:"releases"`
}

// Collected is what deleting a release freed.
type Collected struct {
	Chunks int   `json:"chunks"`
	Bytes  int64 `json:"bytes"`
	// Artifacts and ArtifactBytes are the files for hawkBit DDI clients
	// no remaining release has.
	Artifacts     int   `json:"artifacts"`
	ArtifactBytes int64 `json:"artifact_bytes"`
}

// CreateRollout starts a rollout of a release over the devices of its
// board that Filter, or Group, chooses.
type CreateRollout struct {
	Board   string `json:"board"`
	Version string `json:"version"`
	Filter  string `json:"filter,omitempty"`
	Group   string `json:"group,omitempty"`
	// Waves say how far each wave reaches, counted from the first device:
	// "5" (devices) or "10%" (of the target, rounded up). They grow, and
	// the last is "100%".
	Waves []string `json:"waves"`
	// SuccessThreshold is the share of a wave that must succeed to open
	// the next, above 0 and at most 1.
	SuccessThreshold float64 `json:"success_threshold"`
	// ErrorThreshold is the share of the devices in open waves that may
	// fail; one more halts the rollout. 0 to below 1.
	ErrorThreshold float64 `json:"error_threshold"`
}

// ParseWave parses a wave: a count of devices or a percentage.
func ParseWave(s string) (percent float64, count int, err error) {
	if p, ok := strings.CutSuffix(s, "%"); ok {
		f, err := strconv.ParseFloat(p, 64)
		if err != nil || !(f > 0 && f <= 100) {
			return 0, 0, invalid("wave %q: want a percentage above 0 and at most 100", clip(s))
		}
		return f, 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 1e9 {
		return 0, 0, invalid("wave %q: want a count of devices (1 or more) or a percentage (10%%)", clip(s))
	}
	return 0, n, nil
}

// CheckRelease says what is wrong with a release's board and version.
func CheckRelease(board, version string) error {
	if !boardRE.MatchString(board) {
		return invalid("board %q: want 1 to %d letters, digits, '.', '_' or '-'", clip(board), MaxBoardLen)
	}
	return checkVersion("version", version)
}

// Validate checks the rollout.
func (c *CreateRollout) Validate() error {
	if err := CheckRelease(c.Board, c.Version); err != nil {
		return err
	}
	if (c.Filter == "") == (c.Group == "") {
		return invalid("want one of filter and group as the target")
	}
	if c.Group != "" {
		if err := CheckName("group", c.Group); err != nil {
			return err
		}
	}
	if err := checkFilterText("filter", c.Filter); err != nil {
		return err
	}
	if len(c.Waves) == 0 || len(c.Waves) > MaxWaves {
		return invalid("%d waves: want 1 to %d", len(c.Waves), MaxWaves)
	}
	lastPct, lastCount := 0.0, 0
	for i, w := range c.Waves {
		p, n, err := ParseWave(w)
		if err != nil {
			return err
		}
		if (p > 0 && p <= lastPct) || (n > 0 && (n <= lastCount || lastPct > 0)) {
			return invalid("waves[%d] %q: waves must grow (counts first, then percentages)", i, w)
		}
		lastPct, lastCount = max(lastPct, p), max(lastCount, n)
	}
	if c.Waves[len(c.Waves)-1] != "100%" {
		return invalid("last wave %q: want 100%%, so that every device is reached", clip(c.Waves[len(c.Waves)-1]))
	}
	if !(c.SuccessThreshold > 0 && c.SuccessThreshold <= 1) {
		return invalid("success_threshold %v: want above 0 and at most 1", c.SuccessThreshold)
	}
	if !(c.ErrorThreshold >= 0 && c.ErrorThreshold < 1) {
		return invalid("error_threshold %v: want 0 to below 1", c.ErrorThreshold)
	}
	return nil
}

// WaveProgress counts a wave's devices by where they are.
type WaveProgress struct {
	Size       int  `json:"size"`
	Open       bool `json:"open"`
	Assigned   int  `json:"assigned"`   // given the release, not reported since
	Installing int  `json:"installing"` // downloading, verifying, installing, rebooting
	Succeeded  int  `json:"succeeded"`
	Failed     int  `json:"failed"`
}

// Rollout is a rollout and its progress.
type Rollout struct {
	ID               int64          `json:"id"`
	Board            string         `json:"board"`
	Version          string         `json:"version"`
	Target           string         `json:"target"`
	Waves            []string       `json:"waves"`
	SuccessThreshold float64        `json:"success_threshold"`
	ErrorThreshold   float64        `json:"error_threshold"`
	State            string         `json:"state"`
	Reason           string         `json:"reason,omitempty"`
	Created          time.Time      `json:"created"`
	Updated          time.Time      `json:"updated"`
	Progress         []WaveProgress `json:"progress,omitempty"`
}

// RolloutDevice is a device in a rollout.
type RolloutDevice struct {
	DeviceID string `json:"device_id"`
	// Wave is the device's wave, from 1.
	Wave    int       `json:"wave"`
	State   string    `json:"state"` // assigned, installing, succeeded or failed
	Updated time.Time `json:"updated"`
}

// RolloutDevices is every device of a rollout, by wave then ID.
type RolloutDevices struct {
	Devices []RolloutDevice `json:"devices"`
}

// RolloutList is every rollout, newest first.
type RolloutList struct {
	Rollouts []Rollout `json:"rollouts"`
}

// TimelineEntry is one status report.
type TimelineEntry struct {
	ID     int64     `json:"id"`
	At     time.Time `json:"at"`
	Status Status    `json:"status"`
}

// Timeline is a page of a device's status reports, oldest first.
type Timeline struct {
	Reports []TimelineEntry `json:"reports"`
	// Next, when set, is the after= value that asks for the next page.
	Next int64 `json:"next,omitempty"`
}

// Artifact is a file attached to a release for hawkBit DDI clients, with
// its size and digests (lower-case hex).
type Artifact struct {
	Board   string `json:"board"`
	Version string `json:"version"`
	Name    string `json:"name"`
	Size    int64  `json:"size"`
	SHA256  string `json:"sha256"`
	SHA1    string `json:"sha1"`
	MD5     string `json:"md5"`
}
