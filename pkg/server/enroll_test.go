package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/lifeboat-update/lifeboat/pkg/api"
	"github.com/lifeboat-update/lifeboat/pkg/server/mtls"
	"github.com/lifeboat-update/lifeboat/pkg/server/mtls/mtlstest"
	"github.com/lifeboat-update/lifeboat/pkg/server/store"
	"github.com/lifeboat-update/lifeboat/pkg/server/store/storetest"
)

// serveTLS serves the fixture's server over TLS with conf on loopback,
// until the test ends, and returns its URL.
func (f *fixture) serveTLS(conf *tls.Config) string {
	f.t.Helper()
	srv := httptest.NewUnstartedServer(f.srv)
	srv.TLS = conf
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes the tests make
	srv.StartTLS()
	f.t.Cleanup(srv.Close)
	return srv.URL
}

// send sends r to the server at base as client c.
func send(t testing.TB, c *http.Client, base string, r req) (int, http.Header, []byte, error) {
	t.Helper()
	hr, err := http.NewRequest(r.method, base+r.path, r.bodyReader())
	if err != nil {
		t.Fatal(err)
	}
	r.setHeaders(hr)
	resp, err := c.Do(hr)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b, err
}

// TestCertificates: over real TLS with a device CA, a device enrolls with
// its client certificate and then acts as itself with it, as with a
// token; devices registered with a token may use a certificate too.
// Every refusal (no certificate, another CA's, an expired one, a revoked
// device, a certificate and a token of two devices, a device probing
// another's resources, bad bodies) gets its 4xx, or a failed handshake,
// and changes nothing.
func TestCertificates(t *testing.T) { storetest.Run(t, testCertificates) }

