// Command rundemo is `make demo`: it builds the recovery ramdisk and two
// demo OS releases for a board, runs the fleet server (pkg/server, SQLite
// and its release storage in the work directory) on the host's loopback,
// publishes the releases on it, registers the demo device and starts a
// rollout of release 2 to it. Then it boots a QEMU device on release 1
// whose bootloader's recovery entry runs the ramdisk: the ramdisk polls
// the server, installs release 2 from it (seeded by 1), reports as it
// goes and kexecs into 2, which verifies itself, marks its slot good and
// reports the release installed. It prints the device's console and the
// server's timeline of the device as they come, then what was fetched,
// how long each phase took, the rollout's end, and the web UI's address
// with an operator token; it checks the UI's page of the device says
// release 2 is installed.
//
//	rundemo [-board DIR] [-out DIR] [-q] [-keep] [-listen ADDR]
//
// -keep keeps the fleet server running after the device is done, for a
// look at the web UI, until interrupted; -listen is its address
// [127.0.0.1:0, any port].
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/lifeboat-update/lifeboat/demo/scenario"
	"github.com/lifeboat-update/lifeboat/pkg/board"
	"github.com/lifeboat-update/lifeboat/pkg/bootenv"
	"github.com/lifeboat-update/lifeboat/pkg/progress"
	"github.com/lifeboat-update/lifeboat/pkg/slot"
	"github.com/lifeboat-update/lifeboat/qemu"
	"github.com/lifeboat-update/lifeboat/qemu/device"
)

