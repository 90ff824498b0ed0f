package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lifeboat-update/lifeboat/pkg/bootenv"
	"github.com/lifeboat-update/lifeboat/pkg/chunk"
	"github.com/lifeboat-update/lifeboat/pkg/inplace"
	"github.com/lifeboat-update/lifeboat/pkg/install"
	"github.com/lifeboat-update/lifeboat/pkg/publish"
	"github.com/lifeboat-update/lifeboat/pkg/release"
	"github.com/lifeboat-update/lifeboat/pkg/slot"
	"github.com/lifeboat-update/lifeboat/pkg/verity"
)

// newSmallDevice is the qemu-x86_64 board's small layout in files: one
// rootfs slot (A) holding v1, with v1's index kept on the data partition,
// as a factory-flashed device has it.
func newSmallDevice(t *testing.T, r *repo) *device {
	t.Helper()
	d := newDevice(t, r.root(), bootenv.Vars{slot.OrderVar: "A recovery", slot.LeftVar("A"): "3"})
	dir := t.TempDir()
	for _, label := range []string{"rootfs", "factory"} {
		file := filepath.Join(dir, label+".part")
		junk := make([]byte, slotSize)
		rand.NewChaCha8([32]byte{byte(len(label)), 1}).Read(junk)
		if label == "rootfs" {
			_, v1 := r.slotContent("1")
			copy(junk, v1)
		}
		if err := os.WriteFile(file, junk, 0o600); err != nil {
			t.Fatal(err)
		}
		d.sys.parts[label] = file
	}
	delete(d.sys.parts, "rootfs-a")
	delete(d.sys.parts, "rootfs-b")
	idx, err := os.ReadFile(filepath.Join(r.dir, filepath.FromSlash(r.rels["1"].Images[0].Index.Path)))
	if err != nil {
		t.Fatal(err)
	}
	kept := filepath.Join(d.sys.mounts[d.sys.parts["data"]], filepath.FromSlash(install.SlotIndexName("A", "rootfs")))
	if err := os.MkdirAll(filepath.Dir(kept), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(kept, idx, 0o644); err != nil {
		t.Fatal(err)
	}
	return d
}

// chunkServer serves the repository over HTTP and counts the requests for
// each chunk.
type chunkServer struct {
	*httptest.Server
	mu  sync.Mutex
	got map[string]int
}

func newChunkServer(t *testing.T, dir string) *chunkServer {
	s := &chunkServer{got: map[string]int{}}
	fsrv := http.FileServer(http.Dir(dir))
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, ".cacnk") {
			s.mu.Lock()
			s.got[r.URL.Path]++
			s.mu.Unlock()
		}
		fsrv.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *chunkServer) counts() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for k, v := range s.got {
		out[k] = v
	}
	return out
}

// publishSwapped publishes version 2 as v1 with two regions swapped and
// one rewritten: chunks move both ways, so the plan stashes and spills.
func (r *repo) publishSwapped() {
	r.t.Helper()
	v1 := r.imgs["1"]
	img := bytes.Clone(v1)
	copy(img[512<<10:], v1[1280<<10:2048<<10])
	copy(img[1280<<10:], v1[512<<10:1280<<10])
	rand.NewChaCha8([32]byte{9}).Read(img[2560<<10 : 2660<<10])
	path := filepath.Join(r.t.TempDir(), "rootfs.img")
	if err := os.WriteFile(path, img, 0o600); err != nil {
		r.t.Fatal(err)
	}
	p := verity.DefaultParams()
	im, err := r.r.AddImage(context.Background(), "rootfs", path, publish.ImageOptions{
		Params: chunk.Params{Min: 4 << 10, Avg: 16 << 10, Max: 64 << 10}, Digest: chunk.SHA512256, Verity: &p,
	})
	if err != nil {
		r.t.Fatal(err)
	}
	rel := release.Release{Board: "qemu-x86_64", Version: "2", Created: time.Now().UTC(), Images: []release.Image{im}}
	if err := r.r.AddRelease(rel, r.keys); err != nil {
		r.t.Fatal(err)
	}
	r.imgs["2"] = img
	r.rels["2"] = rel
}

var errCut = errors.New("power cut")

// cutTarget is a slot whose writes fail from the (n+1)th on, as if the
// power went: what was written before stays.
type cutTarget struct {
	inplace.Target
	n, writes int
}

