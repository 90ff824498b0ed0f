package release

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
)

// KeyType names the one signature scheme metadata uses today.
const KeyType = "ed25519"

// Key is a public key as metadata carries it.
type Key struct {
	Type   string `json:"type"`
	Public string `json:"public"` // hex
}

// ID is the key's identifier: the SHA-256 of its type and public bytes.
func (k Key) ID() string {
	h := sha256.Sum256([]byte(k.Type + ":" + k.Public))
	return hex.EncodeToString(h[:])
}

// public returns the key's bytes if it is a well-formed ed25519 key in
// canonical form (lower-case hex), so that one key has one ID.
func (k Key) public() (ed25519.PublicKey, bool) {
	if k.Type != KeyType {
		return nil, false
	}
	pub, err := hex.DecodeString(k.Public)
	if err != nil || len(pub) != ed25519.PublicKeySize || hex.EncodeToString(pub) != k.Public {
		return nil, false
	}
	return pub, true
}

// verify reports whether sig is k's signature of msg.
func (k Key) verify(msg, sig []byte) bool {
	pub, ok := k.public()
	return ok && ed25519.Verify(pub, msg, sig)
}

// Signer signs metadata. The file signer holds an ed25519 key; a PKCS#11,
// HSM or TPM signer implements the same two methods.
type Signer interface {
	Public() Key
	Sign(msg []byte) ([]byte, error)
}

// KeyFile is a private key on disk, kept by the release side only.
type KeyFile struct {
	Type    string `json:"type"`
	Private string `json:"private"` // hex of the ed25519 seed
}

type fileSigner struct{ priv ed25519.PrivateKey }

func (s fileSigner) Public() Key {
	return Key{Type: KeyType, Public: hex.EncodeToString(s.priv.Public().(ed25519.PublicKey))}
}

func (s fileSigner) Sign(msg []byte) ([]byte, error) { return ed25519.Sign(s.priv, msg), nil }

// GenerateKey writes a new private key to path (mode 0600, refusing to
// overwrite) and returns its signer.
func GenerateKey(path string) (Signer, error) {
	seed := make([]byte, ed25519.SeedSize)
	if _, err := rand.Read(seed); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(KeyFile{Type: KeyType, Private: hex.EncodeToString(seed)}, "", "  ")
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create key: %w", err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return nil, fmt.Errorf("write key %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, fmt.Errorf("sync key %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	return fileSigner{ed25519.NewKeyFromSeed(seed)}, nil
}

// LoadKey reads a private key written by GenerateKey.
func LoadKey(path string) (Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load key: %w", err)
	}
	var kf KeyFile
	if err := json.Unmarshal(b, &kf); err != nil {
		return nil, fmt.Errorf("key %s: %w", path, err)
	}
	if kf.Type != KeyType {
		return nil, fmt.Errorf("key %s: type %q, want %q", path, kf.Type, KeyType)
	}
	seed, err := hex.DecodeString(kf.Private)
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, errors.New("key " + path + ": malformed private key")
	}
	return fileSigner{ed25519.NewKeyFromSeed(seed)}, nil
}
