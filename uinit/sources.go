package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/lifeboat-update/lifeboat/pkg/media"
	"github.com/lifeboat-update/lifeboat/pkg/netup"
)

// sources are the real Sources: removable media with pkg/media, the
// network with pkg/netup.
type sources struct {
	log *slog.Logger
	// mediaWait bounds the wait for removable media to appear.
	mediaWait time.Duration
}

func (s *sources) Bundle(ctx context.Context) (string, func(), error) {
	m, err := media.Find(ctx, media.Config{Timeout: s.mediaWait, Log: s.log})
	if err != nil {
		return "", nil, err
	}
	return m.Bundle, func() { m.Close() }, nil
}

func (s *sources) Network(ctx context.Context) (string, error) {
	lease, err := netup.Up(ctx, netup.Config{Log: s.log})
	if err != nil {
		return "", err
	}
	return lease.RepoURL, nil
}
