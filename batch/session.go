package batch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/aopbatch/aopbatch/ledger"
)

// Session is one process's hold on a batch: the lease its owner took in
// the ledger, renewed by a heartbeat while an engine works, and given up
// at Close. Every ledger write of the run is fenced by that lease, so a
// process paused past it (SIGSTOP, a suspended laptop) and taken over
// writes and sends nothing once it resumes.
type Session struct {
	store ledger.Store
	batch ledger.Batch
	owner ledger.Owner
	ttl   time.Duration
	log   *slog.Logger
	stop  func()
}

// NewSession is the session of owner o, which already holds batch b's
// lease (Ingest took it).
func NewSession(store ledger.Store, b ledger.Batch, o ledger.Owner, ttl time.Duration, log *slog.Logger) *Session {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Session{store: store, batch: b, owner: o, ttl: ttl, log: log, stop: func() {}}
}

// Join takes the lease on ready batch b for o: the session of a command
// that settles a batch someone else recorded (resolve).
func Join(ctx context.Context, store ledger.Store, b ledger.Batch, o ledger.Owner, ttl time.Duration, log *slog.Logger) (*Session, error) {
	if !b.Ready {
		return nil, fmt.Errorf("batch %s was never fully recorded: run the file again with aopbatch run", b.ID)
	}
	// A shared ledger's batch is briefly locked by each process that joins
	// it, and longer by an archive: busy, it is polled, as run polls a
	// file being recorded.
	if _, err := acquireOrWait(ctx, store, ledger.NewBatch{ID: b.ID}, o, ttl, log); err != nil {
		return nil, err
	}
	return NewSession(store, b, o, ttl, log), nil
}

// Batch is the session's batch.
func (s *Session) Batch() ledger.Batch { return s.batch }

// Owner is the lease holder every write of the session names.
func (s *Session) Owner() ledger.Owner { return s.owner }

// Recover takes over what runs that died left in flight: their rows
// become unknown, to be settled by a status enquiry before anything is
// sent again. It returns how many rows it moved.
func (s *Session) Recover(ctx context.Context) (int64, error) {
	r, err := s.store.RecoverInflight(ctx, s.batch.Seq, s.owner)
	if err == nil {
		logRecovered(s.log, r, "rows were in flight at a run that ended or stopped renewing its lease; they will be checked with the provider before anything is re-sent")
	}
	return r.Rows, err
}

// logRecovered says what a RecoverInflight did, naming the processes whose
// lease it ended: the operator reading the log the morning after learns
// which host's run died, and when, beside what it left to check.
func logRecovered(log *slog.Logger, r ledger.Recovered, msg string) {
	var from []any
	if len(r.From) > 0 {
		from = []any{"from", recoveredFrom(r.From)}
	}
	switch {
	case r.Rows > 0:
		log.Warn(msg, append([]any{"rows", r.Rows}, from...)...)
	case len(from) > 0:
		log.Warn("ended the lease of a run that stopped renewing it; it had no rows in flight", from...)
	}
}

// recoveredFrom names dead runs: "pid 41 on hostA (lease ran out
// 2026-12-05T02:31:07Z)".
func recoveredFrom(rs []ledger.Runner) string {
	who := make([]string, len(rs))
	for i, r := range rs {
		who[i] = fmt.Sprintf("%s (lease ran out %s)", ledger.RunnersText(rs[i:i+1]), r.Until.UTC().Format(time.RFC3339))
	}
	return strings.Join(who, ", ")
}

// Start renews the lease every third of its life until Close. The engine
// learns until when each renewal holds, so it sends only while the lease
// surely holds, and it stops if the lease is lost: another process may be
// settling the same rows.
func (s *Session) Start(ctx context.Context, eng *Engine) {
	// Acquire (or the ingest) set the lease a while ago: the engine sends
	// nothing until a renewal made here holds.
	eng.UseLease(func() (time.Time, error) { return s.renew(ctx) })
	s.heartbeat(ctx, func(hctx context.Context, until time.Time) {
		eng.SetLease(until)
		if s.store.Shared() {
			// Another process's lease may have run out: take over what it
			// had in flight, to be settled by enquiry.
			rctx, cancel := context.WithTimeout(hctx, s.ttl)
			_, err := s.Recover(rctx)
			cancel()
			if err != nil && hctx.Err() == nil {
				s.log.Warn("take over rows of a process whose lease ran out", "err", err)
			}
		}
	}, func(err error) {
		eng.Stop(&StopError{Reason: StopLease, Detail: err.Error(), Hint: "another aopbatch took over this batch", TakenOver: true})
	})
}

