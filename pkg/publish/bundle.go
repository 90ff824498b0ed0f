package publish

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/lifeboat-update/lifeboat/pkg/chunk"
	"github.com/lifeboat-update/lifeboat/pkg/release"
	"github.com/lifeboat-update/lifeboat/pkg/store"
)

// BundleStats says what a bundle holds.
type BundleStats struct {
	Board    string `json:"board"`
	Version  string `json:"version"`
	Baseline string `json:"baseline,omitempty"`
	Chunks   int    `json:"chunks"`
	// Skipped are the release's chunks left out because the baseline
	// release has them: the device has them in its running slots.
	Skipped int   `json:"skipped_chunks"`
	Bytes   int64 `json:"bytes"`
}

// Bundle writes a USB bundle for one release into out: the repository's
// layout (metadata, the release's indexes, chunks), which a device reads
// and verifies exactly as it does the network repository. With a baseline
// version, chunks the baseline release of the same board already has are
// left out (a delta stick): the device takes them from its slots.
func Bundle(ctx context.Context, repoDir, board, version, baseline, out string) (*BundleStats, error) {
	repo := &Repo{Dir: repoDir}
	targets, _, _, err := repo.Targets()
	if err != nil {
		return nil, err
	}
	find := func(v string) (*release.Release, error) {
		for i, r := range targets.Releases {
			if r.Version == v && (board == "" || r.Board == board) {
				return &targets.Releases[i], nil
			}
		}
		return nil, fmt.Errorf("no release %s for board %q in %s", v, board, repoDir)
	}
	rel, err := find(version)
	if err != nil {
		return nil, err
	}
	stats := &BundleStats{Board: rel.Board, Version: rel.Version, Baseline: baseline}
	skip := map[chunk.ID]bool{}
	if baseline != "" {
		base, err := find(baseline)
		if err != nil {
			return nil, err
		}
		if base.Board != rel.Board {
			return nil, fmt.Errorf("baseline %s is for board %s, release %s for %s", baseline, base.Board, version, rel.Board)
		}
		for _, im := range base.Images {
			idx, err := chunk.ReadIndexFile(filepath.Join(repoDir, filepath.FromSlash(im.Index.Path)))
			if err != nil {
				return nil, err
			}
			for _, e := range idx.Chunks {
				skip[e.ID] = true
			}
		}
	}
	if _, err := os.Stat(out); err == nil {
		return nil, fmt.Errorf("%s exists; a bundle goes into a new directory", out)
	}
	// Metadata: the whole root chain and the current roles, as served.
	if err := copyDir(filepath.Join(repoDir, release.MetadataDir), filepath.Join(out, release.MetadataDir)); err != nil {
		return nil, err
	}
	src, err := store.NewLocal(filepath.Join(repoDir, release.StoreDir))
	if err != nil {
		return nil, err
	}
	dst, err := store.NewLocal(filepath.Join(out, release.StoreDir))
	if err != nil {
		return nil, err
	}
	seen := map[chunk.ID]bool{}
	for _, im := range rel.Images {
		from := filepath.Join(repoDir, filepath.FromSlash(im.Index.Path))
		if err := copyFile(from, filepath.Join(out, filepath.FromSlash(im.Index.Path))); err != nil {
			return nil, err
		}
		idx, err := chunk.ReadIndexFile(from)
		if err != nil {
			return nil, err
		}
		for _, e := range idx.Chunks {
			if seen[e.ID] {
				continue
			}
			seen[e.ID] = true
			if skip[e.ID] {
				stats.Skipped++
				continue
			}
			b, err := src.Get(ctx, e.ID)
			if err != nil {
				return nil, err
			}
			if err := dst.Put(ctx, e.ID, b); err != nil {
				return nil, err
			}
			stats.Chunks++
			stats.Bytes += int64(len(b))
		}
	}
	return stats, nil
}

func copyDir(from, to string) error {
	entries, err := os.ReadDir(from)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(to, 0o755); err != nil {
		return err
	}
	for _, e := range entries {
		if e.Type().IsRegular() && e.Name()[0] != '.' {
			if err := copyFile(filepath.Join(from, e.Name()), filepath.Join(to, e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return err
	}
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", from, err)
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
