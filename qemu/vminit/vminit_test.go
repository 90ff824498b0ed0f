package vminit

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestRun(t *testing.T) {
	c := &Config{
		Nonce:   "n0nce",
		Modules: []string{"/lib/modules/virtio.ko", "/lib/modules/virtio_blk.ko"},
		Wait:    []string{"/dev/vda"},
		Command: []string{"/test", "-test.run=^TestX$"},
	}
	f := &Fake{Present: map[string]bool{"/dev/vda": true}, Status: 3, Output: "=== RUN TestX\n"}
	var out bytes.Buffer
	status, err := Run(context.Background(), f, c, &out)
	if status != 3 || err != nil {
		t.Errorf("Run = %d, %v; want 3, nil", status, err)
	}
	want := []string{"mount /proc", "mount /sys", "mount /dev", "mount /tmp", "mount /run",
		"load /lib/modules/virtio.ko", "load /lib/modules/virtio_blk.ko", "exec /test -test.run=^TestX$"}
	if d := cmp.Diff(want, f.Calls); d != "" {
		t.Errorf("Run calls (-want +got):\n%s", d)
	}
	if got, want := out.String(), "vminit: n0nce start\n=== RUN TestX\nvminit: n0nce exit 3\n"; got != want {
		t.Errorf("Run console = %q, want %q", got, want)
	}
}

func TestRunErrors(t *testing.T) {
	tests := []struct {
		name string
		fake *Fake
		wait []string
	}{
		{"mount fails", &Fake{Fail: map[string]error{"mount /dev": errors.New("EPERM")}}, nil},
		{"module fails", &Fake{Fail: map[string]error{"load m.ko": errors.New("ENOEXEC")}}, nil},
		{"device never appears", &Fake{}, []string{"/dev/vdb"}},
		{"exec fails", &Fake{Fail: map[string]error{"exec /test": errors.New("ENOENT")}}, nil},
	}
	for _, tt := range tests {
		c := &Config{Nonce: "n", Modules: []string{"m.ko"}, Wait: tt.wait, WaitTimeout: 1, Command: []string{"/test"}}
		var out bytes.Buffer
		if _, err := Run(context.Background(), tt.fake, c, &out); err == nil {
			t.Errorf("%s: Run = nil error, want an error", tt.name)
		}
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		m, ok := ParseMarker(lines[len(lines)-1], "n")
		if !ok || m.Kind != KindError {
			t.Errorf("%s: console = %q, want an error marker", tt.name, out.String())
		}
	}
}

func TestMarkerRoundTrip(t *testing.T) {
	for _, m := range []Marker{{Kind: KindStart}, {Kind: KindExit, Status: 0}, {Kind: KindExit, Status: 137}, {Kind: KindError, Msg: "a\nb"}} {
		got, ok := ParseMarker(m.Format("abc")+"\r", "abc")
		want := m
		want.Msg = strings.ReplaceAll(m.Msg, "\n", " ")
		if !ok || got != want {
			t.Errorf("ParseMarker(Format(%+v)) = %+v, %v; want %+v", m, got, ok, want)
		}
		if _, ok := ParseMarker(m.Format("abc"), "abd"); ok {
			t.Errorf("ParseMarker(%q, other nonce) = ok, want not a marker", m.Format("abc"))
		}
	}
}

// TestParseMarkerConsole reads a captured console: test output that quotes a
// marker is still seen (the nonce makes that unlikely), malformed ones not.
func TestParseMarkerConsole(t *testing.T) {
	f, err := os.Open("testdata/console.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var got []Marker
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m, ok := ParseMarker(sc.Text(), "3f9a2c"); ok {
			got = append(got, m)
		}
	}
	want := []Marker{{Kind: KindStart}, {Kind: KindExit}, {Kind: KindExit}, {Kind: KindExit, Status: 1},
		{Kind: KindError, Msg: "mount -t proc proc /proc: operation not permitted"}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("markers (-want +got):\n%s", d)
	}
}

func TestParseConfig(t *testing.T) {
	tests := []struct {
		in      string
		wantErr bool
	}{
		{in: `{"nonce":"x","command":["/t"]}`},
		{in: `{"nonce":"x","command":[]}`, wantErr: true},
		{in: `{"nonce":"a b","command":["/t"]}`, wantErr: true},
		{in: `{"nonce":"x","command":["/t"],"bogus":1}`, wantErr: true},
		{in: `{`, wantErr: true},
	}
	for _, tt := range tests {
		if _, err := ParseConfig(strings.NewReader(tt.in)); (err != nil) != tt.wantErr {
			t.Errorf("ParseConfig(%s) = %v, want error %v", tt.in, err, tt.wantErr)
		}
	}
}

func FuzzParseMarker(f *testing.F) {
	b, err := os.ReadFile("testdata/console.txt")
	if err != nil {
		f.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f.Add(line)
	}
	f.Fuzz(func(t *testing.T, line string) {
		m, ok := ParseMarker(line, "3f9a2c")
		if !ok {
			return
		}
		if m2, ok := ParseMarker(m.Format("3f9a2c"), "3f9a2c"); !ok || m2 != m {
			t.Fatalf("ParseMarker(Format(%+v)) = %+v, %v", m, m2, ok)
		}
	})
}
