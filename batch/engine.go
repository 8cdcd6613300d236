package batch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/aopbatch/aopbatch/batch/aop"
	"github.com/aopbatch/aopbatch/ledger"
)

// Provider is what the engine needs of the AOP API; *aop.Client has it.
type Provider interface {
	Recharge(ctx context.Context, body []byte) (aop.Result, error)
	Status(ctx context.Context, referenceID string) (aop.StatusResult, error)
}

// Config tunes the engine. Zero values take the documented defaults, but
// for Owner.
type Config struct {
	// Owner holds the lease of the batches the engine runs; every ledger
	// write is checked against it, so a run that lost its batch to
	// another stops instead of writing over it.
	Owner           ledger.Owner
	Workers         int           // concurrent requests; default 8
	Rate            float64       // requests per second; 0 = unlimited
	Burst           int           // default 1
	Timeout         time.Duration // per request; default 30s
	MaxAttempts     int           // tries for a request that never left; default 5
	Retry           RetryPolicy   // default Backoff{200ms, 10s}
	HoldAfter       int           // operator-down answers in a row before holding that operator; default 3
	BreakerWindow   int           // recent requests the breaker looks at; default 50
	BreakerRatio    float64       // share of transient failures that trips it; default 0.8
	MaxUnknownPaise int64         // stop once this much money is in unknown rows; 0 = no limit
	ResolveTimeout  time.Duration // how long resolution keeps enquiring; default 30s
	ResolveBackoff  time.Duration // first pause between enquiry rounds; default 500ms
	Log             *slog.Logger
	Now             func() time.Time
	Sleep           func(ctx context.Context, d time.Duration) error
}