// Keep renews the lease every third of its life until Close, for a
// command that writes the batch without an engine and may take longer than
// the lease (reconcile's corrections): unrenewed, the lease would lapse
// and the next run take the batch over mid-way. lost is called if another
// process took it all the same.
func (s *Session) Keep(ctx context.Context, lost func(error)) {
	s.heartbeat(ctx, func(context.Context, time.Time) {}, lost)
}

// renew extends the lease and returns until when the new one surely
// holds.
func (s *Session) renew(ctx context.Context) (time.Time, error) {
	at := time.Now() // before the write: the lease it sets ends no sooner
	// A renewal that takes longer than the lease is worth nothing; a
	// database that stops answering must not hang the heartbeat (and
	// Close, which waits for it).
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.ttl)
	defer cancel()
	err := s.store.Renew(rctx, s.batch.ID, s.owner, s.ttl)
	return at.Add(s.ttl), err
}

// heartbeat renews the lease now and every third of its life until Close,
// calling renewed after each renewal (with a context Close cancels) and
// lost, once, when another owner has the lease (the heartbeat then ends).
func (s *Session) heartbeat(ctx context.Context, renewed func(hctx context.Context, until time.Time), lost func(error)) {
	hctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	beat := func() bool {
		until, err := s.renew(ctx)
		switch {
		case err == nil:
			renewed(hctx, until)
		case errors.Is(err, ledger.ErrLeaseLost):
			lost(err)
			return false
		case hctx.Err() == nil:
			s.log.Warn("renew batch lease", "err", err)
		}
		return true
	}
	if !beat() {
		cancel()
		return
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(s.ttl / 3)
		defer t.Stop()
		for {
			select {
			case <-hctx.Done():
				return
			case <-t.C:
				if !beat() {
					return
				}
			}
		}
	}()
	s.stop = func() { cancel(); <-done }
}

// Close stops the heartbeat and gives up the lease, so the next run need
// not wait for it to expire. It is safe to call more than once.
func (s *Session) Close(ctx context.Context) {
	s.stop()
	s.stop = func() {}
	release(ctx, s.store, s.batch.ID, s.owner, s.log)
}

// release gives up o's lease on batch id, even once ctx has ended, within
// releaseTimeout. Not released, it costs the next run a wait for the
// lease to expire, which log says.
func release(ctx context.Context, l ledger.Store, id string, o ledger.Owner, log *slog.Logger) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	if err := l.Release(rctx, id, o); err != nil && log != nil {
		log.Warn("give up the batch lease; the next run waits for it to expire", "err", err)
	}
}

// releaseTimeout bounds giving up the lease at the end of a run.
const releaseTimeout = 30 * time.Second

// StopGrace is how long what must still be done once a run is stopped
// (record what it did, write its reports) may take: with the requests
// still out before it (up to --timeout), under systemd's 90 s before
// SIGKILL at the defaults.
const StopGrace = 45 * time.Second

// AfterStop is ctx without its cancellation, for that work, cancelled
// StopGrace after ctx is, or after this call if ctx already was: a ledger
// that stalls must not keep a stopped process for ever, waiting for a
// second signal nobody sends from cron.
func AfterStop(ctx context.Context) (context.Context, context.CancelFunc) {
	return afterStop(ctx, StopGrace)
}

func afterStop(ctx context.Context, grace time.Duration) (context.Context, context.CancelFunc) {
	bctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(grace, cancel)
		context.AfterFunc(bctx, func() { t.Stop() })
	})
	return bctx, func() { stop(); cancel() }
}
