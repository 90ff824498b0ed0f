package release

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/lifeboat-update/lifeboat/pkg/chunk"
	"github.com/lifeboat-update/lifeboat/pkg/durable"
)

// Files of the device's trusted state, in its state directory. Each is
// replaced atomically and durably (durable.WriteFile), so a power cut
// leaves the old version or the new, never a mix.
const (
	stateRoot      = "root.json"
	stateTimestamp = "timestamp.json"
	stateSnapshot  = "snapshot.json"
	stateTargets   = "targets.json"
	stateFile      = "state.json"
)

// ErrUpToDate reports that the release planned (the newest for the board,
// or the version asked for) is the one installed.
var ErrUpToDate = errors.New("already up to date")

// ErrNoRelease reports that the signed targets hold no release of the
// version asked for, for the device's board.
var ErrNoRelease = errors.New("no such release")

// state is what a device remembers besides metadata.
type state struct {
	// Installed is the highest release version installed: nothing older
	// is ever planned again.
	Installed string `json:"installed,omitempty"`
	// TimeFloor is the latest time the device has seen in signed metadata.
	// A device whose clock reads earlier uses the floor.
	TimeFloor time.Time `json:"time_floor"`
	// Revoked are keys root has dropped, kept to recognise them.
	Revoked map[string]Key `json:"revoked,omitempty"`
}

// Client is the device side of a repository: it keeps the trusted state,
// refreshes it by TUF's workflow, and plans installs from it.
type Client struct {
	// State is the directory of trusted state (on the data partition).
	State durable.FS
	// Fetch reads the repository: HTTP(S) or a USB bundle, verified alike.
	Fetch Fetcher
	// Board is this device's board; releases for others are refused.
	Board string
	// Now is the clock; default time.Now. A device without a trustworthy
	// clock still never goes back before its time floor.
	Now func() time.Time
}

// Provision stores the first trusted root on a new device: what the factory
// writes. The root must carry its own threshold of valid signatures.
func Provision(fsys durable.FS, rootJSON []byte) error {
	env, err := parseEnvelope(rootJSON)
	if err != nil {
		return fmt.Errorf("root: %w", err)
	}
	var root Root
	if err := decodeRole(env, RoleRoot, &root); err != nil {
		return err
	}
	if err := checkSignatures(env, RoleRoot, root.Roles[RoleRoot], root.Keys); err != nil {
		return err
	}
	return durable.WriteFile(fsys, stateRoot, rootJSON, 0o644)
}

// trusted is the verified state loaded from disk.
type trusted struct {
	root     *Root
	ts       *Timestamp
	snapshot *Snapshot
	targets  *Targets
	st       state
}

func (c *Client) now(floor time.Time) time.Time {
	now := time.Now()
	if c.Now != nil {
		now = c.Now()
	}
	if now.Before(floor) {
		return floor
	}
	return now
}

