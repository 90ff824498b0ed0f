package kernel

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// MemSource is an in-memory Source for tests: a mirror holding Debs, keyed
// "package=version", with Candidate versions and metapackage Deps.
type MemSource struct {
	mu        sync.Mutex
	Debs      map[string][]byte
	Candidate map[string]string // package -> version apt would pick
	Deps      map[string]string // metapackage -> package
	Downloads []string          // "package=version" of each Download
}

var _ Source = (*MemSource)(nil)

// Depends implements Source.
func (m *MemSource) Depends(_ context.Context, meta string) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.Deps[meta]
	if !ok {
		return "", fmt.Errorf("apt-cache depends %s: no such package", meta)
	}
	return p, nil
}

// Download implements Source.
func (m *MemSource) Download(_ context.Context, pkg, version, dir string) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if version == "" {
		version = m.Candidate[pkg]
	}
	key := pkg + "=" + version
	m.Downloads = append(m.Downloads, key)
	b, ok := m.Debs[key]
	if !ok {
		return "", fmt.Errorf("apt-get download %s: version not found", key)
	}
	p := filepath.Join(dir, pkg+"_"+strings.ReplaceAll(version, ":", "%3a")+"_amd64.deb")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		return "", err
	}
	return p, nil
}

// DownloadCount is the number of Download calls so far.
func (m *MemSource) DownloadCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.Downloads)
}
