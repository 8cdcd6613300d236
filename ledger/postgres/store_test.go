package postgres

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os/exec"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/aopbatch/aopbatch/ledger"
	"github.com/aopbatch/aopbatch/ledger/postgres/pgtest"
)

// TestTakeoverEndsAPausedProcesssTransaction: a process paused inside a
// write (SIGSTOP, a frozen VM) keeps its connection, and so the lock its
// write holds on its session: a takeover leaves a session so held alone.
// PostgreSQL must end the idle transaction, or the paused process's rows
// are never taken over.
func TestTakeoverEndsAPausedProcesssTransaction(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := pgtest.Start(t)
	url := srv.URL(srv.NewDB(t))
	paused := openStore(t, url, Options{AbandonAfter: time.Second})
	taker := openStore(t, url, Options{})

	var setting string
	if err := taker.pool.QueryRow(ctx, `SHOW idle_in_transaction_session_timeout`).Scan(&setting); err != nil {
		t.Fatal(err)
	}
	if setting != "15s" {
		t.Errorf("idle_in_transaction_session_timeout = %q, want 15s (AbandonTx)", setting)
	}

	a, b := ledger.NewOwner("paused"), ledger.NewOwner("taker")
	batch := recorded(t, paused, "paused", a, time.Second, sendable(2, "r1"))
	if _, err := taker.Acquire(ctx, ledger.NewBatch{ID: "paused"}, b, time.Minute); err != nil {
		t.Fatal(err)
	}

	// The paused process's write: begun under its lease, never finished.
	tx, err := paused.beginHolding(ctx, batch.Seq, a)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	time.Sleep(1100 * time.Millisecond) // its lease runs out

	// The taker's heartbeat recovers every third of its lease; the paused
	// session goes once PostgreSQL has ended its write.
	sessions := 1
	for deadline := time.Now().Add(30 * time.Second); sessions > 0 && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if _, err := taker.RecoverInflight(ctx, batch.Seq, b); err != nil {
			t.Fatalf("takeover of a paused process's batch: %v", err)
		}
		if err := taker.pool.QueryRow(ctx, `SELECT count(*) FROM sessions WHERE batch = $1 AND owner = $2`, batch.Seq, a.ID).Scan(&sessions); err != nil {
			t.Fatal(err)
		}
	}
	if sessions != 0 {
		t.Fatalf("the paused process still has its session 30 s after its lease ran out: its idle write was never ended")
	}
	// Resumed, the paused process finds its write gone, not committed.
	if err := tx.Commit(ctx); err == nil {
		t.Error("the paused write committed after its batch was taken over")
	}
	if err := paused.Renew(ctx, "paused", a, time.Minute); !errors.Is(err, ledger.ErrLeaseLost) {
		t.Errorf("Renew after the takeover = %v, want ErrLeaseLost", err)
	}
}

