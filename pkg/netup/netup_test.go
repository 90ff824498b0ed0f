package netup

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/insomniacslk/dhcp/dhcpv4"
)

// ack returns a DHCP ACK like QEMU's user network sends, changed by mods,
// after a round trip through its wire format.
func ack(t testing.TB, mods ...func(*dhcpv4.DHCPv4)) *dhcpv4.DHCPv4 {
	t.Helper()
	m, err := dhcpv4.New(
		dhcpv4.WithMessageType(dhcpv4.MessageTypeAck),
		dhcpv4.WithYourIP(net.IPv4(10, 0, 2, 15)),
		dhcpv4.WithNetmask(net.CIDRMask(24, 32)),
		dhcpv4.WithOption(dhcpv4.OptRouter(net.IPv4(10, 0, 2, 2))),
		dhcpv4.WithOption(dhcpv4.OptDNS(net.IPv4(10, 0, 2, 3))),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(10, 0, 2, 2))),
		dhcpv4.WithLeaseTime(86400),
	)
	if err != nil {
		t.Fatal(err)
	}
	for _, mod := range mods {
		mod(m)
	}
	m, err = dhcpv4.FromBytes(m.ToBytes())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func bootfile(name string) func(*dhcpv4.DHCPv4) {
	return func(m *dhcpv4.DHCPv4) { m.BootFileName = name }
}

func option(code dhcpv4.OptionCode, value string) func(*dhcpv4.DHCPv4) {
	return func(m *dhcpv4.DHCPv4) { m.UpdateOption(dhcpv4.OptGeneric(code, []byte(value))) }
}

func without(code dhcpv4.OptionCode) func(*dhcpv4.DHCPv4) {
	return func(m *dhcpv4.DHCPv4) { m.Options.Del(code) }
}

var mac = net.HardwareAddr{0x52, 0x54, 0, 0x12, 0x34, 0x56}

func eth(name string, plugged bool) Link {
	return Link{Name: name, Kind: "device", Ether: true, MAC: mac, Carrier: plugged}
}

var lo = Link{Name: "lo", Kind: "device", Loopback: true}

// testLogger sends log lines to t.Log, without the time.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{
		Level: slog.LevelDebug,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey && len(groups) == 0 {
				return slog.Attr{}
			}
			return a
		},
	}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// testConfig is a Config over fakes, with short pauses.
func testConfig(t *testing.T, links *FakeLinks, dhcp *FakeDHCP) Config {
	return Config{
		ResolvConf: filepath.Join(t.TempDir(), "etc", "resolv.conf"),
		Timeout:    10 * time.Second,
		Backoff:    time.Millisecond,
		MaxBackoff: 4 * time.Millisecond,
		Poll:       time.Millisecond,
		Links:      links,
		DHCP:       dhcp,
		Log:        testLogger(t),
	}
}

func TestSelectLinks(t *testing.T) {
	all := []Link{
		lo,
		eth("eth0", true),
		{Name: "br0", Kind: "bridge", Ether: true, MAC: mac},
		{Name: "veth1", Kind: "veth", Ether: true, MAC: mac},
		{Name: "eth0.5", Kind: "vlan", Ether: true, MAC: mac},
		{Name: "tun0", Kind: "tuntap"},
		{Name: "sit0", Kind: "sit"},
		eth("enp1s0", false),
	}
	names := func(ls []Link) []string {
		var s []string
		for _, l := range ls {
			s = append(s, l.Name)
		}
		return s
	}
	tests := []struct {
		iface   string
		want    []string
		wantErr string
	}{
		{"", []string{"eth0", "enp1s0"}, ""},
		{"enp1s0", []string{"enp1s0"}, ""},
		{"br0", []string{"br0"}, ""}, // the board knows best
		{"eth9", nil, "no link eth9 (links: lo, eth0, br0, veth1, eth0.5, tun0, sit0, enp1s0)"},
		{"lo", nil, "lo is the loopback"},
	}
	for _, tt := range tests {
		got, err := selectLinks(all, tt.iface)
		if tt.wantErr != "" {
			if !errors.Is(err, ErrNoLink) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("selectLinks(%q) = %v, want ErrNoLink saying %q", tt.iface, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !cmp.Equal(names(got), tt.want) {
			t.Errorf("selectLinks(%q) = %q, %v; want %q", tt.iface, names(got), err, tt.want)
		}
	}
	if _, err := selectLinks([]Link{lo, all[2]}, ""); !errors.Is(err, ErrNoLink) || !strings.Contains(err.Error(), "no Ethernet link (links: lo, br0)") {
		t.Errorf("selectLinks(no Ethernet) = %v, want ErrNoLink naming the links", err)
	}
}

func TestUp(t *testing.T) {
	links := NewFakeLinks(lo, eth("eth0", true))
	a := ack(t, bootfile("http://10.0.2.2:8080/repo/"))
	dhcp := &FakeDHCP{Servers: map[string]*FakeServer{"eth0": {ACK: a}}}
	cfg := testConfig(t, links, dhcp)
	got, err := Up(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Up = %v", err)
	}
	want := &Lease{
		Link:     "eth0",
		Addr:     netip.MustParsePrefix("10.0.2.15/24"),
		Router:   netip.MustParseAddr("10.0.2.2"),
		DNS:      []netip.Addr{netip.MustParseAddr("10.0.2.3")},
		Server:   netip.MustParseAddr("10.0.2.2"),
		Duration: 24 * time.Hour,
		RepoURL:  "http://10.0.2.2:8080/repo/",
		ACK:      a,
	}
	if d := cmp.Diff(want, got, cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})); d != "" {
		t.Errorf("Up lease (-want +got):\n%s", d)
	}
	wantCalls := []string{"up lo", "up eth0", "addr eth0 10.0.2.15/24", "route eth0 default via 10.0.2.2"}
	if d := cmp.Diff(wantCalls, links.Calls()); d != "" {
		t.Errorf("Up calls (-want +got):\n%s", d)
	}
	b, err := os.ReadFile(cfg.ResolvConf)
	if err != nil {
		t.Fatal(err)
	}
	if want := "# written by lifeboat netup from the DHCP lease on eth0\nnameserver 10.0.2.3\n"; string(b) != want {
		t.Errorf("resolv.conf = %q, want %q", b, want)
	}
}

