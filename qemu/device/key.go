package device

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/lifeboat-update/lifeboat/pkg/board"
)

// HeldKey is console input that types one key over and over, as a person
// holding it down at power-on does: a board's console-key reset trigger
// (board.json's reset_trigger). Give it as RunSpec.Stdin, and Release it
// once the machine has seen it: until then the machine's console input
// never ends.
type HeldKey struct {
	key   byte
	every time.Duration
	done  chan struct{}
	once  sync.Once
}

// KeyRepeat is how often a HeldKey types its key: a keyboard's
// auto-repeat rate.
const KeyRepeat = 50 * time.Millisecond

// HoldKey returns a HeldKey for name, a key as board.Board.ResetKey
// names it: a lower-case letter or digit, or ctrl-LETTER.
func HoldKey(name string) (*HeldKey, error) {
	var k byte
	switch {
	case len(name) == 1 && (name[0] >= 'a' && name[0] <= 'z' || name[0] >= '0' && name[0] <= '9'):
		k = name[0]
	case len(name) == 6 && name[:5] == "ctrl-" && name[5] >= 'a' && name[5] <= 'z':
		k = name[5] - 'a' + 1
	default:
		return nil, fmt.Errorf("key %q: want a lower-case letter or digit, or ctrl-LETTER", name)
	}
	return &HeldKey{key: k, every: KeyRepeat, done: make(chan struct{})}, nil
}

// HoldResetKey returns a HeldKey for b's reset trigger.
func HoldResetKey(b *board.Board) (*HeldKey, error) {
	if b.ResetKey() == "" {
		return nil, fmt.Errorf("board %s has no console-key reset trigger (reset_trigger %q)", b.Name, b.ResetTrigger)
	}
	return HoldKey(b.ResetKey())
}

// Read waits one repeat and returns the key, or io.EOF once released.
func (h *HeldKey) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	t := time.NewTimer(h.every)
	defer t.Stop()
	select {
	case <-h.done:
		return 0, io.EOF
	case <-t.C:
		p[0] = h.key
		return 1, nil
	}
}

// Release lets the key go: Read returns io.EOF from now on.
func (h *HeldKey) Release() { h.once.Do(func() { close(h.done) }) }