// TestTakeoverSkipsASessionAWriteHolds: a takeover never waits on a write
// in progress. Two processes paused together past their leases each hold
// their own session as they resume and take the other's over; waiting,
// they deadlocked (a chaos run: "recover rows in flight: deadlock
// detected", and a run that had just started exited 1). A session a write
// holds is left, its rows with it, for a later round, which takes them
// over once the write is done.
func TestTakeoverSkipsASessionAWriteHolds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	a, b := ledger.NewOwner("writing"), ledger.NewOwner("taker")
	batch := recorded(t, s, "held", a, time.Second, sendable(2, "r2"))
	w, err := s.NewWriter(ctx, batch.Seq, a)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if rows, err := w.(ledger.Claimer).Claim(ctx, 1); err != nil || len(rows) != 1 {
		t.Fatalf("Claim = %d rows, %v", len(rows), err)
	}
	if _, err := s.Acquire(ctx, ledger.NewBatch{ID: "held"}, b, time.Minute); err != nil {
		t.Fatal(err)
	}
	tx, err := s.beginHolding(ctx, batch.Seq, a)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	time.Sleep(1100 * time.Millisecond) // a's lease runs out mid-write
	state := func() ledger.State {
		t.Helper()
		r, err := s.Row(ctx, batch.Seq, 2)
		if err != nil {
			t.Fatal(err)
		}
		return r.State
	}

	// Far shorter than AbandonTx: waiting on the write fails here.
	tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := s.RecoverInflight(tctx, batch.Seq, b); err != nil {
		t.Fatalf("RecoverInflight while a write holds an expired session: %v (it waited on the write)", err)
	}
	if st := state(); st != ledger.StateInflight {
		t.Errorf("the row the held session claimed is %s after the round that left the session alone, want inflight", st)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Errorf("the write resumed after the takeover round left its session alone, yet did not commit: %v", err)
	}
	// The write done and its lease still lapsed, the next round takes over.
	if _, err := s.RecoverInflight(ctx, batch.Seq, b); err != nil {
		t.Fatal(err)
	}
	if st := state(); st != ledger.StateUnknown {
		t.Errorf("the row the lapsed session claimed is %s after the next round, want unknown (to be asked about)", st)
	}
	if err := s.Renew(ctx, "held", a, time.Minute); !errors.Is(err, ledger.ErrLeaseLost) {
		t.Errorf("Renew by the process taken over = %v, want ErrLeaseLost", err)
	}
}

