package main

import (
	"bytes"
	"context"
	"errors"
	"testing"
)

// demoinit powers the machine off: anywhere but as PID 1 it refuses.
func TestRunNotInit(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), nil, &out, 4242); !errors.Is(err, errNotInit) {
		t.Errorf("run(pid 4242) = %v, want errNotInit", err)
	}
	if err := run(context.Background(), []string{"x"}, &out, 1); err == nil {
		t.Error("run(x) = nil, want an error: demoinit takes no arguments")
	}
	if out.Len() != 0 {
		t.Errorf("run printed %q", out.String())
	}
}
