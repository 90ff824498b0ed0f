package identity

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/lifeboat-update/lifeboat/pkg/durable"
)

// goldenHash is the token hash of testdata/identity.json, whose token is
// the bytes 0..31: their SHA-256, by Python's hashlib.
const goldenHash = "630dcd2966c4336691125448bbb25b4ff412a49c732db2c8abc1b8581bd710dd"

func TestParseGolden(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "identity.json"))
	if err != nil {
		t.Fatal(err)
	}
	id, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := id.Registration("1")
	if err != nil {
		t.Fatal(err)
	}
	want := Registration{DeviceID: "line-7-0042", Board: "qemu-x86_64", Version: "1", TokenSHA256: goldenHash}
	if diff := cmp.Diff(want, reg); diff != "" {
		t.Errorf("Registration(golden) (-want +got):\n%s", diff)
	}
}

func TestParseRejects(t *testing.T) {
	good, err := os.ReadFile(filepath.Join("testdata", "identity.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, old, new, want string }{
		{"unknown field", `"board"`, `"bored"`, "unknown field"},
		{"device ID", `"line-7-0042"`, `"line 7/0042"`, `device ID "line 7/0042"`},
		{"empty device ID", `"line-7-0042"`, `""`, `device ID ""`},
		{"no board", `"qemu-x86_64"`, `""`, "no board"},
		{"short token", `"0001`, `"01`, "token"},
		{"upper-case token", `"000102030405060708090a`, `"000102030405060708090A`, "token"},
		{"trailing data", "}\n", "}{}", "data after"},
		{"not an object", "{", "[", "invalid character"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := strings.Replace(string(good), tc.old, tc.new, 1)
			if b == string(good) {
				t.Fatalf("%q not in the golden file", tc.old)
			}
			_, err := Parse([]byte(b))
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Parse = %v, want ErrInvalid mentioning %q", err, tc.want)
			}
		})
	}
	if _, err := Parse(bytes.Repeat([]byte(" "), MaxSize+1)); !errors.Is(err, ErrInvalid) {
		t.Errorf("Parse(%d bytes) = %v, want ErrInvalid", MaxSize+1, err)
	}
}

// TestServer reads an identity naming its fleet server, and refuses a
// server that is not an http or https URL.
func TestServer(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "identity-server.json"))
	if err != nil {
		t.Fatal(err)
	}
	id, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if want := "https://fleet.example:8443/lifeboat/"; id.Server != want {
		t.Errorf("Parse(identity-server.json).Server = %q, want %q", id.Server, want)
	}
	for _, bad := range []string{"ftp://fleet.example/", "fleet.example:8080", "http://", "http://[::1"} {
		c := strings.Replace(string(b), "https://fleet.example:8443/lifeboat/", bad, 1)
		if _, err := Parse([]byte(c)); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "server") {
			t.Errorf("Parse(server %q) = %v, want ErrInvalid naming the server", bad, err)
		}
	}
}

func TestNewWriteRead(t *testing.T) {
	// A counting reader stands in for crypto/rand: the token is its bytes.
	id, err := New("0b5e4a3c-9f1d-4c8e-a2b7-6d5f4e3c2b1a", "qemu-arm64", bytes.NewReader([]byte(strings.Repeat("\x00\x01\x02\x03\x04\x05\x06\x07", 4))))
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.Repeat("0001020304050607", 4); id.Token != want {
		t.Errorf("token = %s, want %s", id.Token, want)
	}
	dir := t.TempDir()
	if err := Write(durable.OS(dir), id); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, filepath.FromSlash(Name)))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s mode %v, want 0600: it holds a secret", Name, fi.Mode().Perm())
	}
	got, err := Read(durable.OS(dir))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(id, got); diff != "" {
		t.Errorf("Read after Write (-want +got):\n%s", diff)
	}
	if _, err := New("a b", "qemu-arm64", bytes.NewReader(make([]byte, TokenSize))); !errors.Is(err, ErrInvalid) {
		t.Errorf("New(bad device ID) = %v, want ErrInvalid", err)
	}
	if _, err := New("x", "qemu-arm64", bytes.NewReader(make([]byte, TokenSize-1))); err == nil {
		t.Error("New with a short random source succeeded")
	}
}

func TestNewUUID(t *testing.T) {
	u, err := NewUUID(bytes.NewReader(bytes.Repeat([]byte{0xff}, 16)))
	if err != nil {
		t.Fatal(err)
	}
	if want := "ffffffff-ffff-4fff-bfff-ffffffffffff"; u != want {
		t.Errorf("NewUUID(all ones) = %s, want %s (version 4, RFC 4122 variant)", u, want)
	}
	if !regexp.MustCompile(`^[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$`).MatchString(u) || CheckDeviceID(u) != nil {
		t.Errorf("NewUUID = %s: not a UUID usable as a device ID", u)
	}
}

func TestTokenHash(t *testing.T) {
	if _, err := TokenHash("zz"); !errors.Is(err, ErrInvalid) {
		t.Errorf("TokenHash(zz) = %v, want ErrInvalid", err)
	}
}

// FuzzParse: an identity file is read from a partition anyone with the
// device in hand can rewrite. Whatever Parse accepts is valid and
// round-trips.
func FuzzParse(f *testing.F) {
	b, err := os.ReadFile(filepath.Join("testdata", "identity.json"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	if b, err = os.ReadFile(filepath.Join("testdata", "identity-server.json")); err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte(`{"device_id":"x","board":"b","token":"` + strings.Repeat("ab", 32) + `"}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		id, err := Parse(b)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse error %v does not wrap ErrInvalid", err)
			}
			return
		}
		if err := id.Validate(); err != nil {
			t.Fatalf("Parse accepted an invalid identity: %v", err)
		}
		if _, err := id.Registration("1"); err != nil {
			t.Fatalf("Registration of a parsed identity: %v", err)
		}
	})
}
