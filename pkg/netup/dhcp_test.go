package netup

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/insomniacslk/dhcp/dhcpv4"
)

func TestParseRepoURL(t *testing.T) {
	tests := []struct {
		in, want string // want "" for an error
	}{
		{"http://10.0.2.2:8080/repo/", "http://10.0.2.2:8080/repo/"},
		{"https://updates.example.com/lifeboat", "https://updates.example.com/lifeboat"},
		{"http://10.0.2.2/repo/\x00", "http://10.0.2.2/repo/"}, // a NUL-terminated option
		{"  http://[fd00::1]:8080/r  ", "http://[fd00::1]:8080/r"},
		{"http://host/r?board=x", "http://host/r?board=x"},
		{"HTTP://Host/r", "http://Host/r"},
		{"", ""},
		{"\x00", ""},
		{"pxelinux.0", ""},
		{"tftp://10.0.2.2/boot", ""},
		{"ftp://host/r", ""},
		{"file:///etc/passwd", ""},
		{"http:/repo", ""},
		{"http:host/repo", ""},
		{"http://", ""},
		{"http://:80/", ""},
		{"http://user:pw@host/", ""},
		{"http://host/r#frag", ""},
		{"http://host/r#", ""},
		{"http://host:0/", ""},
		{"http://host:65536/", ""},
		{"http://host:x/", ""},
		{"http://host/a b", ""},
		{"http://host/\x00x", ""},
		{"http://host/\nx", ""},
		{"http://hôst/", ""},
		{"http://host/" + strings.Repeat("a", maxURL), ""},
	}
	for _, tt := range tests {
		got, err := ParseRepoURL([]byte(tt.in))
		if tt.want == "" {
			if err == nil || !errors.Is(err, ErrBadURL) {
				t.Errorf("ParseRepoURL(%q) = %q, %v; want ErrBadURL", tt.in, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseRepoURL(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestLeaseFromACK(t *testing.T) {
	pfx := netip.MustParsePrefix
	addr := netip.MustParseAddr
	yiaddr := func(ip net.IP) func(*dhcpv4.DHCPv4) { return func(m *dhcpv4.DHCPv4) { m.YourIPAddr = ip } }
	mask := func(ones int) func(*dhcpv4.DHCPv4) {
		return func(m *dhcpv4.DHCPv4) { m.UpdateOption(dhcpv4.OptSubnetMask(net.CIDRMask(ones, 32))) }
	}
	tests := []struct {
		name    string
		mods    []func(*dhcpv4.DHCPv4)
		check   func(*Lease) string // "" if fine
		wantErr string
		notes   int // log lines about ignored values
	}{
		{name: "QEMU's", check: func(l *Lease) string {
			if l.Addr != pfx("10.0.2.15/24") || l.Router != addr("10.0.2.2") || l.Duration != 24*time.Hour || l.RepoURL != "" {
				return "want 10.0.2.15/24 via 10.0.2.2 for a day, no repository"
			}
			return ""
		}},
		{name: "option 114 first", mods: []func(*dhcpv4.DHCPv4){option(dhcpv4.OptionURL, "https://repo.example/x"), bootfile("http://10.0.2.2/file"), option(dhcpv4.OptionBootfileName, "http://10.0.2.2/opt67")},
			check: repo("https://repo.example/x")},
		{name: "option 67 before the file field", mods: []func(*dhcpv4.DHCPv4){bootfile("http://10.0.2.2/file"), option(dhcpv4.OptionBootfileName, "http://10.0.2.2/opt67")},
			check: repo("http://10.0.2.2/opt67")},
		{name: "file field", mods: []func(*dhcpv4.DHCPv4){bootfile("http://10.0.2.2:8080/repo/")},
			check: repo("http://10.0.2.2:8080/repo/")},
		{name: "a TFTP boot file is no repository", mods: []func(*dhcpv4.DHCPv4){bootfile("pxelinux.0"), option(dhcpv4.OptionBootfileName, "grubx64.efi")},
			check: repo("")},
		{name: "a bad option 114 falls back to the boot file", mods: []func(*dhcpv4.DHCPv4){option(dhcpv4.OptionURL, "javascript:alert(1)"), bootfile("http://10.0.2.2/r")},
			check: repo("http://10.0.2.2/r"), notes: 1},
		{name: "a bad http boot file is said", mods: []func(*dhcpv4.DHCPv4){bootfile("http://u:p@host/")},
			check: repo(""), notes: 1},
		{name: "classful mask without option 1", mods: []func(*dhcpv4.DHCPv4){without(dhcpv4.OptionSubnetMask), yiaddr(net.IPv4(172, 16, 4, 1))},
			check: func(l *Lease) string {
				if l.Addr != pfx("172.16.4.1/16") {
					return "want the class B mask"
				}
				return ""
			}},
		{name: "point to point /32", mods: []func(*dhcpv4.DHCPv4){mask(32)}, check: func(l *Lease) string {
			if l.Addr != pfx("10.0.2.15/32") {
				return "want /32"
			}
			return ""
		}},
		{name: "bad routers and DNS skipped", mods: []func(*dhcpv4.DHCPv4){
			func(m *dhcpv4.DHCPv4) {
				m.UpdateOption(dhcpv4.OptRouter(net.IPv4zero, net.IPv4(10, 0, 2, 15), net.IPv4(10, 0, 2, 1)))
				m.UpdateOption(dhcpv4.OptDNS(net.IPv4zero, net.IPv4(224, 0, 0, 1), net.IPv4(10, 0, 2, 3)))
			}}, notes: 2, check: func(l *Lease) string {
			if l.Router != addr("10.0.2.1") || !cmp.Equal(l.DNS, []netip.Addr{addr("10.0.2.3")}, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })) {
				return "want router 10.0.2.1 and DNS 10.0.2.3"
			}
			return ""
		}},
		{name: "search domains", mods: []func(*dhcpv4.DHCPv4){option(dhcpv4.OptionDomainName, "lab.example")}, check: func(l *Lease) string {
			if !cmp.Equal(l.Search, []string{"lab.example"}) {
				return "want search lab.example"
			}
			return ""
		}},
		{name: "a hostile domain name is dropped", mods: []func(*dhcpv4.DHCPv4){option(dhcpv4.OptionDomainName, "x\nnameserver 6.6.6.6")}, check: func(l *Lease) string {
			if l.Search != nil {
				return "want no search domains"
			}
			return ""
		}},
		{name: "not an ACK", mods: []func(*dhcpv4.DHCPv4){func(m *dhcpv4.DHCPv4) { m.UpdateOption(dhcpv4.OptMessageType(dhcpv4.MessageTypeOffer)) }}, wantErr: "message type OFFER"},
		{name: "no address", mods: []func(*dhcpv4.DHCPv4){yiaddr(net.IPv4zero)}, wantErr: "address 0.0.0.0"},
		{name: "broadcast address", mods: []func(*dhcpv4.DHCPv4){yiaddr(net.IPv4bcast)}, wantErr: "address 255.255.255.255"},
		{name: "multicast address", mods: []func(*dhcpv4.DHCPv4){yiaddr(net.IPv4(239, 1, 1, 1))}, wantErr: "address 239.1.1.1"},
		{name: "loopback address", mods: []func(*dhcpv4.DHCPv4){yiaddr(net.IPv4(127, 0, 0, 1))}, wantErr: "address 127.0.0.1"},
		{name: "the subnet's own address", mods: []func(*dhcpv4.DHCPv4){yiaddr(net.IPv4(10, 0, 2, 0))}, wantErr: "10.0.2.0/24 is its subnet's network or broadcast address"},
		{name: "the subnet's broadcast", mods: []func(*dhcpv4.DHCPv4){yiaddr(net.IPv4(10, 0, 2, 255))}, wantErr: "network or broadcast"},
		{name: "a mask of holes", mods: []func(*dhcpv4.DHCPv4){func(m *dhcpv4.DHCPv4) {
			m.UpdateOption(dhcpv4.OptSubnetMask(net.IPv4Mask(255, 0, 255, 0)))
		}}, wantErr: "subnet mask 255.0.255.0"},
		{name: "mask zero", mods: []func(*dhcpv4.DHCPv4){mask(0)}, wantErr: "subnet mask 0.0.0.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			notes := 0
			l, err := leaseFromACK("eth0", ack(t, tt.mods...), func(msg string, args ...any) { notes++; t.Log(msg, args) })
			if tt.wantErr != "" {
				if !errors.Is(err, ErrBadLease) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("leaseFromACK = %+v, %v; want ErrBadLease saying %q", l, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("leaseFromACK = %v", err)
			}
			if msg := tt.check(l); msg != "" {
				t.Errorf("leaseFromACK = %+v: %s", l, msg)
			}
			if notes != tt.notes {
				t.Errorf("leaseFromACK noted %d ignored values, want %d", notes, tt.notes)
			}
		})
	}
}

func repo(want string) func(*Lease) string {
	return func(l *Lease) string {
		if l.RepoURL != want {
			return "want RepoURL " + want
		}
		return ""
	}
}

// goldenACK is the ACK of QEMU's user-network DHCP server (libslirp) with a
// bootfile, as the VM test received it (nclient4 keeps the parsed message,
// so this is its re-encoding: the same fields and options in the same
// order); go test -run TestDHCPVM ./pkg/netup -update rewrites it.
const goldenACK = "testdata/qemu-slirp-ack.bin"

func TestQEMUACK(t *testing.T) {
	b, err := os.ReadFile(goldenACK)
	if err != nil {
		t.Fatalf("%v (regenerate with go test -run TestDHCPVM -update)", err)
	}
	m, err := dhcpv4.FromBytes(b)
	if err != nil {
		t.Fatalf("%s: %v", goldenACK, err)
	}
	l, err := leaseFromACK("eth0", m, func(msg string, args ...any) { t.Errorf("%s: %s %v", goldenACK, msg, args) })
	if err != nil {
		t.Fatalf("leaseFromACK(%s) = %v", goldenACK, err)
	}
	if l.Addr != netip.MustParsePrefix("10.0.2.15/24") || l.Router != netip.MustParseAddr("10.0.2.2") ||
		len(l.DNS) != 1 || l.DNS[0] != netip.MustParseAddr("10.0.2.3") || l.Duration != 24*time.Hour {
		t.Errorf("leaseFromACK(%s) = %+v, want QEMU's 10.0.2.15/24 via 10.0.2.2, DNS 10.0.2.3, a day", goldenACK, l)
	}
	if !strings.HasPrefix(l.RepoURL, "http://10.0.2.2:") || !strings.HasSuffix(l.RepoURL, "/repo/") {
		t.Errorf("leaseFromACK(%s).RepoURL = %q, want the bootfile http://10.0.2.2:PORT/repo/", goldenACK, l.RepoURL)
	}
}

// seeds are the fuzzers' seeds from testdata: every DHCP packet there.
func seeds(f *testing.F) [][]byte {
	files, err := filepath.Glob("testdata/*.bin")
	if err != nil || len(files) == 0 {
		f.Fatalf("no seeds in testdata: %v", err)
	}
	var out [][]byte
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// FuzzParseRepoURL: whatever a DHCP server sends, ParseRepoURL returns an
// error or a canonical http(s) URL that parses to itself.
func FuzzParseRepoURL(f *testing.F) {
	for _, b := range seeds(f) {
		if m, err := dhcpv4.FromBytes(b); err == nil {
			f.Add([]byte(m.BootFileName))
			f.Add(m.Options.Get(dhcpv4.OptionURL))
		}
	}
	for _, s := range []string{"http://10.0.2.2:8080/repo/", "https://[::1]/x\x00", "http://a@b/", "http://h/#", " http://h:65535 "} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		u, err := ParseRepoURL(b)
		if err != nil {
			if !errors.Is(err, ErrBadURL) {
				t.Fatalf("ParseRepoURL(%q) = %v, not ErrBadURL", b, err)
			}
			return
		}
		if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
			t.Fatalf("ParseRepoURL(%q) = %q, not http(s)", b, u)
		}
		for i := 0; i < len(u); i++ {
			if u[i] <= ' ' || u[i] >= 0x7f || u[i] == '#' {
				t.Fatalf("ParseRepoURL(%q) = %q, with byte %#x", b, u, u[i])
			}
		}
		if again, err := ParseRepoURL([]byte(u)); err != nil || again != u {
			t.Fatalf("ParseRepoURL(%q) = %q, but that parses to %q, %v", b, u, again, err)
		}
	})
}

// FuzzLeaseFromACK: whatever packet comes back, the lease netup would
// configure is sane, or refused.
func FuzzLeaseFromACK(f *testing.F) {
	for _, b := range seeds(f) {
		f.Add(b)
	}
	f.Add(ack(f, option(dhcpv4.OptionURL, "https://repo.example/x\x00"), option(dhcpv4.OptionDomainName, "lab.example")).ToBytes())
	f.Add(ack(f, bootfile("http://10.0.2.2:8080/repo/"), without(dhcpv4.OptionSubnetMask)).ToBytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := dhcpv4.FromBytes(b)
		if err != nil {
			return
		}
		l, err := leaseFromACK("eth0", m, func(string, ...any) {})
		if err != nil {
			if !errors.Is(err, ErrBadLease) {
				t.Fatalf("leaseFromACK = %v, not ErrBadLease", err)
			}
			return
		}
		if !l.Addr.IsValid() || !l.Addr.Addr().Is4() || !l.Addr.Addr().IsGlobalUnicast() || l.Addr.Bits() == 0 {
			t.Fatalf("leaseFromACK gave address %v", l.Addr)
		}
		if l.RepoURL != "" {
			if _, err := ParseRepoURL([]byte(l.RepoURL)); err != nil {
				t.Fatalf("leaseFromACK gave RepoURL %q: %v", l.RepoURL, err)
			}
		}
		rc := string(ResolvConf(l))
		if strings.Count(rc, "\n") != 1+min(len(l.DNS), 3)+min(len(l.Search), 1) {
			t.Fatalf("ResolvConf(%+v) = %q: a value broke a line", l, rc)
		}
	})
}
