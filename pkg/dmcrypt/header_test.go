package dmcrypt

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// jsonText returns the JSON text of the header copy at off.
func jsonText(img []byte, off int) []byte {
	size := int(binary.BigEndian.Uint64(img[off+offHdrSize:]))
	js := img[off+binHeaderSize : off+size]
	if i := bytes.IndexByte(js, 0); i >= 0 {
		js = js[:i]
	}
	return js
}

// fixChecksum recomputes the sha256 checksum of the header copy at off.
func fixChecksum(img []byte, off int) {
	size := int(binary.BigEndian.Uint64(img[off+offHdrSize:]))
	clear(img[off+offCsum : off+offCsum+csumLen])
	sum := sha256.Sum256(img[off : off+size])
	copy(img[off+offCsum:], sum[:])
}

// editJSON returns a copy of img whose two header copies carry the
// primary's metadata changed by edit, with valid checksums.
func editJSON(t testing.TB, img []byte, edit func(m map[string]any)) []byte {
	t.Helper()
	img = bytes.Clone(img)
	d := json.NewDecoder(bytes.NewReader(jsonText(img, 0)))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	js, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	size := int(binary.BigEndian.Uint64(img[offHdrSize:]))
	for _, off := range []int{0, size} {
		area := img[off+binHeaderSize : off+size]
		if len(js) >= len(area) {
			t.Fatalf("edited JSON of %d bytes does not fit in %d", len(js), len(area))
		}
		clear(area)
		copy(area, js)
		fixChecksum(img, off)
	}
	return img
}

// obj walks m along keys, each naming a JSON object.
func obj(m map[string]any, keys ...string) map[string]any {
	for _, k := range keys {
		m = m[k].(map[string]any)
	}
	return m
}

func TestReadHeader(t *testing.T) {
	img, _ := readGolden(t, "pbkdf2-xts256-512")
	h, err := ReadHeader(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatalf("ReadHeader() = %v", err)
	}
	if h.UUID != goldenUUID || h.Label != "golden" || h.Checksum != "sha256" || h.Size != 16384 || h.Offset != 0 || h.Version != 2 {
		t.Errorf("ReadHeader() = UUID %q label %q csum %q size %d offset %d version %d, want %q golden sha256 16384 0 2",
			h.UUID, h.Label, h.Checksum, h.Size, h.Offset, h.Version, goldenUUID)
	}
	id, seg, err := h.CryptSegment()
	if err != nil {
		t.Fatalf("CryptSegment() = %v", err)
	}
	want := Segment{Type: "crypt", Offset: 288 << 10, Dynamic: true, Encryption: "aes-xts-plain64", SectorSize: 512}
	if id != 0 || !cmp.Equal(seg, want) {
		t.Errorf("CryptSegment() = %d, %+v, want 0, %+v", id, seg, want)
	}
	if got := len(h.Metadata.Keyslots); got != 2 {
		t.Fatalf("ReadHeader() has %d keyslots, want 2", got)
	}
	for slot, iter := range []uint32{1000, 1200} {
		ks := h.Metadata.Keyslots[slot]
		if ks.KDF.Type != "pbkdf2" || ks.KDF.Iterations != iter || ks.KeySize != 32 || ks.AF.Stripes != 4000 || ks.Area.Encryption != "aes-xts-plain64" || ks.Priority != 1 {
			t.Errorf("keyslot %d = %+v, want pbkdf2 with %d iterations, a 32-byte key, 4000 stripes, aes-xts-plain64, priority 1", slot, ks, iter)
		}
	}
	if c := h.Metadata.Config; c.JSONSize != 12288 || c.KeyslotsSize != 256<<10 {
		t.Errorf("config = %+v, want json_size 12288, keyslots_size 262144", c)
	}
}

