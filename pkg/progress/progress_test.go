package progress

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestBytes(t *testing.T) {
	for _, tc := range []struct {
		n    int64
		want string
	}{
		{0, "0 B"}, {1023, "1023 B"}, {1024, "1.0 KiB"}, {1536, "1.5 KiB"},
		{5 << 20, "5.0 MiB"}, {3 << 30, "3.0 GiB"},
	} {
		if got := Bytes(tc.n); got != tc.want {
			t.Errorf("Bytes(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}

func TestLines(t *testing.T) {
	var buf bytes.Buffer
	now := time.Unix(0, 0)
	l := &Lines{W: &buf, Step: 25, Every: time.Hour, Now: func() time.Time { return now }}
	l.Start("write", 100)
	for range 10 {
		l.Add(10) // a line at 30%, 50%, 80%, 100%
	}
	now = now.Add(2 * time.Second)
	l.Done()
	got := strings.Split(strings.TrimSpace(buf.String()), "\n")
	want := []string{
		"write: 100 B to go",
		"write:  30% 30 B of 100 B",
		"write:  50% 50 B of 100 B",
		"write:  80% 80 B of 100 B",
		"write: 100% 100 B of 100 B",
		"write: done, 100 B in 2s (50 B/s)",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("Lines printed:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if strings.Contains(buf.String(), "\r") {
		t.Error("Lines printed a carriage return; serial consoles need whole lines")
	}
}

func TestLinesEvery(t *testing.T) {
	var buf bytes.Buffer
	now := time.Unix(0, 0)
	l := &Lines{W: &buf, Step: 50, Every: time.Second, Now: func() time.Time { return now }}
	l.Start("x", 1000)
	l.Add(1) // too little, too soon
	now = now.Add(time.Second)
	l.Add(1) // too little, but a second passed
	if n := strings.Count(buf.String(), "\n"); n != 2 {
		t.Errorf("Lines printed %d lines, want 2 (start, then one after Every):\n%s", n, buf.String())
	}
}

func TestBar(t *testing.T) {
	var buf bytes.Buffer
	b := &Bar{W: &buf}
	b.Start("fetch", 200)
	b.Add(200)
	b.Done()
	if !strings.Contains(buf.String(), "100%") || !strings.HasSuffix(buf.String(), "\n") {
		t.Errorf("Bar drew %q, want a final 100%% line ending in a newline", buf.String())
	}
}
