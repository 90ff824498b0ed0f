package store

import (
	"context"
	"testing"
	"time"

	"github.com/lifeboat-update/lifeboat/pkg/api"
	"github.com/lifeboat-update/lifeboat/pkg/server/store/storetest"
)

// TestSeen: a time Seen records is read back through the same store at
// once, written by flushSeen (another store on the database then sees it),
// never over a later one, and written by Close; a device that is not there
// is no error and no row.
func TestSeen(t *testing.T) { storetest.Run(t, testSeen) }

func testSeen(t *testing.T, dsn string) {
	ctx := context.Background()
	s := openDB(t, dsn)
	other := openDB(t, dsn) // a second server on the same database
	for i, id := range []string{"dev-1", "dev-2", "dev-3"} {
		if err := s.RegisterDevice(ctx, device(id, byte('a'+i)), event("device.register", id)); err != nil {
			t.Fatal(err)
		}
	}
	lastSeen := func(st *DB, id string) time.Time {
		t.Helper()
		d, err := st.Device(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return d.LastSeen
	}
	t1, t2, t3 := t0.Add(time.Minute), t0.Add(2*time.Minute), t0.Add(3*time.Minute)
	for _, c := range []struct {
		id string
		at time.Time
	}{{"dev-1", t2}, {"dev-1", t1}, {"dev-2", t1}, {"nope", t1}} {
		if err := s.Seen(ctx, c.id, c.at); err != nil {
			t.Fatalf("Seen(%s, %v) = %v", c.id, c.at, err)
		}
	}
	if got := lastSeen(s, "dev-1"); !got.Equal(t2) {
		t.Errorf("last seen of dev-1 before the write = %v, want %v (the later of two)", got, t2)
	}
	if got := lastSeen(other, "dev-1"); !got.IsZero() {
		t.Errorf("last seen of dev-1 by another store before the write = %v, want none yet", got)
	}
	if err := s.flushSeen(ctx); err != nil {
		t.Fatalf("flushSeen = %v (a device that is not there is no error)", err)
	}
	if got := lastSeen(other, "dev-1"); !got.Equal(t2) {
		t.Errorf("last seen of dev-1 by another store after the write = %v, want %v", got, t2)
	}
	if got := lastSeen(other, "dev-2"); !got.Equal(t1) {
		t.Errorf("last seen of dev-2 by another store after the write = %v, want %v", got, t1)
	}
	if _, err := other.Device(ctx, "nope"); err == nil {
		t.Error("the write added device nope")
	}

	// A status report at t3 writes its time at once; a poll recorded
	// earlier (t2) does not go back over it.
	s.Seen(ctx, "dev-2", t2)
	if err := s.ReportStatus(ctx, "dev-2", api.Status{Phase: api.PhaseIdle, InstalledVersion: "1.0"}, t3); err != nil {
		t.Fatal(err)
	}
	if err := s.flushSeen(ctx); err != nil {
		t.Fatal(err)
	}
	if got := lastSeen(other, "dev-2"); !got.Equal(t3) {
		t.Errorf("last seen of dev-2 = %v, want %v: the status report's, not the earlier poll's", got, t3)
	}

	// A search writes what is recorded first, for its filter.
	s.Seen(ctx, "dev-3", t3)
	ds, err := s.SearchDevices(ctx, nil, t3, "dev-2", 10)
	if err != nil || len(ds) != 1 || !ds[0].LastSeen.Equal(t3) {
		t.Errorf("SearchDevices after dev-2 = %+v, %v; want dev-3 seen at %v", ds, err, t3)
	}
	if got := lastSeen(other, "dev-3"); !got.Equal(t3) {
		t.Errorf("last seen of dev-3 by another store after a search = %v, want %v", got, t3)
	}

	// Close writes what is left.
	t4 := t3.Add(time.Minute)
	s.Seen(ctx, "dev-1", t4)
	if err := s.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	if got := lastSeen(other, "dev-1"); !got.Equal(t4) {
		t.Errorf("last seen of dev-1 after Close = %v, want %v", got, t4)
	}
}

// TestAssignmentOtherServer: a rollout started through another server
// sharing the database is seen once the assignments held are older than
// AssignmentTTL; one started through the same store, at once.
func TestAssignmentOtherServer(t *testing.T) { storetest.Run(t, testAssignmentOtherServer) }

func testAssignmentOtherServer(t *testing.T, dsn string) {
	ctx := context.Background()
	s, other := openDB(t, dsn), openDB(t, dsn)
	now := t0
	s.assign.now = func() time.Time { return now }
	if err := s.RegisterDevice(ctx, device("dev-1", 'a'), event("device.register", "dev-1")); err != nil {
		t.Fatal(err)
	}
	if err := s.AddReleases(ctx, []Release{{Board: "qemu-x86_64", Version: "2.0", Repository: "main", Created: t0, Indexes: []string{}}}, event("release.publish", "")); err != nil {
		t.Fatal(err)
	}
	if a, err := s.Assignment(ctx, "dev-1"); a != nil || err != nil {
		t.Fatalf("Assignment before any rollout = %+v, %v; want none", a, err)
	}
	ro, err := other.CreateRollout(ctx, Rollout{Board: "qemu-x86_64", Version: "2.0", Target: "", Waves: []Wave{{Percent: 100}},
		SuccessThreshold: 1, ErrorThreshold: 1, Created: t0}, nil, event("rollout.create", ""))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.SetRolloutState(ctx, ro.ID, Start, event("rollout.start", "")); err != nil {
		t.Fatal(err)
	}
	if a, _ := s.Assignment(ctx, "dev-1"); a != nil {
		t.Errorf("Assignment right after another server started the rollout = %+v, want none yet (held)", a)
	}
	now = now.Add(AssignmentTTL)
	if a, err := s.Assignment(ctx, "dev-1"); err != nil || a == nil || a.Version != "2.0" {
		t.Errorf("Assignment %v later = %+v, %v; want release 2.0", AssignmentTTL, a, err)
	}
	if _, err := s.SetRolloutState(ctx, ro.ID, Pause, event("rollout.pause", "")); err != nil {
		t.Fatal(err)
	}
	if a, _ := s.Assignment(ctx, "dev-1"); a != nil {
		t.Errorf("Assignment right after this store paused the rollout = %+v, want none", a)
	}
}
