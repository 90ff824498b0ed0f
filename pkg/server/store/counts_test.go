package store

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/lifeboat-update/lifeboat/pkg/api"
)

// TestDeviceCounts: devices counted by the phase of their last report
// ("none" before one), installed version and board; revoked ones too.
func TestDeviceCounts(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	ev := Event{At: t0, Actor: "cli", Action: "setup"}
	got, err := s.DeviceCounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Counts{ByStatus: map[string]int{}, ByVersion: map[string]int{}, ByBoard: map[string]int{}}); !cmp.Equal(got, want) {
		t.Errorf("DeviceCounts of no device = %+v, want %+v", got, want)
	}
	for i, id := range []string{"a", "b", "c", "d"} {
		d := device(id, byte('0'+i))
		if id == "d" {
			d.Board = "rpi4"
		}
		if err := s.RegisterDevice(ctx, d, ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.RevokeDevice(ctx, "c", ev); err != nil {
		t.Fatal(err)
	}
	for id, st := range map[string]api.Status{
		"a": {Phase: api.PhaseInstalled, InstalledVersion: "2.0"},
		"b": {Phase: api.PhaseFailed, Error: "disk full", InstalledVersion: "1.0"},
	} {
		if err := s.ReportStatus(ctx, id, st, t0); err != nil {
			t.Fatal(err)
		}
	}
	got, err = s.DeviceCounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := Counts{Total: 4,
		ByStatus:  map[string]int{"installed": 1, "failed": 1, "none": 2},
		ByVersion: map[string]int{"2.0": 1, "1.0": 3},
		ByBoard:   map[string]int{"qemu-x86_64": 3, "rpi4": 1}}
	if !cmp.Equal(got, want) {
		t.Errorf("DeviceCounts = %+v, want %+v", got, want)
	}
}
