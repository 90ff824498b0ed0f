package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lifeboat-update/lifeboat/demo"
	"github.com/lifeboat-update/lifeboat/demo/scenario"
	"github.com/lifeboat-update/lifeboat/internal/testtool"
	"github.com/lifeboat-update/lifeboat/pkg/board"
	"github.com/lifeboat-update/lifeboat/pkg/bootenv"
	"github.com/lifeboat-update/lifeboat/pkg/chunk"
	lbrelease "github.com/lifeboat-update/lifeboat/pkg/release"
	"github.com/lifeboat-update/lifeboat/pkg/slot"
	"github.com/lifeboat-update/lifeboat/qemu"
	qdevice "github.com/lifeboat-update/lifeboat/qemu/device"
)

// The recovery tests boot the qemu-x86_64 board's recovery ramdisk (built
// by initramfs/ from this checkout) on its pinned kernel, against a
// repository of demo OS releases (demo/) served from the host, and check
// what the console says, what the slots hold and what the bootloader's
// environment says afterwards.

// recoveryFixture is built once per test process and board: the
// ramdisk, the releases, the repository and slot A's factory content.
type recoveryFixture struct {
	*scenario.Scenario
}

var (
	recoveryOnce sync.Once
	recoveryFix  *recoveryFixture
	recoveryErr  error
)

func needRecovery(t *testing.T) *recoveryFixture {
	t.Helper()
	if testing.Short() {
		t.Skip("-short skips tests that boot a VM; make test runs them")
	}
	for _, tool := range append(qdevice.Tools(), "qemu-system-x86_64", "xz", "go", "mkfs.ext4", "debugfs") {
		testtool.Require(t, tool)
	}
	recoveryOnce.Do(func() { recoveryFix, recoveryErr = buildRecoveryFixture(t, "qemu-x86_64") })
	if recoveryErr != nil {
		t.Fatal(recoveryErr)
	}
	if recoveryFix == nil {
		t.Fatal("building the recovery fixture failed in an earlier test")
	}
	return recoveryFix
}

// buildRecoveryFixture builds the fixture for the board boards/name.
func buildRecoveryFixture(t *testing.T, name string) (*recoveryFixture, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	b, err := board.Load(filepath.Join("..", "boards", name))
	if err != nil {
		return nil, err
	}
	sc, err := scenario.Build(ctx, scenario.Options{
		Board: b, Dir: filepath.Join(workDir, "recovery-"+name), // removed by TestMain
		ModuleRoot: "..", Logf: t.Logf,
	})
	if err != nil {
		return nil, err
	}
	res := sc.RamdiskResult
	t.Logf("ramdisk: %d bytes compressed (budget %d), built in %s", res.Compressed, res.Budget, res.Elapsed.Round(time.Second))
	return &recoveryFixture{sc}, nil
}

// newDevice builds a disk with v1 in slot A, good, and the trusted state
// provisioned with v1 installed (scenario.Disk).
func (f *recoveryFixture) newDevice(t *testing.T, env bootenv.Vars) *qdevice.Disk {
	t.Helper()
	d, err := f.Disk(t.Context(), filepath.Join(t.TempDir(), "disk.img"), env)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// startFleet runs the scenario's fleet server (pkg/server on loopback,
// the repository published) until the test ends.
func (f *recoveryFixture) startFleet(t *testing.T) *scenario.Fleet {
	t.Helper()
	fl, err := f.StartFleet(t.Context(), filepath.Join(t.TempDir(), "fleet"), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fl.Close() })
	return fl
}

// newFleetDevice is newDevice enrolled with the fleet server as id: its
// identity, naming the server, on its ESP, and registered.
func (f *recoveryFixture) newFleetDevice(t *testing.T, fl *scenario.Fleet, id string) *qdevice.Disk {
	t.Helper()
	files, err := fl.Enroll(t.Context(), t.TempDir(), id)
	if err != nil {
		t.Fatal(err)
	}
	spec := f.Spec("ab", filepath.Join(t.TempDir(), "disk.img"), nil)
	spec.EnvFiles = files
	d, err := qdevice.Build(t.Context(), spec)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// repoServer serves a repository directory on the host's loopback and
// counts the chunk bytes it sends.
type repoServer struct {
	url        string // as the guest reaches it
	chunkBytes atomic.Int64
	dir        atomic.Value // string
	// run numbers the requests in sent: the test sets it before each boot.
	run  atomic.Int64
	mu   sync.Mutex
	sent []chunkSent
}

// chunkSent is one chunk request the repository answered.
type chunkSent struct {
	run   int64
	path  string // under the repository
	bytes int64  // sent, all or part of the file
}

// chunksSent returns the chunk requests answered so far.
func (s *repoServer) chunksSent() []chunkSent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.sent)
}