func (c *Config) defaults() {
	if c.Workers <= 0 {
		c.Workers = 8
	}
	if c.Burst <= 0 {
		c.Burst = 1
	}
	if c.Timeout <= 0 {
		c.Timeout = 30 * time.Second
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 5
	}
	if c.Retry == nil {
		c.Retry = Backoff{Base: 200 * time.Millisecond, Max: 10 * time.Second}
	}
	if c.HoldAfter <= 0 {
		c.HoldAfter = 3
	}
	if c.BreakerWindow <= 0 {
		c.BreakerWindow = 50
	}
	if c.BreakerRatio <= 0 {
		c.BreakerRatio = 0.8
	}
	if c.ResolveTimeout <= 0 {
		c.ResolveTimeout = 30 * time.Second
	}
	if c.ResolveBackoff <= 0 {
		c.ResolveBackoff = 500 * time.Millisecond
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Sleep == nil {
		c.Sleep = sleep
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// StopError says why the engine stopped sending before the batch was done.
// The remaining rows stay queued; fixing Hint and running again resumes.
type StopError struct {
	Reason string // "account", "auth", "breaker", "unknown-limit", "ledger", "lease"
	Detail string
	Hint   string
}

func (e *StopError) Error() string {
	s := "stopped sending: " + e.Detail
	if e.Hint != "" {
		s += " (" + e.Hint + ")"
	}
	return s
}

// Engine sends a batch's queued rows and resolves its unsettled ones.
type Engine struct {
	l   ledger.Store
	p   Provider
	cfg Config

	lim     *limiter
	brk     *breaker
	started time.Time

	stopOnce sync.Once
	stopErr  atomic.Pointer[StopError]
	stopCh   chan struct{}

	leaseUntil atomic.Int64 // unix ms the batch's lease is surely held until; 0: no limit
	renewMu    sync.Mutex   // one synchronous renewal at a time
	renewLease func() (time.Time, error)

	opMu    sync.Mutex
	opDown  map[int64]int  // operator -> operator-down answers in a row
	opHeld  map[int64]bool // operators held for the rest of this run
	unknown atomic.Int64   // paise moved to unknown during this run

	progress Progress
}

// Progress is live counters of a run, safe to read while it runs.
type Progress struct {
	Todo     atomic.Int64 // queued rows this run set out to send
	Sent     atomic.Int64 // requests made (recharge)
	Done     atomic.Int64 // of Todo, rows with an outcome: at most Todo
	Success  atomic.Int64 // outcomes this run, sent or resolved
	Failed   atomic.Int64
	Unsure   atomic.Int64 // rows pending, duplicate or unknown now; from Resolve on, the whole batch's
	Enquired atomic.Int64 // status enquiries made
}

// New makes an engine over ledger l and provider p.
func New(l ledger.Store, p Provider, cfg Config) *Engine {
	cfg.defaults()
	return &Engine{
		l: l, p: p, cfg: cfg,
		lim:    newLimiter(cfg.Rate, cfg.Burst, cfg.Now),
		brk:    newBreaker(cfg.BreakerWindow, cfg.BreakerRatio),
		stopCh: make(chan struct{}),
		opDown: map[int64]int{},
		opHeld: map[int64]bool{},
	}
}

// Progress returns the run's live counters.
func (e *Engine) Progress() *Progress { return &e.progress }

// Stopped returns why the engine stopped early, or nil.
func (e *Engine) Stopped() *StopError { return e.stopErr.Load() }

func (e *Engine) stop(s *StopError) {
	e.stopOnce.Do(func() {
		e.stopErr.Store(s)
		close(e.stopCh)
		e.cfg.Log.Warn("stopping", "reason", s.Reason, "detail", s.Detail, "hint", s.Hint)
	})
}

func (e *Engine) stopping() bool {
	select {
	case <-e.stopCh:
		return true
	default:
		return false
	}
}

// Prepare readies batch b for a run: rows a dead run left in flight become
// unknown (they may have been charged), and held rows are queued again.
func (e *Engine) Prepare(ctx context.Context, b ledger.Batch) error {
	n, err := e.l.RecoverInflight(ctx, b.Seq, e.cfg.Owner)
	if err != nil {
		return err
	}
	if n > 0 {
		e.cfg.Log.Warn("rows were in flight when a previous run ended; they will be checked with the provider before anything is re-sent", "rows", n)
	}
	n, err = e.l.Move(ctx, b.Seq, e.cfg.Owner, ledger.StateHeld, ledger.StateQueued, 0, "")
	if err != nil {
		return err
	}
	if n > 0 {
		e.cfg.Log.Info("held rows queued again", "rows", n)
	}
	return nil
}

const pageSize = 512

// Send sends every queued row of batch b. Cancelling ctx stops it taking new
// rows; requests already out finish (bounded by the timeout) and are
// recorded. It returns a *StopError when a safety rule stopped the run.
func (e *Engine) Send(ctx context.Context, b ledger.Batch) error {
	e.started = e.cfg.Now()
	if n, err := e.l.CountState(ctx, b.Seq, ledger.StateQueued); err == nil {
		e.progress.Todo.Add(n)
	}
	w, err := e.l.NewWriter(context.WithoutCancel(ctx), b.Seq, e.cfg.Owner)
	if err != nil {
		return err
	}
	jobs := make(chan ledger.Row, e.cfg.Workers)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		defer close(jobs)
		return e.readQueued(gctx, b, w, jobs)
	})
	for i := 0; i < e.cfg.Workers; i++ {
		g.Go(func() error {
			for row := range jobs {
				if ctx.Err() != nil || e.stopping() {
					// Dispatched but never sent: say so, so the next
					// run sends it instead of asking the provider.
					e.record(w, ledger.Update{Line: row.Line, To: ledger.StateQueued, Code: -1})
					continue
				}
				e.sendRow(ctx, w, row)
			}
			return nil
		})
	}
	gerr := g.Wait()
	// The writer outlives the errgroup's context: the last outcomes must be
	// committed whatever ended the run.
	if err := w.Close(); err != nil {
		e.ledgerFailed(err)
	}
	if r := w.Refused(); r != nil {
		e.cfg.Log.Error("the ledger refused an outcome: please report this", "err", r)
	}
	if s := e.Stopped(); s != nil {
		return s
	}
	if gerr != nil && !errors.Is(gerr, context.Canceled) {
		return gerr
	}
	return nil
}

// readQueued pages through the queued rows and hands them to the workers.
// A marker dispatches each chunk in one durable commit while the chunk
// before it is being handed out, so workers never wait for a commit, and a
// commit carries the outcomes of a whole chunk: fewer, larger commits.
func (e *Engine) readQueued(ctx context.Context, b ledger.Batch, w ledger.Writer, jobs chan<- ledger.Row) error {
	chunks := make(chan []ledger.Row, 1)
	var g errgroup.Group
	g.Go(func() error {
		defer close(chunks)
		return e.dispatchQueued(ctx, b, w, chunks)
	})
	// Once dispatched, a row always reaches a worker, which sends it or
	// puts it back to queued: this loop drains every chunk, even after a
	// stop.
	for rows := range chunks {
		for _, r := range rows {
			jobs <- r
		}
	}
	return g.Wait()
}

// dispatchQueued pages through the queued rows and sends each chunk,
// durably dispatched (ledger.Writer.Dispatch), to chunks.
func (e *Engine) dispatchQueued(ctx context.Context, b ledger.Batch, w ledger.Writer, chunks chan<- []ledger.Row) error {
	after := 0
	chunk := e.chunk()
	for {
		if e.stopping() {
			return nil
		}
		page, err := e.l.Queued(ctx, b.Seq, after, pageSize)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		for start := 0; start < len(page); start += chunk {
			if ctx.Err() != nil || e.stopping() {
				return nil
			}
			rows := page[start:min(start+chunk, len(page))]
			lines := make([]int, len(rows))
			for i, r := range rows {
				lines[i] = r.Line
			}
			done, err := w.Dispatch(ctx, lines)
			if err != nil {
				if ctx.Err() == nil || errors.Is(err, ledger.ErrLeaseLost) {
					e.ledgerFailed(err)
				}
				return nil
			}
			ok := make(map[int]bool, len(done))
			for _, l := range done {
				ok[l] = true
			}
			out := make([]ledger.Row, 0, len(done))
			for _, r := range rows {
				if ok[r.Line] { // else settled elsewhere: never send a row we do not own
					out = append(out, r)
				}
			}
			chunks <- out
		}
		if len(page) < pageSize {
			return nil
		}
		after = page[len(page)-1].Line
	}
}

// chunk is how many rows one dispatch covers. A crash leaves up to two
// chunks dispatched and unsent, each row of which costs a status enquiry on
// the next run, so chunks are as small as throughput allows: one per
// worker, grown at high rates to keep dispatch commits under about 50 a
// second, and 512 rows unlimited.
func (e *Engine) chunk() int {
	n := pageSize
	if e.cfg.Rate > 0 {
		n = min(n, int(e.cfg.Rate/50))
	}
	return max(n, min(e.cfg.Workers, pageSize), 1)
}

// held reports whether row's operator is held in this run.
func (e *Engine) held(op int64) bool {
	e.opMu.Lock()
	defer e.opMu.Unlock()
	return e.opHeld[op]
}

// sendRow sends one row already dispatched (or marked inflight) and records
// its outcome.
func (e *Engine) sendRow(ctx context.Context, w ledger.Writer, row ledger.Row) {
	if e.held(row.Operator) {
		e.record(w, ledger.Update{Line: row.Line, To: ledger.StateHeld, Code: -1,
			Message: fmt.Sprintf("operator %d is down: held, a rerun retries it", row.Operator)})
		return
	}
	tk, err := e.lim.Wait(ctx)
	if err != nil || e.stopping() || !e.leaseOK() {
		// Interrupted or stopped before sending (the wait may be long at
		// a low rate): the row goes back to queued.
		e.record(w, ledger.Update{Line: row.Line, To: ledger.StateQueued, Code: -1})
		return
	}
	e.deliver(ctx, w, row, tk)
}

// deliver sends a row already dispatched or marked inflight, under the
// limiter ticket tk, retrying only what provably never reached the
// provider, and records the outcome.
func (e *Engine) deliver(ctx context.Context, w ledger.Writer, row ledger.Row, tk ticket) {
	var (
		res aop.Result
		err error
	)
	notSent, throttles := 0, 0
	for {
		at := e.cfg.Now()
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.cfg.Timeout)
		res, _ = e.p.Recharge(rctx, row.Request)
		cancel()
		e.lim.done(tk, res.Wrote)
		e.progress.Sent.Add(1)
		lat := e.cfg.Now().Sub(at)
		switch res.Class {
		case aop.ClassNotSent:
			notSent++
			e.logAttempt(w, row, at, lat, res)
			if res.Untrusted {
				// Every row would meet the same certificate: stop now
				// rather than retry the whole file into the breaker.
				e.stop(&StopError{Reason: "tls", Detail: "the provider's TLS certificate is not trusted",
					Hint: "check --base-url; aopbatch never skips certificate verification"})
				e.record(w, ledger.Update{Line: row.Line, To: ledger.StateQueued, Code: -1, Message: res.Message})
				return
			}
			if notSent < e.cfg.MaxAttempts && ctx.Err() == nil && !e.stopping() {
				if e.cfg.Sleep(ctx, e.cfg.Retry.Delay(notSent)) == nil {
					if tk, err = e.lim.Wait(ctx); err == nil && e.leaseOK() {
						continue
					}
				}
			}
			msg := res.Message // the client's "not sent: <why>", said once
			if !strings.HasPrefix(msg, "not sent") {
				msg = "not sent: " + msg
			}
			e.breakerObserve(true, msg)
			e.record(w, ledger.Update{Line: row.Line, To: ledger.StateQueued, Code: -1, Message: msg})
			return
		case aop.ClassThrottled:
			throttles++
			e.logAttempt(w, row, at, lat, res)
			e.lim.throttled(e.achievedRate())
			if throttles < 4*e.cfg.MaxAttempts && ctx.Err() == nil && !e.stopping() {
				wait := res.RetryAfter
				if wait <= 0 {
					wait = e.cfg.Retry.Delay(throttles)
				}
				if e.cfg.Sleep(ctx, wait) == nil {
					if tk, err = e.lim.Wait(ctx); err == nil && e.leaseOK() {
						continue
					}
				}
			}
			e.record(w, ledger.Update{Line: row.Line, To: ledger.StateQueued, Code: -1,
				Message: throttledMessage(throttles, ctx.Err() != nil, e.stopping())})
			return
		}
		e.settle(w, row, at, lat, res)
		return
	}
}

