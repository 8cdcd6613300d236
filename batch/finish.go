package batch

import (
	"context"
	"time"

	"github.com/aopbatch/aopbatch/ledger"
)

// Finish keeps a process on a ledger shared by processes at batch b
// until every row is final, or until waiting changes nothing: each process
// exits with the batch's own outcome (SPEC section 4). Rows another
// process put back to queued are sent; unsettled rows are resolved; while
// other processes have rows in flight it waits for them to settle them,
// or, if one died, for its lease to expire and recover (the session's
// takeover) to turn its rows into unknown, which are then resolved. It
// gives up after patience in which no row became final.
func (e *Engine) Finish(ctx context.Context, b ledger.Batch, recover func(context.Context) (int64, error), patience time.Duration) error {
	final := int64(-1)
	quietSince := e.cfg.Now()
	for {
		if ctx.Err() != nil {
			return nil
		}
		if s := e.Stopped(); s != nil {
			return s
		}
		c, err := e.l.Counts(ctx, b.Seq)
		if err != nil {
			return err
		}
		done := c.Total().Rows - c.Unsettled().Rows
		queued, inflight := c[ledger.StateQueued].Rows, c[ledger.StateInflight].Rows
		var unsettled int64
		for _, s := range unsettledStates {
			unsettled += c[s].Rows
		}
		if queued+inflight+unsettled == 0 {
			return nil // every row final, or held for an operator that is down
		}
		now := e.cfg.Now()
		if done > final {
			final, quietSince = done, now
		} else if now.Sub(quietSince) > patience {
			e.cfg.Log.Warn("other processes still hold rows of this batch: leaving them to finish it",
				"queued", queued, "inflight", inflight, "unsettled", unsettled)
			return nil
		}
		if _, err := recover(ctx); err != nil {
			return err
		}
		switch {
		case queued > 0:
			if err := e.Send(ctx, b); err != nil {
				return err
			}
		case unsettled > 0:
			if err := e.Resolve(ctx, b); err != nil {
				return err
			}
		default:
			// Rows in flight at another process: it settles them, or its
			// lease runs out and recover takes them over.
			if err := e.cfg.Sleep(ctx, min(time.Second, patience/10)); err != nil {
				return nil
			}
		}
	}
}