func TestReadHeaderCopies(t *testing.T) {
	golden, _ := readGolden(t, "pbkdf2-xts256-512")
	const sec = 16384
	tests := []struct {
		name       string
		change     func(img []byte) []byte
		wantOffset uint64
		wantErr    error
	}{
		{"intact", func(b []byte) []byte { return b }, 0, nil},
		{"primary checksum", func(b []byte) []byte { b[offCsum] ^= 1; return b }, sec, nil},
		{"primary JSON", func(b []byte) []byte { b[binHeaderSize] ^= 1; return b }, sec, nil},
		{"primary gone", func(b []byte) []byte { clear(b[:sec]); return b }, sec, nil},
		{"secondary checksum", func(b []byte) []byte { b[sec+offCsum] ^= 1; return b }, 0, nil},
		{"secondary newer", func(b []byte) []byte {
			binary.BigEndian.PutUint64(b[sec+offSeqID:], binary.BigEndian.Uint64(b[offSeqID:])+1)
			fixChecksum(b, sec)
			return b
		}, sec, nil},
		{"primary newer", func(b []byte) []byte {
			binary.BigEndian.PutUint64(b[offSeqID:], binary.BigEndian.Uint64(b[offSeqID:])+1)
			fixChecksum(b, 0)
			return b
		}, 0, nil},
		{"both checksums", func(b []byte) []byte { b[offCsum] ^= 1; b[sec+offCsum] ^= 1; return b }, 0, ErrBadHeader},
		{"zeroed", func(b []byte) []byte { clear(b[:2*sec]); return b }, 0, ErrNotLUKS},
		{"short", func(b []byte) []byte { return b[:100] }, 0, ErrNotLUKS},
		{"empty", func(b []byte) []byte { return nil }, 0, ErrNotLUKS},
		{"luks1", func(b []byte) []byte {
			clear(b[:2*sec])
			copy(b, magicPrimary)
			binary.BigEndian.PutUint16(b[offVersion:], 1)
			return b
		}, 0, ErrUnsupported},
		{"version 3", func(b []byte) []byte {
			binary.BigEndian.PutUint16(b[offVersion:], 3)
			fixChecksum(b, 0)
			b[sec+offCsum] ^= 1
			return b
		}, 0, ErrBadHeader},
		{"hdr_size", func(b []byte) []byte {
			binary.BigEndian.PutUint64(b[offHdrSize:], 12345)
			clear(b[sec : 2*sec])
			return b
		}, 0, ErrBadHeader},
		{"hdr_offset", func(b []byte) []byte {
			binary.BigEndian.PutUint64(b[offHdrOffset:], 512)
			fixChecksum(b, 0)
			clear(b[sec : 2*sec])
			return b
		}, 0, ErrBadHeader},
		{"unknown checksum", func(b []byte) []byte {
			copy(b[offCsumAlg:], "md5\x00\x00\x00\x00")
			clear(b[sec : 2*sec])
			return b
		}, 0, ErrUnsupported},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img := tt.change(bytes.Clone(golden))
			h, err := ReadHeader(bytes.NewReader(img), int64(len(img)))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("ReadHeader() = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ReadHeader() = %v", err)
			}
			if h.Offset != tt.wantOffset {
				t.Errorf("ReadHeader() picked the copy at %d, want %d", h.Offset, tt.wantOffset)
			}
		})
	}
}

