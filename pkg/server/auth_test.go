package server

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHashToken(t *testing.T) {
	// The SHA-256 of 32 zero bytes: the digest is of the token's bytes,
	// not of its hex, as the manufacturing line registers it.
	got, err := HashToken(strings.Repeat("00", 32))
	if want := "66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925"; got != want || err != nil {
		t.Errorf("HashToken(32 zero bytes) = %q, %v; want %s", got, err, want)
	}
	for _, bad := range []string{"", "00", strings.Repeat("00", 31), strings.Repeat("00", 33), strings.Repeat("zz", 32), strings.Repeat("0", 63)} {
		if _, err := HashToken(bad); err == nil || !strings.Contains(err.Error(), "want 64 hex digits") {
			t.Errorf("HashToken(%q) = %v, want an error asking for 64 hex digits", bad, err)
		}
	}
}

func TestNewToken(t *testing.T) {
	tok, sha, err := NewToken(bytes.NewReader(make([]byte, 32)))
	if err != nil || tok != strings.Repeat("00", 32) {
		t.Fatalf("NewToken(zeros) = %q, %v", tok, err)
	}
	if want, _ := HashToken(tok); sha != want {
		t.Errorf("NewToken's hash %s, HashToken's %s", sha, want)
	}
	if _, _, err := NewToken(bytes.NewReader(make([]byte, 31))); err == nil {
		t.Error("NewToken from 31 random bytes succeeded")
	}
}

// FuzzTokenHash: whatever the Authorization header, tokenHash refuses it
// with a 401 or returns one of the schemes asked for and the hash of a
// well-formed token.
func FuzzTokenHash(f *testing.F) {
	f.Add("TargetToken " + strings.Repeat("ab", 32))
	f.Add("gatewaytoken  " + strings.Repeat("01", 32) + " ")
	f.Add("Bearer")
	f.Add("Basic YTpi")
	f.Fuzz(func(t *testing.T, h string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header["Authorization"] = []string{h}
		scheme, sha, err := tokenHash(r, "target", "TargetToken", "GatewayToken")
		if err != nil {
			var e *refusal
			if !errors.As(err, &e) || e.Status != http.StatusUnauthorized {
				t.Fatalf("tokenHash(%q) = %v, want a 401", h, err)
			}
			return
		}
		given, tok, _ := strings.Cut(h, " ")
		want, herr := HashToken(strings.TrimSpace(tok))
		if (scheme != "TargetToken" && scheme != "GatewayToken") || !strings.EqualFold(given, scheme) || herr != nil || sha != want {
			t.Fatalf("tokenHash(%q) = %q, %q; want a scheme asked for and the token's hash", h, scheme, sha)
		}
	})
}
