package qemu

import (
	"bytes"
	"sync"
)

// Lines is an io.Writer for a serial console: it hands each whole line
// written to it, without its newline, to Line, in order; Flush hands over
// what is left without a newline. It is safe for concurrent use, and calls
// Line from one goroutine at a time.
type Lines struct {
	Line func(string)

	mu  sync.Mutex
	buf []byte
}

// Write buffers p and passes on every line it completes.
func (l *Lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		l.Line(string(l.buf[:i]))
		l.buf = l.buf[i+1:]
	}
}

// Flush passes on a last line that has no newline.
func (l *Lines) Flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buf) > 0 {
		l.Line(string(l.buf))
		l.buf = nil
	}
}
