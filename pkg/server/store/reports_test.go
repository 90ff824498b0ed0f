package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lifeboat-update/lifeboat/pkg/api"
	"github.com/lifeboat-update/lifeboat/pkg/server/store/storetest"
)

// TestReportGroup writes a group of reports in one transaction: a report
// of an unknown device, and one whose request has ended, fail alone with
// their own errors; the others are written, and move their devices in
// their rollout.
func TestReportGroup(t *testing.T) { storetest.Run(t, testReportGroup) }

func testReportGroup(t *testing.T, dsn string) {
	ctx := context.Background()
	s := openDB(t, dsn)
	ro := rolloutOver(t, s, 4)
	ended, cancel := context.WithCancel(ctx)
	cancel()
	st := api.Status{Phase: api.PhaseInstalled, InstalledVersion: "2.0"}
	group := []*report{
		{ctx: ctx, id: "dev-0", st: st, status: `{"phase":"installed"}`, at: t0},
		{ctx: ctx, id: "nope", st: st, status: `{"phase":"installed"}`, at: t0},
		{ctx: ended, id: "dev-1", st: st, status: `{"phase":"installed"}`, at: t0},
		{ctx: ctx, id: "dev-2", st: st, status: `{"phase":"installed"}`, at: t0},
	}
	s.writeGroup(group)
	for i, want := range []error{nil, ErrNotFound, context.Canceled, nil} {
		if r := group[i]; !errors.Is(r.err, want) || (want == nil) != r.moved {
			t.Errorf("report %d (%s): %v, moved %v; want %v, moved %v", i, r.id, r.err, r.moved, want, want == nil)
		}
	}
	if err := group[1].err; err == nil || !strings.Contains(err.Error(), "device nope") {
		t.Errorf("report of an unknown device: %v, want an error naming it", err)
	}
	for id, want := range map[string]int{"dev-0": 1, "dev-1": 0, "dev-2": 1, "dev-3": 0} {
		if rs, err := s.Timeline(ctx, id, 0, 10); err != nil || len(rs) != want {
			t.Errorf("Timeline(%s) = %d reports, %v; want %d", id, len(rs), err, want)
		}
	}
	checkWaves(t, s, ro.ID, []WaveProgress{{Size: 4, Open: true, Assigned: 2, Succeeded: 2}})
}

// rolloutOver registers dev-0 to dev-(n-1) and starts a rollout of release
// 2.0 over them, one wave, which completes only when all succeed.
func rolloutOver(t *testing.T, s *DB, n int) Rollout {
	t.Helper()
	ctx := context.Background()
	ds := make([]Device, n)
	for i := range ds {
		ds[i] = device(fmt.Sprintf("dev-%d", i), 'a')
		ds[i].TokenSHA256 = fmt.Sprintf("%064x", i)
	}
	if err := s.RegisterDevices(ctx, ds, event("device.register_bulk", "")); err != nil {
		t.Fatal(err)
	}
	if err := s.AddReleases(ctx, []Release{{Board: "qemu-x86_64", Version: "2.0", Repository: "main", Created: t0, Indexes: []string{}}}, event("release.publish", "")); err != nil {
		t.Fatal(err)
	}
	ro, err := s.CreateRollout(ctx, Rollout{Board: "qemu-x86_64", Version: "2.0", Waves: []Wave{{Percent: 100}},
		SuccessThreshold: 1, ErrorThreshold: 0.5, Created: t0}, nil, event("rollout.create", ""))
	if err != nil {
		t.Fatal(err)
	}
	if ro, err = s.SetRolloutState(ctx, ro.ID, Start, event("rollout.start", "")); err != nil {
		t.Fatal(err)
	}
	return ro
}

// TestReportsAtOnce sends many reports at once, through ReportStatus:
// those of unknown devices fail alone, naming their device; every other
// is written, and the rollout its devices are in counts each and
// completes.
func TestReportsAtOnce(t *testing.T) { storetest.Run(t, testReportsAtOnce) }

func testReportsAtOnce(t *testing.T, dsn string) {
	ctx := context.Background()
	s := openDB(t, dsn)
	const n = 60
	ro := rolloutOver(t, s, n)
	errs := make([]error, 2*n)
	var wg sync.WaitGroup
	for i := range 2 * n {
		id := fmt.Sprintf("dev-%d", i/2)
		st := api.Status{Phase: api.PhaseDownloading, InstalledVersion: "1.0"}
		if i%2 == 1 {
			id = fmt.Sprintf("unknown-%d", i/2)
			st = api.Status{Phase: api.PhaseInstalled, InstalledVersion: "2.0"}
		}
		wg.Go(func() { errs[i] = s.ReportStatus(ctx, id, st, t0.Add(time.Duration(i))) })
	}
	wg.Wait()
	for i, err := range errs {
		if i%2 == 0 && err != nil {
			t.Errorf("report %d of dev-%d: %v", i, i/2, err)
		}
		if want := fmt.Sprintf("device unknown-%d", i/2); i%2 == 1 && (!errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), want)) {
			t.Errorf("report %d of unknown-%d: %v, want ErrNotFound naming it", i, i/2, err)
		}
	}
	checkWaves(t, s, ro.ID, []WaveProgress{{Size: n, Open: true, Installing: n}})
	for i := range n {
		wg.Go(func() {
			errs[i] = s.ReportStatus(ctx, fmt.Sprintf("dev-%d", i), api.Status{Phase: api.PhaseInstalled, InstalledVersion: "2.0"}, t0.Add(time.Hour))
		})
	}
	wg.Wait()
	for i, err := range errs[:n] {
		if err != nil {
			t.Errorf("installed report of dev-%d: %v", i, err)
		}
	}
	checkWaves(t, s, ro.ID, []WaveProgress{{Size: n, Open: true, Succeeded: n}})
	if got, _, err := s.Rollout(ctx, ro.ID); err != nil || got.State != Completed {
		t.Errorf("rollout after every device succeeded: %s, %v; want completed", got.State, err)
	}
	for i := range n {
		if rs, err := s.Timeline(ctx, fmt.Sprintf("dev-%d", i), 0, 10); err != nil || len(rs) != 2 {
			t.Fatalf("Timeline(dev-%d) = %d reports, %v; want 2", i, len(rs), err)
		}
	}
}
