// Package groupcommit is the queue in front of a store's writer: row
// changes from many workers are taken a group at a time and handed to the
// store, which applies each group in one transaction, so durability costs
// one commit per group, not per row. The stores differ in how they apply
// a group; the queue, its grouping and its error rules are one.
package groupcommit

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/aopbatch/aopbatch/ledger"
)

// Op is one change asked of the writer: a dispatch of queued rows, a
// mark of one row in flight, a barrier (Flush), or else an update
// (Record).
type Op struct {
	Inflight bool
	Dispatch bool
	Barrier  bool
	Lines    []int // Inflight, Dispatch: the rows to mark
	Sends    int   // Inflight: the row's attempts as the caller read them
	// Marked are the rows of Lines the store marked, set by Apply before
	// the caller is told.
	Marked []int
	Update ledger.Update
	done   chan error // nil for Record: nobody waits on it
}

// Apply applies one group in one transaction. errs[i] is op i's own
// verdict (ErrTransition for a change the transition table refused); an
// error returned fails the whole group and the queue.
type Apply func(group []*Op, errs []error) error

// Limits size the groups: at most Max ops, and a group smaller than
// Linger that nobody waits on waits up to LingerFor for more, since a
// commit costs a round trip or a WAL flush and recorded outcomes are not
// waited on.
type Limits struct {
	Max       int
	Linger    int
	LingerFor time.Duration
}

// Queue takes changes from any goroutine and applies them in order, a
// group at a time, on its own goroutine.
type Queue struct {
	apply Apply
	lim   Limits
	ops   chan *Op
	done  chan struct{}

	stopOnce sync.Once

	mu       sync.Mutex
	err      error // sticky: once the ledger fails, every later call fails
	rejected error // first update the transition table refused
}

// Start starts a queue that applies its groups with apply.
func Start(lim Limits, apply Apply) *Queue {
	q := &Queue{apply: apply, lim: lim, ops: make(chan *Op, 4096), done: make(chan struct{})}
	go q.loop()
	return q
}

// Dispatch implements ledger.Writer.
func (q *Queue) Dispatch(ctx context.Context, lines []int) ([]int, error) {
	o := &Op{Dispatch: true, Lines: lines, done: make(chan error, 1)}
	if err := q.submitWait(ctx, o); err != nil {
		return nil, err
	}
	return o.Marked, nil
}

// MarkInflight implements ledger.Writer.
func (q *Queue) MarkInflight(ctx context.Context, line, sends int) error {
	o := &Op{Inflight: true, Lines: []int{line}, Sends: sends, done: make(chan error, 1)}
	if err := q.submitWait(ctx, o); err != nil {
		return err
	}
	if len(o.Marked) != 1 {
		return fmt.Errorf("mark line %d inflight: %w", line, ledger.ErrTransition)
	}
	return nil
}

// Record implements ledger.Writer.
func (q *Queue) Record(u ledger.Update) error {
	if err := q.Err(); err != nil {
		return err
	}
	q.ops <- &Op{Update: u}
	return nil
}

// Flush implements ledger.Writer.
func (q *Queue) Flush(ctx context.Context) error {
	return q.submitWait(ctx, &Op{Barrier: true, done: make(chan error, 1)})
}

func (q *Queue) submitWait(ctx context.Context, o *Op) error {
	if err := q.Err(); err != nil {
		return err
	}
	select {
	case q.ops <- o:
	case <-ctx.Done():
		return ctx.Err()
	}
	// Once queued the op will be applied: wait for the verdict even if ctx
	// ends, or the caller could act on a row whose state it does not know.
	return <-o.done
}

// Stop applies what is queued and stops the queue. It is safe to call
// more than once.
func (q *Queue) Stop() {
	q.stopOnce.Do(func() {
		close(q.ops)
		<-q.done
	})
}

// Refused implements ledger.Writer.
func (q *Queue) Refused() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.rejected
}

// NoteRejected keeps the first refused update for Refused.
func (q *Queue) NoteRejected(err error) {
	q.mu.Lock()
	if q.rejected == nil {
		q.rejected = err
	}
	q.mu.Unlock()
}

// Fail makes err the queue's sticky error, unless it has one, and
// returns the sticky error.
func (q *Queue) Fail(err error) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.err == nil {
		q.err = fmt.Errorf("ledger write: %w", err)
	}
	return q.err
}

// Err is the sticky error, or nil.
func (q *Queue) Err() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.err
}

func (q *Queue) loop() {
	defer close(q.done)
	group := make([]*Op, 0, q.lim.Max)
	errs := make([]error, 0, q.lim.Max)
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	for {
		first, ok := <-q.ops
		if !ok {
			return
		}
		group = append(group[:0], first)
		waited := first.done != nil
		lingering := false
	fill:
		for len(group) < q.lim.Max {
			var o *Op
			select {
			case o, ok = <-q.ops:
			default:
				// Nothing more queued: unless someone waits on this group,
				// let a small one grow for a moment.
				if waited || len(group) >= q.lim.Linger {
					break fill
				}
				if !lingering {
					lingering = true
					linger.Reset(q.lim.LingerFor)
				}
				select {
				case o, ok = <-q.ops:
				case <-linger.C:
					break fill
				}
			}
			if !ok {
				break fill
			}
			group = append(group, o)
			waited = waited || o.done != nil
		}
		if lingering {
			linger.Stop()
		}
		errs = errs[:cap(errs)][:len(group)]
		err := q.Err()
		if err == nil {
			if err = q.apply(group, errs); err != nil {
				err = q.Fail(err)
			}
		}
		for i, o := range group {
			if o.done == nil {
				continue
			}
			if err != nil {
				o.done <- err
			} else {
				o.done <- errs[i]
			}
		}
	}
}
