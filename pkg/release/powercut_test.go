package release_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/lifeboat-update/lifeboat/pkg/durable"
	"github.com/lifeboat-update/lifeboat/pkg/release"
)

// rebootModes are the ways a cut can leave the state partition: the cache
// lost, the cache written back in full, or the directory updates written
// back without the file data (a journal that committed renames only).
var rebootModes = []struct {
	name   string
	reboot func(c *durable.Crash) *durable.Crash
}{
	{"cache lost", (*durable.Crash).Reboot},
	{"cache written back", func(c *durable.Crash) *durable.Crash {
		return c.RebootWith(durable.RebootOptions{
			File: func(_ string, v [][]byte) []byte { return v[len(v)-1] },
			Dir:  func(_ string, n int) int { return n - 1 },
		})
	}},
	{"renames written back, data lost", func(c *durable.Crash) *durable.Crash {
		return c.RebootWith(durable.RebootOptions{
			Dir: func(_ string, n int) int { return n - 1 },
		})
	}},
}

// rotate replaces the keys of role with a new one.
func (f *fixture) rotate(role string) {
	f.t.Helper()
	next := f.newKey(role + "-rotated")
	if err := f.repo.Rotate(role, []release.Signer{next}, 1, f.keys); err != nil {
		f.t.Fatalf("Rotate(%s) = %v, want nil", role, err)
	}
	f.keys = f.keySet(role, next)
}

// TestPowerCut cuts the power at every step of the install of 2.0 on a
// device whose trusted state is on a Crash, and checks what survives.
func TestPowerCut(t *testing.T) {
	tests := []struct {
		name   string
		before func(f *fixture) // on the release side, before 2.0
	}{
		{"new release", func(f *fixture) {}},
		{"timestamp and root keys rotated", func(f *fixture) {
			f.rotate(release.RoleTimestamp)
			f.rotate(release.RoleRoot)
		}},
		{"targets key rotated", func(f *fixture) { f.rotate(release.RoleTargets) }},
		{"snapshot key rotated", func(f *fixture) { f.rotate(release.RoleSnapshot) }},
	}
	total := 0
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, fixtureOptions{})
			f.publish(testBoard, "1.0")
			first := durable.NewCrash()
			d := f.newDevice(first)
			d.mustInstall(filepath.Join(t.TempDir(), "rootfs-a"), "1.0")
			// seed holds the durable state after 1.0; each Reboot of it is
			// a fresh copy.
			seed := first.Reboot()
			if v, err := release.InstalledVersion(seed); err != nil || v != "1.0" {
				t.Fatalf("InstalledVersion() after installing 1.0 = %q, %v; want 1.0", v, err)
			}
			tc.before(f)
			f.publish(testBoard, "2.0")

			count := seed.Reboot()
			slot := filepath.Join(t.TempDir(), "rootfs-b")
			if _, err := installWith(f.client(count), f.store, map[string]string{"rootfs": slot}); err != nil {
				t.Fatalf("install.Install(2.0) without a cut = %v, want nil", err)
			}
			f.checkSlot(slot, testBoard, "2.0")
			steps := count.Steps()
			t.Logf("installing 2.0 takes %d steps on the state partition", steps)

			for cut := 0; cut <= steps; cut++ {
				for _, mode := range rebootModes {
					total++
					t.Run(fmt.Sprintf("cut after %d/%s", cut, mode.name), func(t *testing.T) {
						checkPowerCut(t, f, seed.Reboot(), cut, steps, mode.reboot)
					})
				}
			}
		})
	}
	t.Logf("%d cut points exercised, over %d reboot modes", total/len(rebootModes), len(rebootModes))
}

