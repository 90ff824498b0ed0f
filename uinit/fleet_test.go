package main

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/lifeboat-update/lifeboat/pkg/api"
	"github.com/lifeboat-update/lifeboat/pkg/bootenv"
	"github.com/lifeboat-update/lifeboat/pkg/durable"
	"github.com/lifeboat-update/lifeboat/pkg/fleet/fleettest"
	"github.com/lifeboat-update/lifeboat/pkg/identity"
	"github.com/lifeboat-update/lifeboat/pkg/server/servertest"
	"github.com/lifeboat-update/lifeboat/pkg/slot"
)

// giveIdentity writes an identity naming server on the device's ESP, as
// the flash mode does, and returns it.
func (d *device) giveIdentity(server string) *identity.Identity {
	d.t.Helper()
	id, err := identity.New("dev-1", d.board.Name, rand.Reader)
	if err != nil {
		d.t.Fatal(err)
	}
	id.Server = server
	if err := identity.Write(durable.OS(d.esp), id); err != nil {
		d.t.Fatal(err)
	}
	return id
}

// phasesOf lists a timeline's phases, each run of the same phase once.
func phasesOf(tl []api.TimelineEntry) []string {
	var out []string
	for _, e := range tl {
		p := string(e.Status.Phase)
		if len(out) == 0 || out[len(out)-1] != p {
			out = append(out, p)
		}
	}
	return out
}

// TestFleetUpdate runs the A/B update against a real fleet server on
// loopback: nothing assigned, nothing written; a rollout of release 2
// (not the newest, 3), exactly 2 installed from the repository the
// server names, reported from downloading to rebooting.
func TestFleetUpdate(t *testing.T) {
	r := newRepo(t)
	for _, v := range []string{"1", "2", "3"} {
		r.publish(v)
	}
	fs, err := servertest.Start(t.Context(), servertest.Options{Dir: t.TempDir(), Root: r.root()})
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	if err := fs.Publish(t.Context(), "main", r.dir); err != nil {
		t.Fatal(err)
	}
	d := newDevice(t, r.root(), bootenv.Vars{slot.OrderVar: "A B recovery", slot.LeftVar("A"): "3", slot.LeftVar("B"): "0"})
	id := d.giveIdentity(fs.URL)
	reg, err := id.Registration("1")
	if err != nil {
		t.Fatal(err)
	}
	if err := fs.Register(t.Context(), reg); err != nil {
		t.Fatal(err)
	}
	// A repository on the command line that must not be used while the
	// server answers.
	decoy := httptest.NewServer(http.NotFoundHandler())
	defer decoy.Close()

	before := d.env()
	out, res := d.run(&fakeSources{}, "lifeboat.repo="+decoy.URL+"/ lifeboat.after=poweroff")
	if !res.OK || !res.UpToDate || res.FetchedBytes != 0 || res.Server != fs.URL+"/" {
		t.Fatalf("with nothing assigned: result %+v\n%s", res, out)
	}
	if !strings.Contains(out, "the fleet server assigns no release") {
		t.Errorf("the console does not say nothing was assigned:\n%s", out)
	}
	if got := d.env(); fmt.Sprint(got) != fmt.Sprint(before) {
		t.Errorf("grubenv changed with nothing assigned: %v -> %v", before, got)
	}
	tl, err := fs.Timeline(t.Context(), "dev-1", 0)
	if err != nil || len(tl) != 1 || tl[0].Status.Phase != api.PhaseIdle || len(tl[0].Status.Slots) != 2 {
		t.Fatalf("timeline with nothing assigned = %+v, %v; want one idle report with slots A and B", tl, err)
	}
	seen := tl[0].ID
	dev, err := fs.Device(t.Context(), "dev-1")
	wantAttrs := map[string]string{"board": "qemu-x86_64", "layout": "ab", "kernel": testKernel, "updater": "lifeboat-ramdisk"}
	if err != nil || fmt.Sprint(dev.Attributes) != fmt.Sprint(wantAttrs) {
		t.Errorf("inventory after a poll = %v, %v; want %v", dev.Attributes, err, wantAttrs)
	}

	ro, err := fs.StartRollout(t.Context(), "qemu-x86_64", "2", "id=dev-1")
	if err != nil {
		t.Fatal(err)
	}
	out, res = d.run(&fakeSources{}, "lifeboat.repo="+decoy.URL+"/ lifeboat.after=reboot")
	if !res.OK || res.Version != "2" || res.Slot != "B" || res.Source != fs.URL+"/repo/main/" {
		t.Fatalf("with release 2 assigned: result %+v\n%s", res, out)
	}
	im, want := r.slotContent("2")
	if !bytes.Equal(d.slotBytes("rootfs-b", im.Size), want) {
		t.Fatal("slot B does not hold release 2")
	}
	if fs.ChunkBytes() != res.FetchedBytes {
		t.Errorf("the server sent %d bytes of chunks, the result says %d fetched", fs.ChunkBytes(), res.FetchedBytes)
	}
	tl, err = fs.Timeline(t.Context(), "dev-1", seen)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(phasesOf(tl), " "), "downloading verifying installing rebooting"; got != want {
		t.Errorf("timeline phases %q, want %q", got, want)
	}
	downloads := 0
	for _, e := range tl {
		if e.Status.InstalledVersion != "unknown" {
			t.Errorf("report %+v: want the installed version the state had (none: unknown), not 2 before it boots", e.Status)
		}
		if e.Status.Phase == api.PhaseDownloading {
			downloads++
		}
	}
	if downloads > 12 {
		t.Errorf("%d downloading reports: want about one every 10%%, not one per chunk", downloads)
	}
	last := tl[len(tl)-1].Status
	if last.Transfer.FetchedBytes != res.FetchedBytes || last.Transfer.ImageBytes != res.ImageBytes {
		t.Errorf("rebooting carries transfer %+v, want the result's %d/%d", last.Transfer, res.FetchedBytes, res.ImageBytes)
	}
	if b := slotState(last.Slots, "B"); b.State != "trying" || b.TriesLeft != slot.DefaultTries {
		t.Errorf("rebooting: slot B %+v, want trying with %d tries", b, slot.DefaultTries)
	}
	if ro, err = fs.Rollout(t.Context(), ro.ID); err != nil || ro.Progress[0].Installing != 1 {
		t.Errorf("rollout %+v, %v: want the device installing until the new system reports", ro, err)
	}
}

