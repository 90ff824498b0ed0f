package store

import (
	"context"
	"fmt"
)

// DeviceCounts implements Fleet.
func (s *SQLite) DeviceCounts(ctx context.Context) (Counts, error) {
	c := Counts{ByStatus: map[string]int{}, ByVersion: map[string]int{}, ByBoard: map[string]int{}}
	for _, q := range []struct {
		column string
		into   map[string]int
	}{
		{"COALESCE(phase, 'none')", c.ByStatus},
		{"installed_version", c.ByVersion},
		{"board", c.ByBoard},
	} {
		// column is one of the constants above, never input.
		rows, err := s.db.QueryContext(ctx, `SELECT `+q.column+`, COUNT(*) FROM devices GROUP BY `+q.column)
		if err != nil {
			return Counts{}, fmt.Errorf("count devices: %w", err)
		}
		for rows.Next() {
			var k string
			var n int
			if err := rows.Scan(&k, &n); err != nil {
				rows.Close()
				return Counts{}, fmt.Errorf("count devices: %w", err)
			}
			q.into[k] = n
			if q.column == "board" {
				c.Total += n
			}
		}
		if err := rows.Close(); err != nil {
			return Counts{}, err
		}
		if err := rows.Err(); err != nil {
			return Counts{}, fmt.Errorf("count devices: %w", err)
		}
	}
	return c, nil
}
