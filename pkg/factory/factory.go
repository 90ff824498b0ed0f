// Package factory reads and writes the factory record: what a board's
// factory partition holds, so that a factory reset can restore it and
// check every byte it restores.
//
// The record lives on the partition holding the bootloader environment (the
// ESP on qemu-x86_64, the boot partition on qemu-arm64), beside the
// recovery kernel and ramdisk, which a factory reset must not touch:
//
//	lifeboat/factory/factory.json   Record
//	lifeboat/factory/<class>.caibx  the image's chunk index
//
// It is written when the device is flashed on the manufacturing line (or
// by the disk builder for tests) and read by the recovery ramdisk. It is
// trusted as the ramdisk on the same partition is: whoever can rewrite
// one can rewrite the other (docs/security.md).
package factory

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"

	"github.com/lifeboat-update/lifeboat/pkg/chunk"
	"github.com/lifeboat-update/lifeboat/pkg/durable"
	"github.com/lifeboat-update/lifeboat/pkg/release"
)

// Dir is the record's directory on the partition holding the bootloader
// environment.
const Dir = "lifeboat/factory"

// RecordName is the record's file.
const RecordName = Dir + "/factory.json"

// IndexName is the file of the chunk index of the factory image of class.
func IndexName(class string) string { return Dir + "/" + class + ".caibx" }

// ErrNoRecord is returned by Read when the partition holds no record: the
// device was not flashed with a factory image.
var ErrNoRecord = errors.New("no factory record")

// Record says what the factory partition holds: one image of the factory
// release, as its signed release described it.
type Record struct {
	Board   string `json:"board"`
	Version string `json:"version"`
	// Image is the image in the factory partition: its size and SHA-256
	// cover every byte from the partition's start, its verity tree
	// included. Image.Index.Path is IndexName(Image.Class).
	Image release.Image `json:"image"`
}

// Validate checks what Read cannot trust.
func (r *Record) Validate() error {
	switch {
	case r.Version == "":
		return errors.New("factory record: no version")
	case r.Image.Class == "" || path.Base(r.Image.Class) != r.Image.Class:
		return fmt.Errorf("factory record: bad image class %q", r.Image.Class)
	case r.Image.Size <= 0:
		return fmt.Errorf("factory record: image size %d", r.Image.Size)
	case len(r.Image.SHA256) != 64:
		return fmt.Errorf("factory record: image sha256 %q is not 64 hex digits", r.Image.SHA256)
	}
	return nil
}

// Write writes the record and the image's chunk index (the .caibx file's
// bytes) into fsys (the partition holding the bootloader environment), the
// index first, each durably.
func Write(fsys durable.FS, r Record, index []byte) error {
	r.Image.Index.Path = IndexName(r.Image.Class)
	if err := r.Validate(); err != nil {
		return err
	}
	if _, err := chunk.ReadIndex(bytes.NewReader(index)); err != nil {
		return fmt.Errorf("factory index: %w", err)
	}
	b := index
	r.Image.Index.Length = int64(len(b))
	r.Image.Index.SHA256 = sha256Hex(b)
	if err := durable.MkdirAll(fsys, Dir, 0o755); err != nil {
		return err
	}
	if err := durable.WriteFile(fsys, r.Image.Index.Path, b, 0o644); err != nil {
		return err
	}
	j, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return durable.WriteFile(fsys, RecordName, append(j, '\n'), 0o644)
}

// Read reads the record and its index from fsys. The index must match the
// length and SHA-256 the record gives.
func Read(fsys durable.FS) (*Record, *chunk.Index, error) {
	j, err := fsys.ReadFile(RecordName)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("%w (%s)", ErrNoRecord, RecordName)
	}
	if err != nil {
		return nil, nil, err
	}
	var r Record
	if err := json.Unmarshal(j, &r); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", RecordName, err)
	}
	if err := r.Validate(); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", RecordName, err)
	}
	name := IndexName(r.Image.Class)
	b, err := fsys.ReadFile(name)
	if err != nil {
		return nil, nil, err
	}
	if int64(len(b)) != r.Image.Index.Length || sha256Hex(b) != r.Image.Index.SHA256 {
		return nil, nil, fmt.Errorf("%s: does not match the length and SHA-256 in %s", name, RecordName)
	}
	idx, err := chunk.ReadIndex(bytes.NewReader(b))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	return &r, idx, nil
}

func sha256Hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}
