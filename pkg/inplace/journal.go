package inplace

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"path"

	"github.com/lifeboat-update/lifeboat/pkg/durable"
)

// ErrBadJournal is wrapped by the error of a journal that cannot be parsed.
var ErrBadJournal = errors.New("bad in-place journal")

// journalMagic starts every journal; the digit is the format's version.
const journalMagic = "LBINPJ01"

// JournalSize is the size of an encoded journal.
const JournalSize = len(journalMagic) + 32 + 8 + 8 + 4

// JournalState is what the journal records: of the plan named Plan, the
// first Done of its Ops ops are written, flushed and verified.
type JournalState struct {
	Plan [32]byte
	Done uint64
	Ops  uint64
}

// MarshalBinary encodes s: the magic, the plan's ID, Done and Ops (little
// endian), and the CRC-32C of all that.
func (s JournalState) MarshalBinary() ([]byte, error) {
	if s.Done > s.Ops {
		return nil, fmt.Errorf("journal: %d of %d ops done", s.Done, s.Ops)
	}
	b := make([]byte, 0, JournalSize)
	b = append(b, journalMagic...)
	b = append(b, s.Plan[:]...)
	b = binary.LittleEndian.AppendUint64(b, s.Done)
	b = binary.LittleEndian.AppendUint64(b, s.Ops)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli)), nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ParseJournal decodes a journal. The bytes are untrusted: anything but a
// whole, consistent journal is an error wrapping ErrBadJournal.
func ParseJournal(b []byte) (JournalState, error) {
	var s JournalState
	if len(b) != JournalSize {
		return s, fmt.Errorf("%w: %d bytes, want %d", ErrBadJournal, len(b), JournalSize)
	}
	if !bytes.HasPrefix(b, []byte(journalMagic)) {
		return s, fmt.Errorf("%w: no magic", ErrBadJournal)
	}
	body, sum := b[:JournalSize-4], binary.LittleEndian.Uint32(b[JournalSize-4:])
	if got := crc32.Checksum(body, castagnoli); got != sum {
		return s, fmt.Errorf("%w: checksum %#x, want %#x", ErrBadJournal, got, sum)
	}
	b = b[len(journalMagic):]
	copy(s.Plan[:], b)
	s.Done = binary.LittleEndian.Uint64(b[32:])
	s.Ops = binary.LittleEndian.Uint64(b[40:])
	if s.Done > s.Ops {
		return JournalState{}, fmt.Errorf("%w: %d of %d ops done", ErrBadJournal, s.Done, s.Ops)
	}
	return s, nil
}

// Journal is the file on the data partition that records an update's
// progress, written with durable.WriteFile so that a power cut leaves
// either the previous record or the new one.
type Journal struct {
	FS   durable.FS
	Name string
}

// Load returns the recorded state, or ok false when there is no journal.
func (j Journal) Load() (s JournalState, ok bool, err error) {
	b, err := j.FS.ReadFile(j.Name)
	if errors.Is(err, fs.ErrNotExist) {
		return s, false, nil
	}
	if err != nil {
		return s, false, fmt.Errorf("read journal %s: %w", j.Name, err)
	}
	s, err = ParseJournal(b)
	if err != nil {
		return s, false, fmt.Errorf("journal %s: %w", j.Name, err)
	}
	return s, true, nil
}

// Save records s durably.
func (j Journal) Save(s JournalState) error {
	b, err := s.MarshalBinary()
	if err != nil {
		return err
	}
	return durable.WriteFile(j.FS, j.Name, b, 0o600)
}

// Remove deletes the journal, once the caller has switched to the new
// release; the directory entry is synced.
func (j Journal) Remove() error {
	if err := j.FS.Remove(j.Name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove journal: %w", err)
	}
	if err := j.FS.SyncDir(path.Dir(j.Name)); err != nil {
		return fmt.Errorf("remove journal: %w", err)
	}
	return nil
}