// settle maps a recharge answer to the row's state (SPEC section 2).
func (e *Engine) settle(w ledger.Writer, row ledger.Row, at time.Time, lat time.Duration, res aop.Result) {
	var to ledger.State
	transient := false
	switch res.Class {
	case aop.ClassSuccess:
		to = ledger.StateSuccess
		e.operatorUp(row.Operator)
	case aop.ClassPending:
		to = ledger.StatePending
	case aop.ClassDuplicate:
		to = ledger.StateDuplicate
	case aop.ClassFailed:
		to = ledger.StateFailed
	case aop.ClassOperatorDown:
		to = ledger.StateFailed
		e.operatorDown(row.Operator)
	case aop.ClassAccountStop:
		// Declined before anything was taken: the row itself is not failed,
		// it waits for the account to be fixed.
		to = ledger.StateQueued
		e.stop(&StopError{Reason: "account", Detail: fmt.Sprintf("provider answered %d %q", res.Code, res.Message), Hint: accountHint(res.Code)})
	case aop.ClassAuth:
		to = ledger.StateQueued
		detail := fmt.Sprintf("authentication failed after a credential refresh (HTTP %d, code %d: %q)", res.HTTPStatus, res.Code, res.Message)
		if res.HTTPStatus == 0 { // nothing went: there was no credential to send
			detail = "no credential to send: " + res.Message
		}
		e.stop(&StopError{Reason: "auth", Detail: detail,
			Hint: "check the token or JWT secret and partner id (--auth, AOP_TOKEN, AOP_JWT_SECRET, AOP_PARTNER_ID)"})
	default: // unknown, and anything unexpected
		to = ledger.StateUnknown
		transient = true
		if n := e.unknown.Add(row.AmountPaise); e.cfg.MaxUnknownPaise > 0 && n > e.cfg.MaxUnknownPaise {
			e.stop(&StopError{Reason: "unknown-limit", Detail: fmt.Sprintf("%s in rows whose outcome is unknown exceeds --max-unknown-amount", FormatRupees(n)),
				Hint: "check the provider's status, then run aopbatch resolve"})
		}
	}
	e.breakerObserve(transient, res.Message)
	e.record(w, ledger.Update{Line: row.Line, To: to, Code: res.Code, Message: res.Message, TxnID: res.TxnID,
		Attempt: attempt("recharge", at, lat, res)})
	e.count(row, to)
}

