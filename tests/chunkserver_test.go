package tests

import (
	"bufio"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestChunkServerCommand serves a store with `lifeboat-release
// chunk-server` on a free loopback port, extracts from it, and stops it
// with SIGTERM, which must shut it down cleanly.
func TestChunkServerCommand(t *testing.T) {
	b := newBadRun(t, randomImage(30, 2<<20))
	cmd := exec.Command(filepath.Join(binDir, "lifeboat-release"), "chunk-server", "--store="+b.store, "--listen=127.0.0.1:0")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	t.Cleanup(func() {
		cmd.Process.Kill() // only if the test ended early; harmless after exit
		<-exited
	})

	// The server prints its address once it listens.
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		exited <- cmd.Wait()
	}()
	var line string
	select {
	case line = <-lines:
	case <-time.After(30 * time.Second):
		t.Fatalf("chunk-server printed no address within 30s; stderr:\n%s", stderr.String())
	}
	m := regexp.MustCompile(`^serving .* on (http://127\.0\.0\.1:\d+/)$`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("chunk-server printed %q, want \"serving DIR on http://ADDR/\"; stderr:\n%s", line, stderr.String())
	}

	target := filepath.Join(t.TempDir(), "target.img")
	if r := lifeboat(t, "extract", "--progress=none", "--store="+m[1], b.index, target); r.code != 0 {
		t.Fatalf("lifeboat extract --store=%s: exit status %d\n%s", m[1], r.code, r.stderr)
	}
	sameFile(t, target, b.img)

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		exited <- err // for the cleanup
		if err != nil {
			t.Errorf("chunk-server after SIGTERM: %v, want a clean exit; stderr:\n%s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Errorf("chunk-server did not exit within 30s of SIGTERM")
	}
}