func main() {
	boardDir := flag.String("board", "boards/qemu-x86_64", "board directory")
	out := flag.String("out", "out/demo", "work directory")
	quiet := flag.Bool("q", false, "do not print the device's console")
	keep := flag.Bool("keep", false, "keep the fleet server running after the device is done, until interrupted")
	listen := flag.String("listen", "127.0.0.1:0", "the fleet server's address")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *boardDir, *out, *listen, *quiet, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// milestones are console lines whose time the demo reports.
var milestones = []struct {
	name string
	re   *regexp.Regexp
}{
	{"ramdisk started", regexp.MustCompile(`^lifeboat: recovery ramdisk for board`)},
	{"network up", regexp.MustCompile(`^LIFEBOAT-PHASE name=network `)},
	{"update written and switched", regexp.MustCompile(`^LIFEBOAT-RESULT `)},
	{"v2 verified by dm-verity", regexp.MustCompile(`^LIFEBOAT-DEMO version=2 .*verity=ok`)},
	{"v2 marked itself good", regexp.MustCompile(`^LIFEBOAT-DEMO marked-good`)},
	{"v2 reported installed", regexp.MustCompile(`^LIFEBOAT-DEMO reported installed`)},
}

// deviceID is the demo device's ID.
const deviceID = "demo-1"

func run(ctx context.Context, boardDir, out, listen string, quiet, keep bool) error {
	b, err := board.Load(boardDir)
	if err != nil {
		return err
	}
	start := time.Now()
	fmt.Printf("== building the ramdisk and releases 1 and 2 for %s in %s\n", b.Name, out)
	sc, err := scenario.Build(ctx, scenario.Options{Board: b, Dir: out, Logf: func(f string, a ...any) {
		fmt.Printf("   "+f+"\n", a...)
	}})
	if err != nil {
		return err
	}
	rd := sc.RamdiskResult
	fmt.Printf("   ramdisk %s xz (budget %s), built in %s\n", progress.Bytes(rd.Compressed), progress.Bytes(rd.Budget), time.Since(start).Round(time.Second))

	fl, err := sc.StartFleet(ctx, filepath.Join(out, "fleet"), listen)
	if err != nil {
		return err
	}
	defer fl.Close()
	fmt.Printf("== fleet server at %s (the device reaches it at %s): SQLite and release storage in %s\n", fl.URL, fl.GuestURL, filepath.Join(out, "fleet"))
	fmt.Printf("   published releases %s from %s as repository %q, verified against its root\n", strings.Join(scenario.Versions, ", "), sc.Repo, scenario.RepositoryName)
	files, err := fl.Enroll(ctx, filepath.Join(out, "identity"), deviceID)
	if err != nil {
		return err
	}
	fmt.Printf("   registered device %s (release 1); its identity, naming the server, is on its ESP\n", deviceID)
	spec := sc.Spec("ab", filepath.Join(out, "disk.img"), bootenv.Vars{
		slot.OrderVar:            "recovery A B",
		"lifeboat_recovery_args": "lifeboat.source=net lifeboat.onfail=poweroff",
	})
	spec.EnvFiles = files
	disk, err := device.Build(ctx, spec)
	if err != nil {
		return err
	}
	ro, err := fl.StartRollout(ctx, b.Name, "2", "id="+deviceID)
	if err != nil {
		return err
	}
	fmt.Printf("   rollout %d of release 2 to %s: %s\n", ro.ID, deviceID, ro.State)
	fmt.Printf("== device: %s layout ab, release 1 in slot A, the bootloader set to run the recovery entry once\n", b.Name)

	var mu sync.Mutex
	seen := map[string]time.Duration{}
	var result string
	var powerOn time.Time
	con := &qemu.Lines{Line: func(l string) {
		mu.Lock()
		defer mu.Unlock()
		for _, m := range milestones {
			if _, ok := seen[m.name]; !ok && m.re.MatchString(l) {
				seen[m.name] = time.Since(powerOn)
			}
		}
		if r, ok := strings.CutPrefix(l, "LIFEBOAT-RESULT "); ok {
			result = r
		}
		if !quiet {
			fmt.Printf("   | %s\n", l)
		}
	}}
	powerOn = time.Now()
	// DHCP offers the repository too: what the ramdisk falls back to
	// when the server does not answer.
	m, err := device.Run(ctx, device.RunSpec{
		Board: b, Disk: disk.Path, Net: &qemu.NetUser{Bootfile: fl.RepoURL()}, Resets: true,
		Console: con, Log: filepath.Join(out, "console.log"),
	})
	if err != nil {
		return err
	}
	tl := &timeline{fl: fl, mu: &mu, start: powerOn}
	stopTL := tl.follow(ctx)
	err = m.Wait()
	stopTL()
	con.Flush()
	if err != nil {
		return fmt.Errorf("device: %w", err)
	}
	if err := summary(sc, disk, seen, result, fl.ChunkBytes(), time.Since(powerOn)); err != nil {
		return err
	}
	if err := fleetSummary(ctx, fl, ro.ID, tl); err != nil {
		return err
	}
	if keep {
		fmt.Printf("\n   -keep: the fleet server runs until interrupted (Ctrl-C)\n")
		<-ctx.Done()
	}
	return nil
}

// timeline prints the device's status reports as the server receives
// them.
type timeline struct {
	fl    *scenario.Fleet
	mu    *sync.Mutex // the console's
	start time.Time
	last  int64
	n     int
}

// follow reads the timeline every half second until the returned
// function is called, which reads it a last time.
func (t *timeline) follow(ctx context.Context) func() {
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
				t.read(ctx)
			}
		}
	}()
	return func() {
		close(done)
		<-stopped
		t.read(ctx)
	}
}

func (t *timeline) read(ctx context.Context) {
	reports, err := t.fl.Timeline(ctx, deviceID, t.last)
	if err != nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, r := range reports {
		t.last = r.ID
		t.n++
		st := r.Status
		line := fmt.Sprintf("%-11s %3.0f%% installed_version=%s", st.Phase, 100*st.Progress, st.InstalledVersion)
		if st.Transfer.ImageBytes > 0 {
			line += fmt.Sprintf(" fetched=%s of %s", progress.Bytes(st.Transfer.FetchedBytes), progress.Bytes(st.Transfer.ImageBytes))
		}
		if st.Error != "" {
			line += " error=" + st.Error
		}
		fmt.Printf("   fleet %6.1fs | %s\n", time.Since(t.start).Seconds(), line)
	}
}

