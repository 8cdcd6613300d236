package batch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
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

// Config tunes the engine. Zero values take DefaultConfig's, but for
// Owner, Rate (0: no limit) and Workers (0: automatic).
type Config struct {
	// Owner holds the lease of the batches the engine runs; every ledger
	// write is checked against it, so a run that lost its batch to
	// another stops instead of writing over it.
	Owner ledger.Owner
	// Workers fixes the number of requests in flight; 0 is automatic:
	// concurrency follows the provider's latency so that Rate is reached
	// (rate × latency, with headroom), up to MaxInFlight.
	Workers         int
	MaxInFlight     int           // cap of automatic concurrency
	Rate            float64       // requests per second; 0 = unlimited
	Burst           int           // requests allowed at once above the rate
	Timeout         time.Duration // per request
	MaxAttempts     int           // tries for a request that never left
	Retry           RetryPolicy   // default Backoff{200ms, 10s, MaxAttempts}
	HoldAfter       int           // operator-down answers in a row before holding that operator
	BreakerWindow   int           // recent requests the breaker looks at
	BreakerRatio    float64       // share of transient failures that trips it
	MaxUnknownPaise int64         // stop once this much money is in unknown rows; 0 = no limit
	// A run stops when KnownRefsTrip of the last KnownRefsWindow rows it
	// sent for the first time were answered 18 (knownRefs), unless
	// AllowKnownRefs: a file whose ledger was lost, sent again on purpose.
	KnownRefsWindow int
	KnownRefsTrip   int
	AllowKnownRefs  bool
	// Account names the provider account the rate belongs to: on a shared
	// ledger, every process of the account draws from one rate budget.
	Account        string
	ResolveTimeout time.Duration // how long resolution keeps enquiring
	ResolveBackoff time.Duration // first pause between enquiry rounds
	Log            *slog.Logger
	Now            func() time.Time
	Sleep          func(ctx context.Context, d time.Duration) error
}

// DefaultConfig is the engine's defaults, which the command line's flags
// show and use.
func DefaultConfig() Config {
	return Config{
		Workers:         0, // automatic
		MaxInFlight:     256,
		Rate:            10,
		Burst:           1,
		Timeout:         30 * time.Second,
		MaxAttempts:     5,
		HoldAfter:       3,
		BreakerWindow:   50,
		BreakerRatio:    0.8,
		KnownRefsWindow: 16,
		KnownRefsTrip:   ledger.KnownTrip,
		ResolveTimeout:  30 * time.Second,
		ResolveBackoff:  500 * time.Millisecond,
	}
}

