package demo

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
)

// PayloadDir is where an image keeps its payload.
const PayloadDir = "usr/share/demo"

// payloadFileSize is the size of each shared payload file.
const payloadFileSize = 1 << 20

// payloadReadme is the payload directory's README.txt.
const payloadReadme = `Lifeboat demo OS payload: deterministic pseudo-random data.
base-*.bin are the same in every version built with the same seed;
release.bin changes with the version, so that an update has something
to fetch and the rest comes from the installed slot.
`

// WritePayload writes the payload files into dir/PayloadDir: size bytes
// shared by every version (base-00.bin, ... of 1 MiB each), and changed
// bytes that depend on the version too (release.bin). The content is
// ChaCha8 output keyed by the seed, the file name and, for release.bin,
// the version: the same arguments give the same bytes, everywhere. It
// returns the bytes written.
func WritePayload(dir string, seed uint64, version string, size, changed int64) (int64, error) {
	pdir := filepath.Join(dir, filepath.FromSlash(PayloadDir))
	if err := os.MkdirAll(pdir, 0o755); err != nil {
		return 0, err
	}
	var total int64
	write := func(name string, n int64, key ...string) error {
		f, err := os.OpenFile(filepath.Join(pdir, name), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			return err
		}
		_, err = io.CopyN(f, payloadStream(seed, append([]string{name}, key...)...), n)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("payload %s: %w", name, err)
		}
		total += n
		return nil
	}
	for i := 0; int64(i)*payloadFileSize < size; i++ {
		n := min(payloadFileSize, size-int64(i)*payloadFileSize)
		if err := write(fmt.Sprintf("base-%02d.bin", i), n); err != nil {
			return total, err
		}
	}
	if changed > 0 {
		if err := write("release.bin", changed, version); err != nil {
			return total, err
		}
	}
	if err := os.WriteFile(filepath.Join(pdir, "README.txt"), []byte(payloadReadme), 0o644); err != nil {
		return total, err
	}
	return total + int64(len(payloadReadme)), nil
}

// payloadStream returns the ChaCha8 stream keyed by seed and key.
func payloadStream(seed uint64, key ...string) io.Reader {
	h := sha256.New()
	io.WriteString(h, "lifeboat demo payload\x00")
	binary.Write(h, binary.LittleEndian, seed)
	for _, k := range key {
		binary.Write(h, binary.LittleEndian, uint64(len(k)))
		io.WriteString(h, k)
	}
	var s [32]byte
	h.Sum(s[:0])
	return rand.NewChaCha8(s)
}

// ReorderShift is the size of the file Options.Reordered puts first: not
// a multiple of the block size of a chunk's, so that everything after it
// lands at new offsets.
const ReorderShift = 1<<20 + 3*BlockSize

// reorder rewrites the tree at root as Options.Reordered says: the shared
// payload files swapped end for end, and /boot/.reordered, ReorderShift
// bytes of the payload stream, which the file system lays out first.
func reorder(root string, seed uint64) error {
	pdir := filepath.Join(root, filepath.FromSlash(PayloadDir))
	base, err := filepath.Glob(filepath.Join(pdir, "base-*.bin"))
	if err != nil {
		return err
	}
	for i, j := 0, len(base)-1; i < j; i, j = i+1, j-1 {
		tmp := base[i] + ".swap"
		for _, r := range [][2]string{{base[i], tmp}, {base[j], base[i]}, {tmp, base[j]}} {
			if err := os.Rename(r[0], r[1]); err != nil {
				return err
			}
		}
	}
	f, err := os.Create(filepath.Join(root, "boot", ".reordered"))
	if err != nil {
		return err
	}
	_, err = io.CopyN(f, payloadStream(seed, ".reordered"), ReorderShift)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
