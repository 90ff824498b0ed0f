package store

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/lifeboat-update/lifeboat/pkg/api"
)

func TestResolveWaves(t *testing.T) {
	for _, tc := range []struct {
		waves []Wave
		n     int
		want  []int
	}{
		{[]Wave{{Percent: 1}, {Percent: 10}, {Percent: 100}}, 100, []int{1, 9, 90}},
		{[]Wave{{Percent: 1}, {Percent: 10}, {Percent: 100}}, 3, []int{1, 0, 2}},
		{[]Wave{{Count: 5}, {Percent: 50}, {Percent: 100}}, 100, []int{5, 45, 50}},
		{[]Wave{{Count: 50}, {Percent: 100}}, 10, []int{10, 0}},
		{[]Wave{{Percent: 100}}, 7, []int{7}},
	} {
		if got := ResolveWaves(tc.waves, tc.n); !cmp.Equal(got, tc.want) {
			t.Errorf("ResolveWaves(%+v, %d) = %v, want %v", tc.waves, tc.n, got, tc.want)
		}
	}
}

func TestAdvance(t *testing.T) {
	r := Rollout{State: Running, SuccessThreshold: 0.8, ErrorThreshold: 0.2}
	w := func(size, assigned, installing, succeeded, failed int) WaveProgress {
		return WaveProgress{Size: size, Assigned: assigned, Installing: installing, Succeeded: succeeded, Failed: failed}
	}
	for _, tc := range []struct {
		name  string
		open  int
		state RolloutState
		waves []WaveProgress
		want  RolloutState
		wOpen int
	}{
		{"wave 1 under way", 0, Running, []WaveProgress{w(10, 5, 0, 5, 0), w(10, 10, 0, 0, 0)}, Running, 0},
		{"wave 1 at the success threshold", 0, Running, []WaveProgress{w(10, 2, 0, 8, 0), w(10, 10, 0, 0, 0)}, Running, 1},
		{"an empty wave opens the next", 0, Running, []WaveProgress{w(10, 0, 0, 10, 0), w(0, 0, 0, 0, 0), w(5, 5, 0, 0, 0)}, Running, 2},
		{"failures at the error threshold go on", 0, Running, []WaveProgress{w(10, 6, 0, 2, 2), w(10, 10, 0, 0, 0)}, Running, 0},
		{"failures over it halt", 0, Running, []WaveProgress{w(10, 5, 0, 2, 3), w(10, 10, 0, 0, 0)}, Halted, 0},
		{"counted over the open waves", 1, Running, []WaveProgress{w(10, 0, 0, 10, 0), w(10, 5, 0, 0, 5), w(10, 10, 0, 0, 0)}, Halted, 1},
		{"last wave done", 1, Running, []WaveProgress{w(10, 0, 0, 10, 0), w(10, 0, 0, 9, 1)}, Completed, 1},
		{"last wave still installing", 1, Running, []WaveProgress{w(10, 0, 0, 10, 0), w(10, 0, 1, 9, 0)}, Running, 1},
		{"paused does not move", 0, Paused, []WaveProgress{w(10, 0, 0, 10, 0), w(10, 10, 0, 0, 0)}, Paused, 0},
	} {
		r.State, r.OpenWave = tc.state, tc.open
		got, open, reason := advance(r, tc.waves)
		if got != tc.want || open != tc.wOpen || (got == Halted) != (reason != "") {
			t.Errorf("%s: advance = %s, wave %d, %q; want %s, wave %d", tc.name, got, open, reason, tc.want, tc.wOpen)
		}
	}
}

func TestDeviceState(t *testing.T) {
	for _, tc := range []struct {
		phase     api.Phase
		installed string
		want      DeviceState
	}{
		{api.PhaseDownloading, "1.0", Installing},
		{api.PhaseRebooting, "1.0", Installing},
		{api.PhaseFailed, "1.0", Failed},
		{api.PhaseInstalled, "2.0", Succeeded},
		{api.PhaseIdle, "2.0", Succeeded},
		{api.PhaseIdle, "1.0", ""},
		{api.PhaseInstalled, "1.5", ""},
	} {
		if got := deviceState(api.Status{Phase: tc.phase, InstalledVersion: tc.installed}, "2.0"); got != tc.want {
			t.Errorf("deviceState(%s, running %s) in a rollout of 2.0 = %q, want %q", tc.phase, tc.installed, got, tc.want)
		}
	}
}