func TestReadHeaderHostile(t *testing.T) {
	golden, _ := readGolden(t, "pbkdf2-xts256-512")
	size := int64(len(golden))
	tests := []struct {
		name string
		edit func(m map[string]any)
		want string // in the error
	}{
		{"area past device", func(m map[string]any) { obj(m, "keyslots", "0", "area")["offset"] = fmt.Sprint(size) }, "outside the keyslots area"},
		{"area size wraps", func(m map[string]any) { obj(m, "keyslots", "0", "area")["size"] = "18446744073709551615" }, "outside the keyslots area"},
		{"area over headers", func(m map[string]any) { obj(m, "keyslots", "0", "area")["offset"] = "0" }, "outside the keyslots area"},
		{"area too small", func(m map[string]any) { obj(m, "keyslots", "0", "area")["size"] = "4096" }, "cannot hold"},
		{"area unaligned", func(m map[string]any) { obj(m, "keyslots", "0", "area")["offset"] = "32769" }, "512-byte sectors"},
		{"offset a number", func(m map[string]any) { obj(m, "keyslots", "0", "area")["offset"] = 32768 }, "not a string"},
		{"offset negative", func(m map[string]any) { obj(m, "keyslots", "0", "area")["offset"] = "-1" }, "bad number"},
		{"offset too big", func(m map[string]any) { obj(m, "keyslots", "0", "area")["offset"] = "99999999999999999999" }, "bad number"},
		{"stripes", func(m map[string]any) { obj(m, "keyslots", "0", "af")["stripes"] = 4001 }, "stripes 4001"},
		{"key size 0", func(m map[string]any) { obj(m, "keyslots", "0")["key_size"] = 0 }, "key_size 0"},
		{"key size huge", func(m map[string]any) { obj(m, "keyslots", "0")["key_size"] = 1 << 30 }, "key_size"},
		{"priority", func(m map[string]any) { obj(m, "keyslots", "0")["priority"] = 7 }, "priority 7"},
		{"no salt", func(m map[string]any) { delete(obj(m, "keyslots", "0", "kdf"), "salt") }, "salt is required"},
		{"keyslot id 32", func(m map[string]any) { obj(m, "keyslots")["32"] = obj(m, "keyslots", "0") }, "ID is not a number"},
		{"keyslot id 01", func(m map[string]any) { obj(m, "keyslots")["01"] = obj(m, "keyslots", "0") }, "ID is not a number"},
		{"segment past device", func(m map[string]any) { obj(m, "segments", "0")["offset"] = fmt.Sprint(size + 512) }, "past the device"},
		{"segment size past device", func(m map[string]any) { obj(m, "segments", "0")["size"] = fmt.Sprint(size) }, "runs past"},
		{"segment in metadata", func(m map[string]any) { obj(m, "segments", "0")["offset"] = "16384" }, "overlaps"},
		{"sector size", func(m map[string]any) { obj(m, "segments", "0")["sector_size"] = 8192 }, "sector_size 8192"},
		{"json_size", func(m map[string]any) { obj(m, "config")["json_size"] = "4096" }, "json_size"},
		{"keyslots_size past device", func(m map[string]any) { obj(m, "config")["keyslots_size"] = "1073741824" }, "runs past"},
		{"no config", func(m map[string]any) { delete(m, "config") }, "config"},
		{"digest keyslot", func(m map[string]any) { obj(m, "digests", "0")["keyslots"] = []any{"5"} }, "keyslot 5"},
		{"digest segment", func(m map[string]any) { obj(m, "digests", "0")["segments"] = []any{"3"} }, "segment 3"},
		{"digest size", func(m map[string]any) { obj(m, "digests", "0")["digest"] = strings.Repeat("AAAA", 30) }, "digest of 90 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img := editJSON(t, golden, tt.edit)
			_, err := ReadHeader(bytes.NewReader(img), size)
			if !errors.Is(err, ErrBadHeader) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ReadHeader() = %v, want ErrBadHeader saying %q", err, tt.want)
			}
		})
	}
}

func TestUnlockLimits(t *testing.T) {
	pb, _ := readGolden(t, "pbkdf2-xts256-512")
	ar, _ := readGolden(t, "argon2id-xts512-4k")
	tests := []struct {
		name  string
		img   []byte
		edit  func(m map[string]any)
		limit string
	}{
		{"pbkdf2 iterations", pb, func(m map[string]any) {
			obj(m, "keyslots", "0", "kdf")["iterations"] = 4000000000
			obj(m, "keyslots", "1", "kdf")["iterations"] = 4000000000
		}, "MaxPBKDF2Iterations"},
		{"digest iterations", pb, func(m map[string]any) { obj(m, "digests", "0")["iterations"] = 4000000000 }, "MaxPBKDF2Iterations"},
		{"argon2 memory", ar, func(m map[string]any) { obj(m, "keyslots", "0", "kdf")["memory"] = 4194304 }, "MaxArgon2Memory"},
		{"argon2 time", ar, func(m map[string]any) { obj(m, "keyslots", "0", "kdf")["time"] = 1000000 }, "MaxArgon2Time"},
		{"argon2 work", ar, func(m map[string]any) {
			obj(m, "keyslots", "0", "kdf")["memory"] = 1048576
			obj(m, "keyslots", "0", "kdf")["time"] = 100
		}, "MaxArgon2Work"},
		{"argon2 cpus", ar, func(m map[string]any) { obj(m, "keyslots", "0", "kdf")["cpus"] = 200 }, "MaxArgon2CPUs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img := editJSON(t, tt.img, tt.edit)
			r := bytes.NewReader(img)
			h, err := ReadHeader(r, int64(len(img)))
			if err != nil {
				t.Fatalf("ReadHeader() = %v", err)
			}
			start := time.Now()
			_, err = h.Unlock(context.Background(), r, []byte("anything"))
			if !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), tt.limit) {
				t.Errorf("Unlock() = %v, want ErrLimit naming %s", err, tt.limit)
			}
			if errors.Is(err, ErrWrongPassphrase) {
				t.Errorf("Unlock() = %v, want no ErrWrongPassphrase: no keyslot was tried", err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("Unlock() took %v refusing a hostile header", d)
			}
		})
	}
}

