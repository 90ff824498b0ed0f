package main

import (
	"flag"
	"io"
	"time"

	"github.com/lifeboat-update/lifeboat/internal/cli"
	"github.com/lifeboat-update/lifeboat/pkg/assemble"
	"github.com/lifeboat-update/lifeboat/pkg/store"
)

// sources are the flags that say where chunks come from, shared by the
// commands that write images.
type sources struct {
	stores, seeds, seedIndexes cli.Strings
	timeout                    time.Duration
	retries                    int
}

func sourceFlags(fs *flag.FlagSet, storeHelp string) *sources {
	s := &sources{}
	fs.Var(&s.stores, "store", storeHelp)
	fs.Var(&s.seeds, "seed", "file or block device that may share chunks with the image (the running slot); repeatable")
	fs.Var(&s.seedIndexes, "seed-index", "index of a seed image that lies beside it without .caibx; repeatable")
	fs.DurationVar(&s.timeout, "timeout", 30*time.Second, "time allowed for each HTTP request")
	fs.IntVar(&s.retries, "retries", 4, "times an HTTP request is repeated after a failure, with backoff")
	return s
}

func (s *sources) validate() error {
	if s.timeout <= 0 || s.retries < 0 {
		return cli.Usagef("--timeout must be positive and --retries not negative")
	}
	return nil
}

// open opens the stores and seeds; closeAll releases the seeds.
func (s *sources) open() (stores []store.Store, seeds []*assemble.Seed, closeAll func(), err error) {
	var closers []io.Closer
	release := func() {
		for _, c := range closers {
			c.Close()
		}
	}
	defer func() {
		if err != nil {
			release()
		}
	}()
	for _, spec := range s.stores {
		st, err := store.Open(spec, store.WithTimeout(s.timeout), store.WithRetries(s.retries))
		if err != nil {
			return nil, nil, nil, err
		}
		stores = append(stores, st)
	}
	addSeed := func(path, index string) error {
		seed, c, err := assemble.OpenSeed(path, index)
		if err != nil {
			return err
		}
		closers = append(closers, c)
		seeds = append(seeds, seed)
		return nil
	}
	for _, p := range s.seeds {
		if err := addSeed(p, ""); err != nil {
			return nil, nil, nil, err
		}
	}
	for _, x := range s.seedIndexes {
		img, err := assemble.SeedIndexPath(x)
		if err != nil {
			return nil, nil, nil, err
		}
		if err := addSeed(img, x); err != nil {
			return nil, nil, nil, err
		}
	}
	return stores, seeds, release, nil
}
