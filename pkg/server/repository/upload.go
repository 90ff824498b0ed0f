package repository

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/lifeboat-update/lifeboat/pkg/release"
)

// ImportTar imports a repository sent as a tar stream of its directory
// (metadata/, indexes/ and store/ at the top, "./" allowed): it is
// unpacked into a directory of the storage's own, imported as Import
// does, and removed. Only directories and regular files under those three
// are accepted, by clean relative names; anything else is refused naming
// the entry. Errors about the stream wrap ErrRefused, and the reader's own
// error (such as http.MaxBytesError) too.
func (r *Repositories) ImportTar(ctx context.Context, name string, tr io.Reader, reg Registrar) error {
	up := filepath.Join(r.dir, "uploads")
	if err := os.MkdirAll(up, 0o700); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(up, "upload-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := unpack(ctx, tr, tmp); err != nil {
		return err
	}
	return r.Import(ctx, name, tmp, reg)
}

func unpack(ctx context.Context, r io.Reader, dir string) error {
	t := tar.NewReader(r)
	for {
		h, err := t.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			// Wrapped both ways: the reader's own error (a body over its
			// limit) stays visible to errors.As.
			return fmt.Errorf("%w: tar: %w", ErrRefused, err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		name := strings.TrimPrefix(strings.TrimSuffix(h.Name, "/"), "./")
		if name == "." || name == "" {
			continue
		}
		top, _, _ := strings.Cut(name, "/")
		if !fs.ValidPath(name) || path.Clean(name) != name || (top != release.MetadataDir && top != release.IndexDir && top != release.StoreDir) {
			return refuse("tar entry %q: want a clean path under %s/, %s/ or %s/", h.Name, release.MetadataDir, release.IndexDir, release.StoreDir)
		}
		dst := filepath.Join(dir, filepath.FromSlash(name))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
			if errors.Is(err, fs.ErrExist) {
				return refuse("tar entry %q: given twice", h.Name)
			}
			if err != nil {
				return err
			}
			_, err = io.Copy(f, t)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("%w: tar entry %q: %w", ErrRefused, h.Name, err)
			}
		default:
			kind := map[byte]string{tar.TypeSymlink: "a symbolic link", tar.TypeLink: "a hard link", tar.TypeChar: "a device",
				tar.TypeBlock: "a device", tar.TypeFifo: "a FIFO"}[h.Typeflag]
			if kind == "" {
				kind = fmt.Sprintf("of type %q", h.Typeflag)
			}
			return refuse("tar entry %q is %s: want a directory or a regular file", h.Name, kind)
		}
	}
}