// checkPowerCut installs 2.0 on state with the power cut after cut steps,
// reboots, and checks the device kept its trust and can finish.
func checkPowerCut(t *testing.T, f *fixture, state *durable.Crash, cut, steps int, reboot func(*durable.Crash) *durable.Crash) {
	slot := filepath.Join(t.TempDir(), "rootfs-b")
	slots := map[string]string{"rootfs": slot}
	state.CutAfter(cut)
	_, err := installWith(f.client(state), f.store, slots)
	switch {
	case cut < steps && !errors.Is(err, durable.ErrPowerCut):
		t.Errorf("install.Install(2.0) with the power cut after step %d of %d = %v, want an error wrapping %v", cut, steps, err, durable.ErrPowerCut)
	case cut == steps && err != nil:
		t.Errorf("install.Install(2.0) with the power cut after its last step = %v, want nil", err)
	}
	completed := err == nil

	after := reboot(state)
	// (b) The recorded version is never below 1.0, and 2.0 only if the
	// slot holds 2.0.
	v, err := release.InstalledVersion(after)
	if err != nil {
		t.Fatalf("InstalledVersion() after the reboot = %v, want nil", err)
	}
	switch v {
	case "1.0":
		if completed {
			t.Errorf("InstalledVersion() after a completed install of 2.0 = 1.0, want 2.0")
		}
	case "2.0":
		if _, err := os.Stat(slot); err != nil {
			t.Errorf("InstalledVersion() = 2.0 but the slot: %v", err)
		} else {
			f.checkSlot(slot, testBoard, "2.0")
		}
	default:
		t.Errorf("InstalledVersion() after the reboot = %q, want 1.0 or 2.0", v)
	}

	// (a) The device kept a trusted root it can refresh from.
	c := f.client(after)
	if _, err := c.Refresh(t.Context()); err != nil {
		t.Errorf("Refresh() after the reboot = %v, want nil", err)
	}
	if got, _ := release.InstalledVersion(after); got != v {
		t.Errorf("InstalledVersion() after Refresh() = %q, want %q as before", got, v)
	}

	// (c) Installing again finishes 2.0.
	res, err := installWith(c, f.store, slots)
	switch {
	case v == "2.0" && errors.Is(err, release.ErrUpToDate):
	case err != nil:
		t.Errorf("install.Install(2.0) after the reboot = %v, want nil", err)
	case res.Version != "2.0":
		t.Errorf("install.Install() after the reboot installed %s, want 2.0", res.Version)
	}
	if err == nil || v == "2.0" {
		f.checkSlot(slot, testBoard, "2.0")
	}
	if got, err := release.InstalledVersion(after); got != "2.0" || err != nil {
		t.Errorf("InstalledVersion() after installing again = %q, %v; want 2.0", got, err)
	}
}

// failingFetcher fails every fetch of one name, as a network that drops.
type failingFetcher struct {
	release.Fetcher
	name string
}

var errNetwork = errors.New("network unreachable")

func (ff failingFetcher) Fetch(ctx context.Context, name string, max int64) ([]byte, error) {
	if name == ff.name {
		return nil, fmt.Errorf("GET %s: %w", name, errNetwork)
	}
	return ff.Fetcher.Fetch(ctx, name, max)
}

// TestRefreshInterrupted interrupts a refresh right after the device took a
// new root (the network drops before the timestamp), and checks the next
// refresh, with the network back, completes: a new root must never leave
// the device unable to load its own trusted state.
func TestRefreshInterrupted(t *testing.T) {
	for _, role := range []string{release.RoleTimestamp, release.RoleSnapshot, release.RoleTargets, release.RoleRoot} {
		t.Run(role+" key rotated", func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, fixtureOptions{})
			f.publish(testBoard, "1.0")
			d := f.newDevice(durable.OS(t.TempDir()))
			d.mustInstall(filepath.Join(t.TempDir(), "rootfs-a"), "1.0")
			f.rotate(role)
			f.publish(testBoard, "2.0")

			dir := d.client.Fetch
			d.client.Fetch = failingFetcher{Fetcher: dir, name: metaName("timestamp.json")}
			if _, err := d.client.Refresh(t.Context()); !errors.Is(err, errNetwork) {
				t.Fatalf("Refresh() with the network down after the root = %v, want %v", err, errNetwork)
			}
			d.client.Fetch = dir
			d.mustInstall(filepath.Join(t.TempDir(), "rootfs-b"), "2.0")
		})
	}
}
