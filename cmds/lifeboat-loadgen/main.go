// Command lifeboat-loadgen loads a running fleet server the way a large
// fleet does (pkg/server/loadgen); `make bench` runs it
// (scripts/bench-server.sh). It starts no server itself.
//
// Synopsis:
//
//	lifeboat-loadgen register --server=URL --token-file=PATH [--devices=1000000]
//	                          [--seed=S] [--board=B] [--version=V] [--batch=1000] [--workers=4] [--json]
//	lifeboat-loadgen rollout --server=URL --token-file=PATH --release=V [--board=B] [--waves=100%] [--json]
//	lifeboat-loadgen run --server=URL [--devices=1000000] [--seed=S] [--rate=3000]
//	                     [--duration=60s] [--status-share=0.1] [--installed=V] [--workers=512] [--json]
//
// register registers --devices devices through POST /api/v1/devices/bulk
// with the operator (or admin) token in --token-file, --batch devices to a
// request, --workers requests at a time, and prints how long that took; a
// device registered before counts as existing (its batch is sent again a
// device at a time). Each device's ID and token are derived from --seed and its
// number, so run needs only the same --seed and --devices.
//
// rollout creates a rollout of release --release (published on the
// server) over every device of --board, in --waves (comma-separated, as
// the API takes them: "5,10%,100%"), and starts it, with the operator
// token in --token-file; it prints how long the creation and the start
// took. No failure halts it; a wave opens once every device of the one
// before succeeded.
//
// run drives the devices' API at --rate requests per second for
// --duration: check-ins (GET /api/v1/device/poll, with If-None-Match once
// a device has an ETag) and, for --status-share of the requests, status
// reports (POST /api/v1/device/status), spread over the devices. A report
// says the device is idle on --version or, with --installed, that it has
// installed that release (which moves it on in a rollout of it). The load
// is open-loop: each request is due at its time whether or not earlier
// ones were answered, and its latency counts from then, so queueing shows.
// It prints the requests per second achieved and, per kind, p50, p99 and
// maximum latency and the errors by status; --json prints the same as
// JSON. It exits 1 when any request failed.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/lifeboat-update/lifeboat/internal/cli"
	"github.com/lifeboat-update/lifeboat/pkg/api"
	"github.com/lifeboat-update/lifeboat/pkg/server/loadgen"
)

var commands = []cli.Command{
	{
		Name:     "register",
		Usage:    "--server=URL --token-file=PATH [--devices=N] [--seed=S] [--board=B] [--version=V] [--batch=N] [--workers=N] [--json]",
		Synopsis: "register the simulated devices through the API",
		Run:      runRegister,
	},
	{
		Name:     "rollout",
		Usage:    "--server=URL --token-file=PATH --release=V [--board=B] [--waves=W,W,...] [--json]",
		Synopsis: "create and start a rollout over the whole fleet, and print how long that took",
		Run:      runRollout,
	},
	{
		Name:     "run",
		Usage:    "--server=URL [--devices=N] [--seed=S] [--rate=R] [--duration=D] [--status-share=F] [--installed=V] [--workers=N] [--json]",
		Synopsis: "drive check-ins and status reports at a rate and print the latencies",
		Run:      runLoad,
	},
}

func fleetFlags(fs *flag.FlagSet, c *loadgen.Config, workers int) {
	fs.StringVar(&c.Server, "server", "", "the server's URL, http://HOST:PORT")
	fs.IntVar(&c.Devices, "devices", 1000000, "devices in the fleet")
	fs.StringVar(&c.Seed, "seed", "bench", "name of the fleet, from which device IDs and tokens are derived")
	fs.StringVar(&c.Board, "board", "loadgen", "board the devices are registered with")
	fs.StringVar(&c.Version, "version", "1.0.0", "release the devices are registered with and report")
	fs.IntVar(&c.Workers, "workers", workers, "requests in flight at most")
}

// ErrFailed is returned when requests failed; the output says which.
var ErrFailed = errors.New("requests failed")

func runRegister(ctx context.Context, std cli.IO, fs *flag.FlagSet, args []string) error {
	var c loadgen.Config
	fleetFlags(fs, &c, 4)
	fs.IntVar(&c.Batch, "batch", api.MaxBulkRegistrations, "devices registered by one request")
	tokenFile := tokenFlag(fs)
	out := cli.JSONFlag(fs)
	if err := parse(fs, args, &c); err != nil {
		return err
	}
	token, err := readToken(*tokenFile)
	if err != nil {
		return err
	}
	res, err := loadgen.Register(ctx, c, token)
	if perr := out.Result(std.Stdout, res, func(w io.Writer) {
		fmt.Fprintf(w, "registered %d devices (%d existing) in %.1f s: %.0f/s\n", res.Devices, res.Existing, res.Seconds, res.PerSec)
		printErrors(w, "register", res.Errors)
	}); perr != nil {
		return perr
	}
	return err
}

