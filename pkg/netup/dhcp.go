package netup

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
)

// DHCP is netup's seam to the DHCPv4 exchange on one link. NClient4 is the
// real one; FakeDHCP answers from memory.
type DHCP interface {
	// Request runs one DISCOVER, OFFER, REQUEST, ACK exchange on the link
	// (retransmitting as the client does) and returns the server's ACK.
	// When no server offers, its error wraps ErrNoOffer.
	Request(ctx context.Context, link Link) (*dhcpv4.DHCPv4, error)
}

// NClient4 is the DHCP of a real link: insomniacslk/dhcp's nclient4 on a
// raw packet socket, so the link needs no address. Zero values take the
// defaults in brackets.
type NClient4 struct {
	// Timeout is how long the first DISCOVER (and REQUEST) waits for an
	// answer; each retransmission waits twice as long as the one before
	// [2s].
	Timeout time.Duration
	// Tries is how many times a message is sent before giving up [3]: 2,
	// 4 and 8 s, so one Request waits at most 14 s for an offer.
	Tries int
}

var _ DHCP = NClient4{}

// requested are the options netup asks for beyond nclient4's defaults.
var requested = []dhcpv4.OptionCode{
	dhcpv4.OptionSubnetMask,
	dhcpv4.OptionRouter,
	dhcpv4.OptionDomainNameServer,
	dhcpv4.OptionDomainName,
	dhcpv4.OptionDNSDomainSearchList,
	dhcpv4.OptionBootfileName,
	dhcpv4.OptionURL,
}

// Request implements DHCP.
func (n NClient4) Request(ctx context.Context, link Link) (*dhcpv4.DHCPv4, error) {
	timeout, tries := n.Timeout, n.Tries
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	if tries <= 0 {
		tries = 3
	}
	opts := []nclient4.ClientOpt{nclient4.WithTimeout(timeout), nclient4.WithRetry(tries)}
	if len(link.MAC) > 0 {
		opts = append(opts, nclient4.WithHWAddr(link.MAC))
	}
	c, err := nclient4.New(link.Name, opts...)
	if err != nil {
		return nil, fmt.Errorf("DHCP client on %s: %w", link.Name, err)
	}
	defer c.Close()
	// The most a message waits: timeout, then twice that, ...
	wait := timeout * time.Duration(1<<tries-1)
	mods := []dhcpv4.Modifier{dhcpv4.WithRequestedOptions(requested...)}
	offer, err := c.DiscoverOffer(ctx, mods...)
	if errors.Is(err, nclient4.ErrNoResponse) {
		return nil, fmt.Errorf("%w within %v", ErrNoOffer, wait)
	}
	if err != nil {
		return nil, fmt.Errorf("DHCP discover: %w", err)
	}
	lease, err := c.RequestFromOffer(ctx, offer, mods...)
	if errors.Is(err, nclient4.ErrNoResponse) {
		return nil, fmt.Errorf("%w: no answer to the request for %v from %v within %v", ErrNoOffer, offer.YourIPAddr, offer.ServerIdentifier(), wait)
	}
	if err != nil {
		return nil, fmt.Errorf("DHCP request for %v from %v: %w", offer.YourIPAddr, offer.ServerIdentifier(), err)
	}
	return lease.ACK, nil
}

// Lease is what a DHCP server gave one link, as netup configured it.
type Lease struct {
	Link     string
	Addr     netip.Prefix  // the address and the subnet's prefix length: 10.0.2.15/24
	Router   netip.Addr    // the default gateway; not valid if the server named none
	DNS      []netip.Addr  // name servers
	Search   []string      // DNS search domains: option 119, else the domain name (option 15)
	Server   netip.Addr    // the DHCP server (its identifier); not valid if it gave none
	Duration time.Duration // the lease time; 0 if the server gave none
	// RepoURL is the repository URL the server offers, "" for none: option
	// 114 (RFC 3679 "URL", default-url), else the boot file name (option
	// 67, else the BOOTP file field) when it is an http:// or https:// URL.
	RepoURL string
	// ACK is the server's whole answer, for options netup does not read.
	ACK *dhcpv4.DHCPv4
}

// ErrBadURL is wrapped by ParseRepoURL's errors.
var ErrBadURL = errors.New("bad repository URL")

// maxURL bounds a repository URL; DHCP options can be concatenated (RFC
// 3396) past one option's 255 bytes.
const maxURL = 2048

