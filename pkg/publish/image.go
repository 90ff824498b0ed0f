package publish

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"github.com/lifeboat-update/lifeboat/pkg/durable"
	"io"
	"os"
	"path/filepath"

	"github.com/lifeboat-update/lifeboat/pkg/chunk"
	"github.com/lifeboat-update/lifeboat/pkg/progress"
	"github.com/lifeboat-update/lifeboat/pkg/release"
	"github.com/lifeboat-update/lifeboat/pkg/store"
	"github.com/lifeboat-update/lifeboat/pkg/verity"
)

// ImageOptions say how an image is cut and protected.
type ImageOptions struct {
	Params chunk.Params
	Digest chunk.Digest
	// Verity, if set, builds a dm-verity hash tree (with its superblock)
	// after the data, which is padded to whole data blocks; the slot then
	// holds data, padding and tree, and all of it is signed. A nil Salt
	// gets veritysetup's default: 32 random bytes.
	Verity   *verity.Params
	Progress progress.Reporter
}

// AddImage puts the image at path into the repository for slot class: its
// chunks into the store (those it lacks), its index under indexes/ named by
// its SHA-256, and returns the signed description of it.
func (r *Repo) AddImage(ctx context.Context, class, path string, opt ImageOptions) (release.Image, error) {
	im := release.Image{Class: class}
	f, err := os.Open(path)
	if err != nil {
		return im, err
	}
	defer f.Close()
	dataSize, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return im, fmt.Errorf("%s: size: %w", path, err)
	}
	var content io.ReaderAt = f
	size := dataSize
	if opt.Verity != nil {
		var cleanup func()
		content, size, im.Verity, cleanup, err = r.withVerity(ctx, f, dataSize, *opt.Verity, opt.Progress)
		if err != nil {
			return im, fmt.Errorf("%s: verity: %w", class, err)
		}
		defer cleanup()
	}
	im.Size = size
	if im.SHA256, err = sha256Of(ctx, content, size); err != nil {
		return im, fmt.Errorf("%s: %w", path, err)
	}
	c, err := chunk.NewChunker(opt.Params)
	if err != nil {
		return im, err
	}
	x := chunk.NewIndex(opt.Params, opt.Digest)
	if x.Chunks, err = chunk.Scan(ctx, content, size, c, opt.Digest, chunk.ScanOptions{}); err != nil {
		return im, fmt.Errorf("chunk %s: %w", path, err)
	}
	ws, err := store.NewLocal(filepath.Join(r.Dir, release.StoreDir))
	if err != nil {
		return im, err
	}
	if _, err := store.AddChunks(ctx, ws, content, x.Chunks, opt.Progress); err != nil {
		return im, fmt.Errorf("store %s: %w", path, err)
	}
	var buf bytes.Buffer
	if _, err := x.WriteTo(&buf); err != nil {
		return im, err
	}
	h := release.HashOf(buf.Bytes())
	im.Index = release.IndexRef{Path: release.IndexDir + "/" + h + ".caibx", Length: int64(buf.Len()), SHA256: h}
	if err := durable.WriteFile(durable.OS(r.Dir), im.Index.Path, buf.Bytes(), 0o644); err != nil {
		return im, err
	}
	// The image must not have changed while it was read three times.
	if fi, err := f.Stat(); err != nil || fi.Size() != dataSize {
		return im, fmt.Errorf("%s changed while it was being added", path)
	}
	return im, nil
}

// withVerity builds the hash tree of data into a temporary file and returns
// the slot's content: data, zero padding to a whole data block, then the
// hash area.
func (r *Repo) withVerity(ctx context.Context, data io.ReaderAt, dataSize int64, p verity.Params, prog progress.Reporter) (io.ReaderAt, int64, *release.Verity, func(), error) {
	if p.Salt == nil {
		salt, err := verity.NewSalt()
		if err != nil {
			return nil, 0, nil, nil, err
		}
		p.Salt = salt
	}
	bs := int64(p.DataBlockSize)
	if bs == 0 {
		bs = 4096
	}
	padded := (dataSize + bs - 1) / bs * bs
	paddedData := concatAt{parts: []part{{data, dataSize}, {zeros{}, padded - dataSize}}}
	tmp, err := os.CreateTemp(r.Dir, ".verity-*")
	if err != nil {
		return nil, 0, nil, nil, err
	}
	cleanup := func() { tmp.Close(); os.Remove(tmp.Name()) }
	var opts []verity.Option
	if prog != nil {
		opts = append(opts, verity.WithProgress(prog))
	}
	tree, err := verity.Build(ctx, paddedData, padded, tmp, 0, p, opts...)
	if err != nil {
		cleanup()
		return nil, 0, nil, nil, err
	}
	content := concatAt{parts: []part{{data, dataSize}, {zeros{}, padded - dataSize}, {tmp, tree.HashSize}}}
	v := &release.Verity{
		Algorithm:     tree.Params.HashAlg,
		DataBlockSize: tree.Params.DataBlockSize,
		HashBlockSize: tree.Params.HashBlockSize,
		DataSize:      padded,
		HashOffset:    padded,
		Superblock:    tree.Superblock != nil,
		Format:        tree.Params.Version,
		Salt:          hex.EncodeToString(tree.Params.Salt),
		RootHash:      hex.EncodeToString(tree.RootHash),
	}
	return content, padded + tree.HashSize, v, cleanup, nil
}

func sha256Of(ctx context.Context, r io.ReaderAt, size int64) (string, error) {
	h := sha256.New()
	buf := make([]byte, 1<<20)
	for off := int64(0); off < size; {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		n := int(min(int64(len(buf)), size-off))
		if _, err := r.ReadAt(buf[:n], off); err != nil {
			return "", fmt.Errorf("read at %d: %w", off, err)
		}
		h.Write(buf[:n])
		off += int64(n)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// part is one piece of a concatenation.
type part struct {
	r    io.ReaderAt
	size int64
}

// concatAt reads its parts as one.
type concatAt struct{ parts []part }

func (c concatAt) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	for _, pt := range c.parts {
		if len(p) == 0 {
			break
		}
		if off >= pt.size {
			off -= pt.size
			continue
		}
		k := int(min(int64(len(p)), pt.size-off))
		if _, err := pt.r.ReadAt(p[:k], off); err != nil {
			return n, err
		}
		n += k
		p = p[k:]
		off = 0
	}
	if len(p) > 0 {
		return n, io.EOF
	}
	return n, nil
}

// zeros reads as zero bytes.
type zeros struct{}

func (zeros) ReadAt(p []byte, _ int64) (int, error) {
	clear(p)
	return len(p), nil
}