func (c *Config) defaults() {
	d := DefaultConfig()
	if c.Workers < 0 {
		c.Workers = 0
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = d.MaxInFlight
	}
	if c.Burst <= 0 {
		c.Burst = d.Burst
	}
	if c.Timeout <= 0 {
		c.Timeout = d.Timeout
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = d.MaxAttempts
	}
	if c.HoldAfter <= 0 {
		c.HoldAfter = d.HoldAfter
	}
	if c.BreakerWindow <= 0 {
		c.BreakerWindow = d.BreakerWindow
	}
	if c.BreakerRatio <= 0 {
		c.BreakerRatio = d.BreakerRatio
	}
	if c.KnownRefsWindow <= 0 {
		c.KnownRefsWindow = d.KnownRefsWindow
	}
	if c.KnownRefsTrip <= 0 {
		c.KnownRefsTrip = d.KnownRefsTrip
	}
	if c.ResolveTimeout <= 0 {
		c.ResolveTimeout = d.ResolveTimeout
	}
	if c.ResolveBackoff <= 0 {
		c.ResolveBackoff = d.ResolveBackoff
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
	if c.Retry == nil {
		c.Retry = Backoff{Base: 200 * time.Millisecond, Max: 10 * time.Second,
			MaxTries: c.MaxAttempts, MaxThrottled: 4 * c.MaxAttempts, Now: c.Now}
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
	Reason string // StopAccount, StopAuth, StopTLS, StopBreaker, StopKnownRefs, StopRetryPaid, StopUnknownLimit, StopLedger, StopLease
	Detail string
	Hint   string
	// Before is the stop that ended the sending, when this one ended the
	// status enquiries after it (EnquireAfterStop).
	Before *StopError
	// TakenOver: another process took the batch's lease (StopLease), and
	// runs the batch now.
	TakenOver bool
}

func (e *StopError) Error() string {
	s := "stopped sending: "
	if e.Before != nil {
		s = "stopped asking the provider: "
	}
	s += e.Detail
	if e.Hint != "" {
		s += " (" + e.Hint + ")"
	}
	if e.Before != nil {
		s += "; before that, " + e.Before.Error()
	}
	return s
}

// Engine sends a batch's queued rows and resolves its unsettled ones.
type Engine struct {
	l   ledger.Store
	p   Provider
	cfg Config

	lim   *limiter
	brk   *breaker
	known *knownRefs
	// retryWalk checks a retry's first payment again before it goes
	// (retryPaid).
	retryWalk *retried
	gate      *gate
	conc      *concurrency
	thr       *throttle
	lat       latencies
	retry     RetryPolicy

	sendBegan    atomic.Int64 // unix ns
	claimTook    atomic.Int64 // ns, the last claim of rows on a shared ledger (chunk)
	sendTodo     int64        // queued rows when this Send began, in Progress.Todo
	sendEnded    atomic.Int64 // unix ns; 0 while sending
	sendGranted0 atomic.Int64 // requests let through before Send
	sendGranted  atomic.Int64 // requests let through while sending
	feeding      atomic.Bool  // queued rows are still being handed out
	warned       atomic.Bool
	toldWaiting  atomic.Bool  // the wait before re-sending a dead run's rows was logged
	overloads    atomic.Int64 // timeouts and 5xx answers
	timeouts     atomic.Int64 // of them, requests that got no answer within --timeout
	answers      atomic.Int64 // answers that reached the provider
	pausing      atomic.Int64 // workers waiting to retry a request

	stopOnce sync.Once
	stopErr  atomic.Pointer[StopError]
	stopCh   chan struct{}
	// After a stop that leaves status enquiries meaningful, EnquireAfterStop
	// asks about the unsettled rows with enquiring set; a stop met during
	// that pass closes haltCh, which ends it.
	enquiring atomic.Bool
	haltOnce  sync.Once
	haltCh    chan struct{}
	haltErr   atomic.Pointer[StopError] // the stop that ended that pass
	notFound  sync.Map                  // line -> true: unknown rows EnquireAfterStop found no record of
	// waiting are the rows a run that ended left in flight that the
	// provider had no record of, each with when it may be sent again
	// (apply): Resolve runs a round then.
	waitMu  sync.Mutex
	waiting map[int]time.Time

	leaseUntil atomic.Int64 // unix ms the batch's lease is surely held until; 0: no limit
	renewMu    sync.Mutex   // one synchronous renewal at a time
	renewLease func() (time.Time, error)

	opMu    sync.Mutex
	opDown  map[int64]int  // operator -> operator-down answers in a row
	opHeld  map[int64]bool // operators held for the rest of this run
	unknown atomic.Int64   // paise moved to unknown during this run

	thrMu     sync.Mutex
	thrLogged time.Time // the last "rate lowered" line

	progress Progress
}

// Progress is live counters of a run, safe to read while it runs.
type Progress struct {
	Todo     atomic.Int64 // queued rows this run set out to send; on a shared ledger, once none is left to claim, those it took
	Sent     atomic.Int64 // requests made (recharge)
	Done     atomic.Int64 // of Todo, rows with an outcome: at most Todo
	Success  atomic.Int64 // outcomes this run, sent or resolved
	Failed   atomic.Int64
	Unsure   atomic.Int64 // rows pending, duplicate or unknown now; from Resolve on, the whole batch's
	Enquired atomic.Int64 // status enquiries made
	InFlight atomic.Int64 // requests out now
	Limit    atomic.Int64 // in-flight limit now
}

// New makes an engine over ledger l and provider p.
func New(l ledger.Store, p Provider, cfg Config) *Engine {
	cfg.defaults()
	e := &Engine{
		l: l, p: p, cfg: cfg,
		lim:       newLimiter(cfg.Rate, cfg.Burst, cfg.Now),
		brk:       newBreaker(cfg.BreakerWindow, cfg.BreakerRatio),
		known:     newKnownRefs(cfg.KnownRefsWindow, cfg.KnownRefsTrip),
		retryWalk: newRetried(l, ""),
		conc:      newConcurrency(cfg.Workers, cfg.MaxInFlight, cfg.Rate, cfg.Now),
		thr:       newThrottle(cfg.Rate, cfg.Now),
		retry:     cfg.Retry,
		stopCh:    make(chan struct{}),
		haltCh:    make(chan struct{}),
		opDown:    map[int64]int{},
		opHeld:    map[int64]bool{},
	}
	// On a ledger shared by processes the rate is the account's: each
	// request also takes a slot of the account's budget in the ledger.
	if b, ok := l.(ledger.RateBudget); ok && l.Shared() && cfg.Rate > 0 {
		account := cfg.Account
		if account == "" {
			account = "default"
		}
		e.lim.shared = newSharedSlots(b, account, cfg.Rate, cfg.Burst, e.lim.now, e.ledgerFailed)
	}
	limit, _, _ := e.conc.state()
	e.gate = newGate(limit)
	e.progress.Limit.Store(int64(limit))
	return e
}

// Progress returns the run's live counters.
func (e *Engine) Progress() *Progress { return &e.progress }

// Stopped returns why the engine stopped early, or nil.
func (e *Engine) Stopped() *StopError { return e.stopErr.Load() }

func (e *Engine) stop(s *StopError) {
	first := false
	e.stopOnce.Do(func() {
		first = true
		e.stopErr.Store(s)
		close(e.stopCh)
		e.cfg.Log.Warn("stopping", "reason", s.Reason, "detail", s.Detail, "hint", s.Hint)
	})
	if !first && e.enquiring.Load() {
		e.haltOnce.Do(func() {
			e.haltErr.Store(s)
			close(e.haltCh)
			e.cfg.Log.Warn("stopping the status enquiries", "reason", s.Reason, "detail", s.Detail, "hint", s.Hint)
		})
	}
}

// stopping says the engine stopped: nothing more is sent.
func (e *Engine) stopping() bool { return closed(e.stopCh) }

// halted says the engine asks nothing more either: it stopped, and is not
// in EnquireAfterStop's pass, or that pass met a stop of its own.
func (e *Engine) halted() bool {
	if !e.stopping() {
		return false
	}
	return !e.enquiring.Load() || closed(e.haltCh)
}

func closed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// untilStop is ctx, also ended when the engine stops: for the waits that
// must end then (a slot, a token, a retry's pause). In EnquireAfterStop's
// pass it ends when that pass is halted.
func (e *Engine) untilStop(ctx context.Context) (context.Context, context.CancelFunc) {
	ch := e.stopCh
	if e.enquiring.Load() {
		ch = e.haltCh
	}
	c, cancel := context.WithCancelCause(ctx)
	go func() {
		select {
		case <-ch:
			cancel(errStopped)
		case <-c.Done():
		}
	}()
	return c, func() { cancel(nil) }
}

// Prepare readies batch b for a run: rows a dead run left in flight become
// unknown (they may have been charged), and held rows are queued again.
func (e *Engine) Prepare(ctx context.Context, b ledger.Batch) error {
	r, err := e.l.RecoverInflight(ctx, b.Seq, e.cfg.Owner)
	if err != nil {
		return err
	}
	logRecovered(e.cfg.Log, r, "rows were in flight when a previous run ended; they will be checked with the provider before anything is re-sent")
	n, err := e.l.Move(ctx, b.Seq, e.cfg.Owner, ledger.StateHeld, ledger.StateQueued, 0, "")
	if err != nil {
		return err
	}
	if n > 0 {
		e.cfg.Log.Info("held rows queued again", "rows", n)
	}
	return nil
}

const pageSize = 512

// Send sends every queued row of batch b. Rows earlier runs left pending,
// duplicate or unknown are asked about meanwhile, through the same limiter
// and workers. Cancelling ctx stops it taking new rows; requests already
// out finish (bounded by the timeout) and are recorded. It returns a
// *StopError when a safety rule stopped the run.
func (e *Engine) Send(ctx context.Context, b ledger.Batch) error {
	cutoff := e.cfg.Now()
	e.sendBegan.Store(cutoff.UnixNano())
	e.sendGranted0.Store(e.lim.granted.Load())
	todo, err := e.l.CountState(ctx, b.Seq, ledger.StateQueued)
	if err != nil {
		return err
	}
	e.progress.Todo.Add(todo)
	e.sendTodo = todo
	earlier, err := e.countUnsettled(ctx, b)
	if err != nil {
		return err
	}
	e.progress.Unsure.Add(earlier)
	e.announce(todo, earlier)
	w, err := e.l.NewWriter(context.WithoutCancel(ctx), b.Seq, e.cfg.Owner)
	if err != nil {
		return err
	}
	wctx, cancelWaits := e.untilStop(ctx)
	defer cancelWaits()
	stopMonitor := e.monitor(true)
	var gerr error
	if todo > 0 {
		// A file sent before stops here, before anything is dispatched.
		if gerr = e.probeKnown(ctx, wctx, b, w); gerr == nil {
			// The send phase's rate is the sending's: the enquiries
			// before it wait for their answers, a latency long.
			e.sendGranted0.Store(e.lim.granted.Load())
			e.sendBegan.Store(e.cfg.Now().UnixNano())
		}
	}
	if gerr == nil {
		gerr = e.sendAll(ctx, wctx, b, w, todo, earlier, cutoff)
	}
	e.sendGranted.Store(e.lim.granted.Load() - e.sendGranted0.Load())
	e.sendEnded.Store(e.cfg.Now().UnixNano())
	stopMonitor()
	// The writer outlives the errgroup's context: the last outcomes must be
	// committed whatever ended the run.
	if err := w.Close(); err != nil {
		e.ledgerFailed(err)
	}
	e.noteRefused(w.Refused())
	if s := e.Stopped(); s != nil {
		return s
	}
	if gerr != nil && !errors.Is(gerr, context.Canceled) {
		return gerr
	}
	return nil
}

// sendAll hands batch b's queued rows (todo of them) to the workers, and
// the earlier runs' unsettled rows meanwhile, until every one is sent or
// the run stops.
func (e *Engine) sendAll(ctx, wctx context.Context, b ledger.Batch, w ledger.Writer, todo, earlier int64, cutoff time.Time) error {
	e.feeding.Store(todo > 0)
	p := newPool(e.poolSize(), e.poolWant, func(j job) { e.work(ctx, wctx, w, j) })
	defer p.close()
	g, gctx := errgroup.WithContext(ctx)
	// The earlier rows are asked about in rounds while queued rows are
	// handed out; once they all are, Resolve carries on.
	fctx, fed := context.WithCancel(gctx)
	defer fed()
	g.Go(func() error {
		defer e.feeding.Store(false)
		defer fed()
		return e.readQueued(gctx, b, w, p)
	})
	if earlier > 0 {
		g.Go(func() error { return e.feedUnsettled(gctx, fctx, b, w, p, cutoff) })
	}
	return g.Wait()
}

// noteRefused logs the first outcome the ledger's transition table
// refused. On a shared ledger that is expected: processes settling the
// same unsettled row race, and the first settled outcome stands. Alone,
// it is a bug.
func (e *Engine) noteRefused(r error) {
	switch {
	case r == nil:
	case e.l.Shared():
		e.cfg.Log.Info("another process changed a row first (settled it, or sent it again): its change stands", "detail", r)
	default:
		e.cfg.Log.Error("the ledger refused an outcome: please report this", "err", r)
	}
}

// announce says what the run sets out to do and how long it should take.
func (e *Engine) announce(todo, earlier int64) {
	args := []any{"rows", todo}
	if earlier > 0 {
		args = append(args, "to_check", earlier)
	}
	msg := fmt.Sprintf("sending %d rows with no --rate limit", todo)
	if e.cfg.Rate > 0 {
		msg = fmt.Sprintf("%d rows at %g/s: %s", todo, e.cfg.Rate, expected(todo, e.cfg.Rate))
		args = append(args, "rate", e.cfg.Rate)
	}
	if todo == 0 {
		msg = "nothing left to send"
	}
	if earlier > 0 {
		msg += fmt.Sprintf("; %d rows from earlier runs are checked with the provider meanwhile", earlier)
	}
	e.cfg.Log.Info(msg, args...)
}

// poolSize is how many workers the pool may start: the fixed number, or
// the automatic limit's cap.
func (e *Engine) poolSize() int {
	if e.cfg.Workers > 0 {
		return e.cfg.Workers
	}
	return e.cfg.MaxInFlight
}

// poolSpare is how many workers beyond the in-flight limit (and those
// pausing before a retry) the pool keeps.
const poolSpare = 4

// poolWant is how many workers the pool may have at work now.
func (e *Engine) poolWant() int {
	_, _, limit := e.gate.counts()
	return limit + poolSpare + int(e.pausing.Load())
}

// work does one job: sends a row (or puts it back to queued when the run
// is ending), or asks the provider about one.
func (e *Engine) work(ctx, wctx context.Context, w ledger.Writer, j job) {
	if j.enquire {
		if ctx.Err() == nil && !e.halted() {
			e.enquire(ctx, wctx, w, j.row)
		}
		if j.asked != nil {
			j.asked.Done()
		}
		return
	}
	if ctx.Err() != nil || e.stopping() {
		// Dispatched but never sent: say so, so the next run sends it
		// instead of asking the provider.
		e.record(w, ledger.Update{Line: j.row.Line, To: ledger.StateQueued, Code: -1})
		return
	}
	e.sendRow(ctx, wctx, w, j.row)
}

// feedUnsettled hands the rows earlier runs left pending, duplicate or
// unknown (changed before cutoff) to the workers to ask about: every one
// once (until ctx ends), then again in rounds with growing pauses as
// Resolve does, until none is left or fed ends (the queued rows are all
// handed out). A round starts once the one before is answered: a row is
// never asked about twice at once, so never sent again twice. They are
// not queued, so the send loop never holds them; the rows this run leaves
// unsettled wait for Resolve.
func (e *Engine) feedUnsettled(ctx, fed context.Context, b ledger.Batch, w ledger.Writer, p *pool, cutoff time.Time) error {
	earlier := map[int]bool{}
	// Rows are dated by the ledger's clock (a shared store's is the
	// database's), cutoff by this host's.
	cutoff = cutoff.Add(e.l.Now().Sub(e.cfg.Now()))
	keep := func(r ledger.Row) bool {
		if r.Updated.Before(cutoff) {
			earlier[r.Line] = true
		}
		return earlier[r.Line]
	}
	pause := e.cfg.ResolveBackoff
	for round := ctx; ; round = fed {
		var asked sync.WaitGroup
		n, err := e.submitUnsettled(round, b, p, keep, &asked, time.Time{})
		asked.Wait()
		if err != nil || n == 0 {
			return err
		}
		if e.cfg.Sleep(fed, pause) != nil || e.stopping() {
			return nil
		}
		// The next round reads the rows' states: the answers of this one
		// must be committed, or a row just settled reads as still pending
		// and is asked about, and recorded, again.
		if err := w.Flush(context.WithoutCancel(ctx)); err != nil {
			return err
		}
		pause = min(pause*2, 10*time.Second)
	}
}

// submitUnsettled pages through the unsettled rows and hands those keep
// takes (all, when keep is nil) to the workers to ask about, counting each
// in asked (when not nil) until it is answered. It stops at until (none
// when zero), neither handing out nor reading rows after it. It returns
// how many it handed out.
func (e *Engine) submitUnsettled(ctx context.Context, b ledger.Batch, p *pool, keep func(ledger.Row) bool, asked *sync.WaitGroup, until time.Time) (int, error) {
	late := func() bool { return !until.IsZero() && !e.cfg.Now().Before(until) }
	n := 0
	for _, s := range unsettledStates {
		after := 0
		for {
			if ctx.Err() != nil || e.halted() || late() {
				return n, nil
			}
			page, err := e.l.Page(ctx, b.Seq, s, after, pageSize)
			if err != nil {
				if ctx.Err() != nil {
					return n, nil
				}
				return n, err
			}
			for _, r := range page {
				if late() {
					return n, nil
				}
				if keep == nil || keep(r) {
					if asked != nil {
						asked.Add(1)
					}
					p.submit(job{row: r, enquire: true, asked: asked})
					n++
				}
			}
			if len(page) < pageSize {
				break
			}
			after = page[len(page)-1].Line
		}
	}
	return n, nil
}

// readQueued pages through the queued rows and hands them to the workers.
// A marker dispatches each chunk in one durable commit while the chunk
// before it is being handed out, so workers never wait for a commit, and a
// commit carries the outcomes of a whole chunk: fewer, larger commits.
func (e *Engine) readQueued(ctx context.Context, b ledger.Batch, w ledger.Writer, p *pool) error {
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
			p.submit(job{row: r})
		}
	}
	return g.Wait()
}

