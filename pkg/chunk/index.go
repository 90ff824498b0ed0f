package chunk

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
)

// casync's object types and feature flags, from its caformat.h.
const (
	formatIndex      = 0x96824d9c7b129ff9
	formatTable      = 0xe75b9e112f17417d
	formatTableTail  = 0x4b4f050e5549ecd1
	indexHeaderSize  = 48
	tableHeaderSize  = 16
	tableItemSize    = 40
	tableTailSize    = 40
	tableSizeUnknown = math.MaxUint64

	// FlagSHA512256 marks an index whose chunk IDs are SHA-512/256.
	FlagSHA512256 = 0x2000000000000000
	// FlagExcludeFile and FlagExcludeNoDump are set by `casync make` on
	// every blob index; they mean nothing for a blob.
	FlagExcludeFile   = 0x1000000000000000
	FlagExcludeNoDump = 0x8000000000000000
)

// ErrBadIndex is wrapped by every error about a malformed index.
var ErrBadIndex = errors.New("bad index")

// Entry is one chunk of an image: where it is and what it holds.
type Entry struct {
	Start uint64
	Size  uint64
	ID    ID
}

// End is the offset just past the chunk.
func (e Entry) End() uint64 { return e.Start + e.Size }

// Index describes an image as a sequence of chunks: casync's .caibx.
type Index struct {
	// Flags are casync's feature flags; the digest flag is kept in step
	// with Digest when the index is written.
	Flags  uint64
	Params Params
	Digest Digest
	Chunks []Entry
}

// NewIndex returns an empty index with the flags `casync make` writes.
func NewIndex(p Params, d Digest) *Index {
	return &Index{Flags: FlagExcludeFile | FlagExcludeNoDump, Params: p, Digest: d}
}

// Size is the length of the image the index describes.
func (x *Index) Size() uint64 {
	if len(x.Chunks) == 0 {
		return 0
	}
	return x.Chunks[len(x.Chunks)-1].End()
}

// WriteTo writes x in the .caibx format.
func (x *Index) WriteTo(w io.Writer) (int64, error) {
	bw := bufio.NewWriterSize(w, 64<<10)
	le := binary.LittleEndian
	var b [indexHeaderSize + tableHeaderSize]byte
	flags := x.Flags &^ FlagSHA512256
	if x.Digest == SHA512256 {
		flags |= FlagSHA512256
	}
	le.PutUint64(b[0:], indexHeaderSize)
	le.PutUint64(b[8:], formatIndex)
	le.PutUint64(b[16:], flags)
	le.PutUint64(b[24:], x.Params.Min)
	le.PutUint64(b[32:], x.Params.Avg)
	le.PutUint64(b[40:], x.Params.Max)
	le.PutUint64(b[48:], tableSizeUnknown)
	le.PutUint64(b[56:], formatTable)
	bw.Write(b[:])
	var item [tableItemSize]byte
	for _, c := range x.Chunks {
		le.PutUint64(item[0:], c.End())
		copy(item[8:], c.ID[:])
		bw.Write(item[:])
	}
	var tail [tableTailSize]byte
	tableSize := uint64(tableHeaderSize + tableItemSize*len(x.Chunks) + tableTailSize)
	le.PutUint64(tail[16:], indexHeaderSize)
	le.PutUint64(tail[24:], tableSize)
	le.PutUint64(tail[32:], formatTableTail)
	bw.Write(tail[:])
	total := int64(indexHeaderSize) + int64(tableSize)
	if err := bw.Flush(); err != nil {
		return 0, fmt.Errorf("write index: %w", err)
	}
	return total, nil
}

func badIndex(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadIndex, fmt.Sprintf(format, args...))
}

