package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lifeboat-update/lifeboat/internal/cli"
	"github.com/lifeboat-update/lifeboat/pkg/api"
	"github.com/lifeboat-update/lifeboat/pkg/chunk"
	"github.com/lifeboat-update/lifeboat/pkg/publish"
	"github.com/lifeboat-update/lifeboat/pkg/release"
	"github.com/lifeboat-update/lifeboat/pkg/server"
	"github.com/lifeboat-update/lifeboat/pkg/server/mtls/mtlstest"
	"github.com/lifeboat-update/lifeboat/pkg/server/store"
	"github.com/lifeboat-update/lifeboat/pkg/server/store/storetest"
)

func runCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), cli.IO{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb}, args)
	return code, out.String(), errb.String()
}

var tokenRE = regexp.MustCompile(`^[0-9a-f]{64}\n$`)

func TestTokenCreateRevoke(t *testing.T) {
	db := filepath.Join(t.TempDir(), "fleet.db")
	code, out, errs := runCmd(t, "token", "create", "--db="+db, "--role=operator", "--name=alice")
	if code != 0 || !tokenRE.MatchString(out) {
		t.Fatalf("token create = exit %d, stdout %q, stderr %q; want 0 and a token", code, out, errs)
	}
	if code, _, errs := runCmd(t, "token", "create", "--db="+db, "--role=viewer", "--name=alice"); code != 1 || !strings.Contains(errs, "already exists") {
		t.Errorf("token create of a taken name = exit %d (%q), want 1 saying it exists", code, errs)
	}
	if code, out, errs := runCmd(t, "token", "revoke", "--db="+db, "--name=alice"); code != 0 || !strings.Contains(out, "alice revoked") {
		t.Errorf("token revoke = exit %d (%q, %q), want 0", code, out, errs)
	}
	if code, _, errs := runCmd(t, "token", "revoke", "--db="+db, "--name=alice"); code != 1 || !strings.Contains(errs, "already revoked") {
		t.Errorf("second token revoke = exit %d (%q), want 1 saying so", code, errs)
	}
	if code, _, errs := runCmd(t, "token", "revoke", "--db="+db, "--name=bob"); code != 1 || !strings.Contains(errs, "not found") {
		t.Errorf("token revoke of an unknown name = exit %d (%q), want 1", code, errs)
	}

	// A token with --expires is stored with its expiry.
	start := time.Now()
	code, out, errs = runCmd(t, "token", "create", "--db="+db, "--role=viewer", "--name=carol", "--expires=2h")
	if code != 0 || !tokenRE.MatchString(out) {
		t.Fatalf("token create --expires=2h = exit %d, stdout %q, stderr %q", code, out, errs)
	}
	st, err := store.Open(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	sha, _ := server.HashToken(strings.TrimSpace(out))
	tok, err := st.OperatorToken(context.Background(), sha)
	if err != nil || tok.Expires.Before(start.Add(2*time.Hour)) || tok.Expires.After(time.Now().Add(2*time.Hour)) {
		t.Errorf("token created with --expires=2h = %+v, %v; want it to expire 2h after its creation", tok, err)
	}
}

func TestUsage(t *testing.T) {
	db := filepath.Join(t.TempDir(), "fleet.db")
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"token", "create", "--db=" + db, "--name=a"}, `--role=""`},
		{[]string{"token", "create", "--db=" + db, "--role=root", "--name=a"}, `--role="root"`},
		{[]string{"token", "create", "--db=" + db, "--role=admin"}, `--name=""`},
		{[]string{"token", "create", "--db=" + db, "--role=admin", "--name=a b"}, `--name="a b"`},
		{[]string{"token", "revoke", "--db=" + db}, `--name=""`},
		{[]string{"token", "list"}, `unknown command "list"`},
		{[]string{"serve", "--db=" + db, "extra"}, "no arguments"},
		{[]string{"--db=" + db, "--poll-interval=0s"}, "--poll-interval"},
		{[]string{"--db=" + db, "--poll-interval=23h", "--poll-jitter=2h"}, "within 24h"},
		{[]string{"--db=" + db, "--root=r.json", "--repo-url=ftp://cdn/x"}, "--repo-url=ftp://cdn/x: want an http or https URL"},
		{[]string{"--db=" + db, "--root=r.json", "--repo-url=https://cdn/x?a=b"}, "with no query"},
		{[]string{"--db=" + db, "--repo-url=https://cdn/x"}, "--repo-url needs --root"},
		{[]string{"--db=" + db, "--max-upload=0"}, "--max-upload=0: want 1 or more"},
		{[]string{"--db=" + db, "--tls-cert=c.pem"}, `--tls-cert="c.pem" --tls-key="": give both`},
		{[]string{"--db=" + db, "--tls-key=k.pem"}, "give both, or neither"},
		{[]string{"--db=" + db, "--device-ca=ca.pem"}, "--device-ca needs --tls-cert and --tls-key"},
		{[]string{"--db=" + db, "--ddi-tenant=a/b"}, `--ddi-tenant: DDI tenant "a/b"`},
		{[]string{"--db=" + db, "--ddi-tenant=ui"}, "/ui/ is the server's own"},
		{[]string{"token", "create", "--db=" + db, "--role=admin", "--name=a", "--expires=-1h"}, "--expires=-1h0m0s: want a positive duration"},
		{[]string{"--bogus"}, "bogus"},
		{nil, "commands:"},
	} {
		code, _, errs := runCmd(t, tc.args...)
		if code != 2 || !strings.Contains(errs, tc.msg) {
			t.Errorf("lifeboat-server %q = exit %d (%q), want 2 naming %q", tc.args, code, errs, tc.msg)
		}
	}
	if _, err := os.Stat(db); err == nil {
		t.Error("a refused command created the database")
	}
}

