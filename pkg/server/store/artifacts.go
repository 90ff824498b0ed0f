package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// Artifact is a file attached to a release for hawkBit DDI clients, kept
// by its SHA-256.
type Artifact struct {
	Board, Version, Name string
	Size                 int64
	SHA256, SHA1, MD5    string
	Created              time.Time
}

// Artifacts holds the files attached to releases.
type Artifacts interface {
	// AddArtifact attaches a to its release, recording ev: ErrNotFound
	// for a release that is not there, ErrExists for a name it has.
	AddArtifact(ctx context.Context, a Artifact, ev Event) error
	// Artifacts returns a release's files, by name.
	Artifacts(ctx context.Context, board, version string) ([]Artifact, error)
	// ArtifactDigests returns the SHA-256 of every file some release
	// has, each once.
	ArtifactDigests(ctx context.Context) ([]string, error)
}

// AddArtifact implements Artifacts.
func (s *DB) AddArtifact(ctx context.Context, a Artifact, ev Event) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM releases WHERE board = $1 AND version = $2`, a.Board, a.Version).Scan(&n); err != nil {
			return fmt.Errorf("release %s %s: %w", a.Board, a.Version, err)
		}
		if n == 0 {
			return fmt.Errorf("release %s %s: %w", a.Board, a.Version, ErrNotFound)
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO release_artifacts (board, version, name, size, sha256, sha1, md5, created) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
			a.Board, a.Version, a.Name, a.Size, a.SHA256, a.SHA1, a.MD5, a.Created.UnixNano())
		if s.d.uniqueViolation(err) {
			return fmt.Errorf("release %s %s: artifact %s: %w", a.Board, a.Version, a.Name, ErrExists)
		}
		if err != nil {
			return fmt.Errorf("release %s %s: artifact %s: %w", a.Board, a.Version, a.Name, err)
		}
		return record(ctx, tx, ev)
	})
}

// Artifacts implements Artifacts.
func (s *DB) Artifacts(ctx context.Context, board, version string) ([]Artifact, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT name, size, sha256, sha1, md5, created FROM release_artifacts WHERE board = $1 AND version = $2 ORDER BY name`, board, version)
	if err != nil {
		return nil, fmt.Errorf("artifacts of %s %s: %w", board, version, err)
	}
	defer rows.Close()
	var as []Artifact
	for rows.Next() {
		a := Artifact{Board: board, Version: version}
		var created sql.NullInt64
		if err := rows.Scan(&a.Name, &a.Size, &a.SHA256, &a.SHA1, &a.MD5, &created); err != nil {
			return nil, fmt.Errorf("artifacts of %s %s: %w", board, version, err)
		}
		a.Created = fromNanos(created)
		as = append(as, a)
	}
	return as, rows.Err()
}

// ArtifactDigests implements Artifacts.
func (s *DB) ArtifactDigests(ctx context.Context) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT DISTINCT sha256 FROM release_artifacts`)
	if err != nil {
		return nil, fmt.Errorf("artifact digests: %w", err)
	}
	defer rows.Close()
	var ds []string
	for rows.Next() {
		var d string
		if err := rows.Scan(&d); err != nil {
			return nil, fmt.Errorf("artifact digests: %w", err)
		}
		ds = append(ds, d)
	}
	return ds, rows.Err()
}