// TestIngestTakeoverDoesNotWaitOnAFrozenRecording: a process that froze
// while recording the file, between two statements of a chunk, holds its
// session until PostgreSQL ends the idle transaction (AbandonTx). A
// process joining the batch once its lease ran out is told the file is
// being recorded, and polls (saying so), rather than wait on the lock
// unheard. (One frozen in the middle of a COPY is ended by the joiner:
// TestIngestTakeoverEndsARecordingFrozenInACopy.)
func TestIngestTakeoverDoesNotWaitOnAFrozenRecording(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	a, b := ledger.NewOwner("recording"), ledger.NewOwner("joining")
	nb := ledger.NewBatch{ID: "frozen", ContentHash: "h"}
	batch, err := s.Acquire(ctx, nb, a, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := s.beginHolding(ctx, batch.Seq, a)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	time.Sleep(1100 * time.Millisecond) // its lease runs out mid-recording

	// Shorter than AbandonTx, after which PostgreSQL ends the frozen write.
	tctx, cancel := context.WithTimeout(ctx, 12*time.Second)
	defer cancel()
	if _, err := s.Acquire(tctx, nb, b, time.Minute); !errors.Is(err, ledger.ErrBatchIngesting) {
		t.Errorf("Acquire while the recording process's write holds its session = %v, want ErrBatchIngesting (poll, do not wait)", err)
	}
}

// TestIngestTakeoverEndsARecordingFrozenInACopy: a process frozen in the
// middle of a COPY leaves the server waiting on it, busy rather than idle,
// so neither idle_in_transaction_session_timeout nor TCP ends its
// transaction, whose locks keep every other process out of the batch. Once
// its lease has run out, a process that comes to the batch ends that
// connection and takes the recording over.
func TestIngestTakeoverEndsARecordingFrozenInACopy(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := pgtest.Start(t)
	// A COPY waiting on its client longer than a transaction may sit idle
	// counts as frozen: a second here, 15 by default.
	s := openStore(t, srv.URL(srv.NewDB(t)), Options{AbandonAfter: time.Second})
	a, b := ledger.NewOwner("recording"), ledger.NewOwner("taking")
	nb := ledger.NewBatch{ID: "frozen-copy", ContentHash: "h"}
	copied, thaw := frozenCopy(t, recording(t, s, nb, a, time.Second))
	time.Sleep(1100 * time.Millisecond) // its lease runs out mid-COPY

	// Shorter than AbandonTx, which a COPY in progress does not meet anyway.
	tctx, cancel := context.WithTimeout(ctx, 12*time.Second)
	defer cancel()
	took, err := s.Acquire(tctx, nb, b, time.Minute)
	if err != nil {
		t.Fatalf("Acquire once the frozen recording's lease ran out = %v, want the recording taken over", err)
	}
	var owner string
	if err := s.pool.QueryRow(ctx, `SELECT ingest_owner FROM batches WHERE seq = $1`, took.Seq).Scan(&owner); err != nil {
		t.Fatal(err)
	}
	if owner != b.ID {
		t.Errorf("recording owner after the takeover = %q, want %q", owner, b.ID)
	}
	if want := "connection was ended"; !strings.Contains(took.TookOver, want) || !strings.Contains(took.TookOver, "pid") {
		t.Errorf("TookOver = %q, want the process named and %q, for the log", took.TookOver, want)
	}
	thaw() // the frozen process goes on, and finds its recording ended
	select {
	case err := <-copied:
		if !Abandoned(err) {
			t.Errorf("the frozen COPY, once it goes on = %v, want an error Abandoned recognises", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("the frozen COPY did not end once its process went on")
	}
}

// TestIngestTakeoverLeavesALiveRecordingAlone: a recording's lease is
// renewed as each chunk commits, so a slow chunk (a slow file system, a
// far server) shows a lease run out while its process is alive. Its
// connection, idle between statements or busy in one, is not ended; the
// process joining is told the batch is busy, and the recording finishes.
func TestIngestTakeoverLeavesALiveRecordingAlone(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := pgtest.Start(t)
	url := srv.URL(srv.NewDB(t))
	s := openStore(t, url, Options{})
	// A short wait on a client counts as frozen here: only the
	// connection's state can spare the recording.
	taker := openStore(t, url, Options{AbandonAfter: time.Second})
	a, b := ledger.NewOwner("recording"), ledger.NewOwner("joining")
	nb := ledger.NewBatch{ID: "slow", ContentHash: "h"}
	in := recording(t, s, nb, a, time.Second)
	defer in.Abort(ctx)
	if _, err := in.AddMany(ctx, []ledger.IngestRow{sendable(2, "r1")}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond) // idle between statements, its lease run out

	if _, err := taker.Acquire(ctx, nb, b, time.Minute); !errors.Is(err, ledger.ErrBatchIngesting) {
		t.Fatalf("Acquire beside a recording idle between statements = %v, want ErrBatchIngesting", err)
	}
	slow := make(chan error, 1)
	go func() { _, err := in.tx.Exec(ctx, `SELECT pg_sleep(7)`); slow <- err }() // busy in one
	time.Sleep(500 * time.Millisecond)
	if _, err := taker.Acquire(ctx, nb, b, time.Minute); !errors.Is(err, ledger.ErrBatchIngesting) {
		t.Fatalf("Acquire beside a recording busy in a statement = %v, want ErrBatchIngesting", err)
	}
	if err := <-slow; err != nil {
		t.Fatalf("the recording's slow statement: %v, want it to finish", err)
	}
	if _, err := in.AddMany(ctx, []ledger.IngestRow{sendable(3, "r2")}); err != nil {
		t.Fatalf("the live recording goes on: %v", err)
	}
	if err := in.Finish(ctx); err != nil {
		t.Fatalf("the live recording finishes: %v", err)
	}
}

// recording takes batch nb for o and begins recording its file.
func recording(t *testing.T, s *Store, nb ledger.NewBatch, o ledger.Owner, ttl time.Duration) *ingest {
	t.Helper()
	ctx := context.Background()
	batch, err := s.Acquire(ctx, nb, o, ttl)
	if err != nil {
		t.Fatal(err)
	}
	in, err := s.BeginIngest(ctx, batch, o, ttl)
	if err != nil {
		t.Fatal(err)
	}
	return in.(*ingest)
}

// frozenCopy starts a COPY of in's that stalls after its first row, as
// a process frozen in the middle of sending it, and returns once it has.
// copied gets the COPY's end; thaw lets it go on. When the test ends it
// is thawed and its connection handed back (the store closes only then).
func frozenCopy(t *testing.T, in *ingest) (copied <-chan error, thaw func()) {
	t.Helper()
	ctx := context.Background()
	src := &stalledSource{started: make(chan struct{}), release: make(chan struct{})}
	done, gone := make(chan error, 1), make(chan struct{})
	go func() {
		defer close(gone)
		_, err := in.tx.CopyFrom(ctx, pgx.Identifier{"aopbatch_stage"}, []string{"line"}, src)
		done <- err
	}()
	thaw = sync.OnceFunc(func() { close(src.release) })
	t.Cleanup(func() {
		thaw()
		<-gone
		in.tx.Rollback(ctx)
		in.release()
	})
	select {
	case <-src.started:
	case err := <-done:
		t.Fatalf("the COPY ended before its source stalled: %v", err)
	}
	return done, thaw
}

// stalledSource gives a COPY one row, then no more until released: a
// client frozen in the middle of sending it.
type stalledSource struct {
	started, release chan struct{}
	n                int
}

func (s *stalledSource) Next() bool {
	s.n++
	if s.n == 2 {
		close(s.started)
		<-s.release
		return false
	}
	return true
}

func (s *stalledSource) Values() ([]any, error) { return []any{int32(s.n)}, nil }

func (s *stalledSource) Err() error { return nil }

// freezer forwards TCP connections to addr until frozen: then it stops
// passing bytes either way, but keeps every connection open, as a server
// that stalls (or a proxy in front of it) does while its kernel answers.
type freezer struct {
	ln     net.Listener
	frozen atomic.Bool
}

func newFreezer(t *testing.T, addr string) *freezer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &freezer{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", addr)
			if err != nil {
				c.Close()
				continue
			}
			t.Cleanup(func() { c.Close(); s.Close() })
			go f.pipe(c, s)
			go f.pipe(s, c)
		}
	}()
	return f
}

func (f *freezer) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		for f.frozen.Load() {
			time.Sleep(10 * time.Millisecond)
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// TestCallsOnAStalledServerEnd: a server that stops answering while its
// host's kernel still does is noticed by no TCP timer. The calls a run
// waits on (a rate reservation, a count, a chunk of a file's rows, a page
// of a report's rows) then fail after the store's call timeout, a call
// on a whole batch after bulkCalls of them, and the run stops with a
// ledger error, rather than wait with nothing to say (a liveness review:
// a run sat 4 minutes in Reserve; a nightly run recording its file
// waited for ever).
func TestCallsOnAStalledServerEnd(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := pgtest.Start(t)
	u, err := url.Parse(srv.URL(srv.NewDB(t)))
	if err != nil {
		t.Fatal(err)
	}
	f := newFreezer(t, u.Host)
	u.Host = f.ln.Addr().String()
	// A call that needs a new connection then meets the stall in its
	// connect: without its own bound, it would end only at this.
	q := u.Query()
	q.Set("connect_timeout", "60")
	u.RawQuery = q.Encode()
	const call = 2 * time.Second
	// A connection for each call at once, so that none waits on the pool.
	s := openStore(t, u.String(), Options{CallTimeout: call, MaxConns: 40})
	if _, _, err := s.Reserve(ctx, "acct", 1, 10, 1); err != nil {
		t.Fatalf("Reserve before the stall: %v", err)
	}
	o := ledger.NewOwner("stalled")
	ready := recorded(t, s, "ready", o, time.Hour, sendable(2, "r2"))
	// Recordings begun before the stall, one for each call on them: a
	// recording's chunk holds its lease's row until it commits.
	ingests := map[string]ledger.Ingest{}
	for _, id := range []string{"add", "finish", "abort"} {
		b, err := s.Acquire(ctx, ledger.NewBatch{ID: id, ContentHash: "h"}, o, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if ingests[id], err = s.BeginIngest(ctx, b, o, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	f.frozen.Store(true)
	calls := map[string]func() error{
		"Reserve": func() error { _, _, err := s.Reserve(ctx, "acct", 1, 10, 1); return err },
		"Counts":  func() error { _, err := s.Counts(ctx, ready.Seq); return err },
		// What a report reads.
		"Batch":       func() error { _, err := s.Batch(ctx, "b"); return err },
		"Batches":     func() error { _, err := s.Batches(ctx); return err },
		"Runners":     func() error { _, err := s.Runners(ctx, ready.Seq); return err },
		"Any":         func() error { _, err := s.Any(ctx, ready.Seq, ledger.StateQueued); return err },
		"Row":         func() error { _, err := s.Row(ctx, ready.Seq, 2); return err },
		"EachRow":     func() error { return s.EachRow(ctx, ready.Seq, func(*ledger.Row) error { return nil }) },
		"EachAttempt": func() error { return s.EachAttempt(ctx, ready.Seq, func(*ledger.AttemptRow) error { return nil }) },
		"RefHolders":  func() error { _, err := s.RefHolders(ctx, []string{"r"}); return err },
		"Size":        func() error { _, err := s.Size(ctx); return err },
		// What recording a file does.
		"BeginIngest": func() error { _, err := s.BeginIngest(ctx, ready, o, time.Hour); return err },
		"AddMany":     func() error { _, err := ingests["add"].AddMany(ctx, []ledger.IngestRow{sendable(2, "a2")}); return err },
		"Finish":      func() error { return ingests["finish"].Finish(ctx) },
		"Abort":       func() error { return ingests["abort"].Abort(ctx) },
		"ClearRows":   func() error { return s.ClearRows(ctx, ready.Seq, o) },
		"DropUnsent":  func() error { return s.DropUnsent(ctx, ready.Seq, o) },
		"Correct": func() error {
			return s.Correct(ctx, ready.Seq, o, ledger.Correction{Line: 2, From: ledger.StateUnknown, To: ledger.StateFailed})
		},
		"Move": func() error {
			_, err := s.Move(ctx, ready.Seq, o, ledger.StateHeld, ledger.StateQueued, 0, "")
			return err
		},
	}
	// Calls on a whole batch: bulkCalls call timeouts.
	bulk := map[string]bool{"Move": true, "ClearRows": true, "DropUnsent": true}
	// All at once: the test takes one bulk call's bound, not the sum.
	var wg sync.WaitGroup
	for name, fn := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			bound := call
			if bulk[name] {
				bound = bulkCalls * call
			}
			done := make(chan error, 1)
			start := time.Now()
			go func() { done <- fn() }()
			select {
			case err := <-done:
				took := time.Since(start)
				t.Logf("%s ended after %s: %v", name, took.Round(time.Millisecond), err)
				if bulk[name] && took < bound-call {
					t.Errorf("%s, a call on a whole batch, ended after %s, want its longer bound %s", name, took, bound)
				}
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("%s on a stalled server = %v, want the call timeout's DeadlineExceeded", name, err)
				}
			case <-time.After(bound + 6*time.Second):
				t.Errorf("%s on a stalled server still waits after %s (its bound %s)", name, bound+6*time.Second, bound)
			}
		}()
	}
	wg.Wait()
	f.frozen.Store(false)
	ingests["add"].Abort(ctx) // hands its connection back, for Close
}

// TestAbandonedNamesAnEndedIdleTransaction: a recording paused past
// AbandonAfter between two chunks of rows fails with an error Abandoned
// recognises, which a run turns into "run again" (exit 3), not a setup
// failure.
func TestAbandonedNamesAnEndedIdleTransaction(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := pgtest.Start(t)
	s := openStore(t, srv.URL(srv.NewDB(t)), Options{AbandonAfter: 500 * time.Millisecond})
	o := ledger.NewOwner("recording")
	b, err := s.Acquire(ctx, ledger.NewBatch{ID: "paused-ingest", ContentHash: "h"}, o, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	in, err := s.BeginIngest(ctx, b, o, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Abort(ctx) // as the caller does: it hands back the connection
	if _, err := in.AddMany(ctx, []ledger.IngestRow{sendable(2, "r2")}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	_, err = in.AddMany(ctx, []ledger.IngestRow{sendable(3, "r3")})
	if err == nil {
		err = in.Finish(ctx)
	}
	if !Abandoned(err) {
		t.Errorf("a chunk after a pause past AbandonAfter: %v, want an error Abandoned recognises", err)
	}
	if Abandoned(errors.New("connection refused")) {
		t.Error("Abandoned recognises any error")
	}
}

// openStore opens the ledger at url with o, closed when the test ends.
func openStore(t *testing.T, url string, o Options) *Store {
	t.Helper()
	s, err := Open(context.Background(), url, o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// sendable is line of a file: a row to send, under referenceid ref.
func sendable(line int, ref string) ledger.IngestRow {
	return ledger.IngestRow{Line: line, ReferenceID: ref, Operator: 311, CANumber: "CA", AmountPaise: 1000,
		Request: []byte(`{"referenceid":"` + ref + `"}`)}
}

// recorded is batch id with rows recorded by o, ready to send; o's lease
// lasts ttl.
func recorded(t *testing.T, s *Store, id string, o ledger.Owner, ttl time.Duration, rows ...ledger.IngestRow) ledger.Batch {
	t.Helper()
	ctx := context.Background()
	b, err := s.Acquire(ctx, ledger.NewBatch{ID: id, ContentHash: "h"}, o, ttl)
	if err != nil {
		t.Fatal(err)
	}
	in, err := s.BeginIngest(ctx, b, o, ttl)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) > 0 {
		if _, err := in.AddMany(ctx, rows); err != nil {
			t.Fatal(err)
		}
	}
	if err := in.Finish(ctx); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRunnersLeaveOutADeadProcessOfThisHost: a run killed on this host is
// not named as running a batch for the rest of its lease (status and the
// reports would say "a run is working on batch ... now"); one of another
// host is, until its lease runs out, as nothing here can tell.
func TestRunnersLeaveOutADeadProcessOfThisHost(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := pgtest.Start(t)
	s := openStore(t, srv.URL(srv.NewDB(t)), Options{})
	live := exec.Command("sleep", "60")
	if err := live.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { live.Process.Kill(); live.Wait() }()
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	me := ledger.NewOwner("")
	b := recorded(t, s, "runners", ledger.NewOwner("recorder"), time.Hour)
	owners := []ledger.Owner{
		{ID: "live", Host: me.Host, PID: live.Process.Pid},
		{ID: "dead", Host: me.Host, PID: dead.Process.Pid},
		{ID: "elsewhere", Host: me.Host + "-other", PID: dead.Process.Pid},
	}
	for _, o := range owners {
		if _, err := s.Acquire(ctx, ledger.NewBatch{ID: b.ID}, o, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	rs, err := s.Runners(ctx, b.Seq)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, r := range rs {
		got[fmt.Sprintf("%d@%s", r.PID, r.Host)] = true
	}
	want := map[string]bool{
		fmt.Sprintf("%d@%s", live.Process.Pid, me.Host):          true,
		fmt.Sprintf("%d@%s", dead.Process.Pid, me.Host+"-other"): true,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Runners = %v, want %v (not the dead pid %d of this host)", got, want, dead.Process.Pid)
	}
}

// TestIngestTakeoverAcrossRoles: processes that log in as different
// database roles. A taker that may not see the frozen recording's state
// says so (pg_read_all_stats), one that may see it but not end it says
// that (pg_signal_backend), and one with both takes the recording over,
// as the README says.
func TestIngestTakeoverAcrossRoles(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := pgtest.Start(t)
	db := srv.NewDB(t)
	admin := openStore(t, srv.URL(db), Options{}) // the schema, as its owner
	ra, rb := db+"_recorder", db+"_taker"
	sql := func(q string) {
		t.Helper()
		if _, err := admin.pool.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	for _, r := range []string{ra, rb} {
		sql(fmt.Sprintf(`CREATE ROLE %s LOGIN PASSWORD 'pw'`, r))
		// What a role that only uses the ledger needs (the README's list):
		// no CREATE, which opening a current ledger must not need.
		sql(fmt.Sprintf(`GRANT USAGE ON SCHEMA public TO %s`, r))
		sql(fmt.Sprintf(`GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO %s`, r))
		sql(fmt.Sprintf(`GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO %s`, r))
	}
	t.Cleanup(func() {
		for _, r := range []string{ra, rb} {
			admin.pool.Exec(ctx, `DROP OWNED BY `+r)
			admin.pool.Exec(ctx, `DROP ROLE `+r)
		}
	})
	as := func(role string) *Store {
		u, err := url.Parse(srv.URL(db))
		if err != nil {
			t.Fatal(err)
		}
		u.User = url.UserPassword(role, "pw")
		return openStore(t, u.String(), Options{AbandonAfter: time.Second})
	}
	recorder, taker := as(ra), as(rb)

	a, b := ledger.NewOwner("recording"), ledger.NewOwner("taking")
	nb := ledger.NewBatch{ID: "frozen-other-role", ContentHash: "h"}
	frozenCopy(t, recording(t, recorder, nb, a, time.Second))
	time.Sleep(1100 * time.Millisecond) // its lease runs out mid-COPY

	acquire := func() (ledger.Batch, error) {
		tctx, cancel := context.WithTimeout(ctx, 12*time.Second)
		defer cancel()
		return taker.Acquire(tctx, nb, b, time.Minute)
	}
	for _, step := range []struct{ grant, want string }{
		{"", "pg_read_all_stats"},
		{"pg_read_all_stats", "pg_signal_backend"},
	} {
		if step.grant != "" {
			sql(fmt.Sprintf(`GRANT %s TO %s`, step.grant, rb))
		}
		_, err := acquire()
		if !errors.Is(err, ledger.ErrBatchIngesting) || !strings.Contains(err.Error(), step.want) {
			t.Fatalf("Acquire by a role without %s = %v, want the batch busy and %s named", step.want, err, step.want)
		}
	}
	sql(fmt.Sprintf(`GRANT pg_signal_backend TO %s`, rb))
	took, err := acquire()
	if err != nil {
		t.Fatalf("Acquire by a role with pg_read_all_stats and pg_signal_backend = %v, want the recording taken over", err)
	}
	if !strings.Contains(took.TookOver, "connection was ended") {
		t.Errorf("TookOver = %q, want the frozen connection ended", took.TookOver)
	}
}

// TestSizeIsTheLedgers: Size counts the ledger's tables, which grow with
// its rows, not the database, whose catalogs alone dwarf a small ledger.
func TestSizeIsTheLedgers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := pgtest.Start(t)
	s := openStore(t, srv.URL(srv.NewDB(t)), Options{})
	empty, err := s.Size(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rows := make([]ledger.IngestRow, 3000)
	for i := range rows {
		rows[i] = sendable(i+2, fmt.Sprintf("size-%d", i))
	}
	recorded(t, s, "size", ledger.NewOwner("size"), time.Minute, rows...)
	full, err := s.Size(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var db int64
	if err := s.pool.QueryRow(ctx, `SELECT pg_database_size(current_database())`).Scan(&db); err != nil {
		t.Fatal(err)
	}
	// 3,000 small rows: well under a megabyte with their indexes.
	if full <= empty || full > 1<<20 || full >= db {
		t.Errorf("Size: %d bytes empty, %d with 3,000 rows (database %d); want it to grow, stay under 1 MiB and below the database's", empty, full, db)
	}
}
