// Package progress reports the progress of long operations on a terminal or
// on a serial console.
//
// A Reporter is passed to the operation; it is never global. Bar redraws one
// line in place and suits an interactive terminal; Lines prints a whole line
// at each step and suits serial consoles and logs, where carriage returns
// make a mess.
package progress

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// Reporter receives the progress of one operation. Add may be called from
// several goroutines at once.
type Reporter interface {
	Start(what string, total int64)
	Add(n int64)
	Done()
}

// Discard is a Reporter that reports nothing.
var Discard Reporter = discard{}

type discard struct{}

func (discard) Start(string, int64) {}
func (discard) Add(int64)           {}
func (discard) Done()               {}

// Tee returns a Reporter that passes every call to each of rs, in order.
func Tee(rs ...Reporter) Reporter { return tee(rs) }

type tee []Reporter

func (t tee) Start(what string, total int64) {
	for _, r := range t {
		r.Start(what, total)
	}
}

func (t tee) Add(n int64) {
	for _, r := range t {
		r.Add(n)
	}
}

func (t tee) Done() {
	for _, r := range t {
		r.Done()
	}
}

// Lines prints a line each time another Step percent is done, and at least
// every Every while work goes on.
type Lines struct {
	W     io.Writer
	Step  int           // percent between lines; default 10
	Every time.Duration // default 10s
	Now   func() time.Time

	mu       sync.Mutex
	what     string
	total    int64
	done     atomic.Int64
	lastPct  int
	lastTime time.Time
	started  time.Time
}

func (l *Lines) now() time.Time {
	if l.Now != nil {
		return l.Now()
	}
	return time.Now()
}

// Start begins reporting an operation of total bytes.
func (l *Lines) Start(what string, total int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.what, l.total = what, total
	l.done.Store(0)
	l.started = l.now()
	l.lastTime, l.lastPct = l.started, 0
	fmt.Fprintf(l.W, "%s: %s to go\n", what, Bytes(total))
}

// Add records n more bytes done.
func (l *Lines) Add(n int64) {
	done := l.done.Add(n)
	step := l.Step
	if step <= 0 {
		step = 10
	}
	every := l.Every
	if every <= 0 {
		every = 10 * time.Second
	}
	pct := percent(done, l.total)
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if pct >= l.lastPct+step || now.Sub(l.lastTime) >= every {
		l.lastPct, l.lastTime = pct-pct%step, now
		fmt.Fprintf(l.W, "%s: %3d%% %s of %s\n", l.what, pct, Bytes(done), Bytes(l.total))
	}
}

// Done ends the operation with a summary line.
func (l *Lines) Done() {
	l.mu.Lock()
	defer l.mu.Unlock()
	d := l.now().Sub(l.started)
	fmt.Fprintf(l.W, "%s: done, %s in %s (%s/s)\n", l.what, Bytes(l.done.Load()), d.Round(time.Millisecond), Bytes(rate(l.done.Load(), d)))
}

// Bar redraws a single status line in place, at most every 200ms.
type Bar struct {
	W io.Writer

	mu      sync.Mutex
	what    string
	total   int64
	done    atomic.Int64
	last    time.Time
	started time.Time
}

// Start begins reporting an operation of total bytes.
func (b *Bar) Start(what string, total int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.what, b.total, b.started = what, total, time.Now()
	b.done.Store(0)
	b.draw()
}

// Add records n more bytes done.
func (b *Bar) Add(n int64) {
	b.done.Add(n)
	b.mu.Lock()
	defer b.mu.Unlock()
	if time.Since(b.last) >= 200*time.Millisecond {
		b.draw()
	}
}

// Done draws the final state and ends the line.
func (b *Bar) Done() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.draw()
	fmt.Fprintln(b.W)
}

func (b *Bar) draw() {
	b.last = time.Now()
	done := b.done.Load()
	const width = 30
	pct := percent(done, b.total)
	filled := pct * width / 100
	bar := make([]byte, width)
	for i := range bar {
		bar[i] = ' '
		if i < filled {
			bar[i] = '#'
		}
	}
	fmt.Fprintf(b.W, "\r%s [%s] %3d%% %s/%s %s/s ", b.what, bar, pct, Bytes(done), Bytes(b.total),
		Bytes(rate(done, time.Since(b.started))))
}

func percent(done, total int64) int {
	if total <= 0 {
		return 100
	}
	return int(min(100, done*100/total))
}

func rate(n int64, d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64(float64(n) / d.Seconds())
}

// Bytes formats n with a binary unit, as 1.5 MiB.
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
