// Package identity is a device's identity: the ID the fleet knows it by
// and the secret token it proves itself with, written once, when the
// device is flashed on the manufacturing line, and the registration the
// line station hands the fleet server for it.
//
// The identity lives on the partition holding the bootloader environment
// (the ESP on qemu-x86_64, the boot partition on qemu-arm64), beside the
// factory record, not on the data partition: a factory reset wipes data,
// and the identity must survive it.
//
//	lifeboat/identity.json   Identity (mode 0600 where the file system has modes)
//
// An identity may name the fleet server the device reports to (Server).
//
// The server keeps only the token's SHA-256 (Registration.TokenSHA256,
// TokenHash), so that its database does not hold what a device presents.
// The recovery ramdisk writes the file (uinit, lifeboat.mode=flash); the
// agent and the fleet server read it with Read and Parse.
package identity

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"regexp"

	"github.com/lifeboat-update/lifeboat/internal/strictjson"
	"github.com/lifeboat-update/lifeboat/pkg/api"
	"github.com/lifeboat-update/lifeboat/pkg/durable"
)

// Name is the identity's file on the partition holding the bootloader
// environment.
const Name = "lifeboat/identity.json"

// TokenSize is the token's size in bytes: 256 bits.
const TokenSize = 32

// MaxSize bounds the identity file Parse accepts.
const MaxSize = 4 << 10

// ErrInvalid is wrapped by every error about an identity or registration
// that does not make sense.
var ErrInvalid = errors.New("invalid identity")

// Identity is what the device keeps.
type Identity struct {
	// DeviceID names the device to the fleet: 1 to 64 letters, digits,
	// '.', '_', ':' or '-' (a line station's serial number, a DMI UUID).
	DeviceID string `json:"device_id"`
	Board    string `json:"board"`
	// Token is the secret, TokenSize random bytes in lower-case hex.
	Token string `json:"token"`
	// Server, if set, is the fleet server the device reports to and
	// polls for its assigned release: an http or https URL
	// (pkg/fleet). The flash mode writes it from lifeboat.server= or the
	// flash manifest; the ramdisk's lifeboat.server= overrides it.
	Server string `json:"server,omitempty"`
}

// Registration is what the fleet server stores for a device: its token
// only as a hash.
type Registration struct {
	DeviceID string `json:"device_id"`
	Board    string `json:"board"`
	// Version is the release the device was flashed with.
	Version string `json:"version"`
	// TokenSHA256 is TokenHash of the token: the SHA-256 of its
	// TokenSize bytes (not of their hex), in lower-case hex.
	TokenSHA256 string `json:"token_sha256"`
}

var (
	deviceIDRE = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,64}$`)
	hex64RE    = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// CheckDeviceID says what is wrong with id as a device ID, if anything.
func CheckDeviceID(id string) error {
	if !deviceIDRE.MatchString(id) {
		return invalid("device ID %q: want 1 to 64 letters, digits, '.', '_', ':' or '-'", id)
	}
	return nil
}

// New returns a new identity for a device of board: deviceID and a token
// of TokenSize bytes read from random (crypto/rand.Reader on a device).
func New(deviceID, board string, random io.Reader) (*Identity, error) {
	tok := make([]byte, TokenSize)
	if _, err := io.ReadFull(random, tok); err != nil {
		return nil, fmt.Errorf("identity token: %w", err)
	}
	id := &Identity{DeviceID: deviceID, Board: board, Token: hex.EncodeToString(tok)}
	if err := id.Validate(); err != nil {
		return nil, err
	}
	return id, nil
}

// NewUUID returns a random (version 4) UUID read from random, for a device
// that has no other ID.
func NewUUID(random io.Reader) (string, error) {
	var u [16]byte
	if _, err := io.ReadFull(random, u[:]); err != nil {
		return "", fmt.Errorf("random UUID: %w", err)
	}
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	h := hex.EncodeToString(u[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:], nil
}

// Validate checks what Parse cannot trust.
func (id *Identity) Validate() error {
	if err := CheckDeviceID(id.DeviceID); err != nil {
		return err
	}
	if id.Board == "" {
		return invalid("no board")
	}
	if !hex64RE.MatchString(id.Token) {
		return invalid("token: want %d bytes in lower-case hex", TokenSize)
	}
	if id.Server != "" {
		if err := api.CheckURL("server", id.Server); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalid, err)
		}
	}
	return nil
}

// TokenHash returns the SHA-256 of a token's bytes, in lower-case hex:
// what the server compares with Registration.TokenSHA256.
func TokenHash(token string) (string, error) {
	b, err := hex.DecodeString(token)
	if err != nil || len(b) != TokenSize {
		return "", invalid("token: want %d bytes in lower-case hex", TokenSize)
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:]), nil
}

// Registration returns what the fleet server stores for the device,
// flashed with release version.
func (id *Identity) Registration(version string) (Registration, error) {
	if err := id.Validate(); err != nil {
		return Registration{}, err
	}
	h, err := TokenHash(id.Token)
	if err != nil {
		return Registration{}, err
	}
	return Registration{DeviceID: id.DeviceID, Board: id.Board, Version: version, TokenSHA256: h}, nil
}

// Parse decodes and validates an identity file. Unknown fields and
// trailing data are errors.
func Parse(b []byte) (*Identity, error) {
	if len(b) > MaxSize {
		return nil, invalid("%d bytes, the most is %d", len(b), MaxSize)
	}
	var id Identity
	if err := strictjson.Unmarshal(b, &id); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if err := id.Validate(); err != nil {
		return nil, err
	}
	return &id, nil
}

// Write writes id to Name in fsys (the partition holding the bootloader
// environment), durably, mode 0600.
func Write(fsys durable.FS, id *Identity) error {
	if err := id.Validate(); err != nil {
		return err
	}
	b, err := json.MarshalIndent(id, "", "  ")
	if err != nil {
		return err
	}
	if err := durable.MkdirAll(fsys, path.Dir(Name), 0o755); err != nil {
		return err
	}
	return durable.WriteFile(fsys, Name, append(b, '\n'), 0o600)
}

// Read reads and parses Name from fsys.
func Read(fsys durable.FS) (*Identity, error) {
	b, err := fsys.ReadFile(Name)
	if err != nil {
		return nil, err
	}
	id, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", Name, err)
	}
	return id, nil
}