func testCertificates(t *testing.T, dsn string) {
	f := newFixture(t, dsn)
	ca, other := mtlstest.NewCA(t, "devices"), mtlstest.NewCA(t, "other")
	base := f.serveTLS(mtls.Config(ca.Server(t).TLS, ca.Pool()))
	clientAuth := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	devNew, devX, devRevoked := ca.Device(t, "dev-new"), ca.Device(t, "dev-x"), ca.Device(t, "dev-revoked")
	noUsage := ca.Issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: "dev-new"}})
	const js = "application/json"
	enroll := `{"board": "qemu-x86_64", "version": "1.0"}`
	enrollReq := req{method: "POST", path: "/api/v1/device/enroll", ctype: js, body: enroll}
	unknown, _ := f.token()

	for _, tc := range []struct {
		name   string
		cert   *mtlstest.Cert
		req    req
		status int
		code   string
		msg    string
	}{
		// Enrollment.
		{"enroll, no certificate", nil, enrollReq, 401, api.CodeUnauthorized, "needs a client certificate the device CA issued"},
		{"enroll, no certificate, a token", nil, req{method: "POST", path: "/api/v1/device/enroll", token: f.dev["dev-y"], ctype: js, body: enroll}, 401, api.CodeUnauthorized, "needs a client certificate"},
		{"enroll, certificate and token", devNew, req{method: "POST", path: "/api/v1/device/enroll", token: f.dev["dev-y"], ctype: js, body: enroll}, 400, api.CodeBadRequest, "by client certificate alone"},
		{"enroll, naming a device", devNew, req{method: "POST", path: "/api/v1/device/enroll", ctype: js, body: `{"board": "b", "version": "1", "device_id": "dev-y"}`}, 400, api.CodeBadRequest, `unknown field "device_id"`},
		{"enroll, bad board", devNew, req{method: "POST", path: "/api/v1/device/enroll", ctype: js, body: `{"board": "a b", "version": "1"}`}, 400, api.CodeBadRequest, `board "a b"`},
		{"enroll, no version", devNew, req{method: "POST", path: "/api/v1/device/enroll", ctype: js, body: `{"board": "b"}`}, 400, api.CodeBadRequest, `version ""`},
		{"enroll, empty", devNew, req{method: "POST", path: "/api/v1/device/enroll", ctype: js}, 400, api.CodeBadRequest, "empty body"},
		{"enroll, text/plain", devNew, req{method: "POST", path: "/api/v1/device/enroll", ctype: "text/plain", body: enroll}, 415, api.CodeUnsupportedType, "want application/json"},
		{"enroll, too large", devNew, req{method: "POST", path: "/api/v1/device/enroll", ctype: js, body: `{"board": "` + strings.Repeat("b", api.MaxBodySize) + `"}`, chunked: true}, 413, api.CodeTooLarge, "over 65536 bytes"},
		{"enroll, no clientAuth usage", noUsage, enrollReq, 401, api.CodeUnauthorized, "does not list extended key usage clientAuth"},
		{"enroll, not a device ID", ca.Issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: "dev new"}, ExtKeyUsage: clientAuth}), enrollReq, 401, api.CodeUnauthorized, `device_id "dev new"`},
		{"enroll, revoked device", devRevoked, enrollReq, 401, api.CodeUnauthorized, "dev-revoked: revoked at"},
		{"enroll, registered with another board", devX, req{method: "POST", path: "/api/v1/device/enroll", ctype: js, body: `{"board": "rpi4", "version": "1.0"}`}, 409, api.CodeConflict, "dev-x is registered with board qemu-x86_64, not rpi4"},
		{"enroll, GET", devNew, req{method: "GET", path: "/api/v1/device/enroll"}, 405, api.CodeMethodNotAllowed, "allowed: POST"},
		// The device endpoints.
		{"poll, not registered", devNew, req{method: "GET", path: "/api/v1/device/poll"}, 401, api.CodeUnauthorized, "device dev-new (client certificate " + devNew.SHA256 + ") is not registered: enroll it"},
		{"poll, revoked", devRevoked, req{method: "GET", path: "/api/v1/device/poll"}, 401, api.CodeUnauthorized, "dev-revoked: revoked at"},
		{"poll, revoked, another's token", devRevoked, req{method: "GET", path: "/api/v1/device/poll", token: f.dev["dev-x"]}, 401, api.CodeUnauthorized, "dev-revoked: revoked at"},
		{"poll, revoked token, good certificate", devX, req{method: "GET", path: "/api/v1/device/poll", token: f.dev["dev-revoked"]}, 401, api.CodeUnauthorized, "dev-revoked: token revoked"},
		{"poll, another device's token", devX, req{method: "GET", path: "/api/v1/device/poll", token: f.dev["dev-y"]}, 401, api.CodeUnauthorized, "the client certificate is device dev-x's and the token device dev-y's"},
		{"status, another device's token", devX, req{method: "POST", path: "/api/v1/device/status", token: f.dev["dev-y"], ctype: js, body: validStatus}, 401, api.CodeUnauthorized, "device dev-x's and the token device dev-y's"},
		{"poll, unknown token", devX, req{method: "GET", path: "/api/v1/device/poll", token: unknown}, 401, api.CodeUnauthorized, "unknown device token"},
		{"poll, malformed token", devX, req{method: "GET", path: "/api/v1/device/poll", token: "letmein"}, 401, api.CodeUnauthorized, "malformed token"},
		{"poll, no clientAuth usage", noUsage, req{method: "GET", path: "/api/v1/device/poll"}, 401, api.CodeUnauthorized, "clientAuth"},
		// A device probing another's resources.
		{"poll, naming another", devX, req{method: "GET", path: "/api/v1/device/poll?device_id=dev-y"}, 400, api.CodeBadRequest, `unknown query parameter "device_id"`},
		{"status, naming another", devX, req{method: "POST", path: "/api/v1/device/status", ctype: js, body: strings.Replace(validStatus, "{", `{"device_id": "dev-y", `, 1)}, 400, api.CodeBadRequest, `unknown field "device_id"`},
		{"inventory, another's path", devX, req{method: "PUT", path: "/api/v1/device/dev-y/inventory", ctype: js, body: `{"attributes": {}}`}, 404, api.CodeNotFound, "no endpoint"},
		{"read another device", devX, req{method: "GET", path: "/api/v1/devices/dev-y"}, 401, api.CodeUnauthorized, "no operator token"},
		{"another's timeline", devX, req{method: "GET", path: "/api/v1/devices/dev-y/timeline"}, 401, api.CodeUnauthorized, "no operator token"},
		{"revoke another device", devX, req{method: "POST", path: "/api/v1/devices/dev-y/revoke"}, 401, api.CodeUnauthorized, "no operator token"},
		{"tag itself", devX, req{method: "PUT", path: "/api/v1/devices/dev-x/tags", ctype: js, body: `{"tags": ["vip"]}`}, 401, api.CodeUnauthorized, "no operator token"},
		{"register a device", devX, req{method: "POST", path: "/api/v1/devices", ctype: js, body: newReg(strings.Repeat("0", 64))}, 401, api.CodeUnauthorized, "no operator token"},
		{"DDI, another controller", devX, req{method: "GET", path: "/DEFAULT/controller/v1/dev-y"}, 401, api.CodeUnauthorized, "want Authorization: TargetToken"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.t = t
			before := f.snapshot()
			status, h, body, err := send(t, ca.Client(tc.cert), base, tc.req)
			if err != nil {
				t.Fatalf("%s %s: %v", tc.req.method, tc.req.path, err)
			}
			wantRefusal(t, tc.req.method+" "+tc.req.path, status, h, body, tc.status, tc.code, tc.msg)
			if diff := cmp.Diff(before, f.snapshot()); diff != "" {
				t.Errorf("the refused request changed the store: -before +after\n%s", diff)
			}
		})
	}
	f.t = t

	// Certificates the handshake refuses: no request reaches the server.
	for name, cert := range map[string]*mtlstest.Cert{
		"another CA's": other.Device(t, "dev-new"),
		"expired": ca.Issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: "dev-new"}, ExtKeyUsage: clientAuth,
			NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)}),
		"for servers": ca.Issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: "dev-new"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}),
	} {
		before := f.snapshot()
		for _, r := range []req{enrollReq, {method: "GET", path: "/api/v1/device/poll", token: f.dev["dev-x"]}} {
			if status, _, body, err := send(t, ca.Client(cert), base, r); err == nil {
				t.Errorf("%s %s with an %s certificate = %d %s, want the handshake refused", r.method, r.path, name, status, body)
			}
		}
		if diff := cmp.Diff(before, f.snapshot()); diff != "" {
			t.Errorf("a refused handshake (%s certificate) changed the store: -before +after\n%s", name, diff)
		}
	}

	// dev-new enrolls: the device is registered with the certificate's
	// hash, and the audit log says so.
	status, h, body, err := send(t, ca.Client(devNew), base, enrollReq)
	if err != nil || status != http.StatusCreated || h.Get("Location") != "/api/v1/devices/dev-new" {
		t.Fatalf("enroll = %d %s, %v (Location %q); want 201", status, body, err, h.Get("Location"))
	}
	var got api.Device
	json.Unmarshal(body, &got)
	want := api.Device{ID: "dev-new", Board: "qemu-x86_64", InstalledVersion: "1.0", Created: t0, CertSHA256: devNew.SHA256}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("enroll answered -want +got:\n%s", diff)
	}
	d, err := f.st.Device(context.Background(), "dev-new")
	if err != nil || d.CertSHA256 != devNew.SHA256 || len(d.TokenSHA256) != 64 {
		t.Errorf("stored device = %+v, %v; want the certificate's hash %s and a token hash", d, err, devNew.SHA256)
	}
	evs, _ := f.st.Events(context.Background(), 0, 1)
	if e := evs[0]; e.Action != "device.enroll" || e.Actor != "device:dev-new" || e.Target != "dev-new" || !strings.Contains(e.Detail, devNew.SHA256) || !strings.Contains(e.Detail, `"board":"qemu-x86_64"`) {
		t.Errorf("audit entry = %+v, want device.enroll of dev-new by device:dev-new naming its certificate", e)
	}

	// Enrolling again (the same certificate, or a renewed one) answers
	// the device and changes nothing.
	before := f.snapshot()
	for _, cert := range []*mtlstest.Cert{devNew, ca.Device(t, "dev-new")} {
		status, _, body, err := send(t, ca.Client(cert), base, enrollReq)
		var again api.Device
		json.Unmarshal(body, &again)
		if err != nil || status != http.StatusOK || !cmp.Equal(want, again) {
			t.Errorf("enroll again = %d %s, %v; want 200 and the device", status, body, err)
		}
	}
	if diff := cmp.Diff(before, f.snapshot()); diff != "" {
		t.Errorf("enrolling again changed the store: -before +after\n%s", diff)
	}

	// dev-new acts as itself by its certificate.
	for _, r := range []req{
		{method: "GET", path: "/api/v1/device/poll"},
		{method: "POST", path: "/api/v1/device/status", ctype: js, body: strings.Replace(validStatus, "idle", "installed", 1)},
		{method: "PUT", path: "/api/v1/device/inventory", ctype: js, body: `{"attributes": {"site": "depot-9"}}`},
	} {
		if status, _, body, err := send(t, ca.Client(devNew), base, r); err != nil || status/100 != 2 {
			t.Errorf("%s %s as dev-new = %d %s, %v; want 2xx", r.method, r.path, status, body, err)
		}
	}
	d, _ = f.st.Device(context.Background(), "dev-new")
	if d.Status == nil || d.Status.Phase != api.PhaseInstalled || d.Attributes["site"] != "depot-9" || !d.LastSeen.Equal(t0) {
		t.Errorf("dev-new after its reports: %+v; want installed, site depot-9, seen at %v", d, t0)
	}
	if tl, _ := f.st.Timeline(context.Background(), "dev-y", 0, 10); len(tl) != 0 {
		t.Errorf("dev-y's timeline has %d reports after dev-new's, want none", len(tl))
	}

	// A device registered with a token may use a certificate, alone or
	// with its own token; its token's expiry does not apply to the
	// certificate. Tokens and operators still work over the same port.
	for _, tc := range []struct {
		name string
		cert *mtlstest.Cert
		req  req
		dev  string // the device seen, "" for none
	}{
		{"dev-x by certificate", devX, req{method: "GET", path: "/api/v1/device/poll"}, "dev-x"},
		{"dev-x by certificate and token", devX, req{method: "GET", path: "/api/v1/device/poll", token: f.dev["dev-x"]}, "dev-x"},
		{"dev-expired by certificate", ca.Device(t, "dev-expired"), req{method: "GET", path: "/api/v1/device/poll"}, "dev-expired"},
		{"dev-y by token", nil, req{method: "GET", path: "/api/v1/device/poll", token: f.dev["dev-y"]}, "dev-y"},
		{"a viewer, with a device's certificate", devX, req{method: "GET", path: "/api/v1/devices", token: f.op["viewer"]}, ""},
	} {
		f.now = f.now.Add(time.Minute)
		status, _, body, err := send(t, ca.Client(tc.cert), base, tc.req)
		if err != nil || status != http.StatusOK {
			t.Errorf("%s: %s %s = %d %s, %v; want 200", tc.name, tc.req.method, tc.req.path, status, body, err)
			continue
		}
		if tc.dev == "" {
			continue
		}
		if d, _ := f.st.Device(context.Background(), tc.dev); !d.LastSeen.Equal(f.now) {
			t.Errorf("%s: %s last seen %v, want %v", tc.name, tc.dev, d.LastSeen, f.now)
		}
	}

	// Revoked, a device enrolled by certificate is refused with it.
	if w := f.do(req{method: "POST", path: "/api/v1/devices/dev-new/revoke", token: f.op["operator"]}); w.Code != http.StatusOK {
		t.Fatalf("revoke dev-new = %d %s", w.Code, w.Body)
	}
	before = f.snapshot()
	for _, r := range []req{enrollReq, {method: "GET", path: "/api/v1/device/poll"}} {
		status, h, body, err := send(t, ca.Client(devNew), base, r)
		if err != nil {
			t.Fatal(err)
		}
		wantRefusal(t, "revoked dev-new: "+r.method+" "+r.path, status, h, body, 401, api.CodeUnauthorized, "dev-new: revoked at")
	}
	if diff := cmp.Diff(before, f.snapshot()); diff != "" {
		t.Errorf("the revoked device's requests changed the store: -before +after\n%s", diff)
	}
}

