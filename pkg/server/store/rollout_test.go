package store

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/lifeboat-update/lifeboat/pkg/api"
	"github.com/lifeboat-update/lifeboat/pkg/server/store/storetest"
)

// TestRolloutAtScale creates a rollout over more devices than one INSERT
// carries (rolloutRows), with waves whose edges fall on either side of
// the first INSERT's end and one wave empty, then moves devices by
// reports: each device is in the wave its place in waveOrder gives it,
// and the waves' counts (rollout_waves) agree with the devices' states,
// also when the migration that made them counts them afresh.
func TestRolloutAtScale(t *testing.T) { storetest.Run(t, testRolloutAtScale) }

func testRolloutAtScale(t *testing.T, dsn string) {
	ctx := context.Background()
	s := openDB(t, dsn)
	n := 2*rolloutRows + 7
	ids := make([]string, n)
	ds := make([]Device, n)
	for i := range ds {
		ids[i] = fmt.Sprintf("scale-%05d", i)
		ds[i] = device(ids[i], 'a')
		ds[i].TokenSHA256 = fmt.Sprintf("%064x", i)
	}
	if err := s.RegisterDevices(ctx, ds, event("device.register_bulk", "")); err != nil {
		t.Fatal(err)
	}
	if err := s.AddReleases(ctx, []Release{{Board: "qemu-x86_64", Version: "2.0", Repository: "main", Created: t0, Indexes: []string{}}}, event("release.publish", "")); err != nil {
		t.Fatal(err)
	}
	waves := []Wave{{Count: rolloutRows - 1}, {Count: rolloutRows - 1}, {Count: rolloutRows + 1}, {Percent: 100}}
	ro, err := s.CreateRollout(ctx, Rollout{Board: "qemu-x86_64", Version: "2.0", Target: "", Waves: waves,
		SuccessThreshold: 0.5, ErrorThreshold: 0.5, Created: t0}, nil, event("rollout.create", ""))
	if err != nil {
		t.Fatal(err)
	}
	if want := []int{rolloutRows - 1, 0, 2, n - rolloutRows - 1}; !cmp.Equal(ro.Sizes, want) {
		t.Fatalf("CreateRollout: sizes %v, want %v", ro.Sizes, want)
	}
	order := slices.Clone(ids)
	waveOrder(order)
	wantWave := map[string]int{}
	next := 0
	for w, size := range ro.Sizes {
		for _, id := range order[next : next+size] {
			wantWave[id] = w
		}
		next += size
	}
	got, err := s.RolloutDevices(ctx, ro.ID)
	if err != nil || len(got) != n {
		t.Fatalf("RolloutDevices = %d devices, %v; want %d", len(got), err, n)
	}
	for _, d := range got {
		if d.Wave != wantWave[d.DeviceID] || d.State != Assigned {
			t.Fatalf("device %s: wave %d, %s; want wave %d (its place by SHA-256), assigned", d.DeviceID, d.Wave, d.State, wantWave[d.DeviceID])
		}
	}

	if _, err := s.SetRolloutState(ctx, ro.ID, Start, event("rollout.start", "")); err != nil {
		t.Fatal(err)
	}
	// In wave 1: 30 installing, 20 failed, 10 succeeded then reporting
	// failure (a succeeded device stays succeeded).
	report := func(id string, phase api.Phase, version string) {
		t.Helper()
		if err := s.ReportStatus(ctx, id, api.Status{Phase: phase, InstalledVersion: version}, t0.Add(time.Minute)); err != nil {
			t.Fatalf("ReportStatus(%s, %s) = %v", id, phase, err)
		}
	}
	for _, id := range order[:30] {
		report(id, api.PhaseDownloading, "1.0")
	}
	for _, id := range order[30:50] {
		report(id, api.PhaseFailed, "1.0")
	}
	for _, id := range order[50:60] {
		report(id, api.PhaseInstalled, "2.0")
		report(id, api.PhaseFailed, "2.0")
	}
	report(order[n-1], api.PhaseInstalled, "2.0") // its wave is not open: not moved
	checkWaves(t, s, ro.ID, []WaveProgress{
		{Size: rolloutRows - 1, Open: true, Assigned: rolloutRows - 61, Installing: 30, Succeeded: 10, Failed: 20},
		{Size: 0}, {Size: 2, Assigned: 2}, {Size: n - rolloutRows - 1, Assigned: n - rolloutRows - 1},
	})

	// The migration that made rollout_waves counts them again from the
	// devices' states, as it does for a database made before it.
	if _, err := s.db.ExecContext(ctx, `DROP TABLE rollout_waves`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.ExecContext(ctx, `DELETE FROM schema_migrations WHERE version = 5`); err != nil {
		t.Fatal(err)
	}
	again := openDB(t, dsn)
	checkWaves(t, again, ro.ID, []WaveProgress{
		{Size: rolloutRows - 1, Open: true, Assigned: rolloutRows - 61, Installing: 30, Succeeded: 10, Failed: 20},
		{Size: 0}, {Size: 2, Assigned: 2}, {Size: n - rolloutRows - 1, Assigned: n - rolloutRows - 1},
	})
}

// checkWaves compares rollout id's progress with want and with its
// devices counted one by one.
func checkWaves(t *testing.T, s *DB, id int64, want []WaveProgress) {
	t.Helper()
	ctx := context.Background()
	_, got, err := s.Rollout(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Rollout(%d) waves (-want +got):\n%s", id, diff)
	}
	ds, err := s.RolloutDevices(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	counted := make([]WaveProgress, len(got))
	for i := range counted {
		counted[i].Size, counted[i].Open = got[i].Size, got[i].Open
	}
	for _, d := range ds {
		if !d.State.valid() {
			t.Fatalf("device %s: state %q", d.DeviceID, d.State)
		}
		*counted[d.Wave].count(d.State)++
	}
	if diff := cmp.Diff(counted, got); diff != "" {
		t.Errorf("Rollout(%d) waves against its devices counted (-counted +got):\n%s", id, diff)
	}
}

// TestAssignmentForget checks that a read under way when a device is
// forgotten is not kept, for the device or for whether none has one,
// while other devices' reads are.
func TestAssignmentForget(t *testing.T) {
	c := newAssignmentCache(func() time.Time { return t0 })
	a := &Assignment{RolloutID: 1, Board: "b", Version: "2.0"}
	_, _, m, _ := c.lookup("dev-1")
	c.forget("dev-1")
	c.keep("dev-1", a, m, t0)
	c.keep("dev-2", a, m, t0)
	c.keepNone(true, m, t0)
	if _, ok, _, _ := c.lookup("dev-1"); ok {
		t.Error("dev-1's assignment read before it was forgotten is held")
	}
	if got, ok, _, noneKnown := c.lookup("dev-2"); !ok || got == nil || noneKnown {
		t.Errorf("dev-2 = %+v, held %v, none known %v; want its assignment held", got, ok, noneKnown)
	}
	_, _, m, _ = c.lookup("dev-3")
	c.keepNone(true, m, t0)
	c.forget("dev-1")
	if _, ok, _, noneKnown := c.lookup("dev-3"); ok || noneKnown {
		t.Errorf("after a device was forgotten: held %v, none known %v; want none known no more", ok, noneKnown)
	}
	_, _, m, _ = c.lookup("dev-3")
	c.keepNone(false, m, t0)
	c.forget("dev-1")
	if _, ok, _, noneKnown := c.lookup("dev-3"); ok || !noneKnown {
		t.Errorf("some device has one, then another was forgotten: held %v, none known %v; want it known that some has one", ok, noneKnown)
	}
	_, _, m, _ = c.lookup("dev-1")
	c.keep("dev-1", nil, m, t0)
	if got, ok, _, _ := c.lookup("dev-1"); !ok || got != nil {
		t.Errorf("dev-1 read after it was forgotten = %+v, held %v; want held, none", got, ok)
	}
}
