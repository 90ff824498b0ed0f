package dmcrypt

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"strings"

	"golang.org/x/crypto/xts"
)

// Ciphers this package implements in user space, to open keyslots and to
// encrypt data as dm-crypt does. Tables for the kernel may name any cipher
// the kernel knows, but Unlock can only open keyslots encrypted with these.
const (
	CipherAESXTSPlain64     = "aes-xts-plain64"
	CipherAESXTSPlain       = "aes-xts-plain"
	CipherAESCBCEssivSHA256 = "aes-cbc-essiv:sha256"
	CipherAESCBCPlain64     = "aes-cbc-plain64"
	CipherAESCBCPlain       = "aes-cbc-plain"
)

// Cipher encrypts and decrypts sectors as dm-crypt does with a cipher spec
// such as "aes-xts-plain64": each sectorSize-byte sector on its own, its IV
// made from its number in 512-byte units (dm-crypt's default without
// iv_large_sectors).
type Cipher struct {
	spec       string
	sectorSize int
	xts        *xts.Cipher  // mode xts
	block      cipher.Block // mode cbc
	essiv      cipher.Block // iv essiv
	plain32    bool         // iv plain: the sector number truncated to 32 bits
}

// NewCipher returns the Cipher for spec with key, for sectors of
// sectorSize bytes (512 to 4096, a power of two). Ciphers other than the
// Cipher* constants give an error wrapping ErrUnsupported that names them.
func NewCipher(spec string, key []byte, sectorSize int) (*Cipher, error) {
	switch sectorSize {
	case 512, 1024, 2048, 4096:
	default:
		return nil, fmt.Errorf("cipher %s: sector size %d, want 512, 1024, 2048 or 4096", spec, sectorSize)
	}
	c := &Cipher{spec: spec, sectorSize: sectorSize}
	name, rest, _ := strings.Cut(spec, "-")
	mode, iv, _ := strings.Cut(rest, "-")
	if name != "aes" {
		return nil, fmt.Errorf("%w: cipher %q (only aes-xts-plain64, aes-xts-plain, aes-cbc-essiv:sha256, aes-cbc-plain64, aes-cbc-plain)", ErrUnsupported, spec)
	}
	switch iv {
	case "plain64":
	case "plain":
		c.plain32 = true
	case "essiv:sha256":
		if mode != "cbc" {
			return nil, fmt.Errorf("%w: cipher %q: essiv only with cbc", ErrUnsupported, spec)
		}
		h := sha256.Sum256(key)
		b, err := aes.NewCipher(h[:])
		if err != nil {
			return nil, fmt.Errorf("cipher %s: essiv: %w", spec, err)
		}
		c.essiv = b
	default:
		return nil, fmt.Errorf("%w: cipher %q: IV generator %q", ErrUnsupported, spec, iv)
	}
	switch mode {
	case "xts":
		switch len(key) {
		case 32, 48, 64:
		default:
			return nil, fmt.Errorf("cipher %s: %d-byte key, want 32, 48 or 64", spec, len(key))
		}
		x, err := xts.NewCipher(aes.NewCipher, key)
		if err != nil {
			return nil, fmt.Errorf("cipher %s: %w", spec, err)
		}
		c.xts = x
	case "cbc":
		b, err := aes.NewCipher(key)
		if err != nil {
			return nil, fmt.Errorf("cipher %s: %d-byte key, want 16, 24 or 32", spec, len(key))
		}
		c.block = b
	default:
		return nil, fmt.Errorf("%w: cipher %q: mode %q", ErrUnsupported, spec, mode)
	}
	return c, nil
}

// SectorSize returns the size of c's sectors.
func (c *Cipher) SectorSize() int { return c.sectorSize }

// Encrypt encrypts src into dst (which may be src), whole sectors; sector
// is the IV sector number of the first, in 512-byte units: a segment's
// iv_tweak plus the data's offset into the segment divided by 512.
func (c *Cipher) Encrypt(dst, src []byte, sector uint64) error {
	return c.crypt(dst, src, sector, true)
}

// Decrypt decrypts src into dst (which may be src), like Encrypt.
func (c *Cipher) Decrypt(dst, src []byte, sector uint64) error {
	return c.crypt(dst, src, sector, false)
}

func (c *Cipher) crypt(dst, src []byte, sector uint64, encrypt bool) error {
	if len(src)%c.sectorSize != 0 || len(dst) < len(src) {
		return fmt.Errorf("cipher %s: %d bytes into %d is not whole %d-byte sectors", c.spec, len(src), len(dst), c.sectorSize)
	}
	step := uint64(c.sectorSize / 512)
	var iv [16]byte
	for off := 0; off < len(src); off += c.sectorSize {
		d, s := dst[off:off+c.sectorSize], src[off:off+c.sectorSize]
		n := sector
		if c.plain32 {
			n = uint64(uint32(n))
		}
		if c.xts != nil {
			if encrypt {
				c.xts.Encrypt(d, s, n)
			} else {
				c.xts.Decrypt(d, s, n)
			}
		} else {
			clear(iv[:])
			binary.LittleEndian.PutUint64(iv[:], n)
			if c.essiv != nil {
				c.essiv.Encrypt(iv[:], iv[:])
			}
			if encrypt {
				cipher.NewCBCEncrypter(c.block, iv[:]).CryptBlocks(d, s)
			} else {
				cipher.NewCBCDecrypter(c.block, iv[:]).CryptBlocks(d, s)
			}
		}
		sector += step
	}
	return nil
}
