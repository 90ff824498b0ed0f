package mtls

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-update/lifeboat/pkg/server/mtls/mtlstest"
)

// identityServer serves, over TLS with conf, the identity each request's
// client certificate carries, or DeviceIdentity's error.
func identityServer(t *testing.T, conf *tls.Config) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := DeviceIdentity(r.TLS)
		if err != nil {
			fmt.Fprintf(w, "error: %v", err)
			return
		}
		fmt.Fprintf(w, "%s %s", id.DeviceID, id.SHA256)
	}))
	srv.TLS = conf
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes, which the tests make
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func get(c *http.Client, url string) (string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// TestDeviceIdentity: over a real handshake, a certificate of the device
// CA names its device by Common Name; one of another CA, an expired one,
// or one for servers fails the handshake; one that verifies but does not
// name a device as required is refused by DeviceIdentity, saying why.
func TestDeviceIdentity(t *testing.T) {
	ca, other := mtlstest.NewCA(t, "device CA"), mtlstest.NewCA(t, "other CA")
	srv := identityServer(t, Config(ca.Server(t).TLS, ca.Pool()))
	clientAuth := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	dev := ca.Device(t, "SN-0042")
	withSAN := ca.Issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: "SN-7"}, DNSNames: []string{"SN-8"}, ExtKeyUsage: clientAuth})
	twoCNs := ca.Issue(t, &x509.Certificate{Subject: pkix.Name{ExtraNames: []pkix.AttributeTypeAndValue{
		{Type: asn1.ObjectIdentifier{2, 5, 4, 3}, Value: "SN-1"}, {Type: asn1.ObjectIdentifier{2, 5, 4, 3}, Value: "SN-2"}}}, ExtKeyUsage: clientAuth})
	for _, tc := range []struct {
		name      string
		cert      *mtlstest.Cert
		want      string // the answer, or a part of it
		handshake bool   // the handshake is to fail
	}{
		{"none", nil, "error: " + ErrNoCertificate.Error(), false},
		{"device", dev, "SN-0042 " + dev.SHA256, false},
		{"SAN not consulted", withSAN, "SN-7 " + withSAN.SHA256, false},
		{"no extended key usage", ca.Issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: "SN-1"}}), "does not list extended key usage clientAuth", false},
		{"no Common Name", ca.Issue(t, &x509.Certificate{Subject: pkix.Name{Organization: []string{"acme"}}, ExtKeyUsage: clientAuth}), "has 0 Common Names", false},
		{"two Common Names", twoCNs, "has 2 Common Names", false},
		{"not a device ID", ca.Issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: "a/b"}, ExtKeyUsage: clientAuth}), `device_id "a/b"`, false},
		{"another CA", other.Device(t, "SN-0042"), "", true},
		{"expired", ca.Issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: "SN-0042"}, ExtKeyUsage: clientAuth,
			NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)}), "", true},
		{"not yet valid", ca.Issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: "SN-0042"}, ExtKeyUsage: clientAuth,
			NotBefore: time.Now().Add(time.Hour), NotAfter: time.Now().Add(48 * time.Hour)}), "", true},
		{"server usage only", ca.Issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: "SN-0042"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}), "", true},
	} {
		got, err := get(ca.Client(tc.cert), srv.URL)
		switch {
		case tc.handshake && err == nil:
			t.Errorf("%s: GET = %q, want the handshake to fail", tc.name, got)
		case tc.handshake:
			t.Logf("%s: %v", tc.name, err)
		case err != nil:
			t.Errorf("%s: GET = %v", tc.name, err)
		case !strings.Contains(got, tc.want):
			t.Errorf("%s: identity %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestConfigWithoutCA: without a device CA the server asks for no
// certificate, so a device presenting one is not identified by it.
func TestConfigWithoutCA(t *testing.T) {
	ca := mtlstest.NewCA(t, "CA")
	srv := identityServer(t, Config(ca.Server(t).TLS, nil))
	if got, err := get(ca.Client(ca.Device(t, "SN-1")), srv.URL); err != nil || got != "error: "+ErrNoCertificate.Error() {
		t.Errorf("GET with a certificate, no device CA = %q, %v; want no identity", got, err)
	}
	if _, err := DeviceIdentity(nil); !errors.Is(err, ErrNoCertificate) {
		t.Errorf("DeviceIdentity(plain HTTP) = %v, want ErrNoCertificate", err)
	}
}

// TestConfigRefusesOldTLS: TLS 1.1, and TLS 1.2 with a suite that is not
// ECDHE with AEAD, do not connect.
func TestConfigRefusesOldTLS(t *testing.T) {
	ca := mtlstest.NewCA(t, "CA")
	srv := identityServer(t, Config(ca.Server(t).TLS, ca.Pool()))
	for name, conf := range map[string]*tls.Config{
		"TLS 1.1":         {MaxVersion: tls.VersionTLS11},
		"TLS 1.2 CBC":     {MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256}},
		"TLS 1.2 RSA kex": {MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_RSA_WITH_AES_128_GCM_SHA256}},
	} {
		conf.RootCAs = ca.Pool()
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: conf}}
		if _, err := get(c, srv.URL); err == nil {
			t.Errorf("%s: connected, want the handshake refused", name)
		}
	}
	conf := &tls.Config{RootCAs: ca.Pool(), MaxVersion: tls.VersionTLS12}
	if _, err := get(&http.Client{Transport: &http.Transport{TLSClientConfig: conf}}, srv.URL); err != nil {
		t.Errorf("TLS 1.2 with the default suites: %v", err)
	}
}