// The first link with a lease wins; the others stop and are not
// configured.
func TestUpFirstLeaseWins(t *testing.T) {
	links := NewFakeLinks(lo, eth("eth0", true), eth("eth1", true), eth("eth2", false))
	never := make(chan struct{})
	dhcp := &FakeDHCP{Servers: map[string]*FakeServer{
		"eth0": {ACK: ack(t), Hold: never},
		"eth1": {ACK: ack(t, func(m *dhcpv4.DHCPv4) { m.YourIPAddr = net.IPv4(192, 168, 7, 9) },
			without(dhcpv4.OptionRouter), without(dhcpv4.OptionDomainNameServer))},
	}}
	cfg := testConfig(t, links, dhcp)
	got, err := Up(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Up = %v", err)
	}
	if got.Link != "eth1" || got.Addr != netip.MustParsePrefix("192.168.7.9/24") || got.Router.IsValid() {
		t.Errorf("Up = %+v, want eth1's lease 192.168.7.9/24 with no router", got)
	}
	var configured []string
	for _, c := range links.Calls() {
		if !strings.HasPrefix(c, "up ") {
			configured = append(configured, c)
		}
	}
	if d := cmp.Diff([]string{"addr eth1 192.168.7.9/24"}, configured); d != "" {
		t.Errorf("configuration calls (-want +got):\n%s", d)
	}
	if _, err := os.Stat(cfg.ResolvConf); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("resolv.conf written for a lease without DNS servers: %v", err)
	}
}

func TestUpRetries(t *testing.T) {
	links := NewFakeLinks(eth("eth0", true))
	dhcp := &FakeDHCP{Servers: map[string]*FakeServer{"eth0": {ACK: ack(t), Fail: 3}}}
	if _, err := Up(t.Context(), testConfig(t, links, dhcp)); err != nil {
		t.Fatalf("Up = %v", err)
	}
	if n := dhcp.Requests("eth0"); n != 4 {
		t.Errorf("DHCP requests = %d, want 4 (3 failures, then the lease)", n)
	}
}

// A cable plugged in while Up waits is used.
func TestUpCarrierLater(t *testing.T) {
	links := NewFakeLinks(eth("eth0", false))
	dhcp := &FakeDHCP{Servers: map[string]*FakeServer{"eth0": {ACK: ack(t)}}}
	done := make(chan error, 1)
	go func() {
		_, err := Up(t.Context(), testConfig(t, links, dhcp))
		done <- err
	}()
	links.Plug("eth0", true)
	if err := <-done; err != nil {
		t.Fatalf("Up = %v", err)
	}
}