func serveRepo(t *testing.T, dir string) *repoServer {
	t.Helper()
	s := &repoServer{}
	s.dir.Store(dir)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/"+lbrelease.StoreDir+"/") {
			http.FileServer(http.Dir(s.dir.Load().(string))).ServeHTTP(w, r)
			return
		}
		run := s.run.Load()
		var n atomic.Int64
		http.FileServer(http.Dir(s.dir.Load().(string))).ServeHTTP(&countingWriter{ResponseWriter: w, n: &n}, r)
		s.chunkBytes.Add(n.Load())
		s.mu.Lock()
		s.sent = append(s.sent, chunkSent{run, strings.TrimPrefix(r.URL.Path, "/"), n.Load()})
		s.mu.Unlock()
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	s.url = fmt.Sprintf("http://10.0.2.2:%d/", ln.Addr().(*net.TCPAddr).Port)
	return s
}

// ramdiskResult is the flow's LIFEBOAT-RESULT line.
type ramdiskResult struct {
	OK           bool   `json:"ok"`
	Check        string `json:"check"`
	Error        string `json:"error"`
	Version      string `json:"version"`
	Slot         string `json:"slot"`
	Seed         string `json:"seed"`
	Source       string `json:"source"`
	FetchedBytes int64  `json:"fetched_bytes"`
	ImageBytes   int64  `json:"image_bytes"`
	Phases       []struct {
		Name    string  `json:"name"`
		Seconds float64 `json:"seconds"`
	} `json:"phases"`
	UptimeAtStart float64 `json:"uptime_at_start"`
	PeakRSSBytes  int64   `json:"peak_rss_bytes"`
}

var (
	resultRE = regexp.MustCompile(`LIFEBOAT-RESULT (\{.*\})`)
	demoRE   = regexp.MustCompile(`LIFEBOAT-DEMO (version=\S+ slot=\S+ verity=ok|FAILED.*|marked-good slot=\S+)`)
)

