package postgres

import (
	"context"
	"fmt"
	"math"
	"time"
)

// Reserve implements ledger.RateBudget with the generic cell rate
// algorithm (GCRA): one row per account holds the theoretical time at
// which its next request may go, by the database's clock. Each
// reservation of n slots moves it on by n intervals in one statement, so
// processes on any host share one schedule, and no clock but the
// database's decides it.
func (s *Store) Reserve(ctx context.Context, account string, n int, rate float64, burst int) (time.Time, time.Duration, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if n < 1 || !(rate > 0) || math.IsInf(rate, 0) {
		return time.Time{}, 0, fmt.Errorf("reserve %d requests at %v/s: need n >= 1 and a positive rate", n, rate)
	}
	burst = max(burst, 1)
	every := max(int64(math.Round(1e6/rate)), 1) // µs
	// The tolerance lets burst slots come at once after a pause, and no
	// more: any second then holds at most rate + burst requests.
	tau := int64(burst-1) * every
	var start, dbUS int64
	sent := time.Now()
	err := s.pool.QueryRow(ctx, `WITH now AS (SELECT (extract(epoch FROM clock_timestamp()) * 1e6)::bigint AS us)
		INSERT INTO rate_budgets (account, tat_us) SELECT $1, us - $2::bigint + $3::bigint * $4::bigint FROM now
		ON CONFLICT (account) DO UPDATE SET tat_us = GREATEST(rate_budgets.tat_us, (SELECT us FROM now) - $2::bigint) + $3::bigint * $4::bigint
		RETURNING tat_us - $3::bigint * $4::bigint, (SELECT us FROM now)`, account, tau, n, every).Scan(&start, &dbUS)
	if err != nil {
		return time.Time{}, 0, fmt.Errorf("reserve send slots for %s: %w", account, err)
	}
	// Each reservation is also a reading of the database's clock: a quick
	// one can sharpen the skew every slot is mapped by.
	s.noteClock(sent, time.Since(sent), dbUS)
	// From the database's clock to ours, by the skew measured with the
	// shortest round trip: every slot of this handle maps the same way.
	first := time.UnixMicro(start).Add(-time.Duration(s.skew.Load()) * time.Microsecond)
	return first, time.Duration(every) * time.Microsecond, nil
}
