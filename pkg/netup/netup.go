// Package netup brings the recovery ramdisk's network up: the loopback and
// the Ethernet links up (netlink), DHCPv4 on every candidate link at once
// (insomniacslk/dhcp's nclient4), and the first lease configured: its
// address with the subnet's prefix, a default route through its router, and
// its name servers in /etc/resolv.conf. The Lease it returns also carries the
// repository URL the DHCP server offers, if any (option 114, or an http(s)
// boot file name), which is how a network hands the ramdisk its repository.
//
// The kernel sits behind two small seams, Links (Netlink, FakeLinks) and
// DHCP (NClient4, FakeDHCP), so the selection and configuration logic is
// tested without root; the VM test runs it against QEMU's DHCP server.
//
// netup does not renew the lease: the ramdisk installs a release and
// reboots well within any lease time, and the address stays configured
// (without a lifetime) if the lease runs out.
package netup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Errors of Up. A link's own failure is a *LinkError wrapping one of these
// or the kernel's error.
var (
	// ErrNoLink means there is no link to run DHCP on: none is Ethernet,
	// or the board's interface is missing.
	ErrNoLink = errors.New("no network link")
	// ErrNoCarrier means a link never saw a carrier (no cable, no link
	// partner).
	ErrNoCarrier = errors.New("no carrier")
	// ErrNoOffer means no DHCP server answered on a link.
	ErrNoOffer = errors.New("no DHCP offer")
	// ErrNoLease is wrapped by Up's error when no link got a lease in time;
	// the error also wraps each link's *LinkError.
	ErrNoLease = errors.New("no DHCP lease")
)

// LinkError is what went wrong on one link.
type LinkError struct {
	Link string
	Err  error
}

func (e *LinkError) Error() string { return e.Link + ": " + e.Err.Error() }
func (e *LinkError) Unwrap() error { return e.Err }

// DefaultResolvConf is where Up writes the name servers.
const DefaultResolvConf = "/etc/resolv.conf"

// Config says how to bring the network up. Zero values take the defaults in
// brackets.
type Config struct {
	// Interface is the board's network interface; "" runs DHCP on every
	// Ethernet device (not the loopback, bridges, veths, VLANs, tunnels).
	Interface string
	// ResolvConf is the file the name servers are written to
	// [/etc/resolv.conf]; "-" writes none.
	ResolvConf string
	// Timeout bounds the whole of Up [1m]; ctx may end it sooner. A
	// ramdisk that waits for ever on a dead network is a bricked device.
	Timeout time.Duration
	// Backoff is the pause after a failed DHCP attempt on a link; it
	// doubles after each failure up to MaxBackoff [1s, 8s].
	Backoff, MaxBackoff time.Duration
	// Poll is how often a link's carrier is checked [100ms].
	Poll time.Duration

	Links Links        // [Netlink: the running kernel]
	DHCP  DHCP         // [NClient4]
	Log   *slog.Logger // progress, a line per step; nil discards
}

// Validate refuses settings that cannot work.
func (c *Config) Validate() error {
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"timeout", c.Timeout}, {"backoff", c.Backoff}, {"max backoff", c.MaxBackoff}, {"poll", c.Poll}} {
		if d.v < 0 {
			return fmt.Errorf("netup: negative %s %v", d.name, d.v)
		}
	}
	if c.Interface == "lo" {
		return errors.New("netup: the loopback cannot get a DHCP lease")
	}
	if strings.ContainsAny(c.Interface, "/ \t\n") {
		return fmt.Errorf("netup: bad interface name %q", c.Interface)
	}
	return nil
}