// boot runs the device to the end (power-off) and returns its console.
func (f *recoveryFixture) boot(t *testing.T, spec qdevice.RunSpec) []string {
	t.Helper()
	spec.Board = f.Board
	spec.Log = filepath.Join(t.TempDir(), "console.log")
	ctx, cancel := context.WithTimeout(t.Context(), 6*time.Minute)
	defer cancel()
	start := time.Now()
	m, err := qdevice.Run(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	err = m.Wait()
	lines := m.Lines()
	t.Logf("machine ran %s", time.Since(start).Round(100*time.Millisecond))
	if err != nil {
		t.Fatalf("machine: %v; console:\n%s", err, strings.Join(lines, "\n"))
	}
	return lines
}

// direct boots the recovery ramdisk straight from the kernel, as the
// recovery entry would, on the board's console, with the command line's
// extra parameters.
func (f *recoveryFixture) direct(disk *qdevice.Disk, extra string) qdevice.RunSpec {
	return qdevice.RunSpec{
		Disk: disk.Path, Kernel: f.Kernel, Initrd: f.Ramdisk, Net: &qemu.NetUser{},
		Append: f.Board.BaseCmdline() + " lifeboat.mode=update lifeboat.layout=ab lifeboat.onfail=poweroff " + extra,
	}
}

// resultOf decodes the flow's LIFEBOAT-RESULT line into a T: the
// fields a test reads of what that mode reports.
func resultOf[T any](t *testing.T, lines []string) T {
	t.Helper()
	for _, l := range lines {
		if m := resultRE.FindStringSubmatch(l); m != nil {
			var r T
			if err := json.Unmarshal([]byte(m[1]), &r); err != nil {
				t.Fatalf("%s: %v", l, err)
			}
			return r
		}
	}
	t.Fatalf("no LIFEBOAT-RESULT on the console:\n%s", strings.Join(lines, "\n"))
	var zero T
	return zero
}

func demoLines(lines []string) []string {
	var out []string
	for _, l := range lines {
		if m := demoRE.FindStringSubmatch(l); m != nil {
			out = append(out, m[1])
		}
	}
	return out
}

func envOf(t *testing.T, d *qdevice.Disk) bootenv.Vars {
	t.Helper()
	v, err := d.Env(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// needBytes is what an update to v seeded by seed must fetch
// (scenario.NeedBytes).
func (f *recoveryFixture) needBytes(t *testing.T, v, seed string) int64 {
	t.Helper()
	n, err := f.NeedBytes(v, seed)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestRecoveryAB is acceptance 1 (kexec), 3 and 4 (dm-verity) of the
// recovery ramdisk, on qemu-x86_64's ab layout, one device through its
// life: offers it must refuse (a tampered chunk, tampered metadata), after
// which the old system still boots; then v1 -> v2 over the network into
// B, seeded by A, and kexec into v2, which verifies itself and marks B
// good; then the older release re-offered; then a corrupted block in B.
//
// The update goes through the fleet server (pkg/server on the host's
// loopback): the device is registered, a rollout of v2 started; the
// ramdisk polls, installs v2 from the repository the server names and
// reports; v2 reports itself installed; the rollout completes and the web
// UI's page of the device shows v2. The older release is offered with
// the server gone: the ramdisk falls back to the command line's
// repository, and refuses it.
func TestRecoveryAB(t *testing.T) {
	f := needRecovery(t)
	srv := serveRepo(t, f.Repo)
	fl := f.startFleet(t)
	// Offers to refuse go to one device, the update to another, whose
	// inactive slot holds nothing the refused offers wrote.
	const id = "recovery-ab"
	refused, d := f.newDevice(t, nil), f.newFleetDevice(t, fl, id)
	ro, err := fl.StartRollout(t.Context(), f.Board.Name, "2", "id="+id)
	if err != nil {
		t.Fatal(err)
	}

	refuse := func(t *testing.T, d *qdevice.Disk, dir, check string) {
		t.Helper()
		before := envOf(t, d)
		srv.dir.Store(dir)
		lines := f.boot(t, f.direct(d, "lifeboat.source=net lifeboat.repo="+srv.url))
		res := resultOf[ramdiskResult](t, lines)
		if res.OK || res.Check != check {
			t.Fatalf("result %+v, want a failure of check %q; console:\n%s", res, check, strings.Join(lines, "\n"))
		}
		if !containsLine(lines, "FAILED ("+res.Check+")") {
			t.Errorf("the console does not name the check %q", res.Check)
		}
		if after := envOf(t, d); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Errorf("grubenv changed: %v -> %v", before, after)
		}
	}

	t.Run("tampered chunk", func(t *testing.T) {
		dir := f.tamperedCopy(t, func(dir string) {
			// A chunk v2 has and v1 lacks, so that it is fetched.
			id := f.newChunk(t, "2", "1")
			p := filepath.Join(dir, lbrelease.StoreDir, id[:4], id+".cacnk")
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			b[len(b)/2] ^= 1
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
		})
		refuse(t, refused, dir, lbrelease.ErrArbitrarySoftware.Error())
	})
	t.Run("tampered metadata", func(t *testing.T) {
		dir := f.tamperedCopy(t, func(dir string) {
			p := filepath.Join(dir, lbrelease.MetadataDir, "timestamp.json")
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, bytes.Replace(b, []byte(`"version":`), []byte(`"version": `), 1), 0o644); err != nil {
				t.Fatal(err)
			}
		})
		refuse(t, refused, dir, lbrelease.ErrArbitrarySoftware.Error())
	})
	t.Run("old system boots", func(t *testing.T) {
		lines := f.boot(t, qdevice.RunSpec{Disk: refused.Path})
		if got := strings.Join(demoLines(lines), "; "); !strings.Contains(got, "version=1 slot=A verity=ok") || !strings.Contains(got, "marked-good slot=A") {
			t.Fatalf("A did not boot v1: %s", got)
		}
	})

	t.Run("update", func(t *testing.T) {
		fl.ResetChunkBytes()
		// No lifeboat.repo=: the fleet server names the repository.
		lines := f.boot(t, f.direct(d, "lifeboat.source=net"))
		res := resultOf[ramdiskResult](t, lines)
		if !res.OK || res.Version != "2" || res.Slot != "B" || res.Seed != "A" || res.Source != fl.RepoURL() {
			t.Fatalf("result %+v; console:\n%s", res, strings.Join(lines, "\n"))
		}
		need := f.needBytes(t, "2", "1")
		if res.FetchedBytes != need || fl.ChunkBytes() != need {
			t.Errorf("fetched %d bytes (the server sent %d), want %d: the chunks v2 has beyond v1", res.FetchedBytes, fl.ChunkBytes(), need)
		}
		t.Logf("fetched %d bytes for a %d-byte image; phases %+v", res.FetchedBytes, res.ImageBytes, res.Phases)
		if got := strings.Join(demoLines(lines), "; "); !strings.Contains(got, "version=2 slot=B verity=ok") || !strings.Contains(got, "marked-good slot=B") {
			t.Errorf("v2 did not boot and mark itself good after kexec: %s", got)
		}
		env := envOf(t, d)
		if env[slot.LeftVar("B")] != "3" || !strings.HasPrefix(env[slot.OrderVar], "B A") || env["LIFEBOAT_B_VERITY"] != f.VerityArg("2") {
			t.Errorf("grubenv after the update: %v", env)
		}
		checkFleet(t, fl, id, ro.ID, lines)
	})
	if t.Failed() {
		return
	}
	t.Run("older release", func(t *testing.T) {
		fl.Close() // the server gone: the ramdisk falls back to lifeboat.repo=
		refuse(t, d, f.OldRepo, lbrelease.ErrRollback.Error())
	})
	t.Run("verity", func(t *testing.T) {
		// A flipped byte in a file of B's file system: B's reads fail
		// rather than lie, and it does not mark itself good.
		off, _, err := d.Partition("rootfs-b")
		if err != nil {
			t.Fatal(err)
		}
		flipByte(t, d.Path, off+f.payloadOffset(t, "2"))
		lines := f.boot(t, qdevice.RunSpec{Disk: d.Path})
		got := strings.Join(demoLines(lines), "; ")
		if !strings.Contains(got, "FAILED") || !strings.Contains(got, "verity") || strings.Contains(got, "marked-good") {
			t.Errorf("corrupted B: %s", got)
		}
	})
}

// checkFleet checks what the fleet server saw of device id's update to
// release 2 in rollout ro: v2 reported installed by itself, the timeline
// from downloading to installed, the rollout completed, and the web UI's
// page of the device showing v2.
func checkFleet(t *testing.T, fl *scenario.Fleet, id string, ro int64, lines []string) {
	t.Helper()
	if !containsLine(lines, "LIFEBOAT-DEMO reported installed version=2 server="+fl.GuestURL) {
		t.Errorf("v2 did not report itself installed to %s", fl.GuestURL)
	}
	tl, err := fl.Timeline(t.Context(), id, 0)
	if err != nil {
		t.Fatal(err)
	}
	var phases []string
	for _, e := range tl {
		if p := string(e.Status.Phase); len(phases) == 0 || phases[len(phases)-1] != p {
			phases = append(phases, p)
		}
	}
	if got, want := strings.Join(phases, " "), "downloading verifying installing rebooting installed"; got != want {
		t.Errorf("timeline %q, want %q", got, want)
	}
	if last := tl[len(tl)-1].Status; last.InstalledVersion != "2" || len(last.Slots) != 2 {
		t.Errorf("last report %+v, want v2 installed with slots A and B", last)
	}
	r, err := fl.Rollout(t.Context(), ro)
	if err != nil {
		t.Fatal(err)
	}
	if r.State != "completed" || r.Progress[0].Succeeded != 1 {
		t.Errorf("rollout %+v, want completed with the device succeeded", r)
	}
	if err := fl.CheckUI(t.Context(), id, "2"); err != nil {
		t.Error(err)
	}
}

// tamperedCopy copies the repository and lets tamper change the copy.
func (f *recoveryFixture) tamperedCopy(t *testing.T, tamper func(dir string)) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "repo")
	copyTree(t, dir, f.Repo)
	tamper(dir)
	return dir
}