// syncBuffer is a buffer the server's log and the test may use at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// serve runs the server with args until the returned stop is called, and
// returns its base URL.
func serve(t *testing.T, args ...string) (url string, stop func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	var logs syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, cli.IO{Stdin: strings.NewReader(""), Stdout: pw, Stderr: &logs}, append(args, "--listen=127.0.0.1:0"))
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	m := regexp.MustCompile(`on (https?://\S+)/ `).FindStringSubmatch(line)
	if m == nil {
		cancel()
		t.Fatalf("server printed %q (%v), log %q; want its address", line, err, logs.String())
	}
	go io.Copy(io.Discard, pr)
	return m[1], func() int {
		cancel()
		return <-done
	}
}

func get(t *testing.T, url, token string) (int, []byte) {
	t.Helper()
	return do(t, http.DefaultClient, "GET", url, "Bearer "+token, "")
}

// do sends a request as client c, with the Authorization header auth
// ("" for none) and a JSON body ("" for none).
func do(t *testing.T, c *http.Client, method, url, auth, body string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func TestServeBootstrapsAdmin(t *testing.T) { storetest.Run(t, testServeBootstrapsAdmin) }

func testServeBootstrapsAdmin(t *testing.T, db string) {
	tokFile := filepath.Join(t.TempDir(), "admin.token")
	url, stop := serve(t, "--db="+db, "--admin-token-file="+tokFile)
	b, err := os.ReadFile(tokFile)
	if err != nil || !tokenRE.Match(b) {
		stop()
		t.Fatalf("admin token file = %q, %v; want a token", b, err)
	}
	if fi, _ := os.Stat(tokFile); fi.Mode().Perm() != 0o600 {
		t.Errorf("admin token file mode %v, want 0600", fi.Mode().Perm())
	}
	admin := strings.TrimSpace(string(b))
	code, body := get(t, url+"/api/v1/audit", admin)
	var log api.AuditLog
	if err := json.Unmarshal(body, &log); code != 200 || err != nil || len(log.Entries) != 1 || log.Entries[0].Action != "token.create" {
		t.Errorf("GET /api/v1/audit with the admin token = %d %s, want 200 and the token's creation", code, body)
	}
	if code, _ := get(t, url+"/api/v1/devices", strings.Repeat("0", 64)); code != 401 {
		t.Errorf("GET /api/v1/devices with a made-up token = %d, want 401", code)
	}
	if code := stop(); code != 0 {
		t.Errorf("server exited %d on cancel, want 0", code)
	}

	// Again: the database has an admin, the file is left as it is.
	url, stop = serve(t, "serve", "--db="+db, "--admin-token-file="+tokFile)
	defer stop()
	if again, _ := os.ReadFile(tokFile); !bytes.Equal(again, b) {
		t.Errorf("second start rewrote the admin token file")
	}
	if code, _ := get(t, url+"/api/v1/audit", admin); code != 200 {
		t.Errorf("admin token after a restart = %d, want 200", code)
	}
}

// TestServeReleases: with --root, a repository published through the API
// is served at /repo/ and the trusted root is checked at start.
func TestServeReleases(t *testing.T) {
	dir := t.TempDir()
	ks := publish.KeySet{}
	for _, role := range release.Roles {
		s, err := release.GenerateKey(filepath.Join(dir, role+".key"))
		if err != nil {
			t.Fatal(err)
		}
		ks[role] = []release.Signer{s}
	}
	repoDir := filepath.Join(dir, "repo")
	r, err := publish.Init(repoDir, ks, nil)
	if err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "img")
	os.WriteFile(img, bytes.Repeat([]byte("lifeboat"), 8<<10), 0o600)
	im, err := r.AddImage(context.Background(), "rootfs", img, publish.ImageOptions{Params: chunk.Params{Min: 4 << 10, Avg: 8 << 10, Max: 16 << 10}, Digest: chunk.SHA512256})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.AddRelease(release.Release{Board: "b", Version: "1", Created: time.Now().UTC(), Images: []release.Image{im}}, ks); err != nil {
		t.Fatal(err)
	}
	rootFile := filepath.Join(repoDir, release.MetadataDir, "root.json")
	db, tokFile, data := filepath.Join(dir, "fleet.db"), filepath.Join(dir, "admin.token"), filepath.Join(dir, "data")

	// A root that is not one stops the server before it listens.
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte("{}"), 0o600)
	if code, _, errs := runCmd(t, "--db="+db, "--root="+bad, "--listen=127.0.0.1:0"); code != 1 || !strings.Contains(errs, "trusted root") {
		t.Errorf("serve with a bad root = exit %d (%q), want 1 naming the trusted root", code, errs)
	}
	if _, err := os.Stat(db); err == nil {
		t.Error("a server refusing its root created the database")
	}

	url, stop := serve(t, "--db="+db, "--admin-token-file="+tokFile, "--root="+rootFile, "--data="+data)
	defer stop()
	b, _ := os.ReadFile(tokFile)
	admin := strings.TrimSpace(string(b))
	req, _ := http.NewRequest("POST", url+"/api/v1/releases", strings.NewReader(`{"repository": "main", "path": "`+repoDir+`"}`))
	req.Header.Set("Authorization", "Bearer "+admin)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("publish = %d %s", resp.StatusCode, body)
	}
	want, _ := os.ReadFile(filepath.Join(repoDir, release.MetadataDir, "timestamp.json"))
	if code, got := get(t, url+"/repo/main/metadata/timestamp.json", ""); code != 200 || !bytes.Equal(got, want) {
		t.Errorf("GET /repo/main/metadata/timestamp.json = %d, %d bytes; want 200 and the repository's", code, len(got))
	}
}