// TestTokenExpiry: a device's token works until the instant it expires,
// on the device API and DDI alike, and an operator's the same; from then
// on each is a 401 naming when it expired, and changes nothing.
func TestTokenExpiry(t *testing.T) { storetest.Run(t, testTokenExpiry) }

func testTokenExpiry(t *testing.T, dsn string) {
	f := newFixture(t, dsn)
	ctx := context.Background()
	exp := t0.Add(time.Hour)
	ev := store.Event{At: t0, Actor: "cli", Action: "setup"}
	devTok, devSHA := f.token()
	if err := f.st.RegisterDevice(ctx, store.Device{ID: "dev-temp", Board: testBoard, TokenSHA256: devSHA, TokenExpires: exp, Created: t0, InstalledVersion: "1.0"}, ev); err != nil {
		t.Fatal(err)
	}
	opTok, opSHA := f.token()
	if err := f.st.CreateOperatorToken(ctx, store.OperatorToken{TokenSHA256: opSHA, Name: "temp", Role: store.Admin, Created: t0, Expires: exp}, ev); err != nil {
		t.Fatal(err)
	}
	reqs := []struct {
		req req
		msg string
	}{
		{req{method: "GET", path: "/api/v1/device/poll", token: devTok}, "device dev-temp: token expired at 2026-11-26T13:00:00Z"},
		{req{method: "GET", path: "/DEFAULT/controller/v1/dev-temp", header: target(devTok)}, "device dev-temp: token expired at"},
		{req{method: "GET", path: "/api/v1/audit", token: opTok}, "operator token temp expired at 2026-11-26T13:00:00Z"},
	}
	f.now = exp.Add(-time.Nanosecond)
	for _, r := range reqs {
		if w := f.do(r.req); w.Code != http.StatusOK {
			t.Errorf("%s %s just before expiry = %d %s, want 200", r.req.method, r.req.path, w.Code, w.Body)
		}
	}
	if _, err := f.srv.SignIn(ctx, opTok); err != nil {
		t.Errorf("sign-in just before expiry = %v", err)
	}
	f.now = exp
	before := f.snapshot()
	for _, r := range reqs {
		w := f.do(r.req)
		wantRefusal(t, r.req.method+" "+r.req.path+" at expiry", w.Code, w.Header(), w.Body.Bytes(), 401, api.CodeUnauthorized, r.msg)
	}
	if _, err := f.srv.SignIn(ctx, opTok); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("sign-in at expiry = %v, want refused as expired", err)
	}
	if diff := cmp.Diff(before, f.snapshot()); diff != "" {
		t.Errorf("requests with expired tokens changed the store: -before +after\n%s", diff)
	}
}

