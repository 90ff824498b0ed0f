package tpm_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/lifeboat-update/lifeboat/pkg/tpm"
	"github.com/lifeboat-update/lifeboat/pkg/tpm/tpmtest"
)

var update = flag.Bool("update", false, "regenerate testdata/*.blob by sealing with swtpm")

// goldens are blobs sealed by swtpm, and one by the Fake.
var goldens = []struct {
	file   string
	policy tpm.Policy
	fake   bool
}{
	{"sealed-pcr7-11.blob", tpm.Policy{PCRs: []int{7, 11}}, false},
	{"sealed-pcr7-11-pin.blob", tpm.Policy{PCRs: []int{11, 7}, PIN: []byte("1234")}, false},
	{"sealed-pcr0-23.blob", tpm.Policy{PCRs: []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23}}, false},
	{"sealed-fake.blob", tpm.Policy{PCRs: []int{7, 11}, PIN: []byte("1234")}, true},
}

func TestSealedGolden(t *testing.T) {
	if *update {
		ctx := testCtx(t)
		real := tpmtest.Start(t).Open(t)
		fake := tpm.NewFake()
		for _, g := range goldens {
			var s tpm.Sealer = real
			if g.fake {
				s = fake
			}
			blob, err := s.Seal(ctx, []byte("golden volume key"), g.policy)
			if err != nil {
				t.Fatalf("Seal(%+v) = %v", g.policy, err)
			}
			if err := os.WriteFile(filepath.Join("testdata", g.file), blob, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, g := range goldens {
		blob, err := os.ReadFile(filepath.Join("testdata", g.file))
		if err != nil {
			t.Fatalf("%v (regenerate with go test -run TestSealedGolden -update)", err)
		}
		s, err := tpm.ParseSealed(blob)
		if err != nil {
			t.Fatalf("ParseSealed(%s) = %v", g.file, err)
		}
		want := slices.Sorted(slices.Values(g.policy.PCRs))
		if !slices.Equal(s.PCRs, want) || s.PIN != (len(g.policy.PIN) > 0) {
			t.Errorf("ParseSealed(%s) = PCRs %v, PIN %v, want %v, %v", g.file, s.PCRs, s.PIN, want, len(g.policy.PIN) > 0)
		}
		if !g.fake {
			pub, err := tpm2.Unmarshal[tpm2.TPMTPublic](s.Public)
			if err != nil {
				t.Fatalf("ParseSealed(%s).Public: %v", g.file, err)
			}
			if pub.Type != tpm2.TPMAlgKeyedHash || pub.ObjectAttributes.UserWithAuth || len(pub.AuthPolicy.Buffer) != 32 {
				t.Errorf("ParseSealed(%s).Public = %+v, want a policy-only keyedhash object", g.file, pub)
			}
		}
		again, err := s.MarshalBinary()
		if err != nil || !bytes.Equal(again, blob) {
			t.Errorf("ParseSealed(%s).MarshalBinary() = %x, %v, want the file's bytes", g.file, again, err)
		}
	}
}

func TestParseSealedMalformed(t *testing.T) {
	golden, err := os.ReadFile(filepath.Join("testdata", "sealed-pcr7-11.blob"))
	if err != nil {
		t.Fatal(err)
	}
	edit := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(golden)) }
	pubLen := int(binary.BigEndian.Uint16(golden[11:]))
	for _, tc := range []struct {
		name string
		blob []byte
	}{
		{"empty", nil},
		{"header only", golden[:11]},
		{"truncated public", golden[:20]},
		{"truncated private", golden[:len(golden)-1]},
		{"trailing byte", append(bytes.Clone(golden), 0)},
		{"magic", edit(func(b []byte) []byte { b[0] = 'X'; return b })},
		{"version", edit(func(b []byte) []byte { b[4] = 2; return b })},
		{"parent", edit(func(b []byte) []byte { b[5] = 9; return b })},
		{"claims fake", edit(func(b []byte) []byte { b[5] = 2; return b })},
		{"unknown flag", edit(func(b []byte) []byte { b[6] |= 0x80; return b })},
		{"PIN flag on a noDA object", edit(func(b []byte) []byte { b[6] |= 1; return b })},
		{"no PCRs", edit(func(b []byte) []byte { copy(b[7:11], []byte{0, 0, 0, 0}); return b })},
		{"PCR 24", edit(func(b []byte) []byte { b[7] = 1; return b })},
		{"zero-length public", edit(func(b []byte) []byte {
			return append(append(b[:11:11], 0, 0), b[13+pubLen:]...)
		})},
		{"object type", edit(func(b []byte) []byte { b[14] = 0x01; return b })}, // TPM_ALG_RSA
		{"userWithAuth", edit(func(b []byte) []byte { b[20] |= 0x40; return b })},
	} {
		if s, err := tpm.ParseSealed(tc.blob); !errors.Is(err, tpm.ErrMalformed) {
			t.Errorf("%s: ParseSealed() = %+v, %v, want %v", tc.name, s, err, tpm.ErrMalformed)
		}
	}
}

func FuzzParseSealed(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.blob"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no seeds in testdata/*.blob: %v", err)
	}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := tpm.ParseSealed(b)
		if err != nil {
			if !errors.Is(err, tpm.ErrMalformed) {
				t.Fatalf("ParseSealed() = %v, want it to wrap %v", err, tpm.ErrMalformed)
			}
			return
		}
		again, err := s.MarshalBinary()
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("ParseSealed(%x).MarshalBinary() = %x, %v, want the input", b, again, err)
		}
	})
}
