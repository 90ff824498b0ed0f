package main

import (
	"context"
	"errors"

	"github.com/lifeboat-update/lifeboat/pkg/board"
)

// sources are the real Sources: pkg/media and pkg/netup.
type sources struct {
	board *board.Board
}

func newSources(b *board.Board) *sources { return &sources{board: b} }

func (s *sources) Bundle(ctx context.Context) (string, func(), error) {
	return "", nil, errors.New("removable media: not wired yet")
}

func (s *sources) Network(ctx context.Context) (string, error) {
	return "", errors.New("network: not wired yet")
}