// BenchmarkDeviceAuth: polls over TLS on SQLite, the device known by its
// token or by its client certificate, on one connection kept alive, and,
// for the certificate, with a handshake per request.
func BenchmarkDeviceAuth(b *testing.B) {
	for _, bc := range []struct {
		name      string
		cert      bool
		keepAlive bool
	}{{"token", false, true}, {"certificate", true, true}, {"certificate, handshake each", true, false}} {
		b.Run(bc.name, func(b *testing.B) {
			f := newFixture(b, storetest.SQLite(b))
			ca := mtlstest.NewCA(b, "devices")
			base := f.serveTLS(mtls.Config(ca.Server(b).TLS, ca.Pool()))
			conf := &tls.Config{RootCAs: ca.Pool()}
			r := req{method: "GET", path: "/api/v1/device/poll", token: f.dev["dev-x"]}
			if bc.cert {
				conf.Certificates = []tls.Certificate{ca.Device(b, "dev-x").TLS}
				r.token = ""
			}
			c := &http.Client{Transport: &http.Transport{TLSClientConfig: conf, DisableKeepAlives: !bc.keepAlive}}
			for b.Loop() {
				if status, _, body, err := send(b, c, base, r); err != nil || status != http.StatusOK {
					b.Fatalf("poll = %d %s, %v", status, body, err)
				}
			}
		})
	}
}