// load reads the trusted state. Metadata on disk was verified before it was
// written, but is checked again against the trusted root: the state
// partition is not a root of trust.
func (c *Client) load() (*trusted, error) {
	t := &trusted{}
	b, err := c.State.ReadFile(stateRoot)
	if err != nil {
		return nil, fmt.Errorf("trusted root: %w (provision the device first)", err)
	}
	env, err := parseEnvelope(b)
	if err != nil {
		return nil, fmt.Errorf("trusted root: %w", err)
	}
	t.root = &Root{}
	if err := decodeRole(env, RoleRoot, t.root); err != nil {
		return nil, err
	}
	if err := checkSignatures(env, RoleRoot, t.root.Roles[RoleRoot], t.root.Keys); err != nil {
		return nil, fmt.Errorf("trusted root: %w", err)
	}
	if b, err := c.State.ReadFile(stateFile); err == nil {
		if err := json.Unmarshal(b, &t.st); err != nil {
			return nil, fmt.Errorf("%s: %w", stateFile, err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	// A trusted role that no longer verifies under the trusted root (its
	// keys rotated, or the file is damaged) is treated as absent: the next
	// refresh fetches it again, and the roles above it still pin versions.
	var loadErr error
	loadRole := func(name, role string, v interface{ header() Header }) bool {
		b, err := c.State.ReadFile(name)
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) && loadErr == nil {
				loadErr = fmt.Errorf("trusted %s: %w", name, err)
			}
			return false
		}
		env, err := parseEnvelope(b)
		if err != nil {
			return false
		}
		return checkSignatures(env, role, t.root.Roles[role], t.root.Keys) == nil && decodeRole(env, role, v) == nil
	}
	if ts := (&Timestamp{}); loadRole(stateTimestamp, RoleTimestamp, ts) {
		t.ts = ts
	}
	if sn := (&Snapshot{}); loadRole(stateSnapshot, RoleSnapshot, sn) {
		t.snapshot = sn
	}
	if tg := (&Targets{}); loadRole(stateTargets, RoleTargets, tg) {
		t.targets = tg
	}
	return t, loadErr
}

func (c *Client) saveState(st state) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return durable.WriteFile(c.State, stateFile, b, 0o644)
}

// Refresh brings the trusted metadata up to date from the repository,
// following TUF's client workflow: the chain of roots, then timestamp,
// snapshot and targets, each checked for signatures, version, expiry and
// consistency with the role above it. It returns the verified targets.
func (c *Client) Refresh(ctx context.Context) (*Targets, error) {
	// Temporary files of writes a power cut interrupted would pile up.
	if err := durable.Clean(c.State, "."); err != nil {
		return nil, err
	}
	t, err := c.load()
	if err != nil {
		return nil, err
	}
	if err := c.updateRoot(ctx, t); err != nil {
		return nil, err
	}
	now := c.now(t.st.TimeFloor)
	if now.After(t.root.Expires) {
		return nil, refuse(ErrFreeze, "root v%d expired at %s", t.root.Version, t.root.Expires.Format(time.RFC3339))
	}
	if err := c.updateTimestamp(ctx, t); err != nil {
		return nil, err
	}
	if err := c.updateSnapshot(ctx, t); err != nil {
		return nil, err
	}
	if err := c.updateTargets(ctx, t); err != nil {
		return nil, err
	}
	return t.targets, nil
}

