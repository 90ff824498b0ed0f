package release_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lifeboat-update/lifeboat/pkg/durable"
	"github.com/lifeboat-update/lifeboat/pkg/install"
	"github.com/lifeboat-update/lifeboat/pkg/release"
	"github.com/lifeboat-update/lifeboat/pkg/store"
)

// TestPlanVersion plans the version a fleet server names rather than the
// newest: it must be signed for this board, and never older than what is
// installed.
func TestPlanVersion(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	for _, v := range []string{"1.0", "2.0", "3.0"} {
		f.publish(testBoard, v)
	}
	f.publish("other-board", "4.0")
	d := f.newDevice(durable.OS(t.TempDir()))
	classes := []string{"rootfs"}

	p, err := d.client.PlanVersion(t.Context(), classes, "2.0")
	if err != nil || p.Version != "2.0" {
		t.Fatalf("PlanVersion(2.0) = %+v, %v; want the plan of 2.0", p, err)
	}
	slot := filepath.Join(t.TempDir(), "rootfs-b")
	res, err := install.Install(t.Context(), d.client, map[string]string{"rootfs": slot}, install.Options{Stores: []store.Store{f.store}, Version: "2.0"})
	if err != nil || res.Version != "2.0" {
		t.Fatalf("install.Install(Version 2.0) = %+v, %v; want 2.0 installed", res, err)
	}
	f.checkSlot(slot, testBoard, "2.0")
	if v, err := d.client.InstalledVersion(); err != nil || v != "2.0" {
		t.Errorf("InstalledVersion() = %q, %v; want 2.0", v, err)
	}

	for _, tc := range []struct {
		version string
		want    error
		attack  bool
		text    string
	}{
		{"2.0", release.ErrUpToDate, false, "release 2.0"},
		{"1.0", release.ErrRollback, true, "release 1.0 is older than the installed 2.0"},
		{"9.9", release.ErrNoRelease, false, `release "9.9" of board lifeboat-test is not in the signed targets`},
		{"4.0", release.ErrNoRelease, false, "it lists 1.0, 2.0, 3.0"},
	} {
		_, err := d.client.PlanVersion(t.Context(), classes, tc.version)
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) {
			t.Errorf("PlanVersion(%s) = %v, want an error wrapping %q that says %q", tc.version, err, tc.want, tc.text)
		}
		var ae *release.AttackError
		if errors.As(err, &ae) != tc.attack {
			t.Errorf("PlanVersion(%s) = %v: an attack is %v, want %v", tc.version, err, !tc.attack, tc.attack)
		}
	}
	// "" is the newest, as Plan.
	if p, err := d.client.PlanVersion(t.Context(), classes, ""); err != nil || p.Version != "3.0" {
		t.Errorf("PlanVersion(\"\") = %+v, %v; want the plan of 3.0", p, err)
	}

	// A board with no release at all is still the wrong board.
	other := f.newDevice(durable.OS(t.TempDir()))
	other.client.Board = "no-such-board"
	if _, err := other.client.PlanVersion(t.Context(), classes, "1.0"); !errors.Is(err, release.ErrWrongBoard) {
		t.Errorf("PlanVersion(1.0) on a board with no release = %v, want %v", err, release.ErrWrongBoard)
	}
}