func slotState(slots []api.SlotState, name string) api.SlotState {
	for _, s := range slots {
		if s.Name == name {
			return s
		}
	}
	return api.SlotState{}
}

// TestFleetUnreachable: a fleet server that does not answer bricks
// nothing: the console says so and the update falls back to the command
// line's repository and its newest release.
func TestFleetUnreachable(t *testing.T) {
	r := newRepo(t)
	r.publish("1")
	r.publish("2")
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close()
	repo := httptest.NewServer(http.FileServer(http.Dir(r.dir)))
	defer repo.Close()
	d := newDevice(t, r.root(), bootenv.Vars{slot.OrderVar: "A B recovery", slot.LeftVar("A"): "3", slot.LeftVar("B"): "0"})
	d.giveIdentity(gone.URL)
	out, res := d.run(&fakeSources{}, "lifeboat.repo="+repo.URL+"/ lifeboat.after=reboot")
	if !res.OK || res.Version != "2" || res.Source != repo.URL+"/" {
		t.Fatalf("result %+v\n%s", res, out)
	}
	if !strings.Contains(out, "falling back to the repository of the command line") || !strings.Contains(out, "reporting downloading to the fleet server") {
		t.Errorf("the console does not say the server was not reached, nor that reports failed:\n%s", out)
	}
}

