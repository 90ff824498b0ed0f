package server

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/lifeboat-update/lifeboat/pkg/api"
	"github.com/lifeboat-update/lifeboat/pkg/server/store"
)

// TokenSize is the size in bytes of a token, a device's or an operator's.
// Tokens travel as lower-case hex.
const TokenSize = 32

// HashToken returns the SHA-256 of a token's bytes (not of its hex), in
// lower-case hex: what the store keeps and what the manufacturing line
// registers as token_sha256.
func HashToken(token string) (string, error) {
	b, err := hex.DecodeString(token)
	if err != nil || len(b) != TokenSize {
		return "", fmt.Errorf("malformed token: want %d hex digits", 2*TokenSize)
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:]), nil
}

// NewToken returns a new token read from random (crypto/rand.Reader) and
// its hash.
func NewToken(random io.Reader) (token, sha string, err error) {
	b := make([]byte, TokenSize)
	if _, err := io.ReadFull(random, b); err != nil {
		return "", "", fmt.Errorf("new token: %w", err)
	}
	token = hex.EncodeToString(b)
	sha, err = HashToken(token)
	return token, sha, err
}

func unauthorized(format string, args ...any) *refusal {
	return errorf(http.StatusUnauthorized, api.CodeUnauthorized, format, args...)
}

// bearer returns the hash of the request's bearer token.
func bearer(r *http.Request, whose string) (string, error) { return tokenHash(r, "Bearer", whose) }

// tokenHash returns the hash of the request's token, given in the
// Authorization scheme want.
func tokenHash(r *http.Request, want, whose string) (string, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", unauthorized("no %s token: want Authorization: %s TOKEN", whose, want)
	}
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, want) {
		return "", unauthorized("Authorization scheme %q: want %s", scheme, want)
	}
	sha, err := HashToken(strings.TrimSpace(tok))
	if err != nil {
		return "", unauthorized("%s token: %v", whose, err)
	}
	return sha, nil
}

// sameHash compares the hash the store matched with the one computed, in
// constant time: the decision never rests on how the database compares
// strings (collation, case folding).
func sameHash(stored, computed string) bool {
	return subtle.ConstantTimeCompare([]byte(stored), []byte(computed)) == 1
}

// operator authenticates an operator with at least role min, then runs h.
// what names the action for a refusal.
func (s *Server) operator(min store.Role, what string, h func(http.ResponseWriter, *http.Request, store.OperatorToken) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := func() error {
			sha, err := bearer(r, "operator")
			if err != nil {
				return err
			}
			op, err := s.Authorize(r.Context(), sha, min, what)
			if err != nil {
				return err
			}
			return h(w, r, op)
		}()
		if err != nil {
			s.respond(w, r, err)
		}
	})
}

// device authenticates a device by its token, then runs h with it.
func (s *Server) device(h func(http.ResponseWriter, *http.Request, store.Device) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := func() error {
			sha, err := bearer(r, "device")
			if err != nil {
				return err
			}
			d, err := s.deviceByToken(r, sha)
			if err != nil {
				return err
			}
			return h(w, r, d)
		}()
		if err != nil {
			s.respond(w, r, err)
		}
	})
}

// deviceByToken returns the device whose token hashes to sha: 401 for an
// unknown, revoked or expired token.
func (s *Server) deviceByToken(r *http.Request, sha string) (store.Device, error) {
	d, err := s.store.DeviceByToken(r.Context(), sha)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return d, unauthorized("unknown device token")
	case err != nil:
		return d, err
	case !sameHash(d.TokenSHA256, sha):
		return d, unauthorized("unknown device token")
	case !d.RevokedAt.IsZero():
		return d, unauthorized("device %s: token revoked at %s", d.ID, d.RevokedAt.Format(time.RFC3339))
	case !d.TokenExpires.IsZero() && !s.now().Before(d.TokenExpires):
		return d, unauthorized("device %s: token expired at %s", d.ID, d.TokenExpires.Format(time.RFC3339))
	}
	return d, nil
}