func TestUnlockRefusals(t *testing.T) {
	pb, g := readGolden(t, "pbkdf2-xts256-512")
	pass := []byte(goldenCases[0].pass)
	tests := []struct {
		name string
		edit func(m map[string]any)
		opts []Option
		want error
		say  string
	}{
		{"priority 0 skipped", func(m map[string]any) { obj(m, "keyslots", "0")["priority"] = 0 }, nil, ErrWrongPassphrase, "tried 1 keyslots"},
		{"priority 0 asked for", func(m map[string]any) { obj(m, "keyslots", "0")["priority"] = 0 }, []Option{WithKeyslot(0)}, nil, ""},
		{"priority 2 first", func(m map[string]any) { obj(m, "keyslots", "1")["priority"] = 2 }, nil, nil, ""},
		{"keyslot cipher", func(m map[string]any) {
			obj(m, "keyslots", "0", "area")["encryption"] = "serpent-xts-plain64"
		}, []Option{WithKeyslot(0)}, ErrUnsupported, "serpent-xts-plain64"},
		{"cipher skipped, other slot wrong", func(m map[string]any) {
			obj(m, "keyslots", "0", "area")["encryption"] = "serpent-xts-plain64"
		}, nil, ErrWrongPassphrase, "serpent-xts-plain64"},
		{"kdf", func(m map[string]any) { obj(m, "keyslots", "0", "kdf")["type"] = "scrypt" }, []Option{WithKeyslot(0)}, ErrUnsupported, "scrypt"},
		{"af hash", func(m map[string]any) { obj(m, "keyslots", "0", "af")["hash"] = "whirlpool" }, []Option{WithKeyslot(0)}, ErrUnsupported, "whirlpool"},
		{"requirements", func(m map[string]any) {
			obj(m, "config")["requirements"] = map[string]any{"mandatory": []any{"online-reencrypt-v2"}}
		}, nil, ErrUnsupported, "online-reencrypt-v2"},
		{"integrity", func(m map[string]any) {
			obj(m, "segments", "0")["integrity"] = map[string]any{"type": "hmac(sha256)"}
		}, nil, ErrUnsupported, "authenticated"},
		{"no digest for segment", func(m map[string]any) { obj(m, "digests", "0")["segments"] = []any{} }, nil, ErrWrongPassphrase, "no keyslot"},
		{"wrong digest", func(m map[string]any) {
			obj(m, "digests", "0")["digest"] = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
		}, nil, ErrWrongPassphrase, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img := editJSON(t, pb, tt.edit)
			r := bytes.NewReader(img)
			h, err := ReadHeader(r, int64(len(img)))
			if err != nil {
				t.Fatalf("ReadHeader() = %v", err)
			}
			key, err := h.Unlock(context.Background(), r, pass, tt.opts...)
			if tt.want == nil {
				if err != nil || fmt.Sprintf("%x", []byte(key)) != g.VolumeKey {
					t.Errorf("Unlock() = %v, %v, want the volume key", key, err)
				}
				return
			}
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.say) {
				t.Errorf("Unlock() = %v, want %v saying %q", err, tt.want, tt.say)
			}
		})
	}
}

func TestUnlockCanceled(t *testing.T) {
	img, _ := readGolden(t, "pbkdf2-xts256-512")
	r := bytes.NewReader(img)
	h, err := ReadHeader(r, int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := h.Unlock(ctx, r, []byte(goldenCases[0].pass)); !errors.Is(err, context.Canceled) {
		t.Errorf("Unlock(canceled) = %v, want context.Canceled", err)
	}
}

func TestVolumeKeyRedacted(t *testing.T) {
	k := VolumeKey{0xde, 0xad, 0xbe, 0xef}
	for _, f := range []string{"%v", "%s", "%x", "%X", "%q", "%#v", "%+v"} {
		got := fmt.Sprintf(f, k)
		if strings.Contains(strings.ToLower(got), "dead") || strings.Contains(got, "222") {
			t.Errorf("Sprintf(%q, key) = %q, want it redacted", f, got)
		}
	}
	if got := fmt.Sprint(struct{ K VolumeKey }{k}); strings.Contains(got, "222") {
		t.Errorf("Sprint(struct with key) = %q, want it redacted", got)
	}
	k.Zero()
	if !bytes.Equal(k, make([]byte, 4)) {
		t.Errorf("Zero() left %x", []byte(k))
	}
}