// dispatchQueued pages through the queued rows and sends each chunk,
// durably dispatched (ledger.Writer.Dispatch), to chunks.
func (e *Engine) dispatchQueued(ctx context.Context, b ledger.Batch, w ledger.Writer, chunks chan<- []ledger.Row) error {
	if c, ok := w.(ledger.Claimer); ok {
		return e.claimQueued(ctx, c, chunks)
	}
	after := 0
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
		for start := 0; start < len(page); {
			if ctx.Err() != nil || e.stopping() {
				return nil
			}
			rows := page[start:min(start+e.chunk(), len(page))]
			start += len(rows)
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

// claimQueued hands out chunks of queued rows the writer claims itself
// (a shared ledger's: rows no other process holds), until none is left.
func (e *Engine) claimQueued(ctx context.Context, c ledger.Claimer, chunks chan<- []ledger.Row) error {
	var took int64
	for {
		if ctx.Err() != nil || e.stopping() {
			return nil
		}
		began := time.Now()
		rows, err := c.Claim(ctx, e.chunk())
		e.claimTook.Store(int64(time.Since(began)))
		if err != nil {
			if ctx.Err() == nil || errors.Is(err, ledger.ErrLeaseLost) {
				e.ledgerFailed(err)
			}
			return nil
		}
		if len(rows) == 0 {
			// The batch's other rows are the other processes': counted
			// against this one's, they read as rows never sent
			// ("done=500 of=1500" when each of three sent 500).
			e.progress.Todo.Add(took - e.sendTodo)
			return nil
		}
		took += int64(len(rows))
		chunks <- rows
	}
}

// chunk is how many rows one dispatch covers. A crash leaves up to two
// chunks dispatched and unsent, each row of which costs a status enquiry on
// the next run, so chunks are as small as throughput allows: as many as
// may be in flight now, grown at high rates to keep dispatch commits under
// about 50 a second, and 512 rows unlimited.
//
// On a ledger shared by processes a chunk is also what this process keeps
// from the others: claimed rows wait for its workers alone. It claims no
// more than twice what it may have in flight, or what the rate sends in
// two claims' time: a claim is round trips to the database, and with it
// 120 ms away chunks of 21 rows kept one process near 55/s of 150. That is
// held to eight times what it may have in flight: one stalled claim must
// not make the next take a page from the others.
func (e *Engine) chunk() int {
	n := pageSize
	if e.cfg.Rate > 0 {
		n = min(n, int(e.cfg.Rate/50))
	}
	_, _, limit := e.gate.counts()
	n = max(n, min(limit, pageSize), 1)
	if e.l.Shared() {
		keep := 2 * max(limit, 1)
		if e.cfg.Rate > 0 {
			need := int(math.Ceil(2 * e.cfg.Rate * time.Duration(e.claimTook.Load()).Seconds()))
			need = min(need, 8*max(limit, 1), pageSize)
			n = max(n, need)
			keep = max(keep, need)
		}
		n = min(n, keep)
	}
	return n
}

// held reports whether row's operator is held in this run.
func (e *Engine) held(op int64) bool {
	e.opMu.Lock()
	defer e.opMu.Unlock()
	return e.opHeld[op]
}

// sendRow sends one row already dispatched (or marked inflight) and records
// its outcome.
func (e *Engine) sendRow(ctx, wctx context.Context, w ledger.Writer, row ledger.Row) {
	if e.hold(w, row) {
		return
	}
	tk, err := e.take(wctx)
	if err != nil || e.stopping() || !e.leaseOK() {
		// Interrupted or stopped before sending (the wait may be long at
		// a low rate): the row goes back to queued.
		if err == nil {
			e.untake(tk)
		}
		e.record(w, ledger.Update{Line: row.Line, To: ledger.StateQueued, Code: -1})
		return
	}
	// Asked again: the operator may have gone down while this row waited
	// for its token, and at a low rate every worker's row is waiting.
	if e.hold(w, row) {
		e.untake(tk)
		return
	}
	if e.retryPaid(ctx, row, retryPaidQueued) {
		e.untake(tk)
		e.record(w, ledger.Update{Line: row.Line, To: ledger.StateQueued, Code: -1})
		return
	}
	e.deliver(ctx, wctx, w, row, tk)
}

// hold records row held, unsent, when its operator is down.
func (e *Engine) hold(w ledger.Writer, row ledger.Row) bool {
	if !e.held(row.Operator) {
		return false
	}
	e.record(w, ledger.Update{Line: row.Line, To: ledger.StateHeld, Code: -1,
		Message: fmt.Sprintf("operator %d is down: held, a rerun retries it", row.Operator)})
	return true
}

// deliver sends a row already dispatched or marked inflight, holding the
// slot and token tk, retrying (RetryPolicy) only what got no decision,
// and records the outcome.
func (e *Engine) deliver(ctx, wctx context.Context, w ledger.Writer, row ledger.Row, tk ticket) {
	var first time.Time
	tries := map[RetryReason]int{}
	for {
		at := e.cfg.Now()
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.cfg.Timeout)
		e.sending(1)
		res, _ := e.p.Recharge(rctx, row.Request)
		e.sending(-1)
		cancel()
		lat := e.cfg.Now().Sub(at)
		if res.MadeRequest() {
			e.progress.Sent.Add(1)
		}
		e.answered(tk, res.Wrote, lat, res.Class != aop.ClassNotSent && !res.NoCredential, res.Class == aop.ClassThrottled, res.Timeout, res.HTTPStatus >= 500)
		o := rechargeOutcome(res)
		if o.Retry == "" {
			e.settle(w, row, at, lat, res, o)
			return
		}
		e.logAttempt(w, row, at, lat, res)
		if first.IsZero() {
			first = at
		}
		tries[o.Retry]++
		r := Retry{Why: o.Retry, Tries: tries[o.Retry], RetryAfter: res.RetryAfter, First: first}
		why := e.retryWait(ctx, wctx, r)
		if why == "" {
			var err error
			if tk, err = e.take(wctx); err == nil {
				// Its requests so far got no decision (not sent, or 429):
				// if its operator went down meanwhile, it is held, unsent.
				if e.hold(w, row) {
					e.untake(tk)
					return
				}
				// A retry's first payment may have been found charged
				// meanwhile: it goes back to queued, unsent (retryPaid).
				if e.retryPaid(ctx, row, retryPaidQueued) {
					e.untake(tk)
					e.record(w, ledger.Update{Line: row.Line, To: ledger.StateQueued, Code: -1,
						Message: "not sent: the row it retries, or one behind it, was found charged or unsettled meanwhile"})
					return
				}
				if !e.stopping() && e.leaseOK() {
					continue
				}
				e.untake(tk)
			}
			why = e.interruption(ctx)
		}
		msg := "not sent: " + gaveUp(r, res.Message, e.cfg.Now(), why)
		if o.Transient && why == "exhausted" {
			e.breakerObserve(true, msg)
		}
		e.record(w, ledger.Update{Line: row.Line, To: ledger.StateQueued, Code: -1, Message: msg})
		return
	}
}

// retryWait waits until r's request may go again: "" when it may, else
// why not: "exhausted" (the policy gave up), "interrupted" or "stopped".
func (e *Engine) retryWait(ctx, wctx context.Context, r Retry) string {
	if why := e.interruption(ctx); why != "" {
		return why
	}
	at, ok := e.retry.Next(r)
	if !ok {
		return "exhausted"
	}
	e.pausing.Add(1)
	_ = e.cfg.Sleep(wctx, at.Sub(e.cfg.Now())) // ended early only by ctx or a stop
	e.pausing.Add(-1)
	return e.interruption(ctx)
}

// interruption says why the run should not go on with a request:
// "interrupted" (ctx), "stopped" (a safety stop) or "".
func (e *Engine) interruption(ctx context.Context) string {
	switch {
	case ctx.Err() != nil:
		return "interrupted"
	case e.halted(): // only enquiries run in EnquireAfterStop's pass
		return "stopped"
	}
	return ""
}

// settle records a recharge answer's outcome (SPEC section 2) and its
// effects on the run.
func (e *Engine) settle(w ledger.Writer, row ledger.Row, at time.Time, lat time.Duration, res aop.Result, o Outcome) {
	to := o.State
	switch res.Class {
	case aop.ClassSuccess:
		e.operatorUp(row.Operator)
	case aop.ClassOperatorDown:
		e.operatorDown(row.Operator)
	}
	if o.Stop != "" {
		s := &StopError{Reason: o.Stop, Detail: o.Detail, Hint: o.Hint}
		switch o.Stop {
		case StopAccount:
			s.Detail = fmt.Sprintf("provider answered %d %q", res.Code, res.Message)
		case StopAuth:
			s.Detail = fmt.Sprintf("%s (HTTP %d, code %d: %q)", o.Detail, res.HTTPStatus, res.Code, res.Message)
			e.credentialStop(s, "", res.Message, res.HTTPStatus, res.Code, res.NoCredential, res.RenewFailed)
		}
		e.stop(s)
	}
	if to == ledger.StateUnknown {
		if n := e.unknown.Add(row.AmountPaise); e.cfg.MaxUnknownPaise > 0 && n > e.cfg.MaxUnknownPaise {
			// What to do next depends on what the enquiries after the
			// stop (EnquireAfterStop) leave: the command says it at the end.
			e.stop(&StopError{Reason: StopUnknownLimit, Detail: fmt.Sprintf("%s in rows whose outcome was unknown exceeded --max-unknown-amount %s",
				FormatRupees(n), FormatRupees(e.cfg.MaxUnknownPaise)),
				Hint: "check the provider's status before sending more"})
		}
	}
	if o.Stop != StopTLS {
		e.breakerObserve(o.Transient, res.Message)
	}
	if firstSend(row) {
		e.knownObserve(res.Class)
	}
	e.record(w, ledger.Update{Line: row.Line, To: to, Code: res.Code, Message: res.Message, TxnID: res.TxnID,
		Attempt: attempt("recharge", at, lat, res)})
	e.count(row, to)
}

// credentialStop rewrites auth stop s when the credential could not be
// had: none to send (noCredential: the request was not made) or none
// renewed after the provider refused one (renewFailed); msg says why,
// naming what failed (a token command's path and exit status, never what
// it printed). Or when there was none to refuse: with --auth none the
// provider refused a request without one, and nothing was renewed.
// kind prefixes the detail ("status enquiry: ").
func (e *Engine) credentialStop(s *StopError, kind, msg string, status, code int, noCredential, renewFailed bool) {
	mode := e.authMode()
	switch {
	case noCredential:
		s.Detail = kind + msg + "; the request was not sent"
	case renewFailed:
		s.Detail = fmt.Sprintf("%sauthentication failed: the provider refused the credential (HTTP %d, code %d), then %s", kind, status, code, msg)
	case mode == "none":
		s.Detail = fmt.Sprintf("%sauthentication failed: the provider refused a request without a credential: none is configured (--auth none) (HTTP %d, code %d: %q)", kind, status, code, msg)
		s.Hint = noneHint
		return
	default:
		return
	}
	if mode == "command" {
		s.Hint = commandHint
	}
}

// authMode is the kind of credential the provider sends, as an
// aop.Client says (aop.Authenticator.Mode); "" when it does not say.
func (e *Engine) authMode() string {
	if p, ok := e.p.(interface{ AuthMode() string }); ok {
		return p.AuthMode()
	}
	return ""
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

// breakerObserve feeds one outcome to the breaker; why is the outcome's
// message, named when the breaker trips so the cause (an untrusted TLS
// certificate, a refused connection) reaches the person running the batch.
func (e *Engine) breakerObserve(transient bool, why string) {
	if e.brk.observe(transient) {
		e.stop(&StopError{Reason: StopBreaker, Detail: fmt.Sprintf("most of the last %d requests failed without a clear answer, the latest: %s", e.cfg.BreakerWindow, why),
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

func (e *Engine) record(w ledger.Writer, u ledger.Update) {
	if err := w.Record(u); err != nil {
		e.ledgerFailed(err)
	}
}

// ledgerFailed stops the engine for a ledger write that failed: the
// batch's lease lost to another run, or the ledger itself.
func (e *Engine) ledgerFailed(err error) {
	if errors.Is(err, ledger.ErrLeaseLost) {
		e.stop(&StopError{Reason: StopLease, Detail: "another aopbatch took this batch over while this run was paused or stalled",
			Hint: "let that run finish; run again afterwards if rows are left", TakenOver: true})
		return
	}
	e.stop(&StopError{Reason: StopLedger, Detail: err.Error(), Hint: "check " + e.ledgerPlace() + "; rows in flight will be checked on the next run"})
}

// ledgerPlace is where to look when the ledger fails.
func (e *Engine) ledgerPlace() string {
	if e.l.Shared() {
		return "the database server and the connection to it"
	}
	return "the disk and the ledger file"
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
		e.stop(&StopError{Reason: StopLease, Detail: "the batch's lease ran out and could not be renewed: " + err.Error(),
			Hint: "check " + e.ledgerPlace() + ", then run again to resume"})
	default:
		e.stop(&StopError{Reason: StopLease, Detail: "the batch's lease ran out and could not be renewed in time",
			Hint: "run again to resume; rows that were in flight are checked with the provider first"})
	}
	return false
}
