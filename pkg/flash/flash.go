// Package flash is what a line station offers beside a signed repository
// for a manufacturing flash (uinit, lifeboat.mode=flash): raw images of
// the partitions a release does not hold, such as the ESP or boot
// partition with the bootloader, its configuration and the recovery
// kernel and ramdisk, and a manifest giving each image's size and
// SHA-256:
//
//	flash/flash.json        Manifest
//	flash/<label>.img.zst   the raw image of the partition labelled <label>, zstd-compressed
//
// An ESP is mostly free space: compressed, it costs the line station's
// network or stick a fraction of its size.
//
// A release for a board holds only its slot classes
// (release.Client.Plan refuses others), so these images are not signed by
// the release keys: they are trusted as the line station that serves them
// is (docs/security.md). The manifest's hashes catch a damaged copy, not
// a malicious station.
package flash

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"

	"github.com/klauspost/compress/zstd"

	"github.com/lifeboat-update/lifeboat/internal/strictjson"
	"github.com/lifeboat-update/lifeboat/pkg/api"
)

// Dir is the directory beside the repository's metadata and chunks.
const Dir = "flash"

// ManifestName is the manifest's path in the repository or bundle.
const ManifestName = Dir + "/flash.json"

// MaxManifestSize bounds the manifest a device reads.
const MaxManifestSize = 64 << 10

// maxWindow is the zstd window Write compresses with, and the largest a
// device decompresses with: what a frame can make it allocate.
const maxWindow = 8 << 20

// ImageName is the path of partition label's compressed image.
func ImageName(label string) string { return Dir + "/" + label + ".img.zst" }

var (
	// ErrInvalid is wrapped by every error about a manifest that does
	// not make sense.
	ErrInvalid = errors.New("invalid flash manifest")
	// ErrBadImage is wrapped by every error about an image that does not
	// match its manifest.
	ErrBadImage = errors.New("flash image does not match its manifest")
)

// Manifest lists the images.
type Manifest struct {
	Board  string  `json:"board"`
	Images []Image `json:"images"`
	// Server, if set, is the fleet server the flashed devices report to:
	// written into each one's identity (pkg/identity), unless the
	// command line's lifeboat.server= names another.
	Server string `json:"server,omitempty"`
}

// Image is one partition's raw image: written from the partition's first
// byte.
type Image struct {
	Label string `json:"label"` // the partition's PARTLABEL
	// Size and SHA256 describe the raw image.
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	// Stored is the size of the compressed file, ImageName(Label).
	Stored int64 `json:"stored_size"`
}

var (
	labelRE  = regexp.MustCompile(`^[A-Za-z0-9._-]{1,36}$`)
	sha256RE = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// Validate checks what Parse cannot trust.
func (m *Manifest) Validate() error {
	if m.Board == "" {
		return invalid("no board")
	}
	if m.Server != "" {
		if err := api.CheckURL("server", m.Server); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalid, err)
		}
	}
	seen := map[string]bool{}
	for i, im := range m.Images {
		switch {
		case !labelRE.MatchString(im.Label):
			return invalid("image %d: label %q: want 1 to 36 letters, digits, '.', '_' or '-'", i+1, im.Label)
		case seen[im.Label]:
			return invalid("image %d: label %q given twice", i+1, im.Label)
		case im.Size <= 0:
			return invalid("image %s: size %d", im.Label, im.Size)
		case im.Stored <= 0:
			return invalid("image %s: stored_size %d", im.Label, im.Stored)
		case !sha256RE.MatchString(im.SHA256):
			return invalid("image %s: sha256 %q is not 64 lower-case hex digits", im.Label, im.SHA256)
		}
		seen[im.Label] = true
	}
	return nil
}