// count tallies a recharge's outcome: a queued row's (sending), or that of
// an unknown row the provider had no record of, sent again (resolving).
func (e *Engine) count(row ledger.Row, to ledger.State) {
	if row.State != ledger.StateQueued {
		e.resolved(row, to)
		return
	}
	e.progress.Done.Add(1)
	switch to {
	case ledger.StateSuccess:
		e.progress.Success.Add(1)
	case ledger.StateFailed, ledger.StateRefunded:
		e.progress.Failed.Add(1)
	case ledger.StatePending, ledger.StateDuplicate, ledger.StateUnknown:
		e.progress.Unsure.Add(1)
	}
}

func accountHint(code int) string {
	switch code {
	case 16:
		return "top up the wallet, then run again to send the remaining rows"
	case 6:
		return "ask the provider to set the commission for this operator, then run again"
	case 12:
		return "ask the provider to activate recharge permission, then run again"
	}
	return "fix the account with the provider, then run again"
}

// breakerObserve feeds one outcome to the breaker; why is the outcome's
// message, named when the breaker trips so the cause (an untrusted TLS
// certificate, a refused connection) reaches the person running the batch.
func (e *Engine) breakerObserve(transient bool, why string) {
	if e.brk.observe(transient) {
		e.stop(&StopError{Reason: "breaker", Detail: fmt.Sprintf("most of the last %d requests failed without a clear answer, the latest: %s", e.cfg.BreakerWindow, why),
			Hint: "the provider or the network looks broken; run again later to resume"})
	}
}

