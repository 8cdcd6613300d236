package batch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/aopbatch/aopbatch/batch/aop/aoptest"
	"github.com/aopbatch/aopbatch/ledger"
	"github.com/aopbatch/aopbatch/ledger/postgres"
	"github.com/aopbatch/aopbatch/ledger/postgres/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// TestSharedSlotsKnowWhenTheAccountIsBusy: a process whose share of an
// account's rate is small because others use the rest is not short of
// --rate; one alone on an idle account that sends slowly is.
func TestSharedSlotsKnowWhenTheAccountIsBusy(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openShared(t)
	const rate = 100 // block of 5 slots, 10 ms apart
	start := time.Now()
	busy := newSharedSlots(s, "acct", rate, 1, time.Now, failOn(t))
	quiet := newSharedSlots(s, "acct", rate, 1, time.Now, failOn(t))

	// Alone on an idle account, a slow sender finds its slots free.
	if _, err := quiet.Next(ctx); err != nil {
		t.Fatal(err)
	}
	if quiet.bookedSince(start) {
		t.Fatal("a lone process on an idle account reports the account busy")
	}
	// Another process takes the next 200 slots (two seconds of the rate).
	for range 200 {
		if _, err := busy.Next(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// The quiet one's next block comes after them.
	for range quiet.size {
		if _, err := quiet.Next(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if !quiet.bookedSince(start) {
		t.Error("a process queued behind another's slots does not report the account busy")
	}
}

// TestSharedSlotsKnowTheyTakeTurns: two processes at a rate low enough
// for one-slot blocks take the account's slots in turn; each is busy
// sharing, not short of --rate.
func TestSharedSlotsKnowTheyTakeTurns(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openShared(t)
	start := time.Now()
	a := newSharedSlots(s, "acct", 20, 1, time.Now, failOn(t))
	b := newSharedSlots(s, "acct", 20, 1, time.Now, failOn(t))
	for range 6 {
		for _, p := range []*sharedSlots{a, b} {
			if _, err := p.Next(ctx); err != nil {
				t.Fatal(err)
			}
			// Each Next asks ahead for the process's next block. Without
			// a pause, a's ask raced b's and could win every time (seen
			// under load): a then held two slots in a row each round, took
			// no turns, and was rightly not busy.
			time.Sleep(20 * time.Millisecond)
		}
	}
	for name, p := range map[string]*sharedSlots{"first": a, "second": b} {
		if !p.bookedSince(start) {
			t.Errorf("the %s process, taking slots in turn with another, does not report the account busy", name)
		}
	}
}

// TestSharedSlotsGiveUpPassedSlots: slots of a reserved block that passed
// while the process was held up are not handed out late: the other
// processes used the account's rate meanwhile. (The database's clock is
// real, so the hold is too.)
func TestSharedSlotsGiveUpPassedSlots(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	slots := newSharedSlots(openShared(t), "acct", 100, 1, time.Now, failOn(t)) // blocks of 5, 10 ms apart
	if _, err := slots.Next(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // the rest of the block passes
	at, err := slots.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if late := time.Since(at); late > staleSlot {
		t.Errorf("after a 200 ms pause, a slot %v ago, want none more than %v", late, staleSlot)
	}
}

// TestSharedSlotIsGivenUpOnce: a request that finds its slot passed when
// it wakes takes the next one, and goes on that however late, so a process
// always slow to wake still sends.
func TestSharedSlotIsGivenUpOnce(t *testing.T) {
	t.Parallel()
	clk := &jumpClock{step: 100 * time.Millisecond} // held up at every step
	budget := &countedBudget{RateBudget: openShared(t)}
	l := newLimiter(100, 1, clk.now)
	l.shared = newSharedSlots(budget, "acct", 100, 1, clk.now, failOn(t))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.sharedSlot(ctx); err != nil {
		t.Errorf("%v, want the request sent", err)
	}
	if got := budget.n.Load(); got != 2 {
		t.Errorf("%d reservations, want 2: a block for the slot given up, one for the slot used", got)
	}
	if used := l.shared.size - l.shared.left; used != 1 {
		t.Errorf("%d slots of the last block taken, want 1", used)
	}
}

// TestSharedSlotsAskAhead: the next block is asked for while half of one
// is left, and comes after it; a block spans four of the ledger's round
// trips, up to a second of the rate.
func TestSharedSlotsAskAhead(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	budget := &countedBudget{RateBudget: openShared(t)}
	slots := newSharedSlots(budget, "acct", 100, 1, time.Now, failOn(t)) // 10 ms apart
	// A block of 50: the next is asked for with 250 ms of it left, which
	// a loaded machine's database still answers in.
	slots.ask = 50
	first, err := slots.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for range 24 {
		if _, err := slots.Next(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for end := time.Now().Add(5 * time.Second); budget.n.Load() < 2; time.Sleep(time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("with 25 slots of 50 left, the next block was not asked for")
		}
	}
	for range 25 {
		if _, err := slots.Next(ctx); err != nil {
			t.Fatal(err)
		}
	}
	at, err := slots.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := first.Add(50 * slots.every); !at.Equal(want) {
		t.Errorf("the next block starts %v after the first, want right after it (%v)", at.Sub(first), want.Sub(first))
	}
	if n := budget.n.Load(); n != 2 {
		t.Errorf("%d reservations for 51 slots, want 2", n)
	}

	// Each reservation takes step (and what the database takes: up to
	// 60 ms more allowed, as parallel tests load it): four round trips of
	// slots, 50 ms of them at least, a quarter second at most.
	for _, tc := range []struct {
		rate     float64
		step     int // ms
		min, max int
	}{{100, 40, 16, 25}, {10, 40, 2, 3}, {2000, 40, 320, 500}, {10, 400, 3, 3}, {100, 0, 5, 24}} {
		clk := &jumpClock{step: time.Duration(tc.step) * time.Millisecond}
		slots := newSharedSlots(budget, "acct", tc.rate, 1, clk.now, failOn(t))
		if _, err := slots.Next(ctx); err != nil {
			t.Fatal(err)
		}
		slots.mu.Lock()
		got := slots.ask
		slots.mu.Unlock()
		if got < tc.min || got > tc.max {
			t.Errorf("at %v/s, a ledger %d ms away: blocks of %d, want %d-%d", tc.rate, tc.step, got, tc.min, tc.max)
		}
	}
}

// jumpClock runs ahead of the real clock by off, and by step more at each
// reading: a process held up between any two of its steps.
type jumpClock struct {
	mu        sync.Mutex
	off, step time.Duration
}

func (c *jumpClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.off += c.step
	return time.Now().Add(c.off)
}

// countedBudget is the ledger's rate budget, counting its reservations.
type countedBudget struct {
	ledger.RateBudget
	n atomic.Int32
}

func (b *countedBudget) Reserve(ctx context.Context, account string, n int, rate float64, burst int) (time.Time, time.Duration, error) {
	b.n.Add(1)
	return b.RateBudget.Reserve(ctx, account, n, rate, burst)
}

func failOn(t *testing.T) func(error) {
	return func(err error) { t.Errorf("budget: %v", err) }
}

// TestLedgerStopSaysWhereToLook: a run stopped by its ledger is told to
// check the database on a shared ledger, the disk on a file.
func TestLedgerStopSaysWhereToLook(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		l    ledger.Store
		want string
	}{{"sqlite", openLedger(t), "the disk and the ledger file"}, {"postgres", openShared(t), "the database server"}} {
		e := New(tc.l, nil, Config{})
		e.ledgerFailed(errors.New("write: connection refused"))
		if got := e.Stopped(); got == nil || !strings.Contains(got.Hint, tc.want) {
			t.Errorf("%s: stopped with %+v, want a hint to check %s", tc.name, got, tc.want)
		}
	}
}

// TestChunkCoversTheClaimsTime: on a shared ledger a process claims rows
// for what the rate sends in two claims' time, so a database far away does
// not leave its workers waiting for rows; never more than a page.
func TestChunkCoversTheClaimsTime(t *testing.T) {
	t.Parallel()
	s := openShared(t)
	auto := New(s, nil, Config{Rate: 150})
	_, _, limit := auto.gate.counts()
	four := New(s, nil, Config{Rate: 150, Workers: 4})
	for _, tc := range []struct {
		e    *Engine
		took time.Duration
		want int
	}{
		{auto, time.Millisecond, min(2*limit, max(3, limit))}, {auto, 360 * time.Millisecond, 108},
		{auto, 10 * time.Second, min(8*limit, pageSize)},
		{four, time.Millisecond, 4}, {four, 360 * time.Millisecond, 32}, // eight times in flight
	} {
		tc.e.claimTook.Store(int64(tc.took))
		_, _, limit := tc.e.gate.counts()
		if got := tc.e.chunk(); got != tc.want {
			t.Errorf("claims taking %v at --rate 150 (in-flight limit %d): chunks of %d, want %d", tc.took, limit, got, tc.want)
		}
	}
}

// TestProgressCountsItsShareOfASharedBatch: two processes send one batch
// of a shared ledger. Each set out to send every row queued when it
// began, and ends counting the rows it took, so its last progress line
// reads "done=120 of=120", not "done=120 of=200" as if 80 were never sent.
func TestProgressCountsItsShareOfASharedBatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openShared(t)
	const rows = 200
	client, b := servedBatchIn(t, aoptest.New(aoptest.DefaultConfig()), s, rows)
	var es [2]*Engine
	for i := range es {
		o := ledger.NewOwner(fmt.Sprint("process-", i))
		sess, err := Join(ctx, s, b, o, time.Minute, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sess.Close(ctx) })
		// Eight workers: claims of a few rows, so each takes part.
		es[i] = New(s, client, Config{Owner: o, Rate: 400, Workers: 8, Timeout: 2 * time.Second})
	}
	var wg sync.WaitGroup
	errs := make([]error, len(es))
	for i, e := range es {
		wg.Go(func() { errs[i] = e.Send(ctx, b) })
	}
	wg.Wait()
	var done int64
	for i, e := range es {
		if errs[i] != nil {
			t.Fatalf("process %d: %v", i, errs[i])
		}
		p := e.Progress()
		if p.Done.Load() == 0 || p.Done.Load() == rows {
			t.Fatalf("setup: process %d sent %d of the %d rows (of=%d), want a share", i, p.Done.Load(), rows, p.Todo.Load())
		}
		if p.Done.Load() != p.Todo.Load() {
			t.Errorf("process %d ends at done=%d of=%d, want every row it took done and no other", i, p.Done.Load(), p.Todo.Load())
		}
		done += p.Done.Load()
	}
	if done != rows {
		t.Errorf("the processes sent %d rows together, want %d", done, rows)
	}
}

// TestJoinWaitsForABusyBatch: a ready batch of a shared ledger is locked
// by each process joining it, and longer by another process's work on it
// (an archive). Joining it then (resolve, reconcile) waits, and joins once
// it is free, rather than fail as if it were still being recorded.
func TestJoinWaitsForABusyBatch(t *testing.T) {
	ctx := context.Background()
	s, url := openSharedURL(t)
	res, err := Ingest(ctx, s, writeRows(t, 2), ingestOpts(NoControls()))
	if err != nil {
		t.Fatal(err)
	}
	// Another process holds the batch's row for 7 s, past lock_timeout.
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		conn.Close(ctx)
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT 1 FROM batches WHERE seq = $1 FOR UPDATE`, res.Batch.Seq); err != nil {
		conn.Close(ctx)
		t.Fatal(err)
	}
	released := make(chan struct{})
	go func() {
		defer close(released)
		time.Sleep(7 * time.Second)
		_ = tx.Rollback(context.Background())
	}()
	defer func() { <-released; conn.Close(ctx) }() // the connection is the releaser's until then
	sess, err := Join(ctx, s, res.Batch, ledger.NewOwner("joining"), time.Minute, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("Join while another process holds the batch for 7 s: %v, want it joined once free", err)
	}
	sess.Close(ctx)
}

// TestUnfoundUnknownRowIsHeldOnASharedLedger: the hold of an unfound
// unknown row whose operator is down (a move guarded by the row's sends,
// ledger.Update.IfSends) works on PostgreSQL as on SQLite.
func TestUnfoundUnknownRowIsHeldOnASharedLedger(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openShared(t)
	join := func(b ledger.Batch, o ledger.Owner) {
		sess, err := Join(ctx, s, b, o, time.Minute, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sess.Close(ctx) })
	}
	testUnfoundUnknownRowIsHeld(t, s, join)
}

// openShared opens a PostgreSQL ledger in a new database of the test
// server, closed when the test ends.
func openShared(t *testing.T) *postgres.Store {
	t.Helper()
	s, _ := openSharedURL(t)
	return s
}

// openSharedURL is openShared, with the database's URL for a connection
// of the test's own.
func openSharedURL(t *testing.T) (*postgres.Store, string) {
	t.Helper()
	srv := pgtest.Start(t)
	url := srv.URL(srv.NewDB(t))
	s, err := postgres.Open(context.Background(), url, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, url
}