// withDefaults returns c with its defaults filled in.
func (c Config) withDefaults() Config {
	or := func(d *time.Duration, def time.Duration) {
		if *d == 0 {
			*d = def
		}
	}
	or(&c.Timeout, time.Minute)
	or(&c.Backoff, time.Second)
	or(&c.MaxBackoff, 8*time.Second)
	or(&c.Poll, 100*time.Millisecond)
	if c.ResolvConf == "" {
		c.ResolvConf = DefaultResolvConf
	}
	if c.Links == nil {
		c.Links = Netlink{}
	}
	if c.DHCP == nil {
		c.DHCP = NClient4{}
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return c
}

// Up brings the loopback and the candidate links up, runs DHCP on all of
// them at once, and configures the first lease: address, default route,
// name servers. Failed attempts are retried with backoff until one link has
// a lease or the timeout (or ctx) ends; the error then wraps ErrNoLease and
// says what went wrong on each link (*LinkError).
func Up(ctx context.Context, cfg Config) (*Lease, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := cfg.withDefaults()
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()

	all, err := c.Links.List()
	if err != nil {
		return nil, fmt.Errorf("netup: list links: %w", err)
	}
	for _, l := range all {
		if l.Loopback && !l.Up {
			if err := c.Links.Up(l.Name); err != nil {
				// Not fatal for DHCP; say so and go on.
				c.Log.Warn("netup: loopback stays down", "link", l.Name, "err", err)
			}
		}
	}
	links, err := selectLinks(all, c.Interface)
	if err != nil {
		return nil, fmt.Errorf("netup: %w", err)
	}
	var names []string
	for _, l := range links {
		names = append(names, l.Name)
	}
	c.Log.Info("netup: DHCP", "links", strings.Join(names, ","), "timeout", c.Timeout)

	// Every link tries until one has a lease; the first cancels the rest.
	// Only the winner is configured, after the others have stopped.
	type result struct {
		lease *Lease
		err   error
	}
	results := make(chan result, len(links))
	race, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, l := range links {
		wg.Go(func() {
			lease, err := c.lease(race, l, start)
			results <- result{lease, err}
		})
	}
	var won *Lease
	var errs []error
	for range links {
		r := <-results
		if r.err != nil {
			errs = append(errs, r.err)
			continue
		}
		if won == nil {
			won = r.lease
			stop()
		}
	}
	stop()
	wg.Wait()
	if won == nil {
		if err := context.Cause(ctx); ctx.Err() != nil && !errors.Is(err, context.DeadlineExceeded) {
			// The caller gave up: say that rather than blame the links.
			return nil, fmt.Errorf("netup: %w: %w", ErrNoLease, err)
		}
		return nil, fmt.Errorf("netup: %w within %v: %w", ErrNoLease, time.Since(start).Round(100*time.Millisecond), errors.Join(errs...))
	}
	if err := c.configure(won); err != nil {
		return nil, fmt.Errorf("netup: %w", err)
	}
	return won, nil
}

// lease brings link up and tries DHCP on it until it has a usable lease or
// ctx ends.
func (c *Config) lease(ctx context.Context, link Link, start time.Time) (*Lease, error) {
	fail := func(err error) (*Lease, error) { return nil, &LinkError{Link: link.Name, Err: err} }
	log := c.Log.With("link", link.Name)
	if !link.Up {
		if err := c.Links.Up(link.Name); err != nil {
			return fail(fmt.Errorf("set up: %w", err))
		}
		log.Info("netup: link up")
	}
	backoff := c.Backoff
	var last error
	attempts := 0
	for {
		if err := c.waitCarrier(ctx, link.Name, log); err != nil {
			if ctx.Err() == nil {
				return fail(err)
			}
			if attempts == 0 {
				return fail(fmt.Errorf("%w after %v", ErrNoCarrier, time.Since(start).Round(100*time.Millisecond)))
			}
			break
		}
		attempts++
		ack, err := c.DHCP.Request(ctx, link)
		if err == nil {
			lease, lerr := leaseFromACK(link.Name, ack, func(msg string, args ...any) { log.Warn("netup: "+msg, args...) })
			if lerr == nil {
				log.Info("netup: lease", "addr", lease.Addr, "router", lease.Router, "server", lease.Server,
					"lease", lease.Duration, "repo", lease.RepoURL, "attempts", attempts)
				return lease, nil
			}
			err = lerr
		}
		if ctx.Err() != nil {
			break
		}
		last = err
		log.Warn("netup: DHCP attempt failed", "attempt", attempts, "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, c.MaxBackoff)
	}
	if last == nil {
		return fail(fmt.Errorf("%w: gave up after %v", ErrNoOffer, time.Since(start).Round(100*time.Millisecond)))
	}
	return fail(fmt.Errorf("%d DHCP attempts in %v, the last: %w", attempts, time.Since(start).Round(100*time.Millisecond), last))
}

// waitCarrier polls until the link has a carrier, or ctx ends.
func (c *Config) waitCarrier(ctx context.Context, name string, log *slog.Logger) error {
	var tick *time.Ticker
	said := false
	for {
		all, err := c.Links.List()
		if err != nil {
			return fmt.Errorf("list links: %w", err)
		}
		for _, l := range all {
			if l.Name == name && l.Carrier {
				if said {
					log.Info("netup: carrier")
				}
				return nil
			}
		}
		if !said {
			log.Info("netup: waiting for a carrier")
			said = true
		}
		if tick == nil {
			tick = time.NewTicker(c.Poll)
			defer tick.Stop()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// configure gives the winning link its address, default route and name
// servers.
func (c *Config) configure(l *Lease) error {
	if err := c.Links.AddAddr(l.Link, l.Addr); err != nil {
		return &LinkError{Link: l.Link, Err: fmt.Errorf("add address %v: %w", l.Addr, err)}
	}
	if l.Router.IsValid() {
		if !l.Addr.Contains(l.Router) {
			c.Log.Warn("netup: router outside the subnet", "link", l.Link, "router", l.Router, "addr", l.Addr)
		}
		if err := c.Links.AddDefaultRoute(l.Link, l.Router); err != nil {
			return &LinkError{Link: l.Link, Err: fmt.Errorf("add default route via %v: %w", l.Router, err)}
		}
	} else {
		c.Log.Warn("netup: the server named no router: no default route", "link", l.Link)
	}
	if c.ResolvConf == "-" || len(l.DNS) == 0 {
		return nil
	}
	if err := writeResolvConf(c.ResolvConf, l); err != nil {
		return fmt.Errorf("write %s: %w", c.ResolvConf, err)
	}
	c.Log.Info("netup: name servers", "file", c.ResolvConf, "dns", l.DNS)
	return nil
}

// ResolvConf returns the resolv.conf for a lease: its name servers (at most
// the three the resolver reads) and search domains.
func ResolvConf(l *Lease) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "# written by lifeboat netup from the DHCP lease on %s\n", l.Link)
	if len(l.Search) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(l.Search, " "))
	}
	for i, a := range l.DNS {
		if i == 3 {
			break
		}
		fmt.Fprintf(&b, "nameserver %v\n", a)
	}
	return []byte(b.String())
}

// writeResolvConf replaces path with l's resolv.conf: a temporary file
// renamed into place, so a reader never sees half of it.
func writeResolvConf(path string, l *Lease) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".resolv.conf-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(ResolvConf(l)); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