// Parse decodes and validates a manifest. Unknown fields are errors.
func Parse(b []byte) (*Manifest, error) {
	if len(b) > MaxManifestSize {
		return nil, invalid("%d bytes, the most is %d", len(b), MaxManifestSize)
	}
	var m Manifest
	if err := strictjson.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// Image returns the image of the partition labelled label.
func (m *Manifest) Image(label string) (Image, bool) {
	for _, im := range m.Images {
		if im.Label == label {
			return im, true
		}
	}
	return Image{}, false
}

// Verify decompresses stored, the file ImageName(im.Label), never past
// im.Size bytes, and fails with an error wrapping ErrBadImage unless the
// image has the manifest's size and SHA-256.
func (im Image) Verify(stored []byte) error {
	r, err := im.open(stored, true)
	if err != nil {
		return err
	}
	defer r.Close()
	_, err = io.Copy(io.Discard, r)
	return err
}

// Decompress returns a reader of the image stored holds, for a caller
// that verified it first (Verify) and streams it where it goes: it checks
// the size, not the SHA-256, so that the bytes are hashed once.
func (im Image) Decompress(stored []byte) (io.ReadCloser, error) {
	return im.open(stored, false)
}

func (im Image) open(stored []byte, hashed bool) (*checked, error) {
	if int64(len(stored)) != im.Stored {
		return nil, fmt.Errorf("%w: %s: %d bytes, the manifest says %d", ErrBadImage, ImageName(im.Label), len(stored), im.Stored)
	}
	d, err := zstd.NewReader(bytes.NewReader(stored), zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(maxWindow))
	if err != nil {
		return nil, err
	}
	c := &checked{im: im, d: d}
	if hashed {
		c.h = sha256.New()
	}
	return c, nil
}

// checked reads an image, and at its end returns, instead of io.EOF, an
// error wrapping ErrBadImage unless the image has the manifest's size and,
// when h is set, SHA-256.
type checked struct {
	im Image
	d  *zstd.Decoder
	h  hash.Hash // nil: the size only
	n  int64
}

func (c *checked) Read(p []byte) (int, error) {
	name := ImageName(c.im.Label)
	if rest := c.im.Size - c.n; int64(len(p)) > rest {
		// One byte past the size tells a longer image from a whole one.
		p = p[:rest+1]
	}
	n, err := c.d.Read(p)
	if over := c.n + int64(n) - c.im.Size; over > 0 {
		n -= int(over)
		err = fmt.Errorf("%w: %s holds more than the %d bytes the manifest says", ErrBadImage, name, c.im.Size)
	}
	c.n += int64(n)
	if c.h != nil {
		c.h.Write(p[:n])
	}
	switch {
	case err == io.EOF && c.n != c.im.Size:
		return n, fmt.Errorf("%w: %s holds %d bytes, the manifest says %d", ErrBadImage, name, c.n, c.im.Size)
	case err == io.EOF && c.h != nil:
		if got := hex.EncodeToString(c.h.Sum(nil)); got != c.im.SHA256 {
			return n, fmt.Errorf("%w: %s: the image hashes to %s, the manifest says %s", ErrBadImage, name, got, c.im.SHA256)
		}
	case err != nil && err != io.EOF && !errors.Is(err, ErrBadImage):
		return n, fmt.Errorf("%w: %s: %v", ErrBadImage, name, err)
	}
	return n, err
}

func (c *checked) Close() error {
	c.d.Close()
	return nil
}

// Write copies the images (partition label to host file) into dir, a
// repository or bundle directory, and writes the manifest for board.
func Write(dir, board string, images map[string]string) error {
	m := Manifest{Board: board, Images: []Image{}}
	if err := os.MkdirAll(filepath.Join(dir, Dir), 0o755); err != nil {
		return err
	}
	for _, label := range slices.Sorted(maps.Keys(images)) {
		im, err := copyImage(filepath.Join(dir, filepath.FromSlash(ImageName(label))), images[label])
		if err != nil {
			return fmt.Errorf("flash image %s: %w", label, err)
		}
		im.Label = label
		m.Images = append(m.Images, im)
	}
	if err := m.Validate(); err != nil {
		return err
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, filepath.FromSlash(ManifestName)), append(b, '\n'), 0o644)
}

// copyImage compresses src into dst and returns the raw image's size and
// SHA-256 and the compressed file's size.
func copyImage(dst, src string) (Image, error) {
	in, err := os.Open(src)
	if err != nil {
		return Image{}, err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return Image{}, err
	}
	defer out.Close()
	z, err := zstd.NewWriter(out, zstd.WithWindowSize(maxWindow))
	if err != nil {
		return Image{}, err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(z, h), in)
	if err == nil {
		err = z.Close()
	}
	if err != nil {
		return Image{}, err
	}
	fi, err := out.Stat()
	if err != nil {
		return Image{}, err
	}
	return Image{Size: n, SHA256: hex.EncodeToString(h.Sum(nil)), Stored: fi.Size()}, out.Close()
}
