package main

import (
	"context"
	"errors"
	"io/fs"
	"net/http"
	"time"

	"github.com/lifeboat-update/lifeboat/pkg/api"
	"github.com/lifeboat-update/lifeboat/pkg/durable"
	"github.com/lifeboat-update/lifeboat/pkg/fleet"
	"github.com/lifeboat-update/lifeboat/pkg/identity"
	"github.com/lifeboat-update/lifeboat/pkg/progress"
	"github.com/lifeboat-update/lifeboat/pkg/release"
	"github.com/lifeboat-update/lifeboat/pkg/slot"
)

// fleetTimeout bounds each request to the fleet server: with
// fleet.DefaultRetries, a server that does not answer costs the update
// about 45 s before it falls back, never a hang.
const fleetTimeout = 10 * time.Second

// openFleet reads the device's identity from the partition holding the
// bootloader environment and, when it or lifeboat.server= names a fleet
// server, makes its client: the update then polls it for the release to
// install and reports to it as it goes. No identity, or one naming no
// server, is the update without a fleet server, as before.
func (f *flow) openFleet() {
	if f.envDir == "" {
		if f.p.server != "" {
			f.say("lifeboat.server=%s: board %s keeps no identity (no partition for the bootloader environment); updating without the fleet server", f.p.server, f.board.Name)
		}
		return
	}
	id, err := identity.Read(durable.OS(f.envDir))
	if errors.Is(err, fs.ErrNotExist) {
		if f.p.server != "" {
			f.say("lifeboat.server=%s: no identity (%s) to present to it; updating without the fleet server", f.p.server, identity.Name)
		}
		return
	}
	if err != nil {
		f.say("identity: %v; updating without the fleet server", err)
		return
	}
	server := id.Server
	if f.p.server != "" {
		server = f.p.server
	}
	if server == "" {
		return
	}
	hc := f.fleetHTTP
	if hc == nil {
		hc = &http.Client{Timeout: fleetTimeout}
	}
	var opts []fleet.Option
	if f.fleetBackoff > 0 {
		opts = append(opts, fleet.WithRetries(fleet.DefaultRetries, f.fleetBackoff))
	}
	c, err := fleet.New(server, id.Token, hc, opts...)
	if err != nil {
		f.say("fleet server: %v; updating without it", err)
		return
	}
	f.fleet, f.res.Server = c, c.URL()
	f.say("device %s reports to the fleet server %s", id.DeviceID, c.URL())
}

// startReports makes the reporter, once the trusted state (stateDir)
// says which release the device runs.
func (f *flow) startReports(ctx context.Context, stateDir string) {
	if f.fleet == nil {
		return
	}
	c := &release.Client{State: durable.OS(stateDir), Board: f.board.Name}
	installed, err := c.InstalledVersion()
	if err != nil {
		f.say("installed release: %v", err)
	}
	f.rep = fleet.NewReporter(ctx, f.fleet, installed, f.say)
}

// pollFleet asks the fleet server which release to install. It returns
// the repository to install it from, or "" when the server could not be
// asked: the update then falls back to the repository of the command
// line, DHCP or the board, and its newest release. Nothing assigned sets
// f.idle, unless resume says an update in place is under way: the slot
// must be made whole whatever the server says.
func (f *flow) pollFleet(ctx context.Context, resume bool) string {
	if f.fleet == nil {
		return ""
	}
	p, _, err := f.fleet.Poll(ctx)
	if err != nil {
		f.say("%v: falling back to the repository of the command line, DHCP or the board, and its newest release", err)
		return ""
	}
	f.reportInventory(ctx)
	if p.Release == nil {
		if resume {
			f.say("the fleet server assigns no release, but an update in place is under way: finishing it from the repository of the command line, DHCP or the board")
			return ""
		}
		f.say("the fleet server assigns no release: nothing to install")
		f.idle = true
		return ""
	}
	f.assigned = p.Release.Version
	f.say("the fleet server assigns release %s, from %s (verified against the trusted root as any other)", p.Release.Version, p.Release.RepositoryURL)
	return p.Release.RepositoryURL
}

// progress is what an install reports its progress to: the console, and
// the fleet server when there is one.
func (f *flow) progress() progress.Reporter {
	lines := &progress.Lines{W: f.console, Step: 25}
	if f.rep == nil {
		return lines
	}
	return progress.Tee(lines, f.rep)
}

// tell reports phase to the fleet server, if there is one, with the
// slots' states when the bootloader can say them.
func (f *flow) tell(ctx context.Context, vars *slot.Vars, phase api.Phase, progress float64) {
	if f.rep == nil {
		return
	}
	st := api.Status{Phase: phase, Progress: progress, Transfer: api.Transfer{FetchedBytes: f.res.FetchedBytes, ImageBytes: f.res.ImageBytes}}
	if vars != nil {
		if s, err := vars.Status(ctx); err == nil {
			st.Slots = fleet.SlotStates(s)
		}
	}
	f.rep.Report(st)
}

// reportInventory tells the fleet server what the device is, once a poll
// found it answering: the board, its layout, the kernel and what runs the
// update. A report that fails is said and forgotten.
func (f *flow) reportInventory(ctx context.Context) {
	attrs := map[string]string{"board": f.board.Name, "layout": f.p.layout, "updater": "lifeboat-ramdisk"}
	if f.kernel != "" {
		attrs["kernel"] = f.kernel
	}
	if err := f.fleet.ReportInventory(ctx, api.Inventory{Attributes: attrs}); err != nil {
		f.say("inventory: %v", err)
	}
}
