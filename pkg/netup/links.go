package netup

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
)

// Link is a network interface as the kernel shows it.
type Link struct {
	Name  string
	Index int
	// Kind is rtnetlink's link kind: "device" for a physical NIC (or a
	// virtio one), else "bridge", "veth", "vlan", "dummy", "tuntap", ...
	Kind     string
	Ether    bool // Ethernet framing (ARPHRD_ETHER)
	MAC      net.HardwareAddr
	Loopback bool
	Up       bool // administratively up (IFF_UP)
	Carrier  bool // the lower layer is up (IFF_LOWER_UP): a cable, a link partner
}

// Links is netup's seam to the kernel's network configuration. Netlink is
// the running kernel's; FakeLinks is an in-memory one for tests.
type Links interface {
	// List returns every link with its current state.
	List() ([]Link, error)
	// Up sets a link administratively up.
	Up(name string) error
	// AddAddr gives a link an IPv4 address with its prefix length,
	// replacing the same address if it has it.
	AddAddr(name string, addr netip.Prefix) error
	// AddDefaultRoute routes everything off-link through gw on the link,
	// replacing a default route there is.
	AddDefaultRoute(name string, gw netip.Addr) error
}

// candidate reports whether DHCP should be tried on l when the board names
// no interface: an Ethernet device, not the loopback, a bridge, a veth or
// another virtual link.
func candidate(l Link) bool {
	return !l.Loopback && l.Ether && l.Kind == "device" && len(l.MAC) == 6
}

// selectLinks returns the links to run DHCP on: the one called name, or
// every candidate when name is "".
func selectLinks(all []Link, name string) ([]Link, error) {
	var names []string
	for _, l := range all {
		names = append(names, l.Name)
	}
	have := strings.Join(names, ", ")
	if have == "" {
		have = "none"
	}
	if name != "" {
		i := slices.IndexFunc(all, func(l Link) bool { return l.Name == name })
		if i < 0 {
			return nil, fmt.Errorf("%w: no link %s (links: %s)", ErrNoLink, name, have)
		}
		if all[i].Loopback {
			return nil, fmt.Errorf("%w: %s is the loopback", ErrNoLink, name)
		}
		return all[i : i+1], nil
	}
	var out []Link
	for _, l := range all {
		if candidate(l) {
			out = append(out, l)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no Ethernet link (links: %s)", ErrNoLink, have)
	}
	return out, nil
}
