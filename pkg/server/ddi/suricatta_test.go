package ddi_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/lifeboat-update/lifeboat/internal/testtool"
	"github.com/lifeboat-update/lifeboat/pkg/api"
	"github.com/lifeboat-update/lifeboat/pkg/server"
	"github.com/lifeboat-update/lifeboat/pkg/server/ddi"
	"github.com/lifeboat-update/lifeboat/pkg/server/store"
)

// countingHandler counts the bytes the server sends in answer to artifact
// downloads.
type countingHandler struct {
	h     http.Handler
	bytes atomic.Int64
}

type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (c countingWriter) Write(b []byte) (int, error) {
	n, err := c.ResponseWriter.Write(b)
	c.n.Add(int64(n))
	return n, err
}

func (c *countingHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.Contains(r.URL.Path, "/artifacts/") && r.Method == "GET" {
		w = countingWriter{w, &c.bytes}
	}
	c.h.ServeHTTP(w, r)
}

// stop kills cmd's process group, once, and reaps cmd.
func stop(cmd *exec.Cmd) {
	if cmd.ProcessState == nil {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	}
}

// syncBuffer is a buffer swupdate's output is written to while the test
// reads it.
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

func run(t *testing.T, dir string, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// makeSWU writes a .swu that swupdate accepts: a CMS-signed sw-description
// installing one file with the rawfile handler to out, signed by a
// certificate made here; it returns the .swu and the certificate's file.
func makeSWU(t *testing.T, dir, out string) (swu []byte, cert string) {
	t.Helper()
	payload := []byte("installed by swupdate from lifeboat\n")
	if err := os.WriteFile(filepath.Join(dir, "payload"), payload, 0o644); err != nil {
		t.Fatal(err)
	}
	desc := fmt.Sprintf(`software = {
	version = "2.0";
	description = "lifeboat DDI test";
	hardware-compatibility = [ "1.0" ];
	files: (
		{
			filename = "payload";
			path = %q;
			sha256 = "%x";
		}
	);
}
`, out, sha256.Sum256(payload))
	if err := os.WriteFile(filepath.Join(dir, "sw-description"), []byte(desc), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, dir, "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "key.pem", "-out", "cert.pem",
		"-subj", "/CN=lifeboat-test", "-days", "2", "-addext", "extendedKeyUsage=emailProtection", "-addext", "keyUsage=digitalSignature")
	run(t, dir, "openssl", "cms", "-sign", "-in", "sw-description", "-out", "sw-description.sig", "-signer", "cert.pem",
		"-inkey", "key.pem", "-outform", "DER", "-nosmimecap", "-binary")
	// swupdate reads sw-description first, then its signature, then the
	// files: the order of the archive.
	cmd := exec.Command("cpio", "-o", "-H", "crc", "--quiet")
	cmd.Dir = dir
	cmd.Stdin = strings.NewReader("sw-description\nsw-description.sig\npayload\n")
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("cpio: %v", err)
	}
	return b, filepath.Join(dir, "cert.pem")
}

