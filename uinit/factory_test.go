package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lifeboat-update/lifeboat/pkg/board"
	"github.com/lifeboat-update/lifeboat/pkg/bootenv"
	"github.com/lifeboat-update/lifeboat/pkg/chunk"
	"github.com/lifeboat-update/lifeboat/pkg/durable"
	"github.com/lifeboat-update/lifeboat/pkg/factory"
	"github.com/lifeboat-update/lifeboat/pkg/inplace"
	"github.com/lifeboat-update/lifeboat/pkg/install"
	"github.com/lifeboat-update/lifeboat/pkg/slot"
)

const resetCmdline = "lifeboat.mode=factory-reset lifeboat.layout=small lifeboat.onfail=reboot"

// userFile is a file the device's user left on the data partition.
const userFile = "home/user/notes.txt"

// newFactoryDevice is newSmallDevice after an update: the slot holds v2,
// the factory partition v1 with its record on the ESP, and the data
// partition a user's file.
func newFactoryDevice(t *testing.T, r *repo) *device {
	t.Helper()
	d := newSmallDevice(t, r)
	im1, v1 := r.slotContent("1")
	_, v2 := r.slotContent("2")
	writeAt(t, d.sys.parts["factory"], v1)
	writeAt(t, d.sys.parts["rootfs"], v2)
	idx, err := os.ReadFile(filepath.Join(r.dir, filepath.FromSlash(im1.Index.Path)))
	if err != nil {
		t.Fatal(err)
	}
	if err := factory.Write(durable.OS(d.esp), factory.Record{Board: d.board.Name, Version: "1", Image: im1}, idx); err != nil {
		t.Fatal(err)
	}
	data := d.sys.mounts[d.sys.parts["data"]]
	if err := os.MkdirAll(filepath.Join(data, filepath.Dir(userFile)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, userFile), []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	return d
}

func writeAt(t *testing.T, file string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(file, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, 0); err != nil {
		t.Fatal(err)
	}
}

// checkReset checks that the slot holds v1, the bootloader tries it with
// its verity argument and the reset's mode gone, and the data partition
// is a new ext4 with the trusted state, v1 installed and v1's index kept.
func checkReset(t *testing.T, r *repo, d *device) {
	t.Helper()
	im, want := r.slotContent("1")
	if !bytes.Equal(d.slotBytes("rootfs", im.Size), want) {
		t.Error("the slot does not hold v1, the factory image")
	}
	env := d.env()
	if env[slot.OrderVar] != "A recovery" || env[slot.LeftVar("A")] != "3" || env[slot.TryVar] != "A" || env[ModeVar] != "" ||
		env["LIFEBOAT_A_VERITY"] != fmt.Sprintf("%d:%s", im.Verity.HashOffset, im.Verity.RootHash) {
		t.Errorf("grubenv after the reset = %v; want A tried (3 left) before recovery, with v1's verity, and no %s", env, ModeVar)
	}
	if _, ok := ext4UUID(d.sys.parts["data"]); !ok {
		t.Error("the data partition holds no ext4 file system")
	}
	data := d.sys.mounts[d.sys.parts["data"]]
	if _, err := os.Stat(filepath.Join(data, userFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the user's file survived the reset: %v", err)
	}
	if _, err := os.Stat(filepath.Join(data, "lifeboat", "state", "root.json")); err != nil {
		t.Errorf("no trusted state: %v", err)
	}
	var st struct{ Installed string }
	b, err := os.ReadFile(filepath.Join(data, "lifeboat", "state", "state.json"))
	if err == nil {
		err = json.Unmarshal(b, &st)
	}
	if err != nil || st.Installed != "1" {
		t.Errorf("state.json: installed %q (%v), want 1", st.Installed, err)
	}
	idx, err := chunk.ReadIndexFile(filepath.Join(data, install.SlotIndexName("A", "rootfs")))
	if err != nil || idx.Size() != uint64(im.Size) {
		t.Errorf("kept index of A: %v, want v1's (%d bytes)", err, im.Size)
	}
}

// TestFactoryReset resets a small device holding v2 and a user's file:
// v1 comes back from the factory partition, the data partition is new,
// and the device then updates to v2 in place again, seeded by the kept
// index, fetching only what v2 has beyond v1.
func TestFactoryReset(t *testing.T) {
	r := newRepo(t)
	r.publish("1")
	r.publish("2")
	d := newFactoryDevice(t, r)
	out, res := d.run(nil, resetCmdline)
	if !res.OK || res.Mode != FactoryResetMode || res.Version != "1" || res.Slot != "A" || res.Resumed ||
		len(res.Wiped) != 1 || res.Wiped[0].Label != "data" || res.Wiped[0].Verified != dataSize {
		t.Fatalf("result %+v\n%s", res, out)
	}
	checkReset(t, r, d)
	for _, ph := range []string{"check", "restore", "data", "switch"} {
		if !containsPhase(res, ph) {
			t.Errorf("result lacks phase %s: %+v", ph, res.Phases)
		}
	}
	if got := d.sys.calls[len(d.sys.calls)-1]; got != "reboot" {
		t.Errorf("last call %s, want reboot (the default after a reset)", got)
	}
	if booted, err := slot.SimulateBoot(context.Background(), d.envFile(), []slot.Name{"A", slot.Recovery}, slot.DefaultTries); err != nil || booted != "A" {
		t.Errorf("the bootloader boots %q (%v) after the reset, want A", booted, err)
	}

	srv := newChunkServer(t, r.dir)
	res = d.runWith(&fakeSources{offered: srv.URL + "/"}, smallCmdline, nil)
	if !res.OK || res.Version != "2" {
		t.Fatalf("update after the reset: result %+v", res)
	}
	checkDone(t, r, d)
	if need := r.needBytes("2", "1"); res.FetchedBytes != need {
		t.Errorf("the update after the reset fetched %d bytes, want %d: the chunks v2 has beyond v1", res.FetchedBytes, need)
	}
}

// TestFactoryResetRefused: a factory partition or record that does not
// match is refused before anything is written.
func TestFactoryResetRefused(t *testing.T) {
	for _, tc := range []struct {
		name    string
		damage  func(t *testing.T, d *device)
		check   string
		message string
	}{
		{"factory partition", func(t *testing.T, d *device) {
			f, err := os.OpenFile(d.sys.parts["factory"], os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteAt([]byte("rot"), 1<<20); err != nil {
				t.Fatal(err)
			}
		}, "factory", "factory partition factory: " + install.ErrSlotMismatch.Error()},
		{"no record", func(t *testing.T, d *device) {
			if err := os.RemoveAll(filepath.Join(d.esp, filepath.FromSlash(factory.Dir))); err != nil {
				t.Fatal(err)
			}
		}, "factory", factory.ErrNoRecord.Error()},
		{"index", func(t *testing.T, d *device) {
			name := filepath.Join(d.esp, filepath.FromSlash(factory.IndexName("rootfs")))
			b, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			b[len(b)-1] ^= 1
			if err := os.WriteFile(name, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}, "factory", "does not match the length and SHA-256"},
		{"slot too small", func(t *testing.T, d *device) {
			if err := os.Truncate(d.sys.parts["rootfs"], 1<<20); err != nil {
				t.Fatal(err)
			}
		}, "factory", "does not fit in rootfs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRepo(t)
			r.publish("1")
			r.publish("2")
			d := newFactoryDevice(t, r)
			tc.damage(t, d)
			before, env := partBytes(t, d), d.env()
			out, res := d.run(nil, resetCmdline)
			if res.OK || res.Check != tc.check || !strings.Contains(res.Error, tc.message) {
				t.Fatalf("result %+v, want a failure of check %q saying %q\n%s", res, tc.check, tc.message, out)
			}
			if !strings.Contains(out, "nothing was switched") {
				t.Errorf("the console does not say nothing was switched:\n%s", out)
			}
			for label, b := range partBytes(t, d) {
				if !bytes.Equal(b, before[label]) {
					t.Errorf("%s changed, though the reset was refused", label)
				}
			}
			if got := d.env(); fmt.Sprint(got) != fmt.Sprint(env) {
				t.Errorf("grubenv changed: %v -> %v", env, got)
			}
		})
	}
}

// cutSys is a System whose power goes at the nth Partition call: every
// step of the reset starts with one.
type cutSys struct {
	*fakeSys
	n, calls int
}

func (s *cutSys) Partition(ctx context.Context, label string) (string, error) {
	s.calls++
	if s.calls > s.n {
		return "", errCut
	}
	return s.fakeSys.Partition(ctx, label)
}

// TestFactoryResetPowerCut cuts the power between the reset's steps (at
// each partition it opens) and in the middle of restoring the slot, then
// boots again: the bootloader boots recovery whenever the first save was
// made, the next run says it resumes, and it ends as an uncut reset does.
func TestFactoryResetPowerCut(t *testing.T) {
	r := newRepo(t)
	r.publish("1")
	r.publish("2")

	// The uncut run: how many partitions it opens, and how many writes it
	// makes into the slot.
	d := newFactoryDevice(t, r)
	cs := &cutSys{fakeSys: d.sys, n: 1 << 30}
	open, ct := cutAfter(-1)
	if _, res := d.runSys(cs, resetCmdline, open); !res.OK {
		t.Fatalf("uncut run: result %+v", res)
	}
	steps, writes := cs.calls, ct.writes
	if steps < 4 || writes < 2 {
		t.Fatalf("an uncut reset opens %d partitions and writes %d times into the slot, want at least 4 and 2", steps, writes)
	}

	type cut struct {
		steps, writes int
	}
	var cuts []cut
	for n := range steps {
		cuts = append(cuts, cut{n, -1})
	}
	rng := rand.New(rand.NewPCG(3, 5))
	cuts = append(cuts, cut{steps, 0}, cut{steps, 1 + rng.IntN(writes-1)})
	for _, c := range cuts {
		t.Run(fmt.Sprintf("partition%d-write%d", c.steps, c.writes), func(t *testing.T) {
			d := newFactoryDevice(t, r)
			env := d.env()
			open, _ := cutAfter(c.writes)
			_, res := d.runSys(&cutSys{fakeSys: d.sys, n: c.steps}, resetCmdline, open)
			if res.OK || !strings.Contains(res.Error, errCut.Error()) {
				t.Fatalf("cut run: result %+v, want a failure from the cut", res)
			}
			started := d.env()[ModeVar] == FactoryResetMode
			if started {
				booted, err := slot.SimulateBoot(context.Background(), d.envFile(), []slot.Name{"A", slot.Recovery}, slot.DefaultTries)
				if err != nil || booted != slot.Recovery {
					t.Errorf("the bootloader boots %q (%v) after the cut, want recovery", booted, err)
				}
			} else if got := d.env(); fmt.Sprint(got) != fmt.Sprint(env) {
				t.Errorf("cut before the first save, but grubenv changed: %v -> %v", env, got)
			}
			out, res := d.run(nil, resetCmdline)
			if !res.OK || res.Version != "1" || res.Resumed != started {
				t.Fatalf("next run: result %+v, want ok, resumed %v\n%s", res, started, out)
			}
			if started && !strings.Contains(out, "resuming") {
				t.Errorf("the resumed run does not say so:\n%s", out)
			}
			checkReset(t, r, d)
		})
	}
}

// runSys runs the flow on sys, with the slot seam open.
func (d *device) runSys(sys System, cmdline string, open func(string) (inplace.Target, io.Closer, error)) (string, Result) {
	d.t.Helper()
	d.sysw = sys
	defer func() { d.sysw = nil }()
	return d.runConsole(nil, cmdline, open)
}

// TestFactoryResetAB: without a factory partition the last known-good
// slot is kept, the data partition is still new, and nothing is recorded
// as installed.
func TestFactoryResetAB(t *testing.T) {
	r := newRepo(t)
	r.publish("1")
	// B good and next, A failed.
	d := newDevice(t, r.root(), bootenv.Vars{slot.OrderVar: "B A recovery", slot.LeftVar("A"): "0", slot.LeftVar("B"): "3", "LIFEBOAT_B_VERITY": "1:ab"})
	slotB := d.slotBytes("rootfs-b", slotSize)
	out, res := d.run(nil, "lifeboat.mode=factory-reset lifeboat.after=poweroff")
	if !res.OK || res.Slot != "B" || res.Version != "" {
		t.Fatalf("result %+v\n%s", res, out)
	}
	if !strings.Contains(out, "keeping slot B, the last known-good one") {
		t.Errorf("the console does not say which slot is kept:\n%s", out)
	}
	if !bytes.Equal(d.slotBytes("rootfs-b", slotSize), slotB) {
		t.Error("slot B changed")
	}
	env := d.env()
	if env[slot.OrderVar] != "B recovery" || env[slot.LeftVar("B")] != "3" || env[slot.TryVar] != "B" || env["LIFEBOAT_B_VERITY"] != "1:ab" || env[ModeVar] != "" {
		t.Errorf("grubenv after the reset = %v; want B tried, its verity kept", env)
	}
	data := d.sys.mounts[d.sys.parts["data"]]
	if _, err := os.Stat(filepath.Join(data, "lifeboat", "state", "root.json")); err != nil {
		t.Errorf("no trusted state: %v", err)
	}
	if _, err := os.Stat(filepath.Join(data, "lifeboat", "state", "state.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state.json after an A/B reset: %v, want none (the version in B is not known)", err)
	}

	// No good slot: refused before anything is written.
	d = newDevice(t, r.root(), bootenv.Vars{slot.OrderVar: "A B recovery", slot.LeftVar("A"): "0", slot.LeftVar("B"): "0"})
	before := partBytes(t, d)
	out, res = d.run(nil, "lifeboat.mode=factory-reset lifeboat.onfail=poweroff")
	if res.OK || res.Check != "check" || !strings.Contains(res.Error, "no slot is good") {
		t.Fatalf("result %+v, want a refusal at check\n%s", res, out)
	}
	for label, b := range partBytes(t, d) {
		if !bytes.Equal(b, before[label]) {
			t.Errorf("%s changed, though the reset was refused", label)
		}
	}
}

func TestParseParamsFactoryReset(t *testing.T) {
	p, err := parseParams("lifeboat.mode=factory-reset lifeboat.layout=small")
	if err != nil || p.mode != FactoryResetMode {
		t.Errorf("parseParams = %+v, %v; want mode factory-reset", p, err)
	}
}

// TestFactoryResetEncrypted: an encrypted data partition is crypto-erased,
// its sealed key removed, and left without a file system, saying why.
func TestFactoryResetEncrypted(t *testing.T) {
	r := newRepo(t)
	r.publish("1")
	// pkg/dmcrypt's golden LUKS2 volume, its key sealed beside the
	// environment.
	d := newCryptDevice(t, r.root(), bootenv.Vars{slot.OrderVar: "A B recovery", slot.LeftVar("A"): "3", slot.LeftVar("B"): "0"},
		nil, func(pass []byte) []byte { return []byte("sealed") })
	key := filepath.Join(d.esp, filepath.FromSlash(board.SealedKeyPath("data")))
	out, res := d.run(nil, "lifeboat.mode=factory-reset lifeboat.layout=ab-crypt lifeboat.after=poweroff")
	if !res.OK || res.Slot != "A" || len(res.Wiped) != 1 || res.Wiped[0].Label != "data" {
		t.Fatalf("result %+v\n%s", res, out)
	}
	if !strings.Contains(out, "cannot be re-keyed here (no LUKS2 formatter yet)") {
		t.Errorf("the console does not say the partition is left without a file system:\n%s", out)
	}
	if b := d.slotBytes("data", 8); bytes.HasPrefix(b, []byte("LUKS")) {
		t.Errorf("the data partition still starts with LUKS magic: %q", b)
	}
	if _, err := os.Stat(key); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the sealed key is still there: %v", err)
	}
	if env := d.env(); env[slot.OrderVar] != "A recovery" || env[ModeVar] != "" {
		t.Errorf("grubenv after the reset = %v", env)
	}
}