// TestFleetFailed: a release the signed metadata does not hold is
// refused, and the failure reported with its check; lifeboat.server=
// overrides the identity's server.
func TestFleetFailed(t *testing.T) {
	r := newRepo(t)
	r.publish("1")
	repo := httptest.NewServer(http.FileServer(http.Dir(r.dir)))
	defer repo.Close()
	ff := &fleettest.Server{}
	ff.SetPoll(api.Poll{Release: &api.Release{Version: "9", RepositoryURL: repo.URL + "/"}, IntervalSeconds: 60})
	srv := httptest.NewServer(ff)
	defer srv.Close()
	d := newDevice(t, r.root(), bootenv.Vars{slot.OrderVar: "A B recovery", slot.LeftVar("A"): "3", slot.LeftVar("B"): "0"})
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close()
	d.giveIdentity(gone.URL) // not asked: lifeboat.server= overrides it
	before := d.env()
	out, res := d.run(&fakeSources{}, "lifeboat.server="+srv.URL+" lifeboat.onfail=poweroff")
	if res.OK || res.Check != "install" || !strings.Contains(res.Error, `release "9"`) {
		t.Fatalf("result %+v, want a failure naming release 9\n%s", res, out)
	}
	if got := d.env(); fmt.Sprint(got) != fmt.Sprint(before) {
		t.Errorf("grubenv changed: %v -> %v", before, got)
	}
	reports := ff.Reports()
	if n := len(reports); n == 0 || reports[n-1].Phase != api.PhaseFailed || !strings.HasPrefix(reports[n-1].Error, "install: ") || !strings.Contains(reports[n-1].Error, `"9"`) {
		t.Errorf("reports %+v, want the last failed, naming the check and release 9", reports)
	}
}

// TestFleetInPlace: the one-slot layout installs the release the server
// assigns, and reports it.
func TestFleetInPlace(t *testing.T) {
	r := newRepo(t)
	r.publish("1")
	r.publish("2")
	r.publish("3")
	repo := newChunkServer(t, r.dir)
	ff := &fleettest.Server{}
	ff.SetPoll(api.Poll{Release: &api.Release{Version: "2", RepositoryURL: repo.URL + "/"}, IntervalSeconds: 60})
	srv := httptest.NewServer(ff)
	defer srv.Close()
	d := newSmallDevice(t, r)
	d.giveIdentity(srv.URL)
	res := d.runWith(&fakeSources{}, smallCmdline, nil)
	if !res.OK || res.Version != "2" || res.Slot != "A" {
		t.Fatalf("result %+v", res)
	}
	im, want := r.slotContent("2")
	if !bytes.Equal(d.slotBytes("rootfs", im.Size), want) {
		t.Fatal("the slot does not hold release 2")
	}
	if got, want := fmt.Sprint(ff.Phases()), "[downloading verifying installing rebooting]"; got != want {
		t.Errorf("reported phases %s, want %s", got, want)
	}
	if inv := ff.Inventory(); inv == nil || inv.Attributes["layout"] != "small" || inv.Attributes["kernel"] != testKernel {
		t.Errorf("inventory %+v, want layout small and kernel %s", inv, testKernel)
	}

	// Nothing assigned: nothing written.
	ff.SetPoll(api.Poll{IntervalSeconds: 60})
	res = d.runWith(&fakeSources{}, smallCmdline, nil)
	if !res.OK || !res.UpToDate || res.FetchedBytes != 0 {
		t.Errorf("with nothing assigned: result %+v", res)
	}
}

func TestParseServer(t *testing.T) {
	p, err := parseParams("lifeboat.server=https://fleet.example/")
	if err != nil || p.server != "https://fleet.example/" {
		t.Errorf("parseParams(lifeboat.server) = %+v, %v", p, err)
	}
	for _, bad := range []string{"lifeboat.server=fleet.example", "lifeboat.server=ftp://fleet.example/", "lifeboat.server="} {
		if _, err := parseParams(bad); err == nil || !strings.Contains(err.Error(), "lifeboat.server") {
			t.Errorf("parseParams(%q) = %v, want an error naming lifeboat.server", bad, err)
		}
	}
}
