package netup

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Netlink is the Links of the running kernel, through rtnetlink. It needs
// CAP_NET_ADMIN to change anything.
type Netlink struct{}

var _ Links = Netlink{}

// List implements Links.
func (Netlink) List() ([]Link, error) {
	var ls []netlink.Link
	var err error
	// A dump that a concurrent change interrupted may be inconsistent;
	// ask again, and take the last answer if it keeps happening.
	for range 3 {
		if ls, err = netlink.LinkList(); !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return nil, fmt.Errorf("RTM_GETLINK: %w", err)
	}
	out := make([]Link, 0, len(ls))
	for _, l := range ls {
		a := l.Attrs()
		out = append(out, Link{
			Name:     a.Name,
			Index:    a.Index,
			Kind:     l.Type(),
			Ether:    a.EncapType == "ether",
			MAC:      a.HardwareAddr,
			Loopback: a.Flags&net.FlagLoopback != 0,
			Up:       a.Flags&net.FlagUp != 0,
			Carrier:  a.RawFlags&unix.IFF_LOWER_UP != 0,
		})
	}
	return out, nil
}

func link(name string) (netlink.Link, error) {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("RTM_GETLINK %s: %w", name, err)
	}
	return l, nil
}

// Up implements Links.
func (Netlink) Up(name string) error {
	l, err := link(name)
	if err != nil {
		return err
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return fmt.Errorf("RTM_NEWLINK %s up: %w", name, err)
	}
	return nil
}

// AddAddr implements Links.
func (Netlink) AddAddr(name string, p netip.Prefix) error {
	if !p.Addr().Is4() {
		return fmt.Errorf("add address %v to %s: not IPv4", p, name)
	}
	l, err := link(name)
	if err != nil {
		return err
	}
	// netlink fills in the broadcast address of an IPv4 prefix.
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}}
	if err := netlink.AddrReplace(l, addr); err != nil {
		return fmt.Errorf("RTM_NEWADDR %s %v: %w", name, p, err)
	}
	return nil
}

// AddDefaultRoute implements Links.
func (Netlink) AddDefaultRoute(name string, gw netip.Addr) error {
	l, err := link(name)
	if err != nil {
		return err
	}
	r := &netlink.Route{
		LinkIndex: l.Attrs().Index,
		Dst:       &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)},
		Gw:        gw.AsSlice(),
		Scope:     netlink.SCOPE_UNIVERSE,
	}
	if err := netlink.RouteReplace(r); err != nil {
		return fmt.Errorf("RTM_NEWROUTE default via %v dev %s: %w", gw, name, err)
	}
	return nil
}