// ParseRepoURL checks a repository URL a DHCP server sent (option 114 or
// the boot file name) and returns it in canonical form: an absolute http://
// or https:// URL with a host, printable ASCII only, no credentials and no
// fragment. One trailing NUL, which some servers send, is dropped, as are
// surrounding spaces. Its errors wrap ErrBadURL.
func ParseRepoURL(b []byte) (string, error) {
	s := strings.TrimSuffix(string(b), "\x00")
	s = strings.Trim(s, " \t")
	if s == "" {
		return "", fmt.Errorf("%w: empty", ErrBadURL)
	}
	if len(s) > maxURL {
		return "", fmt.Errorf("%w: %d bytes, more than %d", ErrBadURL, len(s), maxURL)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f {
			return "", fmt.Errorf("%w: %q: byte %#02x at %d is not printable ASCII", ErrBadURL, s, c, i)
		}
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrBadURL, err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return "", fmt.Errorf("%w: %q: scheme %q, want http or https", ErrBadURL, s, u.Scheme)
	case u.Opaque != "" || u.Host == "" || u.Hostname() == "":
		return "", fmt.Errorf("%w: %q: no host", ErrBadURL, s)
	case u.User != nil:
		return "", fmt.Errorf("%w: %q: carries credentials", ErrBadURL, s)
	case u.Fragment != "" || strings.Contains(s, "#"):
		return "", fmt.Errorf("%w: %q: has a fragment", ErrBadURL, s)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return "", fmt.Errorf("%w: %q: bad port %q", ErrBadURL, s, p)
		}
	}
	return u.String(), nil
}

// repoURL picks the repository URL out of an ACK (see Lease.RepoURL). note
// receives what was there and could not be used.
func repoURL(ack *dhcpv4.DHCPv4, note func(msg string, args ...any)) string {
	if b := ack.Options.Get(dhcpv4.OptionURL); b != nil {
		u, err := ParseRepoURL(b)
		if err == nil {
			return u
		}
		note("DHCP option 114 (URL) ignored", "err", err)
	}
	for _, f := range []struct{ where, name string }{
		{"option 67", ack.BootFileNameOption()},
		{"file field", ack.BootFileName},
	} {
		if f.name == "" {
			continue
		}
		// Boot file names are usually TFTP paths ("pxelinux.0"); only a
		// web URL names a repository.
		lower := strings.ToLower(f.name)
		if !strings.HasPrefix(lower, "http://") && !strings.HasPrefix(lower, "https://") {
			continue
		}
		u, err := ParseRepoURL([]byte(f.name))
		if err == nil {
			return u
		}
		note("DHCP boot file name ignored", "where", f.where, "err", err)
	}
	return ""
}

// ErrBadLease is wrapped by the error for an ACK netup cannot configure.
var ErrBadLease = errors.New("unusable DHCP lease")

// leaseFromACK reads the lease an ACK gives link.
func leaseFromACK(link string, ack *dhcpv4.DHCPv4, note func(msg string, args ...any)) (*Lease, error) {
	if ack == nil {
		return nil, fmt.Errorf("%w: no ACK", ErrBadLease)
	}
	if mt := ack.MessageType(); mt != dhcpv4.MessageTypeAck {
		return nil, fmt.Errorf("%w: message type %v, want ACK", ErrBadLease, mt)
	}
	ip, ok := ipv4(ack.YourIPAddr)
	if !ok || !ip.IsGlobalUnicast() {
		return nil, fmt.Errorf("%w: address %v", ErrBadLease, ack.YourIPAddr)
	}
	mask := ack.SubnetMask()
	if mask == nil {
		// RFC 2131 leaves it to the client: the classful mask.
		mask = net.IP(ip.AsSlice()).DefaultMask()
	}
	ones, bits := mask.Size()
	if bits != 32 || ones == 0 {
		return nil, fmt.Errorf("%w: subnet mask %v", ErrBadLease, net.IP(mask))
	}
	l := &Lease{
		Link:     link,
		Addr:     netip.PrefixFrom(ip, ones),
		Duration: ack.IPAddressLeaseTime(0),
		ACK:      ack,
	}
	if ones <= 30 && (ip == l.Addr.Masked().Addr() || ip == broadcast(l.Addr)) {
		return nil, fmt.Errorf("%w: %v is its subnet's network or broadcast address", ErrBadLease, l.Addr)
	}
	for _, r := range ack.Router() {
		if gw, ok := ipv4(r); ok && gw.IsValid() && !gw.IsUnspecified() && !gw.IsMulticast() && gw != ip {
			l.Router = gw
			break
		}
		note("DHCP router ignored", "router", r)
	}
	for _, d := range ack.DNS() {
		if a, ok := ipv4(d); ok && !a.IsUnspecified() && !a.IsMulticast() {
			l.DNS = append(l.DNS, a)
		}
	}
	if s, ok := ipv4(ack.ServerIdentifier()); ok {
		l.Server = s
	}
	if ds := ack.DomainSearch(); ds != nil {
		for _, d := range ds.Labels {
			if validDomain(d) {
				l.Search = append(l.Search, d)
			}
		}
	}
	if d := strings.TrimSuffix(ack.DomainName(), "\x00"); len(l.Search) == 0 && validDomain(d) {
		l.Search = []string{d}
	}
	l.RepoURL = repoURL(ack, note)
	return l, nil
}

// broadcast returns the last address of p's subnet.
func broadcast(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	for i := range b {
		b[i] |= byte(host >> (24 - 8*i))
	}
	return netip.AddrFrom4(b)
}

// ipv4 converts a 4- or 16-byte IPv4 address.
func ipv4(ip net.IP) (netip.Addr, bool) {
	a, ok := netip.AddrFromSlice(ip)
	if !ok || !a.Unmap().Is4() {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// validDomain reports whether s can go into resolv.conf as a search
// domain: letters, digits, '-', '_' and '.' only, at most 253 bytes.
func validDomain(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for _, c := range s {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}
