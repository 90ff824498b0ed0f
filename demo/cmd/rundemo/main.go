// Command rundemo is `make demo`: it builds the recovery ramdisk and two
// demo OS releases for a board, publishes them on a loopback HTTP server,
// boots a QEMU device on release 1 whose bootloader's recovery entry runs
// the ramdisk, and lets it update itself to release 2 (seeded by 1) and
// kexec into it. It prints the device's console as it goes, then what was
// fetched and how long each phase took.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lifeboat-update/lifeboat/demo/scenario"
	"github.com/lifeboat-update/lifeboat/pkg/board"
	"github.com/lifeboat-update/lifeboat/pkg/bootenv"
	"github.com/lifeboat-update/lifeboat/pkg/progress"
	"github.com/lifeboat-update/lifeboat/pkg/release"
	"github.com/lifeboat-update/lifeboat/pkg/slot"
	"github.com/lifeboat-update/lifeboat/qemu"
	"github.com/lifeboat-update/lifeboat/qemu/device"
)

func main() {
	boardDir := flag.String("board", "boards/qemu-x86_64", "board directory")
	out := flag.String("out", "out/demo", "work directory")
	quiet := flag.Bool("q", false, "do not print the device's console")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *boardDir, *out, *quiet); err != nil {
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
}

func run(ctx context.Context, boardDir, out string, quiet bool) error {
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

	var chunkBytes atomic.Int64
	url, closeSrv, err := serve(sc.Repo, &chunkBytes)
	if err != nil {
		return err
	}
	defer closeSrv()
	fmt.Printf("== repository served at %s (the device reaches it at %s, offered by DHCP)\n", strings.Replace(url, "10.0.2.2", "127.0.0.1", 1), url)

	disk, err := sc.Disk(ctx, filepath.Join(out, "disk.img"), bootenv.Vars{
		slot.OrderVar:            "recovery A B",
		"lifeboat_recovery_args": "lifeboat.source=net lifeboat.onfail=poweroff",
	})
	if err != nil {
		return err
	}
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
	m, err := device.Run(ctx, device.RunSpec{
		Board: b, Disk: disk.Path, Net: &qemu.NetUser{Bootfile: url}, Resets: true,
		Console: con, Log: filepath.Join(out, "console.log"),
	})
	if err != nil {
		return err
	}
	if err := m.Wait(); err != nil {
		return fmt.Errorf("device: %w", err)
	}
	con.Flush()
	return summary(sc, disk, seen, result, chunkBytes.Load(), time.Since(powerOn))
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

// serve serves dir on the host's loopback, counting the chunk bytes sent,
// and returns the URL as the QEMU guest reaches it.
func serve(dir string, chunkBytes *atomic.Int64) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	files := http.FileServer(http.Dir(dir))
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/"+release.StoreDir+"/") {
			w = &counter{ResponseWriter: w, n: chunkBytes}
		}
		files.ServeHTTP(w, r)
	})}
	go srv.Serve(ln)
	url := fmt.Sprintf("http://10.0.2.2:%d/", ln.Addr().(*net.TCPAddr).Port)
	return url, func() { srv.Close() }, nil
}

type counter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (c *counter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.n.Add(int64(n))
	return n, err
}