func (e *Engine) operatorUp(op int64) {
	e.opMu.Lock()
	e.opDown[op] = 0
	e.opMu.Unlock()
}

func (e *Engine) operatorDown(op int64) {
	e.opMu.Lock()
	e.opDown[op]++
	hold := e.opDown[op] >= e.cfg.HoldAfter && !e.opHeld[op]
	if hold {
		e.opHeld[op] = true
	}
	e.opMu.Unlock()
	if hold {
		e.cfg.Log.Warn("operator is down: holding its remaining rows, other operators carry on", "operator", op)
	}
}

func (e *Engine) achievedRate() float64 {
	el := e.cfg.Now().Sub(e.started).Seconds()
	if el < 1 {
		el = 1
	}
	return float64(e.progress.Sent.Load()) / el
}

func (e *Engine) record(w ledger.Writer, u ledger.Update) {
	if err := w.Record(u); err != nil {
		e.ledgerFailed(err)
	}
}

// ledgerFailed stops the engine for a ledger write that failed: the
// batch's lease lost to another run, or the ledger itself.
func (e *Engine) ledgerFailed(err error) {
	if errors.Is(err, ledger.ErrLeaseLost) {
		e.stop(&StopError{Reason: "lease", Detail: "another aopbatch took this batch over while this run was paused or stalled",
			Hint: "let that run finish; run again afterwards if rows are left"})
		return
	}
	e.stop(&StopError{Reason: "ledger", Detail: err.Error(), Hint: "check the disk and the ledger file; rows in flight will be checked on the next run"})
}

