package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/lifeboat-update/lifeboat/pkg/server/store/storetest"
)

// TestInTxRetries: a transaction the dialect calls retryable runs again,
// up to maxTries times and no longer than its context.
func TestInTxRetries(t *testing.T) {
	s := openDB(t, storetest.SQLite(t))
	errClash := errors.New("clash")
	s.d.retry = func(err error) bool { return errors.Is(err, errClash) }
	ctx := context.Background()
	for _, tc := range []struct {
		fails     int // tries that clash before one succeeds
		wantTries int
		wantErr   bool
	}{
		{0, 1, false},
		{2, 3, false},
		{maxTries, maxTries, true},
	} {
		tries := 0
		err := s.inTx(ctx, func(tx *sql.Tx) error {
			tries++
			if tries <= tc.fails {
				return fmt.Errorf("try %d: %w", tries, errClash)
			}
			return nil
		})
		if tries != tc.wantTries || (err != nil) != tc.wantErr {
			t.Errorf("inTx failing %d times: %d tries, %v; want %d tries, error %v", tc.fails, tries, err, tc.wantTries, tc.wantErr)
		}
	}
	tries := 0
	err := s.inTx(ctx, func(tx *sql.Tx) error { tries++; return errors.New("other") })
	if tries != 1 || err == nil {
		t.Errorf("inTx with an error not to retry: %d tries, %v; want 1 and the error", tries, err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	tries = 0
	err = s.inTx(cctx, func(tx *sql.Tx) error { tries++; return errClash })
	if !errors.Is(err, context.Canceled) || tries > 1 {
		t.Errorf("inTx with a cancelled context: %d tries, %v; want at most 1 and context.Canceled", tries, err)
	}
}

// TestSerializationRetried: two PostgreSQL transactions that each read
// what the other writes clash (SQLSTATE 40001); inTx runs the loser
// again, and both land.
func TestSerializationRetried(t *testing.T) {
	s := openDB(t, storetest.Postgres(t))
	ctx := context.Background()
	if err := s.RegisterDevice(ctx, device("dev-1", 'a'), event("device.register", "dev-1")); err != nil {
		t.Fatal(err)
	}
	var (
		both  sync.WaitGroup // both have read, on their first try
		mu    sync.Mutex
		tries int
		errs  = make(chan error, 2)
	)
	both.Add(2)
	for _, tag := range []string{"a", "b"} {
		go func() {
			first := true
			errs <- s.inTx(ctx, func(tx *sql.Tx) error {
				mu.Lock()
				tries++
				mu.Unlock()
				var n int
				if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM device_tags`).Scan(&n); err != nil {
					return err
				}
				if first {
					first = false
					both.Done()
					both.Wait()
				}
				_, err := tx.ExecContext(ctx, `INSERT INTO device_tags (device_id, tag) VALUES ($1, $2)`, "dev-1", fmt.Sprint(tag, n))
				return err
			})
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Errorf("inTx: %v", err)
		}
	}
	d, err := s.Device(ctx, "dev-1")
	if err != nil {
		t.Fatal(err)
	}
	// The first to commit saw no tag; the one run again saw its tag.
	if len(d.Tags) != 2 || tries != 3 {
		t.Errorf("tags %v after %d tries, want 2 tags (one a0 or b0, the other a1 or b1) after 3", d.Tags, tries)
	} else if !((d.Tags[0] == "a0" && d.Tags[1] == "b1") || (d.Tags[0] == "a1" && d.Tags[1] == "b0")) {
		t.Errorf("tags %v: want the second transaction to have seen the first's row", d.Tags)
	}
}
