package store

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"

	"github.com/lifeboat-update/lifeboat/pkg/server/store/storetest"
)

// envBenchDevices names the environment variable that sets the fleet of
// BenchmarkCreateRollout (default 10,000); docs/benchmarks.md has its
// figures for a million.
const envBenchDevices = "LIFEBOAT_BENCH_DEVICES"

// BenchmarkCreateRollout creates a rollout of three waves over the whole
// fleet, and cancels it (untimed) for the next.
func BenchmarkCreateRollout(b *testing.B) {
	n := 10_000
	if v := os.Getenv(envBenchDevices); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			b.Fatalf("%s=%q: want a positive number of devices", envBenchDevices, v)
		}
	}
	b.Run("sqlite", func(b *testing.B) { benchCreateRollout(b, storetest.SQLite(b), n) })
	b.Run("postgres", func(b *testing.B) { benchCreateRollout(b, storetest.Postgres(b), n) })
}

func benchCreateRollout(b *testing.B, dsn string, n int) {
	ctx := context.Background()
	s, err := Open(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const perCall = 10 * insertRows
	for start := 0; start < n; start += perCall {
		ds := make([]Device, 0, perCall)
		for i := start; i < min(start+perCall, n); i++ {
			d := device(fmt.Sprintf("bench-%07d", i), 'a')
			d.TokenSHA256 = fmt.Sprintf("%064x", i)
			ds = append(ds, d)
		}
		if err := s.RegisterDevices(ctx, ds, event("device.register_bulk", "")); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.AddReleases(ctx, []Release{{Board: "qemu-x86_64", Version: "2.0", Repository: "main", Created: t0}}, event("release.publish", "")); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		r, err := s.CreateRollout(ctx, Rollout{Board: "qemu-x86_64", Version: "2.0", Target: "all",
			Waves: []Wave{{Percent: 1}, {Percent: 10}, {Percent: 100}}, SuccessThreshold: 0.9, ErrorThreshold: 0.1, Created: t0},
			nil, event("rollout.create", ""))
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if _, err := s.SetRolloutState(ctx, r.ID, Cancel, event("rollout.cancel", "")); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(n), "devices")
}
