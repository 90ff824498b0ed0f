package store

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/lifeboat-update/lifeboat/pkg/server/store/storetest"
)

// TestPoolBounded: however many requests run at once, the store keeps at
// most maxConns connections open, and keeps them open when idle.
func TestPoolBounded(t *testing.T) { storetest.Run(t, testPoolBounded) }

func testPoolBounded(t *testing.T, dsn string) {
	s := openDB(t, dsn)
	ctx := context.Background()
	var wg sync.WaitGroup
	for range 4 * maxConns {
		wg.Go(func() {
			if err := s.ReportInventory(ctx, "no-such-device", nil, time.Unix(1, 0)); err == nil {
				t.Errorf("ReportInventory(no-such-device) = nil, want ErrNotFound")
			}
		})
	}
	wg.Wait()
	st := s.db.Stats()
	if st.MaxOpenConnections != maxConns || st.OpenConnections > maxConns {
		t.Errorf("after %d concurrent requests: %d connections open, bound %d; want at most %d", 4*maxConns, st.OpenConnections, st.MaxOpenConnections, maxConns)
	}
	if st.MaxIdleClosed != 0 {
		t.Errorf("after %d concurrent requests: %d idle connections closed, want 0 (kept open)", 4*maxConns, st.MaxIdleClosed)
	}
}