// newChunk is the ID of a chunk release v has and release old lacks.
func (f *recoveryFixture) newChunk(t *testing.T, v, old string) string {
	t.Helper()
	read := func(v string) []chunk.Entry {
		idx, err := chunk.ReadIndexFile(filepath.Join(f.Repo, filepath.FromSlash(f.Releases[v].Images[0].Index.Path)))
		if err != nil {
			t.Fatal(err)
		}
		return idx.Chunks
	}
	have := map[chunk.ID]bool{}
	for _, c := range read(old) {
		have[c.ID] = true
	}
	for _, c := range read(v) {
		if !have[c.ID] {
			return c.ID.String()
		}
	}
	t.Fatalf("release %s has no chunk %s lacks", v, old)
	return ""
}

// payloadOffset is the offset in release v's image of a data block of one
// of its payload files.
func (f *recoveryFixture) payloadOffset(t *testing.T, v string) int64 {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", "bmap /"+demo.PayloadDir+"/base-03.bin 100", f.Images[v]).Output()
	if err != nil {
		t.Fatalf("debugfs bmap: %v", err)
	}
	block, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	if err != nil || block <= 0 {
		t.Fatalf("debugfs bmap = %q: %v", out, err)
	}
	return block * 4096
}

func containsLine(lines []string, s string) bool {
	for _, l := range lines {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}

// TestRecoveryReboot is acceptance 1's second run: the recovery entry is
// chosen by the real bootloader (OVMF, GRUB and the board's grub.cfg), the
// ramdisk updates over the network and reboots, and GRUB boots v2 from B.
func TestRecoveryReboot(t *testing.T) {
	f := needRecovery(t)
	srv := serveRepo(t, f.Repo)
	// GRUB rewrites only the first sector of grubenv safely, which leaves
	// 448 bytes for every variable: the repository comes by DHCP, as the
	// boot file name, rather than in lifeboat_recovery_args.
	d := f.newDevice(t, bootenv.Vars{
		slot.OrderVar:            "recovery A B",
		"lifeboat_recovery_args": "lifeboat.source=net lifeboat.after=reboot lifeboat.onfail=poweroff",
	})
	lines := f.boot(t, qdevice.RunSpec{Disk: d.Path, Net: &qemu.NetUser{Bootfile: srv.url}, Resets: true})
	res := resultOf[ramdiskResult](t, lines)
	if !res.OK || res.Version != "2" || res.Slot != "B" {
		t.Fatalf("result %+v; console:\n%s", res, strings.Join(lines, "\n"))
	}
	if got := strings.Join(demoLines(lines), "; "); !strings.Contains(got, "version=2 slot=B verity=ok") || !strings.Contains(got, "marked-good slot=B") {
		t.Errorf("GRUB did not boot v2 from B after the reboot: %s", got)
	}
	env := envOf(t, d)
	if env[slot.LeftVar("B")] != "3" || !strings.HasPrefix(env[slot.OrderVar], "B ") {
		t.Errorf("grubenv: %v", env)
	}
}

// TestRecoveryUSB is acceptance 2: the release comes from a bundle on an
// emulated USB stick, with no network at all.
func TestRecoveryUSB(t *testing.T) {
	f := needRecovery(t)
	d := f.newDevice(t, nil)
	stick := filepath.Join(t.TempDir(), "stick.img")
	if err := qdevice.Stick(t.Context(), f.Repo, stick); err != nil {
		t.Fatal(err)
	}
	spec := f.direct(d, "lifeboat.source=usb")
	spec.Net, spec.USB = nil, stick
	lines := f.boot(t, spec)
	res := resultOf[ramdiskResult](t, lines)
	if !res.OK || res.Version != "2" || res.Slot != "B" || res.Source != "usb" {
		t.Fatalf("result %+v; console:\n%s", res, strings.Join(lines, "\n"))
	}
	if got := strings.Join(demoLines(lines), "; "); !strings.Contains(got, "version=2 slot=B verity=ok") || !strings.Contains(got, "marked-good slot=B") {
		t.Errorf("v2 did not boot after the USB update: %s", got)
	}
}