func tokenFlag(fs *flag.FlagSet) *string {
	return fs.String("token-file", "", "file holding an operator or admin token")
}

// readToken reads the operator token in path, which is required.
func readToken(path string) (string, error) {
	if path == "" {
		return "", cli.Usagef("--token-file is required")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

func runRollout(ctx context.Context, std cli.IO, fs *flag.FlagSet, args []string) error {
	var c loadgen.Config
	fs.StringVar(&c.Server, "server", "", "the server's URL, http://HOST:PORT")
	fs.StringVar(&c.Board, "board", "loadgen", "board of the devices to roll the release out to")
	tokenFile := tokenFlag(fs)
	release := fs.String("release", "", "release to roll out, published for --board")
	waves := fs.String("waves", "100%", "the waves, comma-separated: N devices or P% of the fleet, growing, the last 100%")
	out := cli.JSONFlag(fs)
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	switch {
	case fs.NArg() != 0:
		return cli.Usagef("rollout takes no arguments")
	case *release == "":
		return cli.Usagef("--release is required")
	}
	token, err := readToken(*tokenFile)
	if err != nil {
		return err
	}
	res, err := loadgen.StartRollout(ctx, c, token, *release, strings.Split(*waves, ","))
	if err != nil {
		return err
	}
	return out.Result(std.Stdout, res, func(w io.Writer) {
		fmt.Fprintf(w, "rollout %d of %s %s created in %.1f s, started in %.1f s\n", res.ID, c.Board, *release, res.CreateSeconds, res.StartSeconds)
	})
}

func runLoad(ctx context.Context, std cli.IO, fs *flag.FlagSet, args []string) error {
	var c loadgen.Config
	fleetFlags(fs, &c, 512)
	fs.Float64Var(&c.Rate, "rate", 3000, "requests per second")
	fs.DurationVar(&c.Duration, "duration", time.Minute, "how long to send requests")
	fs.Float64Var(&c.StatusShare, "status-share", 0.1, "share of the requests that are status reports, 0 to 1")
	fs.StringVar(&c.Installed, "installed", "", "release the status reports say is installed (default: idle on --version)")
	out := cli.JSONFlag(fs)
	if err := parse(fs, args, &c); err != nil {
		return err
	}
	res, err := loadgen.Run(ctx, c)
	if perr := out.Result(std.Stdout, res, func(w io.Writer) { printResult(w, res) }); perr != nil {
		return perr
	}
	if n := res.Failed(); err == nil && n > 0 {
		err = fmt.Errorf("%w: %d of %d", ErrFailed, n, res.Sent)
	}
	return err
}

func parse(fs *flag.FlagSet, args []string, c *loadgen.Config) error {
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return cli.Usagef("%s takes no arguments", fs.Name())
	}
	if err := c.Validate(); err != nil {
		return cli.Usagef("%v", err)
	}
	return nil
}

func printResult(w io.Writer, r loadgen.Result) {
	fmt.Fprintf(w, "%d devices, target %.0f/s: sent %d in %.1f s, %.0f/s\n", r.Devices, r.Target, r.Sent, r.Seconds, r.PerSec)
	fmt.Fprintf(w, "%-8s %8s %8s %10s %10s %10s\n", "kind", "count", "ok", "p50", "p99", "max")
	for _, k := range []loadgen.Kind{loadgen.Poll, loadgen.Status} {
		l, ok := r.Kinds[k]
		if !ok {
			continue
		}
		fmt.Fprintf(w, "%-8s %8d %8d %10s %10s %10s\n", k, l.Count, l.OK, l.P50, l.P99, l.Max)
		printErrors(w, string(k), l.Errors)
	}
}

func printErrors(w io.Writer, what string, errs map[string]int) {
	keys := make([]string, 0, len(errs))
	for k := range errs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "  %s errors: %s × %d\n", what, k, errs[k])
	}
}

func run(ctx context.Context, io cli.IO, args []string) int {
	return cli.Run(ctx, "lifeboat-loadgen", commands, io, args)
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, cli.IO{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}, os.Args[1:]))
}
