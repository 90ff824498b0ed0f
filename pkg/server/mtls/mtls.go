// Package mtls is the fleet server's TLS: the configuration it listens
// with (TLS 1.2 or later, forward-secret AEAD cipher suites only; with a
// device CA, client certificates asked for and verified against that CA
// alone), and the device identity a verified client certificate carries.
//
// A client certificate identifies a device by its subject Common Name,
// which must be a device ID (api.CheckDeviceID), and must be marked for
// client authentication (extended key usage clientAuth, listed
// explicitly). Subject alternative names are not consulted: a
// certificate names one device, in one place.
package mtls

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/lifeboat-update/lifeboat/pkg/api"
)

// CipherSuites are the TLS 1.2 suites the server accepts: ECDHE key
// exchange (forward secrecy) with an AEAD cipher. TLS 1.3's suites are
// all of that kind and not configurable.
var CipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// Config returns the server's TLS configuration for cert. With deviceCA
// (not nil), the server asks clients for a certificate and verifies one
// that is given against deviceCA alone, never the system's roots, for
// client authentication (crypto/tls checks its validity period and
// extended key usage); a client that gives none (an operator, a device
// with a token) still connects.
func Config(cert tls.Certificate, deviceCA *x509.CertPool) *tls.Config {
	c := &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		CipherSuites: CipherSuites,
	}
	if deviceCA != nil {
		c.ClientAuth = tls.VerifyClientCertIfGiven
		c.ClientCAs = deviceCA
	}
	return c
}

// Load returns Config over the certificate chain and key in the PEM files
// certFile and keyFile and, unless caFile is "", the device CAs in the
// PEM bundle caFile.
func Load(certFile, keyFile, caFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("server certificate %s, key %s: %w", certFile, keyFile, err)
	}
	if caFile == "" {
		return Config(cert, nil), nil
	}
	b, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("device CA: %w", err)
	}
	pool, err := ParseCAs(b)
	if err != nil {
		return nil, fmt.Errorf("device CA %s: %w", caFile, err)
	}
	return Config(cert, pool), nil
}

// ParseCAs returns the certificates of a PEM bundle as a pool. A bundle
// holding no certificate, or a block that is not one, is an error: a
// device CA that trusts nothing, or not what was meant, is a mistake.
func ParseCAs(bundle []byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	n := 0
	for rest := bundle; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		n++
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %d is a %q, want CERTIFICATE", n, b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("PEM block %d: %w", n, err)
		}
		pool.AddCert(c)
	}
	if n == 0 {
		return nil, errors.New("no PEM certificate")
	}
	return pool, nil
}

// Identity is the device a verified client certificate names.
type Identity struct {
	DeviceID string // the subject's Common Name
	SHA256   string // of the certificate's DER bytes, lower-case hex
}

// ErrNoCertificate is DeviceIdentity's error for a connection with no
// verified client certificate: plain HTTP, or TLS without one.
var ErrNoCertificate = errors.New("no verified client certificate")

// ErrNotDevice wraps DeviceIdentity's error for a verified certificate
// that does not name a device as this package requires.
var ErrNotDevice = errors.New("client certificate names no device")

var oidCommonName = asn1.ObjectIdentifier{2, 5, 4, 3}

// DeviceIdentity returns the device the connection's verified client
// certificate names: ErrNoCertificate when there is none (cs nil, or no
// verified chain: an unverified certificate does not count); an error
// wrapping ErrNotDevice when it is not marked for client authentication,
// or its subject has not exactly one Common Name, or that is not a device
// ID.
func DeviceIdentity(cs *tls.ConnectionState) (Identity, error) {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return Identity{}, ErrNoCertificate
	}
	leaf := cs.VerifiedChains[0][0]
	sum := sha256.Sum256(leaf.Raw)
	fp := hex.EncodeToString(sum[:])
	if !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		return Identity{}, fmt.Errorf("%w: certificate %s (subject %q) does not list extended key usage clientAuth", ErrNotDevice, fp, leaf.Subject)
	}
	cns := 0
	for _, a := range leaf.Subject.Names {
		if a.Type.Equal(oidCommonName) {
			cns++
		}
	}
	if cns != 1 {
		return Identity{}, fmt.Errorf("%w: certificate %s (subject %q) has %d Common Names, want one: the device ID", ErrNotDevice, fp, leaf.Subject, cns)
	}
	if err := api.CheckDeviceID(leaf.Subject.CommonName); err != nil {
		return Identity{}, fmt.Errorf("%w: certificate %s: subject Common Name: %w", ErrNotDevice, fp, err)
	}
	return Identity{DeviceID: leaf.Subject.CommonName, SHA256: fp}, nil
}
