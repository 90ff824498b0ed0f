package ddi

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/lifeboat-update/lifeboat/pkg/api"
)

func TestSleep(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{{time.Second, "00:00:01"}, {5 * time.Minute, "00:05:00"}, {25*time.Hour + 61*time.Second, "25:01:01"}} {
		if got := Sleep(tc.d); got != tc.want {
			t.Errorf("Sleep(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
}

// TestApiStatus: feedback as the status report it stands for.
func TestApiStatus(t *testing.T) {
	p := func(cnt, of int) *Progress { return &Progress{cnt, of} }
	for _, tc := range []struct {
		s    Status
		want api.Status
	}{
		{Status{Execution: Proceeding, Result: Result{Finished: None, Progress: p(1, 2)}}, api.Status{Phase: api.PhaseInstalling, Progress: 0.5, InstalledVersion: "1.0"}},
		{Status{Execution: Proceeding, Result: Result{Finished: None, Progress: p(3, 0)}}, api.Status{Phase: api.PhaseInstalling, InstalledVersion: "1.0"}},
		{Status{Execution: Download, Result: Result{Finished: None}}, api.Status{Phase: api.PhaseDownloading, InstalledVersion: "1.0"}},
		{Status{Execution: Downloaded, Result: Result{Finished: None, Progress: p(5, 2)}}, api.Status{Phase: api.PhaseInstalling, Progress: 1, InstalledVersion: "1.0"}},
		{Status{Execution: Closed, Result: Result{Finished: Success}}, api.Status{Phase: api.PhaseInstalled, Progress: 1, InstalledVersion: "2.0"}},
		{Status{Execution: Closed, Result: Result{Finished: Failure}, Details: []string{"a", "b"}}, api.Status{Phase: api.PhaseFailed, InstalledVersion: "1.0", Error: "hawkBit feedback: closed, failure: a; b"}},
		{Status{Execution: Rejected, Result: Result{Finished: None}}, api.Status{Phase: api.PhaseFailed, InstalledVersion: "1.0", Error: "hawkBit feedback: rejected, none"}},
	} {
		f := Feedback{Status: tc.s}
		got := f.ApiStatus("1.0", "2.0")
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("ApiStatus(%+v): -want +got\n%s", tc.s, diff)
		}
		if err := got.Validate(); err != nil {
			t.Errorf("ApiStatus(%+v) = %+v, which does not validate: %v", tc.s, got, err)
		}
	}
	long := Feedback{Status: Status{Execution: Closed, Result: Result{Finished: Failure}, Details: []string{strings.Repeat("é", 3000)}}}
	if st := long.ApiStatus("1.0", "2.0"); st.Validate() != nil {
		t.Errorf("a failure with long details maps to an invalid status: %v", st.Validate())
	}
}

func TestConfigDataApply(t *testing.T) {
	had := map[string]string{"a": "1", "b": "2"}
	for _, tc := range []struct {
		mode string
		want map[string]string
	}{
		{"", map[string]string{"a": "1", "b": "3", "c": "4"}},
		{"merge", map[string]string{"a": "1", "b": "3", "c": "4"}},
		{"replace", map[string]string{"b": "3", "c": "4"}},
		{"remove", map[string]string{"a": "1"}},
	} {
		c := ConfigData{Mode: tc.mode, Data: map[string]string{"b": "3", "c": "4"}}
		if diff := cmp.Diff(tc.want, c.Apply(had)); diff != "" {
			t.Errorf("mode %q: -want +got\n%s", tc.mode, diff)
		}
	}
}

// TestDecodeSwupdate: the bodies swupdate 2022.12 sends (its
// server_hawkbit.c templates, as filled in) decode.
func TestDecodeSwupdate(t *testing.T) {
	var f Feedback
	b, _ := os.ReadFile("testdata/feedback.json")
	if err := api.Decode(bytes.NewReader(b), api.MaxBodySize, &f); err != nil {
		t.Fatalf("feedback: %v", err)
	}
	if st := f.ApiStatus("1.0", "2.0"); st.Phase != api.PhaseInstalling || st.Progress != 1 {
		t.Errorf("feedback maps to %+v, want installing, progress 1", st)
	}
	var c ConfigData
	b, _ = os.ReadFile("testdata/configdata.json")
	if err := api.Decode(bytes.NewReader(b), api.MaxBodySize, &c); err != nil {
		t.Fatalf("config data: %v", err)
	}
	if diff := cmp.Diff(map[string]string{"hw": "rev-b", "serial": "42"}, c.Data); diff != "" {
		t.Errorf("config data: -want +got\n%s", diff)
	}
}

func TestFiles(t *testing.T) {
	dir := t.TempDir()
	fs, err := OpenFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	var recorded []Sums
	record := func(s Sums) error { recorded = append(recorded, s); return nil }
	s, err := fs.Attach(strings.NewReader("abc"), 3, record)
	want := Sums{Size: 3, SHA256: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", SHA1: "a9993e364706816aba3e25717850c26c9cd0d89d", MD5: "900150983cd24fb0d6963f7d28e17f72"}
	if err != nil || s != want {
		t.Fatalf("Attach(abc) = %+v, %v; want %+v", s, err, want)
	}
	if len(recorded) != 1 || recorded[0] != want {
		t.Errorf("recorded %+v, want the sums once", recorded)
	}
	if _, err := fs.Attach(strings.NewReader("abcd"), 3, record); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Attach(abcd, 3) = %v, want ErrTooLarge", err)
	}
	if len(recorded) != 1 {
		t.Errorf("a refused upload was recorded: %+v", recorded)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("store holds %d files, want 1 (no leftover of the refused upload)", len(ents))
	}
	refused := errors.New("refused")
	other, err := fs.Attach(strings.NewReader("other"), 10, func(Sums) error { return refused })
	if !errors.Is(err, refused) {
		t.Errorf("Attach with a refusing record = %v, want its error", err)
	}
	f, err := fs.Open(want.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := fs.Open("../" + filepath.Base(dir)); err == nil {
		t.Error("Open of a path that is not a SHA-256 succeeded")
	}

	// A collection keeps what keep names, removes the rest (the refused
	// file, and the remains of an upload cut short without counting them).
	if err := os.WriteFile(filepath.Join(dir, ".upload-1"), []byte("cut"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := fs.Collect(context.Background(), func(context.Context) ([]string, error) { return nil, refused }); !errors.Is(err, refused) {
		t.Errorf("Collect with a failing keep = %v, want its error", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 3 {
		t.Errorf("a failed collection removed files: %d left, want 3", len(ents))
	}
	n, b, err := fs.Collect(context.Background(), func(context.Context) ([]string, error) { return []string{want.SHA256}, nil })
	if err != nil || n != 1 || b != other.Size {
		t.Errorf("Collect = %d files, %d bytes, %v; want 1, %d", n, b, err, other.Size)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 || ents[0].Name() != want.SHA256 {
		t.Errorf("after the collection the store holds %v, want only %s", ents, want.SHA256)
	}
}

// FuzzDecodeFeedback: no feedback body panics the decoder, and one that
// decodes maps to a status report that validates.
func FuzzDecodeFeedback(f *testing.F) {
	for _, name := range []string{"feedback.json", "configdata.json"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var fb Feedback
		if err := api.Decode(bytes.NewReader(b), api.MaxBodySize, &fb); err == nil {
			if st := fb.ApiStatus("1.0", "2.0"); st.Validate() != nil {
				t.Errorf("%q maps to %+v: %v", b, st, st.Validate())
			}
		}
		var c ConfigData
		if err := api.Decode(bytes.NewReader(b), api.MaxBodySize, &c); err == nil {
			inv := api.Inventory{Attributes: c.Apply(map[string]string{"x": "y"})}
			if len(inv.Attributes) <= api.MaxAttributes && inv.Validate() != nil {
				t.Errorf("%q applies to invalid attributes: %v", b, inv.Validate())
			}
		}
	})
}