func (c *cutTarget) WriteAt(p []byte, off int64) (int, error) {
	c.writes++
	if c.n >= 0 && c.writes > c.n {
		return 0, errCut
	}
	return c.Target.WriteAt(p, off)
}

func (c *cutTarget) Flush() error {
	if c.n >= 0 && c.writes > c.n {
		return errCut
	}
	return c.Target.Flush()
}

// cutAfter makes the flow's slot fail after n writes (n < 0: never) and
// returns the counter of writes.
func cutAfter(n int) (func(string) (inplace.Target, io.Closer, error), *cutTarget) {
	ct := &cutTarget{n: n}
	return func(dev string) (inplace.Target, io.Closer, error) {
		t, c, err := openSlotFile(dev)
		if err != nil {
			return nil, nil, err
		}
		ct.Target = t
		return ct, c, nil
	}, ct
}

// runWith runs the flow with the in-place seam set.
func (d *device) runWith(src Sources, cmdline string, open func(string) (inplace.Target, io.Closer, error)) Result {
	_, res := d.runConsole(src, cmdline, open)
	return res
}

// runConsole runs the flow with the in-place seam set and returns its
// console too.
// testKernel is the kernel release the test flows report.
const testKernel = "6.1.0-test"

func (d *device) runConsole(src Sources, cmdline string, open func(string) (inplace.Target, io.Closer, error)) (string, Result) {
	d.t.Helper()
	var console bytes.Buffer
	d.sys.calls = nil
	var sys System = d.sys
	if d.sysw != nil {
		sys = d.sysw
	}
	f := &flow{sys: sys, src: src, board: d.board, etc: d.etc, console: &console, now: time.Now, openSlot: open, inplaceRAM: 64 << 10, inplaceCommit: testCommit, fleetBackoff: time.Millisecond, kernel: testKernel}
	if err := f.run(context.Background(), cmdline); err != nil {
		d.t.Fatalf("run: %v\n%s", err, console.String())
	}
	out := console.String()
	i := strings.LastIndex(out, ResultMarker+" ")
	if i < 0 {
		d.t.Fatalf("no %s line:\n%s", ResultMarker, out)
	}
	line, _, _ := strings.Cut(out[i+len(ResultMarker)+1:], "\n")
	var res Result
	if err := json.Unmarshal([]byte(line), &res); err != nil {
		d.t.Fatalf("%s: %v", line, err)
	}
	if !res.OK && !strings.Contains(res.Error, errCut.Error()) {
		d.t.Logf("console:\n%s", out)
	}
	return out, res
}

// testCommit is the test's commit interval, small so that the update
// commits many times.
const testCommit = 32 << 10

const smallCmdline = "lifeboat.layout=small lifeboat.after=reboot lifeboat.onfail=reboot"

// checkDone checks the slot holds v2, the bootloader tries A with recovery
// behind it, and the in-place files are gone.
func checkDone(t *testing.T, r *repo, d *device) {
	t.Helper()
	im, want := r.slotContent("2")
	if !bytes.Equal(d.slotBytes("rootfs", im.Size), want) {
		t.Fatal("the slot does not hold v2")
	}
	env := d.env()
	if env[slot.OrderVar] != "A recovery" || env[slot.LeftVar("A")] != "3" || env[slot.TryVar] != "A" ||
		env["LIFEBOAT_A_VERITY"] != fmt.Sprintf("%d:%s", im.Verity.HashOffset, im.Verity.RootHash) {
		t.Errorf("grubenv after the update = %v; want A tried (3 left) before recovery, with its verity", env)
	}
	data := d.sys.mounts[d.sys.parts["data"]]
	idx, err := chunk.ReadIndexFile(filepath.Join(data, install.SlotIndexName("A", "rootfs")))
	if err != nil {
		t.Fatal(err)
	}
	if idx.Size() != uint64(im.Size) {
		t.Errorf("kept index covers %d bytes, want v2's %d", idx.Size(), im.Size)
	}
	left, _ := os.ReadDir(filepath.Join(data, filepath.FromSlash(inplaceDir)))
	if len(left) != 0 {
		t.Errorf("in-place files left on the data partition: %v", left)
	}
}