// logAttempt logs a request that did not settle the row (a retry follows).
func (e *Engine) logAttempt(w ledger.Writer, row ledger.Row, at time.Time, lat time.Duration, res aop.Result) {
	e.record(w, ledger.Update{Line: row.Line, Code: res.Code, Message: res.Message, Attempt: attempt("recharge", at, lat, res)})
}

func attempt(kind string, at time.Time, lat time.Duration, res aop.Result) *ledger.Attempt {
	return &ledger.Attempt{Kind: kind, At: at, Latency: lat, HTTPStatus: res.HTTPStatus, Code: res.Code, Class: string(res.Class), Message: res.Message}
}

// Stop makes the engine stop taking rows, for a reason found outside it
// (the batch's lease was lost, say).
func (e *Engine) Stop(s *StopError) { e.stop(s) }

// UseLease makes the engine send only while the batch's lease surely
// holds. renew renews it and says until when; the engine calls it when a
// send finds the last renewal run out, and SetLease takes the renewals
// made meanwhile by a heartbeat. Call it before Send or Resolve.
func (e *Engine) UseLease(renew func() (time.Time, error)) {
	e.renewLease = renew
	e.leaseUntil.Store(e.cfg.Now().UnixMilli()) // nothing renewed yet
}

// SetLease says until when the batch's lease is surely held, as last
// renewed. The zero time means no limit.
func (e *Engine) SetLease(until time.Time) {
	if until.IsZero() {
		e.leaseUntil.Store(0)
		return
	}
	e.leaseUntil.Store(until.UnixMilli())
}

func (e *Engine) leaseFresh() bool {
	until := e.leaseUntil.Load()
	return until == 0 || e.cfg.Now().UnixMilli() < until
}

// leaseOK reports whether the lease surely holds, renewing it first if the
// last renewal has run out, and stops the engine when it does not. A
// process paused past its lease (SIGSTOP, a suspended laptop) must not send
// once it resumes: another run may have taken the batch over meanwhile and
// be settling the same rows. A renewal that only ran late (the ledger was
// busy) is no reason to stop.
func (e *Engine) leaseOK() bool {
	if e.leaseFresh() {
		return true
	}
	e.renewMu.Lock()
	defer e.renewMu.Unlock()
	if e.leaseFresh() { // another worker renewed it
		return true
	}
	var err error
	// A renewal that waited out a whole lease for the ledger is counted
	// from before its wait: it may need a second, prompt one.
	for try := 0; try < 2 && err == nil && e.renewLease != nil && !e.stopping(); try++ {
		var until time.Time
		if until, err = e.renewLease(); err == nil {
			e.SetLease(until)
			if e.leaseFresh() {
				return true
			}
		}
	}
	switch {
	case errors.Is(err, ledger.ErrLeaseLost):
		e.ledgerFailed(err)
	case err != nil:
		e.stop(&StopError{Reason: "lease", Detail: "the batch's lease ran out and could not be renewed: " + err.Error(),
			Hint: "check the disk and the ledger file, then run again to resume"})
	default:
		e.stop(&StopError{Reason: "lease", Detail: "the batch's lease ran out and could not be renewed in time",
			Hint: "run again to resume; rows that were in flight are checked with the provider first"})
	}
	return false
}