// fleetSummary shows the rollout's end and checks the web UI shows the
// device on release 2.
func fleetSummary(ctx context.Context, fl *scenario.Fleet, id int64, tl *timeline) error {
	ro, err := fl.Rollout(ctx, id)
	if err != nil {
		return err
	}
	p := ro.Progress[0]
	fmt.Printf("\n== fleet server: %d reports from %s; rollout %d of release %s: %s, %d of %d succeeded, %d failed\n",
		tl.n, deviceID, ro.ID, ro.Version, ro.State, p.Succeeded, p.Size, p.Failed)
	if ro.State != "completed" || p.Succeeded != 1 {
		return fmt.Errorf("rollout %d is %s with %d succeeded, want completed with the device succeeded", ro.ID, ro.State, p.Succeeded)
	}
	if err := fl.CheckUI(ctx, deviceID, "2"); err != nil {
		return err
	}
	fmt.Printf("   web UI: %s/ui/devices/%s shows release 2 installed; sign in with the operator token\n", fl.URL, deviceID)
	fmt.Printf("   %s\n", fl.AdminToken)
	return nil
}

func summary(sc *scenario.Scenario, disk *device.Disk, seen map[string]time.Duration, result string, served int64, total time.Duration) error {
	var res struct {
		OK           bool    `json:"ok"`
		Check        string  `json:"check"`
		Error        string  `json:"error"`
		Version      string  `json:"version"`
		Slot         string  `json:"slot"`
		FetchedBytes int64   `json:"fetched_bytes"`
		ImageBytes   int64   `json:"image_bytes"`
		Uptime       float64 `json:"uptime_at_start"`
		PeakRSS      int64   `json:"peak_rss_bytes"`
		Phases       []struct {
			Name    string  `json:"name"`
			Seconds float64 `json:"seconds"`
		} `json:"phases"`
	}
	if result == "" {
		return fmt.Errorf("the ramdisk printed no result: see %s", filepath.Join(filepath.Dir(disk.Path), "console.log"))
	}
	if err := json.Unmarshal([]byte(result), &res); err != nil {
		return err
	}
	if !res.OK {
		return fmt.Errorf("update failed at %s: %s", res.Check, res.Error)
	}
	need, err := sc.NeedBytes("2", "1")
	if err != nil {
		return err
	}
	fmt.Printf("\n== release %s installed into slot %s\n", res.Version, res.Slot)
	fmt.Printf("   fetched   %s of chunks (the server sent %s; v2 needs %s beyond v1)\n", progress.Bytes(res.FetchedBytes), progress.Bytes(served), progress.Bytes(need))
	fmt.Printf("   image     %s, so %.1f%% crossed the network\n", progress.Bytes(res.ImageBytes), 100*float64(res.FetchedBytes)/float64(res.ImageBytes))
	if res.PeakRSS > 0 {
		fmt.Printf("   memory    %s peak resident for the ramdisk's flow\n", progress.Bytes(res.PeakRSS))
	}
	fmt.Printf("\n   phases of the ramdisk's flow (QEMU TCG, no KVM):\n")
	fmt.Printf("     %-12s %6.2fs  (kernel uptime when the flow began)\n", "boot", res.Uptime)
	for _, p := range res.Phases {
		fmt.Printf("     %-12s %6.2fs\n", p.Name, p.Seconds)
	}
	fmt.Printf("\n   wall time from power-on (firmware, GRUB, kernel included):\n")
	for _, ms := range milestones {
		if d, ok := seen[ms.name]; ok {
			fmt.Printf("     %-30s %6.1fs\n", ms.name, d.Seconds())
		}
	}
	fmt.Printf("     %-30s %6.1fs\n", "powered off", total.Seconds())
	env, err := disk.Env(context.Background())
	if err != nil {
		return err
	}
	fmt.Printf("\n   bootloader now: BOOT_ORDER=%q, B has %s tries left (good)\n", env[slot.OrderVar], env[slot.LeftVar("B")])
	if _, ok := seen["v2 marked itself good"]; !ok {
		return fmt.Errorf("release 2 did not mark itself good")
	}
	return nil
}