// TestSuricatta: Debian's swupdate, in suricatta mode, polls the server,
// receives the deployment, downloads the .swu attached to the release,
// installs it (a file in a temporary directory) and reports; restarted
// as after a reboot with the update confirmed (-c 2), it reports closed
// with success, which the server shows as the device's status and
// timeline, and counts in the rollout. The server answers the tenant
// "acme"; swupdate presents the device's target token (-k) the first
// time, the server's gateway token (-g) the second.
func TestSuricatta(t *testing.T) {
	testtool.Require(t, "swupdate", "openssl", "cpio", "unshare", "mount")
	if os.Geteuid() != 0 {
		// swupdate's IPC sockets are /tmp/sockinstctrl and /tmp/swupdateprog,
		// built in; the test gives it a /tmp of its own in a mount namespace.
		if os.Getenv("CI") != "" {
			t.Fatal("TestSuricatta needs root (a mount namespace for swupdate's /tmp); CI runs as root")
		}
		t.Skip("TestSuricatta needs root: swupdate's IPC sockets are /tmp/sockinstctrl, built in, and the test gives it a /tmp of its own in a mount namespace")
	}
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.OpenSQLite(ctx, filepath.Join(dir, "fleet.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	files, err := ddi.OpenFiles(filepath.Join(dir, "artifacts"))
	if err != nil {
		t.Fatal(err)
	}
	gwTok, gwSHA, err := server.NewToken(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	srv := &countingHandler{h: server.New(st, server.WithArtifacts(files), server.WithPollInterval(time.Second, 0),
		server.WithDDITenant("acme"), server.WithDDIGatewayToken(gwSHA))}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv}
	go hs.Serve(ln)
	defer hs.Close()
	url := "http://" + ln.Addr().String()

	// An operator, a device, a release with a .swu, a rollout to the device.
	now := time.Now().UTC()
	ev := store.Event{At: now, Actor: "cli", Action: "setup"}
	opTok, opSHA, err := server.NewToken(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CreateOperatorToken(ctx, store.OperatorToken{TokenSHA256: opSHA, Name: "op", Role: store.Operator, Created: now}, ev); err != nil {
		t.Fatal(err)
	}
	const id = "ddi-dev-1"
	devTok, devSHA, err := server.NewToken(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.RegisterDevice(ctx, store.Device{ID: id, Board: "qemu-x86_64", TokenSHA256: devSHA, Created: now, InstalledVersion: "1.0"}, ev); err != nil {
		t.Fatal(err)
	}
	if err := st.AddReleases(ctx, []store.Release{{Board: "qemu-x86_64", Version: "2.0", Repository: "main", Created: now, Indexes: []string{}}}, ev); err != nil {
		t.Fatal(err)
	}
	// swupdate runs in a mount namespace whose /tmp is tmp: it sees the
	// certificate and writes the payload there.
	tmp := filepath.Join(dir, "tmp")
	work := filepath.Join(dir, "swu")
	os.Mkdir(tmp, 0o755)
	os.Mkdir(work, 0o755)
	swu, cert := makeSWU(t, work, "/tmp/installed")
	if err := os.Rename(cert, filepath.Join(tmp, "cert.pem")); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(tmp, "installed")
	call := func(method, path, ctype string, body []byte) []byte {
		t.Helper()
		r, _ := http.NewRequest(method, url+path, bytes.NewReader(body))
		r.Header.Set("Authorization", "Bearer "+opTok)
		if ctype != "" {
			r.Header.Set("Content-Type", ctype)
		}
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		if resp.StatusCode/100 != 2 {
			t.Fatalf("%s %s = %d %s", method, path, resp.StatusCode, b.String())
		}
		return b.Bytes()
	}
	call("POST", "/api/v1/releases/qemu-x86_64/2.0/artifacts?name=update.swu", "application/octet-stream", swu)
	var ro api.Rollout
	json.Unmarshal(call("POST", "/api/v1/rollouts", "application/json", []byte(`{"board": "qemu-x86_64", "version": "2.0", "filter": "id=`+id+`", "waves": ["100%"], "success_threshold": 1, "error_threshold": 0}`)), &ro)
	call("POST", fmt.Sprintf("/api/v1/rollouts/%d/start", ro.ID), "", nil)

	// auth is swupdate's token option: -k TARGET or -g GATEWAY.
	suricatta := func(auth, extra string) (*exec.Cmd, *syncBuffer) {
		script := `mount --bind "$1" /tmp && shift && exec "$@"`
		cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", tmp,
			"swupdate", "-v", "-k", "/tmp/cert.pem", "-m", "-H", "qemu-x86_64:1.0", "-u", "-t acme -u "+url+" -i "+id+" "+auth+" -p 1 "+extra)
		cmd.Dir = work
		cmd.Env = append(os.Environ(), "TMPDIR=/tmp/")
		var log syncBuffer
		cmd.Stdout, cmd.Stderr = &log, &log
		// swupdate forks its workers: the group is killed, at the end
		// of the test or when it fails.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { stop(cmd) })
		return cmd, &log
	}
	waitFor := func(what string, log *syncBuffer, ok func(store.Device) bool) {
		t.Helper()
		deadline := time.Now().Add(45 * time.Second)
		for time.Now().Before(deadline) {
			d, err := st.Device(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if ok(d) {
				return
			}
			if d.Status != nil && d.Status.Phase == api.PhaseFailed {
				t.Fatalf("swupdate reported a failure: %s; its log:\n%s", d.Status.Error, log)
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("no %s from swupdate in 45 s; its log:\n%s", what, log)
	}

	cmd, log := suricatta("-k "+devTok, "")
	waitFor("installing report", log, func(d store.Device) bool {
		// "Installed Chunk." and "All Chunks Installed.": proceeding,
		// one chunk of one.
		return d.Status != nil && d.Status.Phase == api.PhaseInstalling && d.Status.Progress == 1
	})
	stop(cmd)
	got, err := os.ReadFile(out)
	if err != nil || !strings.Contains(string(got), "installed by swupdate") {
		t.Fatalf("installed file %s: %q, %v; swupdate's log:\n%s", out, got, err, log)
	}
	if n := srv.bytes.Load(); n < int64(len(swu)) {
		t.Errorf("artifact bytes sent = %d, want at least %d", n, len(swu))
	}

	// After the "reboot": the update confirmed.
	_, log = suricatta("-g "+gwTok, "-c 2")
	waitFor("closed+success feedback", log, func(d store.Device) bool { return d.Status != nil && d.Status.Phase == api.PhaseInstalled })
	d, _ := st.Device(ctx, id)
	if d.InstalledVersion != "2.0" {
		t.Errorf("installed version %q, want 2.0", d.InstalledVersion)
	}
	tl, err := st.Timeline(ctx, id, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var phases []api.Phase
	for _, r := range tl {
		phases = append(phases, r.Status.Phase)
	}
	if len(phases) < 2 || phases[0] != api.PhaseInstalling || phases[len(phases)-1] != api.PhaseInstalled {
		t.Errorf("timeline phases %v, want installing … installed", phases)
	}
	r, waves, err := st.Rollout(ctx, ro.ID)
	if err != nil {
		t.Fatal(err)
	}
	if r.State != store.Completed || waves[0].Succeeded != 1 {
		t.Errorf("rollout %s, wave %+v; want completed with 1 succeeded", r.State, waves[0])
	}
	t.Logf("timeline %v; %d artifact bytes served for a %d-byte .swu", phases, srv.bytes.Load(), len(swu))
}
