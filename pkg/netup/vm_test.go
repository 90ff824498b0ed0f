package netup

import (
	"bytes"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lifeboat-update/lifeboat/qemu"
	"github.com/lifeboat-update/lifeboat/qemu/vmtest"
)

var update = flag.Bool("update", false, "rewrite "+goldenACK+" with the ACK the VM test gets from QEMU")

const hello = "hello from the host\n"

// TestDHCPVM brings the network up in a guest on QEMU's user network: the
// lease comes from QEMU's DHCP server, the repository URL from its bootfile,
// and an HTTP GET reaches a server this test runs on the host's loopback
// (10.0.2.2 from the guest).
func TestDHCPVM(t *testing.T) {
	t.Parallel()
	// The guest writes the ACK it got here: length, then the packet.
	ackDisk := filepath.Join(t.TempDir(), "ack.img")
	var bootfile string
	var gets atomic.Int32
	if !vmtest.InGuest() {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		mux := http.NewServeMux()
		mux.HandleFunc("GET /repo/hello", func(w http.ResponseWriter, r *http.Request) {
			gets.Add(1)
			io.WriteString(w, hello)
		})
		srv := &http.Server{Handler: mux}
		go srv.Serve(l)
		t.Cleanup(func() { srv.Close() })
		bootfile = fmt.Sprintf("http://10.0.2.2:%d/repo/", l.Addr().(*net.TCPAddr).Port)
		if err := os.WriteFile(ackDisk, make([]byte, 4096), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if !vmtest.Run(t, vmtest.Options{Net: &qemu.NetUser{Bootfile: bootfile}, Disks: []string{ackDisk}}) {
		if t.Failed() {
			return
		}
		if gets.Load() == 0 {
			t.Errorf("the guest passed, but the host's server had no GET /repo/hello")
		}
		if *update {
			b, err := os.ReadFile(ackDisk)
			if err != nil {
				t.Fatal(err)
			}
			n := binary.BigEndian.Uint32(b)
			if n == 0 || int(n) > len(b)-4 {
				t.Fatalf("%s: no ACK from the guest (length %d)", ackDisk, n)
			}
			if err := os.WriteFile(goldenACK, b[4:4+n], 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("wrote %s (%d bytes)", goldenACK, n)
		}
		return
	}

	start := time.Now()
	resolv := filepath.Join(t.TempDir(), "etc", "resolv.conf")
	lease, err := Up(t.Context(), Config{ResolvConf: resolv, Timeout: 60 * time.Second, Log: testLogger(t)})
	if err != nil {
		t.Fatalf("Up = %v", err)
	}
	t.Logf("lease on %s after %v: %+v", lease.Link, time.Since(start).Round(time.Millisecond), lease)
	if lease.Link != "eth0" || lease.Addr != netip.MustParsePrefix("10.0.2.15/24") || lease.Router != netip.MustParseAddr("10.0.2.2") {
		t.Errorf("lease = %s %v via %v, want eth0 10.0.2.15/24 via 10.0.2.2", lease.Link, lease.Addr, lease.Router)
	}
	if !strings.HasPrefix(lease.RepoURL, "http://10.0.2.2:") || !strings.HasSuffix(lease.RepoURL, "/repo/") {
		t.Errorf("lease.RepoURL = %q, want QEMU's bootfile http://10.0.2.2:PORT/repo/", lease.RepoURL)
	}

	// The kernel has the address and the default route.
	ifc, err := net.InterfaceByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := ifc.Addrs()
	if err != nil || !strings.Contains(fmt.Sprint(addrs), "10.0.2.15/24") {
		t.Errorf("eth0 addresses = %v, %v; want 10.0.2.15/24", addrs, err)
	}
	routes, err := os.ReadFile("/proc/net/route")
	if err != nil {
		t.Fatal(err)
	}
	// Destination 0.0.0.0, gateway 10.0.2.2, both little-endian hex.
	if !bytes.Contains(routes, []byte("eth0\t00000000\t0202000A")) {
		t.Errorf("/proc/net/route has no default route via 10.0.2.2 on eth0:\n%s", routes)
	}
	if b, err := os.ReadFile(resolv); err != nil || !strings.Contains(string(b), "nameserver 10.0.2.3\n") {
		t.Errorf("%s = %q, %v; want nameserver 10.0.2.3", resolv, b, err)
	}

	// The repository URL reaches the host.
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Get(lease.RepoURL + "hello")
	if err != nil {
		t.Fatalf("GET %shello: %v", lease.RepoURL, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || string(body) != hello {
		t.Errorf("GET %shello = %s %q, %v; want 200 %q", lease.RepoURL, resp.Status, body, err, hello)
	}

	// Hand the ACK to the host, for -update.
	raw := lease.ACK.ToBytes()
	out := binary.BigEndian.AppendUint32(nil, uint32(len(raw)))
	if err := writeDisk(vmtest.Disk(0), append(out, raw...)); err != nil {
		t.Error(err)
	}
}

func writeDisk(dev string, b []byte) error {
	f, err := os.OpenFile(dev, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(b, 0); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", dev, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("fsync %s: %w", dev, err)
	}
	return f.Close()
}
