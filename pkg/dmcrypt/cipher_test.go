package dmcrypt

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// testBytes returns n deterministic bytes: SHA-256 in counter mode.
func testBytes(seed uint64, n int) []byte {
	b := make([]byte, 0, n+sha256.Size)
	var ctr [16]byte
	binary.LittleEndian.PutUint64(ctr[:], seed)
	for i := uint64(0); len(b) < n; i++ {
		binary.LittleEndian.PutUint64(ctr[8:], i)
		s := sha256.Sum256(ctr[:])
		b = append(b, s[:]...)
	}
	return b[:n]
}

func TestCipherRoundTrip(t *testing.T) {
	for _, spec := range []string{CipherAESXTSPlain64, CipherAESXTSPlain, CipherAESCBCEssivSHA256, CipherAESCBCPlain64, CipherAESCBCPlain} {
		keySizes := []int{16, 24, 32}
		if strings.Contains(spec, "xts") {
			keySizes = []int{32, 48, 64}
		}
		for _, ks := range keySizes {
			for _, ss := range []int{512, 1024, 2048, 4096} {
				t.Run(fmt.Sprintf("%s-%d-%d", spec, ks*8, ss), func(t *testing.T) {
					c, err := NewCipher(spec, testBytes(1, ks), ss)
					if err != nil {
						t.Fatalf("NewCipher(%s, %d-byte key, %d) = %v", spec, ks, ss, err)
					}
					plain := testBytes(2, 3*ss)
					const sector = 1000
					enc := make([]byte, len(plain))
					if err := c.Encrypt(enc, plain, sector); err != nil {
						t.Fatal(err)
					}
					if bytes.Equal(enc[:16], plain[:16]) {
						t.Fatalf("Encrypt() left the data as it was")
					}
					// Each sector on its own, its IV sector advancing in
					// 512-byte units, as dm-crypt without iv_large_sectors.
					for i := 0; i < 3; i++ {
						one := make([]byte, ss)
						if err := c.Encrypt(one, plain[i*ss:(i+1)*ss], uint64(sector+i*ss/512)); err != nil {
							t.Fatal(err)
						}
						if !bytes.Equal(one, enc[i*ss:(i+1)*ss]) {
							t.Errorf("sector %d encrypted alone differs from it encrypted with the others", i)
						}
					}
					dec := bytes.Clone(enc)
					if err := c.Decrypt(dec, dec, sector); err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(dec, plain) {
						t.Errorf("Decrypt(Encrypt(data)) != data")
					}
					other := make([]byte, len(plain))
					c.Encrypt(other, plain, uint64(sector+ss/512))
					if bytes.Equal(other[:ss], enc[:ss]) {
						t.Errorf("Encrypt() at another sector gave the same ciphertext")
					}
					if err := c.Encrypt(enc[:ss-1], plain[:ss-1], 0); err == nil {
						t.Errorf("Encrypt(%d bytes) = nil, want an error", ss-1)
					}
				})
			}
		}
	}
}

func TestCipherPlain32(t *testing.T) {
	c, err := NewCipher(CipherAESXTSPlain, testBytes(3, 64), 512)
	if err != nil {
		t.Fatal(err)
	}
	plain := testBytes(4, 512)
	a, b := make([]byte, 512), make([]byte, 512)
	c.Encrypt(a, plain, 5)
	c.Encrypt(b, plain, 1<<32+5)
	if !bytes.Equal(a, b) {
		t.Errorf("aes-xts-plain: sector 2^32+5 encrypts unlike sector 5, want the IV truncated to 32 bits")
	}
	c64, _ := NewCipher(CipherAESXTSPlain64, testBytes(3, 64), 512)
	c64.Encrypt(b, plain, 1<<32+5)
	if bytes.Equal(a, b) {
		t.Errorf("aes-xts-plain64: sector 2^32+5 encrypts like sector 5, want a 64-bit IV")
	}
}

func TestNewCipherErrors(t *testing.T) {
	tests := []struct {
		spec        string
		key, sector int
		unsupported bool
	}{
		{"twofish-xts-plain64", 64, 512, true},
		{"aes-xts-essiv:sha256", 64, 512, true},
		{"aes-cbc-essiv:sha1", 32, 512, true},
		{"aes-xts-benbi", 64, 512, true},
		{"aes-gcm-random", 32, 512, true},
		{"aes-ecb", 32, 512, true},
		{"capi:xts(aes)-plain64", 64, 512, true},
		{"aes", 32, 512, true},
		{"", 32, 512, true},
		{"aes-xts-plain64", 16, 512, false},
		{"aes-xts-plain64", 65, 512, false},
		{"aes-cbc-plain64", 64, 512, false},
		{"aes-xts-plain64", 64, 8192, false},
		{"aes-xts-plain64", 64, 0, false},
	}
	for _, tt := range tests {
		_, err := NewCipher(tt.spec, make([]byte, tt.key), tt.sector)
		if err == nil || errors.Is(err, ErrUnsupported) != tt.unsupported || !strings.Contains(err.Error(), tt.spec) {
			t.Errorf("NewCipher(%q, %d-byte key, %d) = %v, want an error naming it (ErrUnsupported: %v)", tt.spec, tt.key, tt.sector, err, tt.unsupported)
		}
	}
}

// TestSegmentRoundTrip encrypts sectors of each golden volume's data
// segment in user space with its volume key and the segment's cipher, as
// dm-crypt would write them, and reads them back.
func TestSegmentRoundTrip(t *testing.T) {
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			img, _ := readGolden(t, tc.name)
			r := bytes.NewReader(img)
			h, err := ReadHeader(r, int64(len(img)))
			if err != nil {
				t.Fatal(err)
			}
			_, seg, err := h.CryptSegment()
			if err != nil {
				t.Fatal(err)
			}
			key, err := h.Unlock(context.Background(), r, []byte(tc.pass))
			if err != nil {
				t.Fatal(err)
			}
			c, err := NewCipher(seg.Encryption, key, seg.SectorSize)
			if err != nil {
				t.Fatalf("NewCipher(%s) = %v", seg.Encryption, err)
			}
			data := img[seg.Offset:]
			plain := testBytes(5, len(data))
			// The second half first, at its own IV sector.
			half := len(data) / 2
			if err := c.Encrypt(data[half:], plain[half:], seg.IVTweak+uint64(half/512)); err != nil {
				t.Fatal(err)
			}
			if err := c.Encrypt(data[:half], plain[:half], seg.IVTweak); err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(data, plain[:64]) {
				t.Fatalf("the data segment holds plaintext")
			}
			got := make([]byte, len(data))
			if err := c.Decrypt(got, data, seg.IVTweak); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, plain) {
				t.Errorf("data segment decrypted differs from what was encrypted")
			}
			// The header is untouched: the volume still opens.
			if k2, err := h.Unlock(context.Background(), bytes.NewReader(img), []byte(tc.pass)); err != nil || !bytes.Equal(k2, key) {
				t.Errorf("Unlock() after writing data = %v, want the same key", err)
			}
		})
	}
}
