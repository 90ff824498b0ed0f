// Package publish is the release side of a repository: it creates the
// signed metadata, rotates keys, and puts images into the store, the
// indexes beside it. Devices read the result through pkg/release.
package publish

import (
	"errors"
	"fmt"
	"github.com/lifeboat-update/lifeboat/pkg/durable"
	"github.com/lifeboat-update/lifeboat/pkg/release"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Default lifetimes of signed metadata. The timestamp is short: a device
// that sees none fresh for a day knows it is cut off or frozen.
var DefaultExpiry = map[string]time.Duration{
	release.RoleRoot:      365 * 24 * time.Hour,
	release.RoleTargets:   90 * 24 * time.Hour,
	release.RoleSnapshot:  7 * 24 * time.Hour,
	release.RoleTimestamp: 24 * time.Hour,
}

// KeySet holds the signers the release side has, by role. The offline
// roles' keys (root, targets) need only be present for the operations that
// sign those roles.
type KeySet map[string][]release.Signer

// LoadKeySet reads every key file under dir/<role>/*.key.
func LoadKeySet(dir string) (KeySet, error) {
	ks := KeySet{}
	for _, role := range release.Roles {
		files, err := filepath.Glob(filepath.Join(dir, role, "*.key"))
		if err != nil {
			return nil, err
		}
		slices.Sort(files)
		for _, f := range files {
			s, err := release.LoadKey(f)
			if err != nil {
				return nil, err
			}
			ks[role] = append(ks[role], s)
		}
	}
	return ks, nil
}

// GenerateKeySet makes one new key for each role, in dir/<role>.key: a
// repository for a test or a demo.
func GenerateKeySet(dir string) (KeySet, error) {
	ks := KeySet{}
	for _, role := range release.Roles {
		s, err := release.GenerateKey(filepath.Join(dir, role+".key"))
		if err != nil {
			return nil, err
		}
		ks[role] = []release.Signer{s}
	}
	return ks, nil
}

// signersFor returns the signers of ks that root authorises for role.
func (ks KeySet) signersFor(root *release.Root, role string) []release.Signer {
	var out []release.Signer
	for _, s := range ks[role] {
		if slices.Contains(root.Roles[role].KeyIDs, s.Public().ID()) {
			out = append(out, s)
		}
	}
	return out
}

// Repo is a repository directory on the release side.
type Repo struct {
	Dir string
	// Now is the clock; default time.Now.
	Now func() time.Time
}

func (r *Repo) now() time.Time {
	if r.Now != nil {
		return r.Now().UTC().Truncate(time.Second)
	}
	return time.Now().UTC().Truncate(time.Second)
}

func (r *Repo) metaPath(name string) string { return filepath.Join(r.Dir, release.MetadataDir, name) }

// Init creates a repository signed by ks, with thresholds by role (default
// 1), and an empty list of releases.
func Init(dir string, ks KeySet, thresholds map[string]int) (*Repo, error) {
	r := &Repo{Dir: dir}
	if _, err := os.Stat(r.metaPath("root.json")); err == nil {
		return nil, fmt.Errorf("%s already holds a repository", dir)
	}
	for _, d := range []string{release.MetadataDir, release.IndexDir, release.StoreDir} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	root := &release.Root{Header: release.Header{Type: release.RoleRoot, Version: 1}, Keys: map[string]release.Key{}, Roles: map[string]release.RoleKeys{}}
	for _, role := range release.Roles {
		if len(ks[role]) == 0 {
			return nil, fmt.Errorf("no %s key", role)
		}
		t := max(thresholds[role], 1)
		if t > len(ks[role]) {
			return nil, fmt.Errorf("%s threshold %d exceeds its %d keys", role, t, len(ks[role]))
		}
		rk := release.RoleKeys{Threshold: t}
		for _, s := range ks[role] {
			k := s.Public()
			root.Keys[k.ID()] = k
			rk.KeyIDs = append(rk.KeyIDs, k.ID())
		}
		root.Roles[role] = rk
	}
	if err := r.writeRoot(root, ks[release.RoleRoot]); err != nil {
		return nil, err
	}
	targets := &release.Targets{Header: release.Header{Type: release.RoleTargets}, Releases: []release.Release{}}
	return r, r.publish(root, targets, ks)
}

// writeRoot signs root with signers and writes it as N.root.json and as
// root.json, the copy that bootstraps a new device.
func (r *Repo) writeRoot(root *release.Root, signers []release.Signer) error {
	root.Expires = r.now().Add(DefaultExpiry[release.RoleRoot])
	b, err := release.Sign(root, signers)
	if err != nil {
		return err
	}
	if err := r.writeMeta(fmt.Sprintf("%d.root.json", root.Version), b); err != nil {
		return err
	}
	return r.writeMeta("root.json", b)
}

// Root returns the repository's current root.
func (r *Repo) Root() (*release.Root, error) {
	b, err := os.ReadFile(r.metaPath("root.json"))
	if err != nil {
		return nil, err
	}
	var root release.Root
	return &root, release.Decode(b, release.RoleRoot, &root)
}

// Targets returns the repository's current targets, found through the
// timestamp and snapshot as a device finds them.
func (r *Repo) Targets() (*release.Targets, *release.Snapshot, *release.Timestamp, error) {
	var ts release.Timestamp
	if err := r.readRole("timestamp.json", release.RoleTimestamp, &ts); err != nil {
		return nil, nil, nil, err
	}
	var sn release.Snapshot
	if err := r.readRole(fmt.Sprintf("%d.snapshot.json", ts.Snapshot.Version), release.RoleSnapshot, &sn); err != nil {
		return nil, nil, nil, err
	}
	var tg release.Targets
	if err := r.readRole(fmt.Sprintf("%d.targets.json", sn.Targets.Version), release.RoleTargets, &tg); err != nil {
		return nil, nil, nil, err
	}
	return &tg, &sn, &ts, nil
}

func (r *Repo) readRole(name, role string, v any) error {
	b, err := os.ReadFile(r.metaPath(name))
	if err != nil {
		return err
	}
	return release.Decode(b, role, v)
}

// AddRelease signs a new targets with rel added, then a new snapshot and
// timestamp. A release must be newer than every release of its board.
func (r *Repo) AddRelease(rel release.Release, ks KeySet) error {
	if err := release.ValidateRelease(&rel); err != nil {
		return err
	}
	root, err := r.Root()
	if err != nil {
		return err
	}
	targets, _, _, err := r.Targets()
	if err != nil {
		return err
	}
	for _, old := range targets.Releases {
		if old.Board != rel.Board {
			continue
		}
		if c, err := release.CompareVersions(rel.Version, old.Version); err != nil || c <= 0 {
			return fmt.Errorf("release %s/%s: versions only move forward, and %s is out", rel.Board, rel.Version, old.Version)
		}
	}
	targets.Releases = append(targets.Releases, rel)
	return r.publish(root, targets, ks)
}

// publish signs targets as its next version, then snapshot and timestamp.
func (r *Repo) publish(root *release.Root, targets *release.Targets, ks KeySet) error {
	targets.Version++
	targets.Expires = r.now().Add(DefaultExpiry[release.RoleTargets])
	tb, err := r.signRole(root, release.RoleTargets, targets, ks)
	if err != nil {
		return err
	}
	if err := r.writeMeta(fmt.Sprintf("%d.targets.json", targets.Version), tb); err != nil {
		return err
	}
	return r.publishSnapshot(root, release.MetaFile{Version: targets.Version, Length: int64(len(tb)), SHA256: release.HashOf(tb)}, ks)
}

// publishSnapshot signs a new snapshot pinning targets, and a new timestamp.
func (r *Repo) publishSnapshot(root *release.Root, targets release.MetaFile, ks KeySet) error {
	var version int64 = 1
	if _, sn, _, err := r.Targets(); err == nil {
		version = sn.Version + 1
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	sn := &release.Snapshot{Header: release.Header{Type: release.RoleSnapshot, Version: version, Expires: r.now().Add(DefaultExpiry[release.RoleSnapshot])}, Targets: targets}
	sb, err := r.signRole(root, release.RoleSnapshot, sn, ks)
	if err != nil {
		return err
	}
	if err := r.writeMeta(fmt.Sprintf("%d.snapshot.json", sn.Version), sb); err != nil {
		return err
	}
	var tsVersion int64 = 1
	var old release.Timestamp
	if err := r.readRole("timestamp.json", release.RoleTimestamp, &old); err == nil {
		tsVersion = old.Version + 1
	}
	now := r.now()
	ts := &release.Timestamp{
		Header:   release.Header{Type: release.RoleTimestamp, Version: tsVersion, Expires: now.Add(DefaultExpiry[release.RoleTimestamp])},
		Issued:   now,
		Snapshot: release.MetaFile{Version: sn.Version, Length: int64(len(sb)), SHA256: release.HashOf(sb)},
	}
	tb, err := r.signRole(root, release.RoleTimestamp, ts, ks)
	if err != nil {
		return err
	}
	return r.writeMeta("timestamp.json", tb)
}

// Refresh re-signs the short-lived metadata, snapshot and timestamp, with
// the online keys: what a server runs from cron.
func (r *Repo) Refresh(ks KeySet) error {
	root, err := r.Root()
	if err != nil {
		return err
	}
	_, sn, _, err := r.Targets()
	if err != nil {
		return err
	}
	return r.publishSnapshot(root, sn.Targets, ks)
}

func (r *Repo) signRole(root *release.Root, role string, v any, ks KeySet) ([]byte, error) {
	signers := ks.signersFor(root, role)
	if len(signers) < root.Roles[role].Threshold {
		return nil, fmt.Errorf("sign %s: have %d of its keys, threshold is %d", role, len(signers), root.Roles[role].Threshold)
	}
	return release.Sign(v, signers)
}

// Rotate replaces the keys of role with newKeys (threshold t) in a new
// root version, revoking the old ones. The new root is signed by the
// current root keys and, when root itself rotates, by the new ones too, so a
// device can follow the chain. Snapshot and timestamp are re-signed with the
// keys now in force.
func (r *Repo) Rotate(role string, newKeys []release.Signer, t int, ks KeySet) error {
	if !slices.Contains(release.Roles, role) {
		return fmt.Errorf("unknown role %q (want one of %s)", role, strings.Join(release.Roles, ", "))
	}
	if t < 1 || t > len(newKeys) {
		return fmt.Errorf("threshold %d for %d keys", t, len(newKeys))
	}
	root, err := r.Root()
	if err != nil {
		return err
	}
	oldSigners := ks.signersFor(root, release.RoleRoot)
	if len(oldSigners) < root.Roles[release.RoleRoot].Threshold {
		return fmt.Errorf("rotate: have %d current root keys, threshold is %d", len(oldSigners), root.Roles[release.RoleRoot].Threshold)
	}
	next := &release.Root{Header: release.Header{Type: release.RoleRoot, Version: root.Version + 1}, Keys: map[string]release.Key{}, Roles: map[string]release.RoleKeys{}}
	for name, rk := range root.Roles {
		next.Roles[name] = rk
	}
	rk := release.RoleKeys{Threshold: t}
	for _, s := range newKeys {
		rk.KeyIDs = append(rk.KeyIDs, s.Public().ID())
	}
	next.Roles[role] = rk
	for _, rk := range next.Roles {
		for _, id := range rk.KeyIDs {
			if k, ok := root.Keys[id]; ok {
				next.Keys[id] = k
			}
		}
	}
	for _, s := range newKeys {
		next.Keys[s.Public().ID()] = s.Public()
	}
	signers := oldSigners
	if role == release.RoleRoot {
		signers = append(slices.Clone(oldSigners), newKeys...)
	}
	if err := r.writeRoot(next, signers); err != nil {
		return err
	}
	nks := KeySet{}
	for k, v := range ks {
		nks[k] = v
	}
	nks[role] = newKeys
	if role == release.RoleTargets {
		targets, _, _, err := r.Targets()
		if err != nil {
			return err
		}
		return r.publish(next, targets, nks)
	}
	_, sn, _, err := r.Targets()
	if err != nil {
		return err
	}
	return r.publishSnapshot(next, sn.Targets, nks)
}

// writeMeta replaces a metadata file durably: a reader (or a power cut)
// sees the old file or the new, never a mix.
func (r *Repo) writeMeta(name string, b []byte) error {
	return durable.WriteFile(durable.OS(r.Dir), release.MetadataDir+"/"+name, b, 0o644)
}
