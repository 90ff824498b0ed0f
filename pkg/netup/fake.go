package netup

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// FakeLinks is an in-memory Links for tests. A link's Carrier field says
// whether its cable is plugged in: List reports a carrier only once the
// link is up, as the kernel does.
type FakeLinks struct {
	mu      sync.Mutex
	links   []Link
	plugged map[string]bool
	calls   []string
	// Fail makes a call fail: its Calls entry ("up eth0") maps to the error.
	Fail map[string]error
}

var _ Links = (*FakeLinks)(nil)

// NewFakeLinks returns a FakeLinks with links, all down.
func NewFakeLinks(links ...Link) *FakeLinks {
	f := &FakeLinks{plugged: map[string]bool{}}
	for _, l := range links {
		f.plugged[l.Name] = l.Carrier
		l.Up, l.Carrier = false, false
		f.links = append(f.links, l)
	}
	return f
}

// Calls returns the changes made, in order: "up eth0",
// "addr eth0 10.0.2.15/24", "route eth0 default via 10.0.2.2".
func (f *FakeLinks) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// Plug connects or disconnects a link's cable.
func (f *FakeLinks) Plug(name string, on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.plugged[name] = on
	for i := range f.links {
		if f.links[i].Name == name {
			f.links[i].Carrier = on && f.links[i].Up
		}
	}
}

func (f *FakeLinks) call(s string) error {
	f.calls = append(f.calls, s)
	return f.Fail[s]
}

func (f *FakeLinks) find(name string) (*Link, error) {
	for i := range f.links {
		if f.links[i].Name == name {
			return &f.links[i], nil
		}
	}
	return nil, fmt.Errorf("link %s: no such device", name)
}

// List implements Links.
func (f *FakeLinks) List() ([]Link, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.Fail["list"]; err != nil {
		return nil, err
	}
	return slices.Clone(f.links), nil
}

// Up implements Links.
func (f *FakeLinks) Up(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	l, err := f.find(name)
	if err != nil {
		return err
	}
	if err := f.call("up " + name); err != nil {
		return err
	}
	l.Up = true
	l.Carrier = f.plugged[name] || l.Loopback
	return nil
}

// AddAddr implements Links.
func (f *FakeLinks) AddAddr(name string, addr netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, err := f.find(name); err != nil {
		return err
	}
	return f.call(fmt.Sprintf("addr %s %v", name, addr))
}

// AddDefaultRoute implements Links.
func (f *FakeLinks) AddDefaultRoute(name string, gw netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, err := f.find(name); err != nil {
		return err
	}
	return f.call(fmt.Sprintf("route %s default via %v", name, gw))
}

// FakeDHCP is an in-memory DHCP for tests: each link's server answers with
// its ACK, after failing its first Fail requests. A link without a server
// gets no offer.
type FakeDHCP struct {
	mu      sync.Mutex
	Servers map[string]*FakeServer
}

var _ DHCP = (*FakeDHCP)(nil)

// FakeServer is the DHCP server on one link of a FakeDHCP.
type FakeServer struct {
	ACK  *dhcpv4.DHCPv4
	Fail int // requests to answer with no offer before the ACK
	// Hold, if not nil, makes each request wait until it is closed (or the
	// request's context ends): a slow server.
	Hold <-chan struct{}

	requests int
}

// Requests returns how many requests link's server has had.
func (f *FakeDHCP) Requests(link string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s := f.Servers[link]; s != nil {
		return s.requests
	}
	return 0
}

// Request implements DHCP.
func (f *FakeDHCP) Request(ctx context.Context, link Link) (*dhcpv4.DHCPv4, error) {
	f.mu.Lock()
	s := f.Servers[link.Name]
	if s == nil {
		f.mu.Unlock()
		return nil, fmt.Errorf("%w within 0s (no server on %s)", ErrNoOffer, link.Name)
	}
	s.requests++
	n, hold := s.requests, s.Hold
	f.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if n <= s.Fail {
		return nil, fmt.Errorf("%w within 0s (request %d of %d to fail)", ErrNoOffer, n, s.Fail)
	}
	return s.ACK, nil
}