// TestServeTLS: with --tls-cert, --tls-key and --device-ca, the server
// speaks HTTPS; a device enrolls over it with its certificate and polls,
// a certificate of another CA is refused at the handshake, and operators
// still use their tokens. The DDI endpoints answer the --ddi-tenant, with
// the gateway token --ddi-gateway-token-file was given.
func TestServeTLS(t *testing.T) { storetest.Run(t, testServeTLS) }

func testServeTLS(t *testing.T, db string) {
	dir := t.TempDir()
	ca := mtlstest.NewCA(t, "devices")
	certFile, keyFile := ca.Server(t).WriteFiles(t, dir, "server")
	caFile, tokFile, gwFile := filepath.Join(dir, "devices.pem"), filepath.Join(dir, "admin.token"), filepath.Join(dir, "gateway.token")
	os.WriteFile(caFile, ca.PEM, 0o600)

	// A key that is not the certificate's stops the server before it
	// listens or touches the database.
	if code, _, errs := runCmd(t, "--db="+filepath.Join(dir, "other.db"), "--tls-cert="+certFile, "--tls-key="+caFile, "--listen=127.0.0.1:0"); code != 1 || !strings.Contains(errs, "server certificate") {
		t.Errorf("serve with a bad key = exit %d (%q), want 1 naming the server certificate", code, errs)
	}

	url, stop := serve(t, "--db="+db, "--admin-token-file="+tokFile, "--tls-cert="+certFile, "--tls-key="+keyFile, "--device-ca="+caFile,
		"--ddi-tenant=acme", "--ddi-gateway-token-file="+gwFile)
	defer stop()
	if !strings.HasPrefix(url, "https://") {
		t.Fatalf("server URL %s, want https", url)
	}
	dev := ca.Device(t, "SN-0042")
	device := ca.Client(dev)
	if code, body := do(t, device, "POST", url+"/api/v1/device/enroll", "", `{"board": "qemu-x86_64", "version": "1.0"}`); code != 201 {
		t.Fatalf("enroll over TLS = %d %s, want 201", code, body)
	}
	var p api.Poll
	code, body := do(t, device, "GET", url+"/api/v1/device/poll", "", "")
	if err := json.Unmarshal(body, &p); code != 200 || err != nil || p.Validate() != nil {
		t.Errorf("poll by certificate = %d %s, want 200 and a poll answer", code, body)
	}
	if _, err := mtlstest.NewCA(t, "other").Client(dev).Get(url + "/api/v1/device/poll"); err == nil {
		t.Error("a client trusting another CA connected: the server's certificate is not the one given")
	}
	stranger := mtlstest.NewCA(t, "other")
	if _, err := ca.Client(stranger.Device(t, "SN-0042")).Get(url + "/api/v1/device/poll"); err == nil {
		t.Error("a certificate of another CA was accepted, want the handshake refused")
	}

	b, _ := os.ReadFile(tokFile)
	admin := "Bearer " + strings.TrimSpace(string(b))
	var d api.Device
	code, body = do(t, ca.Client(nil), "GET", url+"/api/v1/devices/SN-0042", admin, "")
	if err := json.Unmarshal(body, &d); code != 200 || err != nil || d.CertSHA256 != dev.SHA256 {
		t.Errorf("GET the enrolled device = %d %s, want 200 with its certificate's hash %s", code, body, dev.SHA256)
	}

	gw, err := os.ReadFile(gwFile)
	if err != nil || !tokenRE.Match(gw) {
		t.Fatalf("gateway token file = %q, %v; want a token", gw, err)
	}
	gateway := "GatewayToken " + strings.TrimSpace(string(gw))
	if code, body := do(t, ca.Client(nil), "GET", url+"/acme/controller/v1/SN-0042", gateway, ""); code != 200 {
		t.Errorf("DDI poll with the gateway token = %d %s, want 200", code, body)
	}
	if code, body := do(t, ca.Client(nil), "GET", url+"/DEFAULT/controller/v1/SN-0042", gateway, ""); code != 404 || !strings.Contains(string(body), "this server answers tenant acme") {
		t.Errorf("DDI poll under DEFAULT = %d %s, want 404 naming the tenant", code, body)
	}
}