// TestUpdateInPlace updates the only slot of the small layout from v1 to
// v2: only the chunks v2 has beyond v1 cross the network, and the
// bootloader tries the slot once it is whole.
func TestUpdateInPlace(t *testing.T) {
	r := newRepo(t)
	r.publish("1")
	r.publish("2")
	d := newSmallDevice(t, r)
	srv := newChunkServer(t, r.dir)
	open, ct := cutAfter(-1)
	res := d.runWith(&fakeSources{offered: srv.URL + "/"}, smallCmdline, open)
	if !res.OK || res.Version != "2" || res.Slot != "A" {
		t.Fatalf("result %+v", res)
	}
	checkDone(t, r, d)
	if need := r.needBytes("2", "1"); res.FetchedBytes != need {
		t.Errorf("fetched %d bytes, want %d: the chunks v2 has beyond v1", res.FetchedBytes, need)
	}
	for p, n := range srv.counts() {
		if n != 1 {
			t.Errorf("chunk %s fetched %d times", p, n)
		}
	}
	if ct.writes == 0 {
		t.Fatal("no write reached the slot")
	}
	for _, ph := range []string{"mount", "network", "plan", "install", "switch"} {
		if !containsPhase(res, ph) {
			t.Errorf("result lacks phase %s: %+v", ph, res.Phases)
		}
	}
	if got := d.sys.calls[len(d.sys.calls)-1]; got != "reboot" {
		t.Errorf("last call %s, want reboot", got)
	}

	// The same release again: nothing written.
	res = d.runWith(&fakeSources{offered: srv.URL + "/"}, smallCmdline, nil)
	if !res.OK || !res.UpToDate || res.FetchedBytes != 0 {
		t.Errorf("up-to-date result %+v", res)
	}

	// A cut after the release was recorded, before the switch: the journal
	// is still there and recovery first. The next run only switches.
	data := d.sys.mounts[d.sys.parts["data"]]
	if err := os.WriteFile(filepath.Join(data, filepath.FromSlash(inplaceJournal("rootfs"))), []byte("left"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := d.env()
	env[slot.OrderVar], env[slot.LeftVar("A")] = "recovery A", "0"
	if err := d.envFile().Save(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	res = d.runWith(&fakeSources{offered: srv.URL + "/"}, smallCmdline, nil)
	if !res.OK || res.FetchedBytes != 0 || !containsPhase(res, "switch") {
		t.Errorf("switch-only result %+v", res)
	}
	checkDone(t, r, d)
}

// TestUpdateInPlaceNoIndex: without the kept index of the installed image
// the flow refuses before writing anything.
func TestUpdateInPlaceNoIndex(t *testing.T) {
	r := newRepo(t)
	r.publish("1")
	r.publish("2")
	d := newSmallDevice(t, r)
	data := d.sys.mounts[d.sys.parts["data"]]
	if err := os.Remove(filepath.Join(data, install.SlotIndexName("A", "rootfs"))); err != nil {
		t.Fatal(err)
	}
	before := d.env()
	open, ct := cutAfter(-1)
	res := d.runWith(&fakeSources{bundle: r.dir}, smallCmdline, open)
	if res.OK || res.Check != "plan" || !strings.Contains(res.Error, ErrNoInstalledIndex.Error()) {
		t.Errorf("result %+v, want refused at plan with %q", res, ErrNoInstalledIndex)
	}
	if ct.writes != 0 {
		t.Errorf("%d writes into the slot", ct.writes)
	}
	if got := d.env(); fmt.Sprint(got) != fmt.Sprint(before) {
		t.Errorf("grubenv changed: %v -> %v", before, got)
	}
}

// TestUpdateInPlacePowerCut cuts the power after a random number of
// writes into the slot, then boots again: the bootloader picks recovery,
// the same flow resumes and finishes, and no chunk whose write reached
// the slot is fetched again.
func TestUpdateInPlacePowerCut(t *testing.T) {
	r := newRepo(t)
	r.publish("1")
	r.publishSwapped()

	// The writes of an uncut run.
	d := newSmallDevice(t, r)
	open, ct := cutAfter(-1)
	out, res := d.runConsole(&fakeSources{bundle: r.dir}, smallCmdline, open)
	if !res.OK {
		t.Fatalf("result %+v", res)
	}
	checkDone(t, r, d)
	total := ct.writes
	// The swap makes cycles of moves: some old chunks wait in RAM, the
	// rest in the spill file.
	m := regexp.MustCompile(`, (\d+) moved, .* (\d+) stashed .* (\d+) spilled`).FindStringSubmatch(out)
	if m == nil || m[1] == "0" || m[2] == "0" || m[3] == "0" {
		t.Fatalf("plan %q: want moves, stashes and spills", m)
	}
	t.Logf("plan%s; %d writes", m[0], total)

	if total < 24 {
		t.Fatalf("an uncut run writes %d times, want at least 24 places to cut", total)
	}
	// 24 cuts: the first write refused, the last one, and 22 between at
	// random (every cut takes long under -race).
	rng := rand.New(rand.NewPCG(7, 11))
	cuts := []int{0, total - 1}
	for _, n := range rng.Perm(total - 2)[:22] {
		cuts = append(cuts, n+1)
	}
	for _, n := range cuts {
		t.Run(fmt.Sprintf("after%d", n), func(t *testing.T) {
			d := newSmallDevice(t, r)
			srv := newChunkServer(t, r.dir)
			src := &fakeSources{offered: srv.URL + "/"}
			open, _ := cutAfter(n)
			res := d.runWith(src, smallCmdline, open)
			if res.OK || !strings.Contains(res.Error, errCut.Error()) {
				t.Fatalf("cut run: result %+v, want a failure from the cut", res)
			}
			if got := d.env()[slot.OrderVar]; !strings.HasPrefix(got, "recovery") {
				t.Errorf("BOOT_ORDER after the cut = %q, want recovery first", got)
			}
			booted, err := slot.SimulateBoot(context.Background(), d.envFile(), []slot.Name{"A", slot.Recovery}, slot.DefaultTries)
			if err != nil || booted != slot.Recovery {
				t.Errorf("the bootloader boots %q (%v) after the cut, want recovery", booted, err)
			}
			before := srv.counts()

			res = d.runWith(src, smallCmdline, nil)
			if !res.OK || res.Version != "2" {
				t.Fatalf("resumed run: result %+v", res)
			}
			checkDone(t, r, d)
			var again int64
			for p, n := range srv.counts() {
				if before[p] > 0 && n > before[p] {
					fi, err := os.Stat(filepath.Join(r.dir, filepath.FromSlash(p)))
					if err != nil {
						t.Fatal(err)
					}
					again += fi.Size()
				}
			}
			// Only the chunk whose write the cut refused crosses twice
			// (at most 64 KiB, the largest chunk): every chunk written
			// before the cut is found in place by the resumed run.
			if limit := int64(64 << 10); again > limit {
				t.Errorf("%d bytes of chunks fetched before the cut were fetched again, want at most %d", again, limit)
			}
			t.Logf("cut after %d writes: %d bytes fetched again", n, again)
		})
	}
}

func containsPhase(res Result, name string) bool {
	for _, p := range res.Phases {
		if p.Name == name {
			return true
		}
	}
	return false
}

// TestInPlaceParams checks that lifeboat.inplace_ram reaches the plan: a
// smaller RAM budget than the flow's keeps less in RAM and spills more.
func TestInPlaceParams(t *testing.T) {
	r := newRepo(t)
	r.publish("1")
	r.publishSwapped()
	planRE := regexp.MustCompile(`; \d+ stashed \(peak (\d+) bytes of RAM\), (\d+) spilled`)
	plan := func(cmdline string) (peak, spilled int) {
		t.Helper()
		d := newSmallDevice(t, r)
		out, res := d.runConsole(&fakeSources{bundle: r.dir}, smallCmdline+cmdline, nil)
		if !res.OK {
			t.Fatalf("%s: result %+v", cmdline, res)
		}
		checkDone(t, r, d)
		m := planRE.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("%s: no plan line:\n%s", cmdline, out)
		}
		fmt.Sscan(m[1], &peak)
		fmt.Sscan(m[2], &spilled)
		return peak, spilled
	}
	peak, spilled := plan("")
	budget := 16 << 10
	if peak <= budget {
		t.Fatalf("with the flow's budget the plan keeps %d bytes in RAM at most; the test needs more than %d", peak, budget)
	}
	peak2, spilled2 := plan(" lifeboat.inplace_ram=16K")
	if peak2 > budget || spilled2 <= spilled {
		t.Errorf("lifeboat.inplace_ram=16K: peak %d bytes of RAM, %d spilled; want at most %d, and more than the %d spilled with the flow's budget", peak2, spilled2, budget, spilled)
	}
}
