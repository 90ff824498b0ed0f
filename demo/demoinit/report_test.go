package demoinit

import (
	"context"
	"crypto/rand"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lifeboat-update/lifeboat/pkg/api"
	"github.com/lifeboat-update/lifeboat/pkg/durable"
	"github.com/lifeboat-update/lifeboat/pkg/fleet/fleettest"
	"github.com/lifeboat-update/lifeboat/pkg/identity"
)

// fakeNet is a Network that counts its calls and fails with err.
type fakeNet struct {
	ups int
	err error
}

func (n *fakeNet) Up(context.Context) error { n.ups++; return n.err }

// withIdentity puts an identity naming server where the environment's
// partition is mounted.
func (f *fixture) withIdentity(t *testing.T, server string) *identity.Identity {
	t.Helper()
	id, err := identity.New("dev-1", "qemu-x86_64", rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id.Server = server
	dir := filepath.Join(f.root, EnvMount)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := identity.Write(durable.OS(dir), id); err != nil {
		t.Fatal(err)
	}
	return id
}

// TestRunReports: once the slot is good, the release is reported
// installed to the fleet server the identity names; a report that cannot
// be made is said, and changes nothing else.
func TestRunReports(t *testing.T) {
	srv := &fleettest.Server{}
	ts := httptest.NewServer(srv)
	defer ts.Close()

	f := newFixture(t)
	f.cmdline(t, "lifeboat.slot=A", f.verityArg())
	srv.Token = f.withIdentity(t, ts.URL).Token
	n := &fakeNet{}
	c := f.config()
	c.Network, c.HTTP = n, ts.Client()
	res, err := Run(context.Background(), c)
	if err != nil || !res.MarkedGood || !res.Reported || n.ups != 1 {
		t.Fatalf("Run = %+v, %v (network up %d times); want marked good and reported\n%s", res, err, n.ups, f.console.String())
	}
	if got := f.lines(); got[len(got)-1] != "LIFEBOAT-DEMO reported installed version=1.2 server="+ts.URL {
		t.Errorf("last console line %q", got[len(got)-1])
	}
	reports := srv.Reports()
	if len(reports) != 1 {
		t.Fatalf("%d reports, want 1", len(reports))
	}
	st := reports[0]
	if st.Phase != api.PhaseInstalled || st.InstalledVersion != "1.2" || len(st.Slots) != 2 || st.Slots[0] != (api.SlotState{Name: "A", State: "good", TriesLeft: 3}) {
		t.Errorf("report %+v; want installed 1.2, slot A good with 3 tries, B", st)
	}

	for _, tc := range []struct {
		name   string
		net    Network
		server string
		says   string
	}{
		{"no network", nil, ts.URL, "no network to report to"},
		{"network down", &fakeNet{err: errors.New("no DHCP offer")}, ts.URL, "network: no DHCP offer"},
		{"server refuses", &fakeNet{}, ts.URL, "401 Unauthorized"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.cmdline(t, "lifeboat.slot=A", f.verityArg())
			f.withIdentity(t, tc.server)
			c := f.config()
			c.Network, c.HTTP = tc.net, ts.Client()
			res, err := Run(context.Background(), c)
			if err != nil || !res.MarkedGood || res.Reported {
				t.Fatalf("Run = %+v, %v; want marked good, not reported", res, err)
			}
			if !strings.Contains(f.console.String(), tc.says) {
				t.Errorf("console does not say %q:\n%s", tc.says, f.console.String())
			}
		})
	}
}