// ReadIndex decodes a .caibx index. Every field is checked: a truncated,
// padded or inconsistent index is an error wrapping ErrBadIndex, never a
// partial result.
func ReadIndex(r io.Reader) (*Index, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	le := binary.LittleEndian
	var b [indexHeaderSize + tableHeaderSize]byte
	if _, err := io.ReadFull(br, b[:]); err != nil {
		return nil, badIndex("header: %v", err)
	}
	if got := le.Uint64(b[0:]); got != indexHeaderSize {
		return nil, badIndex("header size %d, want %d", got, indexHeaderSize)
	}
	if got := le.Uint64(b[8:]); got != formatIndex {
		return nil, badIndex("not a casync index (type %#x)", got)
	}
	x := &Index{
		Flags:  le.Uint64(b[16:]),
		Params: Params{Min: le.Uint64(b[24:]), Avg: le.Uint64(b[32:]), Max: le.Uint64(b[40:])},
		Digest: SHA256,
	}
	if x.Flags&FlagSHA512256 != 0 {
		x.Digest = SHA512256
	}
	if err := x.Params.Validate(); err != nil {
		return nil, badIndex("%v", err)
	}
	if got := le.Uint64(b[48:]); got != tableSizeUnknown {
		return nil, badIndex("table size %#x, want %#x", got, uint64(tableSizeUnknown))
	}
	if got := le.Uint64(b[56:]); got != formatTable {
		return nil, badIndex("table type %#x, want %#x", got, uint64(formatTable))
	}
	maxChunk := x.Params.Max
	var item [tableItemSize]byte
	var prev uint64
	for {
		if _, err := io.ReadFull(br, item[:]); err != nil {
			return nil, badIndex("chunk %d: %v", len(x.Chunks), unexpected(err))
		}
		end := le.Uint64(item[0:])
		if end == 0 && le.Uint64(item[8:]) == 0 {
			break // the tail
		}
		if end <= prev {
			return nil, badIndex("chunk %d ends at %d, not after %d", len(x.Chunks), end, prev)
		}
		if end-prev > maxChunk {
			return nil, badIndex("chunk %d is %d bytes, above the maximum %d", len(x.Chunks), end-prev, maxChunk)
		}
		e := Entry{Start: prev, Size: end - prev}
		copy(e.ID[:], item[8:])
		x.Chunks = append(x.Chunks, e)
		prev = end
	}
	// item holds the tail.
	if got := le.Uint64(item[16:]); got != indexHeaderSize {
		return nil, badIndex("tail index offset %d, want %d", got, indexHeaderSize)
	}
	want := uint64(tableHeaderSize + tableTailSize + tableItemSize*uint64(len(x.Chunks)))
	if got := le.Uint64(item[24:]); got != want {
		return nil, badIndex("tail table size %d, want %d for %d chunks", got, want, len(x.Chunks))
	}
	if got := le.Uint64(item[32:]); got != formatTableTail {
		return nil, badIndex("tail marker %#x, want %#x", got, uint64(formatTableTail))
	}
	switch _, err := br.ReadByte(); {
	case err == nil:
		return nil, badIndex("data after the table tail")
	case err != io.EOF:
		return nil, fmt.Errorf("read index: %w", err)
	}
	return x, nil
}

// ReadIndexFile reads the index in the file at path.
func ReadIndexFile(path string) (*Index, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	x, err := ReadIndex(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return x, nil
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// ZeroIDs returns the IDs of the index's chunks that are all zero bytes.
// Inside a run of zeros the chunker's hash is constant, so it cuts the run
// at the maximum size (or at the first cut test, should the constant hash
// cut); a run ending the image ends in a shorter chunk. So zero chunks have
// those sizes, or repeat: only those sizes are worth a digest.
func (x *Index) ZeroIDs() map[ID]bool {
	sizes := map[uint64]bool{x.Params.Max: true, max(x.Params.Min, WindowSize): true}
	if n := len(x.Chunks); n > 0 {
		sizes[x.Chunks[n-1].Size] = true
	}
	seen := make(map[ID]bool)
	for _, e := range x.Chunks {
		if seen[e.ID] {
			sizes[e.Size] = true
		}
		seen[e.ID] = true
	}
	z := make(map[ID]bool)
	for size := range sizes {
		if size == 0 || size > SizeLimitMax {
			continue
		}
		if id := x.Digest.Sum(make([]byte, size)); seen[id] {
			z[id] = true
		}
	}
	return z
}
