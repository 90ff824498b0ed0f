package chunk

import (
	"errors"
	"fmt"
	"runtime"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// ErrCorrupt reports a chunk whose content does not match its ID, or whose
// encoding cannot be decoded.
var ErrCorrupt = errors.New("chunk corrupt")

// CorruptError names the chunk that failed verification and why.
type CorruptError struct {
	ID     ID
	Reason string
}

func (e *CorruptError) Error() string { return fmt.Sprintf("chunk %s: %s", e.ID, e.Reason) }

// Unwrap makes errors.Is(err, ErrCorrupt) hold.
func (e *CorruptError) Unwrap() error { return ErrCorrupt }

// The zstd codec is stateless for callers: EncodeAll and DecodeAll are safe
// for concurrent use, so one encoder and one decoder serve the process.
var (
	encoder = sync.OnceValue(func() *zstd.Encoder {
		e, err := zstd.NewWriter(nil,
			zstd.WithEncoderLevel(zstd.SpeedDefault),
			zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)),
			zstd.WithWindowSize(1<<20),
			zstd.WithLowerEncoderMem(true))
		if err != nil {
			panic(err) // only on invalid options
		}
		return e
	})
	decoder = sync.OnceValue(func() *zstd.Decoder {
		d, err := zstd.NewReader(nil,
			zstd.WithDecoderConcurrency(runtime.GOMAXPROCS(0)),
			zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxMemory(SizeLimitMax),
			zstd.WithDecodeAllCapLimit(true))
		if err != nil {
			panic(err)
		}
		return d
	})
)

// Compress appends the .cacnk encoding (a zstd frame) of data to dst.
func Compress(dst, data []byte) []byte {
	return encoder().EncodeAll(data, dst)
}

// Decode decompresses a .cacnk encoding into dst[:0] and verifies it against
// id. The content may be at most maxSize bytes; a larger one is corrupt, so a
// hostile chunk cannot make the decoder allocate more than that. dst is
// reused when it has room. On success the verified content is returned.
func Decode(dst []byte, d Digest, id ID, compressed []byte, maxSize int) ([]byte, error) {
	if cap(dst) < maxSize {
		dst = make([]byte, 0, maxSize)
	}
	// With WithDecodeAllCapLimit, DecodeAll never grows dst past its capacity.
	out, err := decoder().DecodeAll(compressed, dst[:0:maxSize])
	if err != nil {
		return nil, &CorruptError{ID: id, Reason: "zstd: " + err.Error()}
	}
	return out, Verify(d, id, out)
}

// Verify checks that data hashes to id.
func Verify(d Digest, id ID, data []byte) error {
	if got := d.Sum(data); got != id {
		return &CorruptError{ID: id, Reason: fmt.Sprintf("content hashes to %s", got)}
	}
	return nil
}