// updateRoot follows root versions N+1, N+2 ... while the repository has
// them. Each must be signed by the threshold of the root before it and of
// itself. When the timestamp or snapshot keys change, the trusted copies of
// those roles are dropped first: a compromised key may have pushed their
// versions arbitrarily high (fast-forward), and keeping them would freeze
// the device once the keys are replaced.
func (c *Client) updateRoot(ctx context.Context, t *trusted) error {
	for {
		name := fmt.Sprintf("%s/%d.root.json", MetadataDir, t.root.Version+1)
		b, err := c.Fetch.Fetch(ctx, name, MaxRootSize)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		env, err := parseEnvelope(b)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if err := checkSignatures(env, RoleRoot, t.root.Roles[RoleRoot], t.root.Keys); err != nil {
			return fmt.Errorf("%s, by the trusted root: %w", name, err)
		}
		next := &Root{}
		if err := decodeRole(env, RoleRoot, next); err != nil {
			return err
		}
		if err := checkSignatures(env, RoleRoot, next.Roles[RoleRoot], next.Keys); err != nil {
			return fmt.Errorf("%s, by itself: %w", name, err)
		}
		if next.Version != t.root.Version+1 {
			return refuse(ErrRollback, "%s holds root version %d", name, next.Version)
		}
		st := t.st
		st.Revoked = maps.Clone(st.Revoked)
		if st.Revoked == nil {
			st.Revoked = map[string]Key{}
		}
		for id, k := range t.root.Keys {
			if _, ok := next.Keys[id]; !ok {
				st.Revoked[id] = k
			}
		}
		rotated := func(role string) bool {
			return !slices.Equal(t.root.Roles[role].KeyIDs, next.Roles[role].KeyIDs)
		}
		var drop []string
		if rotated(RoleTimestamp) || rotated(RoleSnapshot) {
			drop = append(drop, stateTimestamp, stateSnapshot)
			t.ts, t.snapshot = nil, nil
			// The time floor came from timestamps the old keys signed; a
			// compromised key may have pushed it into the future.
			st.TimeFloor = time.Time{}
		}
		if rotated(RoleTargets) {
			drop = append(drop, stateTargets)
			t.targets = nil
		}
		for _, f := range drop {
			if err := c.State.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
		if len(drop) > 0 {
			if err := c.State.SyncDir("."); err != nil {
				return err
			}
		}
		if err := c.saveState(st); err != nil {
			return err
		}
		if err := durable.WriteFile(c.State, stateRoot, b, 0o644); err != nil {
			return err
		}
		t.root, t.st = next, st
	}
}

// verifyRole checks a role's signatures; a role validly signed by a key
// root has revoked, with a version above the trusted one, is a
// fast-forward attempt.
func (t *trusted) verifyRole(env *Envelope, role string, v interface{ header() Header }, trustedVersion int64) error {
	err := checkSignatures(env, role, t.root.Roles[role], t.root.Keys)
	if err == nil {
		return decodeRole(env, role, v)
	}
	if len(t.st.Revoked) > 0 && decodeRole(env, role, v) == nil && v.header().Version > trustedVersion {
		revoked := RoleKeys{Threshold: 1, KeyIDs: slices.Collect(maps.Keys(t.st.Revoked))}
		if checkSignatures(env, role, revoked, t.st.Revoked) == nil {
			return refuse(ErrFastForward, "%s v%d is signed by a key root revoked", role, v.header().Version)
		}
	}
	return err
}

func (c *Client) updateTimestamp(ctx context.Context, t *trusted) error {
	name := MetadataDir + "/timestamp.json"
	b, err := c.Fetch.Fetch(ctx, name, MaxTimestampSize)
	if err != nil {
		return err
	}
	env, err := parseEnvelope(b)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	var old int64
	if t.ts != nil {
		old = t.ts.Version
	}
	ts := &Timestamp{}
	if err := t.verifyRole(env, RoleTimestamp, ts, old); err != nil {
		return err
	}
	if t.ts != nil {
		if ts.Version < t.ts.Version {
			return refuse(ErrRollback, "timestamp v%d is older than the trusted v%d", ts.Version, t.ts.Version)
		}
		if ts.Snapshot.Version < t.ts.Snapshot.Version {
			return refuse(ErrRollback, "timestamp names snapshot v%d, older than the trusted v%d", ts.Snapshot.Version, t.ts.Snapshot.Version)
		}
		if ts.Version == t.ts.Version && ts.Snapshot != t.ts.Snapshot {
			return refuse(ErrMixAndMatch, "two different timestamps carry version %d", ts.Version)
		}
	}
	if now := c.now(t.st.TimeFloor); now.After(ts.Expires) {
		return refuse(ErrFreeze, "timestamp v%d expired at %s (now %s)", ts.Version, ts.Expires.Format(time.RFC3339), now.Format(time.RFC3339))
	}
	st := t.st
	if ts.Issued.After(st.TimeFloor) {
		st.TimeFloor = ts.Issued
	}
	if err := durable.WriteFile(c.State, stateTimestamp, b, 0o644); err != nil {
		return err
	}
	if err := c.saveState(st); err != nil {
		return err
	}
	t.ts, t.st = ts, st
	return nil
}

// fetchPinned fetches a file pinned by a MetaFile: at most its length, and
// exactly its hash.
func (c *Client) fetchPinned(ctx context.Context, name string, m MetaFile) ([]byte, error) {
	b, err := c.Fetch.Fetch(ctx, name, m.Length)
	if err != nil {
		return nil, err
	}
	if got := hashOf(b); got != m.SHA256 {
		return nil, refuse(ErrMixAndMatch, "%s hashes to %s, the role above signed %s", name, got, m.SHA256)
	}
	return b, nil
}

// fetchRole fetches the file of role that the role above pinned, and
// checks it: the pinned length and hash, its signatures, the pinned version
// and its expiry. trustedVersion is the version the device holds, if any.
func (c *Client) fetchRole(ctx context.Context, t *trusted, role string, pin MetaFile, v interface{ header() Header }, trustedVersion int64) ([]byte, error) {
	name := fmt.Sprintf("%s/%d.%s.json", MetadataDir, pin.Version, role)
	b, err := c.fetchPinned(ctx, name, pin)
	if err != nil {
		return nil, err
	}
	env, err := parseEnvelope(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if err := t.verifyRole(env, role, v, trustedVersion); err != nil {
		return nil, err
	}
	h := v.header()
	if h.Version != pin.Version {
		return nil, refuse(ErrMixAndMatch, "%s holds %s v%d", name, role, h.Version)
	}
	if now := c.now(t.st.TimeFloor); now.After(h.Expires) {
		return nil, refuse(ErrFreeze, "%s v%d expired at %s", role, h.Version, h.Expires.Format(time.RFC3339))
	}
	return b, nil
}

func (c *Client) updateSnapshot(ctx context.Context, t *trusted) error {
	var old int64
	if t.snapshot != nil {
		old = t.snapshot.Version
	}
	sn := &Snapshot{}
	b, err := c.fetchRole(ctx, t, RoleSnapshot, t.ts.Snapshot, sn, old)
	if err != nil {
		return err
	}
	if t.snapshot != nil && sn.Targets.Version < t.snapshot.Targets.Version {
		return refuse(ErrRollback, "snapshot names targets v%d, older than the trusted v%d", sn.Targets.Version, t.snapshot.Targets.Version)
	}
	if err := durable.WriteFile(c.State, stateSnapshot, b, 0o644); err != nil {
		return err
	}
	t.snapshot = sn
	return nil
}

func (c *Client) updateTargets(ctx context.Context, t *trusted) error {
	if t.targets != nil && t.targets.Version == t.snapshot.Targets.Version {
		if now := c.now(t.st.TimeFloor); now.After(t.targets.Expires) {
			return refuse(ErrFreeze, "targets v%d expired at %s", t.targets.Version, t.targets.Expires.Format(time.RFC3339))
		}
		return nil
	}
	var old int64
	if t.targets != nil {
		old = t.targets.Version
	}
	tg := &Targets{}
	b, err := c.fetchRole(ctx, t, RoleTargets, t.snapshot.Targets, tg, old)
	if err != nil {
		return err
	}
	name := fmt.Sprintf("%s/%d.targets.json", MetadataDir, tg.Version)
	for i := range tg.Releases {
		if err := ValidateRelease(&tg.Releases[i]); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	if err := durable.WriteFile(c.State, stateTargets, b, 0o644); err != nil {
		return err
	}
	t.targets = tg
	return nil
}

// Plan is what the installer may act on: a verified release for this
// board, newer than what is installed, with each image's verified index.
type Plan struct {
	Board, Version string
	Images         []PlannedImage
}

// PlannedImage is one image of a plan with its parsed, verified index.
type PlannedImage struct {
	Image
	Index *chunk.Index
}

// Plan refreshes the trusted metadata and returns the plan for the newest
// release of the device's board. classes are the slot classes the device
// has: a release with an image for any other class is refused.
func (c *Client) Plan(ctx context.Context, classes []string) (*Plan, error) {
	return c.PlanVersion(ctx, classes, "")
}

// PlanVersion is Plan for release version of the device's board, the one
// a fleet server assigned; "" means the newest. The server is not trusted
// for content: the release must be in the signed targets (else an error
// wrapping ErrNoRelease names it), and rollback protection holds as for
// the newest (older than installed: ErrRollback; the installed one:
// ErrUpToDate).
func (c *Client) PlanVersion(ctx context.Context, classes []string, version string) (*Plan, error) {
	targets, err := c.Refresh(ctx)
	if err != nil {
		return nil, err
	}
	rel, err := c.pick(targets, version)
	if err != nil {
		return nil, err
	}
	t, err := c.load()
	if err != nil {
		return nil, err
	}
	what := "newest release"
	if version != "" {
		what = "release"
	}
	if t.st.Installed != "" {
		cmp, err := CompareVersions(rel.Version, t.st.Installed)
		if err != nil {
			return nil, err
		}
		if cmp < 0 {
			return nil, refuse(ErrRollback, "%s %s is older than the installed %s", what, rel.Version, t.st.Installed)
		}
		if cmp == 0 {
			return nil, fmt.Errorf("release %s: %w", rel.Version, ErrUpToDate)
		}
	}
	plan := &Plan{Board: rel.Board, Version: rel.Version}
	for _, im := range rel.Images {
		if !slices.Contains(classes, im.Class) {
			return nil, refuse(ErrExtraneous, "release %s has an image for slot class %q, which this device does not have", rel.Version, im.Class)
		}
		b, err := c.fetchPinned(ctx, im.Index.Path, MetaFile{Length: im.Index.Length, SHA256: im.Index.SHA256})
		if errors.Is(err, ErrMixAndMatch) {
			return nil, refuse(ErrArbitrarySoftware, "index of %s: %v", im.Class, err)
		}
		if err != nil {
			return nil, err
		}
		idx, err := chunk.ReadIndex(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("index of %s: %w", im.Class, err)
		}
		if int64(idx.Size()) != im.Size {
			return nil, refuse(ErrArbitrarySoftware, "index of %s describes %d bytes, the release signed %d", im.Class, idx.Size(), im.Size)
		}
		plan.Images = append(plan.Images, PlannedImage{Image: im, Index: idx})
	}
	return plan, nil
}

// pick returns the release of version for c's board in targets, or the
// newest when version is "".
func (c *Client) pick(targets *Targets, version string) (*Release, error) {
	var rel *Release
	var have []string
	for i := range targets.Releases {
		r := &targets.Releases[i]
		if r.Board != c.Board {
			continue
		}
		have = append(have, r.Version)
		switch {
		case version != "":
			if r.Version == version {
				return r, nil
			}
		case rel == nil:
			rel = r
		default:
			if cmp, _ := CompareVersions(r.Version, rel.Version); cmp > 0 {
				rel = r
			}
		}
	}
	switch {
	case len(have) == 0:
		return nil, refuse(ErrWrongBoard, "the repository has no release for board %q", c.Board)
	case rel == nil:
		return nil, fmt.Errorf("%w: release %q of board %s is not in the signed targets v%d (it lists %s)",
			ErrNoRelease, version, c.Board, targets.Version, strings.Join(have, ", "))
	}
	return rel, nil
}

// InstalledVersion returns the release recorded as installed, or "" for
// none.
func (c *Client) InstalledVersion() (string, error) {
	t, err := c.load()
	if err != nil {
		return "", err
	}
	return t.st.Installed, nil
}

// Installed records that version is installed and verified: from now on no
// older release is planned.
func (c *Client) Installed(version string) error {
	t, err := c.load()
	if err != nil {
		return err
	}
	if t.st.Installed != "" {
		if cmp, err := CompareVersions(version, t.st.Installed); err != nil || cmp < 0 {
			return refuse(ErrRollback, "installed %s, older than %s", version, t.st.Installed)
		}
	}
	t.st.Installed = version
	return c.saveState(t.st)
}