func TestUpErrors(t *testing.T) {
	boom := errors.New("operation not permitted")
	tests := []struct {
		name    string
		links   []Link
		servers map[string]*FakeServer
		fail    map[string]error
		iface   string
		is      []error
		want    []string // in the message
	}{
		{
			name:  "no carrier",
			links: []Link{lo, eth("eth0", false)},
			is:    []error{ErrNoLease, ErrNoCarrier},
			want:  []string{"netup: no DHCP lease within", "eth0: no carrier after"},
		},
		{
			name:  "no offer",
			links: []Link{eth("eth0", true)},
			is:    []error{ErrNoLease, ErrNoOffer},
			want:  []string{"eth0: ", "DHCP attempts in", "the last: no DHCP offer within 0s"},
		},
		{
			name:  "each link says what went wrong",
			links: []Link{eth("eth0", false), eth("eth1", true)},
			is:    []error{ErrNoLease, ErrNoOffer, ErrNoCarrier},
			want:  []string{"eth0: no carrier", "eth1: ", "no DHCP offer"},
		},
		{
			name:  "no Ethernet link",
			links: []Link{lo, {Name: "br0", Kind: "bridge", Ether: true, MAC: mac}},
			is:    []error{ErrNoLink},
			want:  []string{"no Ethernet link (links: lo, br0)"},
		},
		{
			name:  "board's link missing",
			links: []Link{lo, eth("eth0", true)},
			iface: "end0",
			is:    []error{ErrNoLink},
			want:  []string{"no link end0 (links: lo, eth0)"},
		},
		{
			name:  "link will not come up",
			links: []Link{eth("eth0", true)},
			fail:  map[string]error{"up eth0": boom},
			is:    []error{ErrNoLease, boom},
			want:  []string{"eth0: set up: operation not permitted"},
		},
		{
			name:    "address refused",
			links:   []Link{eth("eth0", true)},
			servers: map[string]*FakeServer{"eth0": {ACK: ack(t)}},
			fail:    map[string]error{"addr eth0 10.0.2.15/24": boom},
			is:      []error{boom},
			want:    []string{"eth0: add address 10.0.2.15/24: operation not permitted"},
		},
		{
			name:    "route refused",
			links:   []Link{eth("eth0", true)},
			servers: map[string]*FakeServer{"eth0": {ACK: ack(t)}},
			fail:    map[string]error{"route eth0 default via 10.0.2.2": boom},
			is:      []error{boom},
			want:    []string{"eth0: add default route via 10.0.2.2: operation not permitted"},
		},
		{
			name:    "unusable lease",
			links:   []Link{eth("eth0", true)},
			servers: map[string]*FakeServer{"eth0": {ACK: ack(t, func(m *dhcpv4.DHCPv4) { m.YourIPAddr = net.IPv4zero })}},
			is:      []error{ErrNoLease, ErrBadLease},
			want:    []string{"the last: unusable DHCP lease: address 0.0.0.0"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			links := NewFakeLinks(tt.links...)
			links.Fail = tt.fail
			cfg := testConfig(t, links, &FakeDHCP{Servers: tt.servers})
			cfg.Timeout = 50 * time.Millisecond
			cfg.Interface = tt.iface
			lease, err := Up(t.Context(), cfg)
			if err == nil {
				t.Fatalf("Up = %+v, want an error", lease)
			}
			for _, target := range tt.is {
				if !errors.Is(err, target) {
					t.Errorf("Up = %v, want it to wrap %v", err, target)
				}
			}
			for _, s := range tt.want {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("Up = %q, want it to say %q", err, s)
				}
			}
		})
	}
}

// A caller that gives up is told so, not that the links failed.
func TestUpCancelled(t *testing.T) {
	links := NewFakeLinks(eth("eth0", true))
	dhcp := &FakeDHCP{Servers: map[string]*FakeServer{"eth0": {ACK: ack(t), Hold: make(chan struct{})}}}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := Up(ctx, testConfig(t, links, dhcp))
	if !errors.Is(err, ErrNoLease) || !errors.Is(err, context.Canceled) {
		t.Errorf("Up(cancelled) = %v, want ErrNoLease and context.Canceled", err)
	}
}

func TestValidate(t *testing.T) {
	for _, c := range []Config{{Timeout: -1}, {Backoff: -time.Second}, {Interface: "lo"}, {Interface: "../eth0"}} {
		if err := c.Validate(); err == nil {
			t.Errorf("Config%+v.Validate() = nil, want an error", c)
		}
		if _, err := Up(t.Context(), c); err == nil {
			t.Errorf("Up(Config%+v) = nil error, want the Validate error", c)
		}
	}
	if err := (&Config{Interface: "eth0"}).Validate(); err != nil {
		t.Errorf("Config{Interface: eth0}.Validate() = %v", err)
	}
}

func TestResolvConf(t *testing.T) {
	l := &Lease{Link: "eth0", Search: []string{"lab.example", "example"}}
	for _, a := range []string{"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"} {
		l.DNS = append(l.DNS, netip.MustParseAddr(a))
	}
	want := "# written by lifeboat netup from the DHCP lease on eth0\nsearch lab.example example\n" +
		"nameserver 10.0.0.1\nnameserver 10.0.0.2\nnameserver 10.0.0.3\n"
	if got := string(ResolvConf(l)); got != want {
		t.Errorf("ResolvConf = %q, want %q", got, want)
	}
}
