package device_test

import (
	"errors"
	"io"
	"testing"

	"github.com/lifeboat-update/lifeboat/pkg/board"
	"github.com/lifeboat-update/lifeboat/qemu/device"
)

func TestHoldKey(t *testing.T) {
	for _, tc := range []struct {
		name string
		want byte
	}{{"r", 'r'}, {"7", '7'}, {"ctrl-c", 0x03}, {"ctrl-a", 0x01}} {
		k, err := device.HoldKey(tc.name)
		if err != nil {
			t.Fatalf("HoldKey(%q) = %v", tc.name, err)
		}
		buf := make([]byte, 8)
		for range 2 {
			if n, err := k.Read(buf); n != 1 || err != nil || buf[0] != tc.want {
				t.Errorf("HoldKey(%q).Read = %d, %v, %q; want the key %q", tc.name, n, err, buf[:n], tc.want)
			}
		}
		k.Release()
		k.Release()
		if n, err := k.Read(buf); n != 0 || !errors.Is(err, io.EOF) {
			t.Errorf("HoldKey(%q).Read after Release = %d, %v; want io.EOF", tc.name, n, err)
		}
	}
	for _, bad := range []string{"", "R", "rr", "ctrl-", "ctrl-C", "alt-x"} {
		if _, err := device.HoldKey(bad); err == nil {
			t.Errorf("HoldKey(%q) = nil error, want one", bad)
		}
	}
	if _, err := device.HoldResetKey(&board.Board{Name: "b"}); err == nil {
		t.Error("HoldResetKey of a board without a reset trigger = nil error, want one")
	}
	if k, err := device.HoldResetKey(&board.Board{Name: "b", ResetTrigger: "console-key:ctrl-c"}); err != nil {
		t.Errorf("HoldResetKey(console-key:ctrl-c) = %v", err)
	} else {
		k.Release()
	}
}