// TestDDIGatewayTokenFile: a gateway token file that holds no token stops
// the server, naming it; one that is missing is written with a new token.
func TestDDIGatewayTokenFile(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.token")
	os.WriteFile(bad, []byte("letmein\n"), 0o600)
	if code, _, errs := runCmd(t, "--db="+filepath.Join(dir, "fleet.db"), "--ddi-gateway-token-file="+bad, "--listen=127.0.0.1:0"); code != 1 || !strings.Contains(errs, "DDI gateway token file "+bad) {
		t.Errorf("serve with a malformed gateway token = exit %d (%q), want 1 naming the file", code, errs)
	}
	if _, err := os.Stat(filepath.Join(dir, "fleet.db")); err == nil {
		t.Error("a server refusing its gateway token created the database")
	}
	made := filepath.Join(dir, "new.token")
	url, stop := serve(t, "--db="+filepath.Join(dir, "fleet.db"), "--ddi-gateway-token-file="+made)
	defer stop()
	b, err := os.ReadFile(made)
	if fi, _ := os.Stat(made); err != nil || !tokenRE.Match(b) || fi.Mode().Perm() != 0o600 {
		t.Fatalf("gateway token file = %q, %v; want a token, mode 0600", b, err)
	}
	// No device is registered: the token is accepted, the controller unknown.
	if code, body := do(t, http.DefaultClient, "GET", url+"/DEFAULT/controller/v1/SN-1", "GatewayToken "+strings.TrimSpace(string(b)), ""); code != 404 || !strings.Contains(string(body), "not registered") {
		t.Errorf("DDI poll with the new gateway token = %d %s, want 404 for an unregistered controller", code, body)
	}
}
