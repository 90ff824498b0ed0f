package server

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/lifeboat-update/lifeboat/pkg/api"
	"github.com/lifeboat-update/lifeboat/pkg/server/mtls"
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
func bearer(r *http.Request, whose string) (string, error) {
	_, sha, err := tokenHash(r, whose, "Bearer")
	return sha, err
}

// tokenHash returns the hash of the request's token and the scheme it was
// given in, one of the Authorization schemes want (as spelled there).
func tokenHash(r *http.Request, whose string, want ...string) (scheme, sha string, err error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", "", unauthorized("no %s token: want Authorization: %s TOKEN", whose, strings.Join(want, " TOKEN or "))
	}
	given, tok, ok := strings.Cut(h, " ")
	i := slices.IndexFunc(want, func(w string) bool { return strings.EqualFold(w, given) })
	if !ok || i < 0 {
		return "", "", unauthorized("Authorization scheme %q: want %s", given, strings.Join(want, " or "))
	}
	sha, err = HashToken(strings.TrimSpace(tok))
	if err != nil {
		return "", "", unauthorized("%s token: %v", whose, err)
	}
	return want[i], sha, nil
}

// sameHash compares the hash the store matched with the one computed, in
// constant time: the decision never rests on how the database compares
// strings (collation, case folding).
func sameHash(stored, computed string) bool {
	return subtle.ConstantTimeCompare([]byte(stored), []byte(computed)) == 1
}

// handle runs h, and answers its error.
func (s *Server) handle(h func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			s.respond(w, r, err)
		}
	})
}

// operator authenticates an operator with at least role min, then runs h.
// what names the action for a refusal.
func (s *Server) operator(min store.Role, what string, h func(http.ResponseWriter, *http.Request, store.OperatorToken) error) http.Handler {
	return s.handle(func(w http.ResponseWriter, r *http.Request) error {
		sha, err := bearer(r, "operator")
		if err != nil {
			return err
		}
		op, err := s.Authorize(r.Context(), sha, min, what)
		if err != nil {
			return err
		}
		return h(w, r, op)
	})
}

// device authenticates a device (deviceOf), then runs h with it.
func (s *Server) device(h func(http.ResponseWriter, *http.Request, store.Device) error) http.Handler {
	return s.handle(func(w http.ResponseWriter, r *http.Request) error {
		d, err := s.deviceOf(r)
		if err != nil {
			return err
		}
		return h(w, r, d)
	})
}

// deviceOf returns the device a request is from: the one its verified
// client certificate names, or its bearer token's, or, given both, the
// device they both name. Every credential given must hold: a bad token
// beside a good certificate is refused. A certificate and a token of two
// devices are a 401 naming both.
func (s *Server) deviceOf(r *http.Request) (store.Device, error) {
	id, err := certIdentity(r)
	if err != nil {
		return store.Device{}, err
	}
	if id == nil {
		return s.deviceByBearer(r)
	}
	d, err := s.deviceByCert(r, *id)
	if err != nil || r.Header.Get("Authorization") == "" {
		return d, err
	}
	t, err := s.deviceByBearer(r)
	if err != nil {
		return t, err
	}
	if t.ID != d.ID {
		return store.Device{}, unauthorized("the client certificate is device %s's and the token device %s's: present one device's credentials", d.ID, t.ID)
	}
	return d, nil
}

// deviceByBearer returns the device whose token the request bears.
func (s *Server) deviceByBearer(r *http.Request) (store.Device, error) {
	sha, err := bearer(r, "device")
	if err != nil {
		return store.Device{}, err
	}
	return s.deviceByToken(r, sha)
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

// certIdentity returns the device identity of the request's verified
// client certificate, nil for none; a certificate that names no device
// (mtls.DeviceIdentity) is a 401 saying why.
func certIdentity(r *http.Request) (*mtls.Identity, error) {
	id, err := mtls.DeviceIdentity(r.TLS)
	switch {
	case errors.Is(err, mtls.ErrNoCertificate):
		return nil, nil
	case err != nil:
		return nil, unauthorized("%v", err)
	}
	return &id, nil
}

// deviceByCert returns the device a verified client certificate names,
// registered and not revoked: 401 otherwise. The certificate's validity
// was checked by the TLS handshake; the device's token expiry does not
// apply to it.
func (s *Server) deviceByCert(r *http.Request, id mtls.Identity) (store.Device, error) {
	return s.registeredDevice(r, id.DeviceID, unauthorized("device %s (client certificate %s) is not registered: enroll it with POST /api/v1/device/enroll", id.DeviceID, id.SHA256))
}

// registeredDevice returns device id, refusing it when revoked (401),
// whatever credential named it, and answering unknown when there is none.
func (s *Server) registeredDevice(r *http.Request, id string, unknown *refusal) (store.Device, error) {
	d, err := s.store.Device(r.Context(), id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return d, unknown
	case err != nil:
		return d, err
	case !d.RevokedAt.IsZero():
		return d, unauthorized("device %s: revoked at %s", d.ID, d.RevokedAt.Format(time.RFC3339))
	}
	return d, nil
}
