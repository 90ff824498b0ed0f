package publish

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/lifeboat-update/lifeboat/pkg/assemble"
	"github.com/lifeboat-update/lifeboat/pkg/chunk"
	"github.com/lifeboat-update/lifeboat/pkg/durable"
	"github.com/lifeboat-update/lifeboat/pkg/progress"
	"github.com/lifeboat-update/lifeboat/pkg/release"
	"github.com/lifeboat-update/lifeboat/pkg/store"
	"github.com/lifeboat-update/lifeboat/pkg/verity"
)

// VerifiedImage is one image the gate checked.
type VerifiedImage struct {
	Board   string `json:"board"`
	Version string `json:"version"`
	Class   string `json:"class"`
	Size    int64  `json:"size"`
	Chunks  int    `json:"chunks"`
	Verity  bool   `json:"verity"`
}

// Verify is the gate before a repository is published: it verifies the
// metadata as a new device would (from root version 1, every signature,
// version and expiry), then rebuilds every image of the selected releases
// from its index and the store, verifying each chunk, the image's SHA-256
// and, where there is one, its dm-verity tree against the signed root hash.
// board and version select releases; empty selects all.
func Verify(ctx context.Context, repoDir, board, version string, prog progress.Reporter) ([]VerifiedImage, error) {
	root, err := os.ReadFile(filepath.Join(repoDir, release.MetadataDir, "1.root.json"))
	if err != nil {
		return nil, err
	}
	stateDir, err := os.MkdirTemp("", "lifeboat-verify-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(stateDir)
	state := durable.OS(stateDir)
	if err := release.Provision(state, root); err != nil {
		return nil, fmt.Errorf("root version 1: %w", err)
	}
	fetch := release.DirFetcher{Dir: repoDir}
	client := &release.Client{State: state, Fetch: fetch, Now: time.Now}
	targets, err := client.Refresh(ctx)
	if err != nil {
		return nil, err
	}
	st, err := store.Open(filepath.Join(repoDir, release.StoreDir))
	if err != nil {
		return nil, err
	}
	var out []VerifiedImage
	for _, rel := range targets.Releases {
		if (board != "" && rel.Board != board) || (version != "" && rel.Version != version) {
			continue
		}
		for _, im := range rel.Images {
			chunks, err := verifyImage(ctx, fetch, st, im, prog)
			if err != nil {
				return out, fmt.Errorf("release %s/%s image %s: %w", rel.Board, rel.Version, im.Class, err)
			}
			out = append(out, VerifiedImage{Board: rel.Board, Version: rel.Version, Class: im.Class, Size: im.Size, Chunks: chunks, Verity: im.Verity != nil})
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no release matches board %q version %q", board, version)
	}
	return out, nil
}

// verifyImage checks one image and returns its number of chunks.
func verifyImage(ctx context.Context, fetch release.Fetcher, st store.Store, im release.Image, prog progress.Reporter) (int, error) {
	b, err := fetch.Fetch(ctx, im.Index.Path, im.Index.Length)
	if err != nil {
		return 0, err
	}
	if got := release.HashOf(b); got != im.Index.SHA256 {
		return 0, release.Refuse(release.ErrArbitrarySoftware, "index %s hashes to %s, signed %s", im.Index.Path, got, im.Index.SHA256)
	}
	idx, err := chunk.ReadIndex(bytes.NewReader(b))
	if err != nil {
		return 0, fmt.Errorf("%s: %w", im.Index.Path, err)
	}
	if int64(idx.Size()) != im.Size {
		return 0, fmt.Errorf("index describes %d bytes, the release signed %d", idx.Size(), im.Size)
	}
	h := sha256.New()
	var w io.Writer = h
	var tmp *os.File
	if im.Verity != nil {
		// The tree is checked against the data after the stream: keep the
		// image in a sparse temporary file.
		if tmp, err = os.CreateTemp("", "lifeboat-verify-*.img"); err != nil {
			return 0, err
		}
		defer os.Remove(tmp.Name())
		defer tmp.Close()
		w = io.MultiWriter(h, &sparseWriter{f: tmp})
	}
	if _, err := assemble.Stream(ctx, idx, w, assemble.Options{Stores: []store.Store{st}, Progress: prog}); err != nil {
		return 0, err
	}
	if tmp != nil {
		if err := tmp.Truncate(im.Size); err != nil {
			return 0, err
		}
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != im.SHA256 {
		return 0, release.Refuse(release.ErrArbitrarySoftware, "image hashes to %s, signed %s", got, im.SHA256)
	}
	if im.Verity == nil {
		return len(idx.Chunks), nil
	}
	return len(idx.Chunks), verifyTree(ctx, tmp, im.Verity)
}

// verifyTree recomputes an image's verity tree and checks the signed root.
func verifyTree(ctx context.Context, img io.ReaderAt, v *release.Verity) error {
	p, root, err := VerityParams(v)
	if err != nil {
		return err
	}
	var opts []verity.Option
	if !v.Superblock {
		opts = append(opts, verity.WithoutSuperblock())
	}
	if err := verity.Verify(ctx, img, v.DataSize, img, v.HashOffset, p, root, opts...); err != nil {
		return fmt.Errorf("verity: %w", err)
	}
	return nil
}

// VerityParams converts signed verity metadata to tree parameters and the
// root hash.
func VerityParams(v *release.Verity) (verity.Params, []byte, error) {
	salt, err := hex.DecodeString(v.Salt)
	if err != nil {
		return verity.Params{}, nil, fmt.Errorf("verity salt: %w", err)
	}
	root, err := hex.DecodeString(v.RootHash)
	if err != nil {
		return verity.Params{}, nil, fmt.Errorf("verity root hash: %w", err)
	}
	p := verity.Params{HashAlg: v.Algorithm, DataBlockSize: v.DataBlockSize, HashBlockSize: v.HashBlockSize, Salt: salt, Version: v.Format}
	return p, root, nil
}

// sparseWriter writes a stream into a file, seeking over blocks of zeros so
// that they take no space.
type sparseWriter struct {
	f   *os.File
	off int64
}

func (w *sparseWriter) Write(p []byte) (int, error) {
	const block = 4096
	n := len(p)
	for len(p) > 0 {
		k := min(len(p), block)
		if !allZero(p[:k]) {
			if _, err := w.f.WriteAt(p[:k], w.off); err != nil {
				return n - len(p), err
			}
		}
		w.off += int64(k)
		p = p[k:]
	}
	return n, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