func TestParseCAs(t *testing.T) {
	ca := mtlstest.NewCA(t, "CA")
	two := append(append([]byte{}, ca.PEM...), mtlstest.NewCA(t, "CA 2").PEM...)
	if _, err := ParseCAs(two); err != nil {
		t.Errorf("ParseCAs(two CAs) = %v", err)
	}
	for name, tc := range map[string]struct {
		pem []byte
		msg string
	}{
		"empty":   {nil, "no PEM certificate"},
		"not PEM": {[]byte("hello"), "no PEM certificate"},
		"a key":   {append(append([]byte{}, ca.PEM...), ca.Device(t, "x").KeyPEM...), `PEM block 2 is a "PRIVATE KEY"`},
		"not DER": {[]byte("-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n"), "PEM block 1: x509"},
	} {
		if _, err := ParseCAs(tc.pem); err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("ParseCAs(%s) = %v, want an error naming %q", name, err, tc.msg)
		}
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	ca := mtlstest.NewCA(t, "CA")
	certFile, keyFile := ca.Server(t).WriteFiles(t, dir, "server")
	caFile := filepath.Join(dir, "ca.pem")
	os.WriteFile(caFile, ca.PEM, 0o600)
	c, err := Load(certFile, keyFile, caFile)
	if err != nil || c.ClientAuth != tls.VerifyClientCertIfGiven || c.MinVersion != tls.VersionTLS12 || len(c.Certificates) != 1 {
		t.Fatalf("Load = %+v, %v; want a server config asking for client certificates", c, err)
	}
	if c, err := Load(certFile, keyFile, ""); err != nil || c.ClientAuth != tls.NoClientCert || c.ClientCAs != nil {
		t.Errorf("Load without a CA = %+v, %v; want no client certificates asked for", c, err)
	}
	for name, tc := range map[string]struct {
		cert, key, ca, msg string
	}{
		"no cert":      {filepath.Join(dir, "nope.crt"), keyFile, "", "server certificate"},
		"key for cert": {keyFile, certFile, "", "server certificate"},
		"no CA file":   {certFile, keyFile, filepath.Join(dir, "nope.pem"), "device CA"},
		"CA is a key":  {certFile, keyFile, keyFile, "device CA " + keyFile},
	} {
		if _, err := Load(tc.cert, tc.key, tc.ca); err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("Load(%s) = %v, want an error naming %q", name, err, tc.msg)
		}
	}
}
