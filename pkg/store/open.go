package store

import (
	"fmt"
	"os"
	"strings"
)

// Open opens the store a command line names: an http:// or https:// URL,
// or the directory of an existing local store.
func Open(spec string, opts ...HTTPOption) (Store, error) {
	if strings.HasPrefix(spec, "http://") || strings.HasPrefix(spec, "https://") {
		return NewHTTP(spec, opts...)
	}
	if strings.Contains(spec, "://") {
		return nil, fmt.Errorf("store %q: unsupported scheme (want http, https or a directory)", spec)
	}
	fi, err := os.Stat(spec)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("store %s is not a directory", spec)
	}
	return NewLocal(spec)
}
