package main

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/lifeboat-update/lifeboat/pkg/bootenv"
	"github.com/lifeboat-update/lifeboat/pkg/slot"
)

// partBytes reads every partition file of d.
func partBytes(t *testing.T, d *device) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for label, file := range d.sys.parts {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		out[label] = b
	}
	return out
}

func TestWipe(t *testing.T) {
	// A good, B failed (no tries left), as after a failed update.
	env := bootenv.Vars{slot.OrderVar: "A B recovery", slot.LeftVar("A"): "3", slot.LeftVar("B"): "0"}
	for _, tc := range []struct {
		name    string
		cmdline string
		wiped   []string
		calls   string // the last call
	}{
		{"data", "lifeboat.mode=wipe lifeboat.wipe=data", []string{"data"}, "reboot"},
		{"data, power off", "lifeboat.mode=wipe lifeboat.wipe=data lifeboat.after=poweroff", []string{"data"}, "poweroff"},
		{"failed slot and data", "lifeboat.mode=wipe lifeboat.wipe=rootfs-b,data,rootfs-b lifeboat.after=poweroff", []string{"rootfs-b", "data"}, "poweroff"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDevice(t, []byte("{}"), env)
			before := partBytes(t, d)
			out, res := d.run(nil, tc.cmdline)
			if !res.OK || res.Mode != "wipe" || len(res.Wiped) != len(tc.wiped) {
				t.Fatalf("result %+v, want ok, mode wipe, %d partitions wiped\n%s", res, len(tc.wiped), out)
			}
			for i, label := range tc.wiped {
				size := int64(slotSize)
				if label == "data" {
					size = dataSize
				}
				if w := res.Wiped[i]; w.Label != label || w.Bytes != size || w.Verified != size {
					t.Errorf("wiped[%d] = %+v, want %s, %d bytes wiped and verified", i, w, label, size)
				}
			}
			after := partBytes(t, d)
			for label, b := range after {
				switch {
				case label == "data":
					// A new, empty ext4, so that the device keeps updating.
					if _, ok := ext4UUID(d.sys.parts[label]); !ok {
						t.Errorf("data holds no ext4 file system after the wipe")
					}
					if bytes.Contains(b, before[label][:64<<10]) {
						t.Errorf("data still holds its old bytes after the wipe")
					}
				case strings.Contains(tc.cmdline, label):
					if !bytes.Equal(b, make([]byte, len(b))) {
						t.Errorf("%s does not read as zeros after the wipe", label)
					}
				case !bytes.Equal(b, before[label]):
					t.Errorf("%s changed, but was not to be wiped", label)
				}
			}
			for _, ph := range []string{"modules", "check", "wipe"} {
				if !strings.Contains(out, PhaseMarker+" name="+ph+" ") {
					t.Errorf("console lacks phase %s:\n%s", ph, out)
				}
			}
			if !strings.Contains(out, `"mode":"wipe"`) {
				t.Errorf("result line lacks \"mode\":\"wipe\":\n%s", out)
			}
			if calls := d.sys.calls; calls[len(calls)-1] != tc.calls {
				t.Errorf("calls = %v, want %s last", calls, tc.calls)
			}
		})
	}
}

func TestWipeRefused(t *testing.T) {
	for _, tc := range []struct {
		name    string
		env     bootenv.Vars
		wipe    string
		check   string
		message string
	}{
		{"good slot", nil, "rootfs-a", wipeCheck, "wipe rootfs-a: slot A is good"},
		{"slot on trial", bootenv.Vars{slot.OrderVar: "B A recovery", slot.LeftVar("A"): "3", slot.LeftVar("B"): "2", "upgrade_available": "B"}, "rootfs-b", wipeCheck, "slot B is"},
		{"next slot", bootenv.Vars{slot.OrderVar: "B A recovery", slot.LeftVar("A"): "3", slot.LeftVar("B"): "3"}, "rootfs-b", wipeCheck, "slot B is"},
		{"esp", nil, "esp", wipeCheck, "wipe esp: it holds the bootloader environment"},
		{"unknown", nil, "home", wipeCheck, "wipe home: layout ab has no such partition (it has esp, rootfs-a, rootfs-b, data)"},
		{"none", nil, "", wipeCheck, "wants lifeboat.wipe=LABEL"},
		// The data partition is not wiped when a later label is refused.
		{"data then good slot", nil, "data,rootfs-a", wipeCheck, "wipe rootfs-a"},
		{"bad layout", nil, "data lifeboat.layout=abc", "layout", `no layout "abc"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := tc.env
			if env == nil {
				env = bootenv.Vars{slot.OrderVar: "A B recovery", slot.LeftVar("A"): "3", slot.LeftVar("B"): "0"}
			}
			d := newDevice(t, []byte("{}"), env)
			before := partBytes(t, d)
			out, res := d.run(nil, "lifeboat.mode=wipe lifeboat.onfail=poweroff lifeboat.wipe="+tc.wipe)
			if res.OK || res.Check != tc.check || !strings.Contains(res.Error, tc.message) || res.Mode != "wipe" || len(res.Wiped) != 0 {
				t.Fatalf("result %+v, want a failure of check %q saying %q\n%s", res, tc.check, tc.message, out)
			}
			if !strings.Contains(out, "FAILED ("+tc.check+")") {
				t.Errorf("the console does not name the check:\n%s", out)
			}
			for label, b := range partBytes(t, d) {
				if !bytes.Equal(b, before[label]) {
					t.Errorf("%s changed, though the wipe was refused", label)
				}
			}
			if calls := d.sys.calls; calls[len(calls)-1] != "poweroff" {
				t.Errorf("calls = %v, want poweroff last", calls)
			}
		})
	}
}

func TestWipeError(t *testing.T) {
	d := newDevice(t, []byte("{}"), nil)
	delete(d.sys.parts, "data")
	out, res := d.run(nil, "lifeboat.mode=wipe lifeboat.wipe=data lifeboat.onfail=poweroff")
	if res.OK || res.Check != "wipe" || !strings.Contains(res.Error, `partition "data" not found`) {
		t.Fatalf("result %+v, want check wipe naming the partition\n%s", res, out)
	}
}

func TestParseParamsWipe(t *testing.T) {
	p, err := parseParams("lifeboat.mode=wipe lifeboat.wipe=data,rootfs-b")
	if err != nil || p.mode != "wipe" || p.wipe != "data,rootfs-b" {
		t.Errorf("parseParams = %+v, %v; want mode wipe and wipe data,rootfs-b", p, err)
	}
}

func TestNotWipeable(t *testing.T) {
	f := &flow{}
	f.p.wipe = ""
	if _, err := f.wipeable(t.Context(), nil); !errors.Is(err, ErrNotWipeable) {
		t.Errorf("wipeable with no labels = %v, want ErrNotWipeable", err)
	}
}
