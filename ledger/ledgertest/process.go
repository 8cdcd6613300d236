package ledgertest

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/aopbatch/aopbatch/ledger"
)

// Every attempt reads back with the process that made it: the owner of
// the writer that logged it, or of the Correct that logged its evidence.
// A night of several hosts, one taken over, is told apart in the ledger
// itself, and a copy keeps it, a process not known included.
func (s suite) testAttemptsNameTheirProcess(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	hostA := ledger.Owner{ID: "night-a", Host: "host-a.invalid", PID: 41}
	hostB := ledger.Owner{ID: "night-b", Host: "host-b.invalid", PID: 7}
	// The same host as A, another process: not A.
	hostA2 := ledger.Owner{ID: "night-a2", Host: "host-a.invalid", PID: 42}
	c, l, b := s.leasedTo(t, hostA, "night", 4) // lines 2..5

	at := time.UnixMilli(1_700_000_000_000)
	send := func(o ledger.Owner, line int, to ledger.State) {
		t.Helper()
		w := writerOf(t, l, b.Seq, o)
		markInflight(t, w, line)
		record(t, w, ledger.Update{Line: line, To: to, Code: 0, Message: "sent by " + o.ID,
			Attempt: &ledger.Attempt{Kind: "recharge", At: at, HTTPStatus: 200, Code: 0, Class: string(to), Message: "sent by " + o.ID}})
		closeWriter(t, w)
	}
	send(hostA, 2, ledger.StateSuccess)
	takeover(t, l, c, b, hostB)
	send(hostB, 3, ledger.StatePending)
	ev := ledger.Attempt{Kind: "status", At: at, HTTPStatus: 200, Code: 1, Class: "success", Message: "refunded, says the provider"}
	if err := l.Correct(ctx, b.Seq, hostB, ledger.Correction{Line: 2, From: ledger.StateSuccess, To: ledger.StateRefunded, Evidence: ev}); err != nil {
		t.Fatalf("Correct: %v", err)
	}
	takeover(t, l, c, b, hostA2)
	send(hostA2, 4, ledger.StateFailed)

	type made struct {
		line int
		by   ledger.Process
	}
	var got []made
	for _, a := range attempts(t, l, b.Seq) {
		got = append(got, made{a.Line, a.Process})
	}
	want := []made{{2, hostA.Process()}, {3, hostB.Process()}, {2, hostB.Process()}, {4, hostA2.Process()}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("attempts by line and process:\n got %+v\nwant %+v", got, want)
	}

	// Copied, every attempt keeps its process; one whose process is not
	// known (logged before the ledger recorded it) stays not known.
	old := ledger.Batch{ID: "older", ContentHash: "h-older", Ready: true, RowsTotal: 1, Created: at}
	im, err := l.ImportBatch(ctx, old)
	if err != nil {
		t.Fatalf("ImportBatch: %v", err)
	}
	if err := im.Rows(ctx, []ledger.Row{{Line: 2, ReferenceID: "older-2", AmountPaise: 100, Request: []byte(`{}`),
		State: ledger.StateSuccess, ResponseCode: 0, Attempts: 2, FirstSent: at, Updated: at}}); err != nil {
		t.Fatalf("import rows: %v", err)
	}
	oldAttempts := []ledger.AttemptRow{
		{Line: 2, Attempt: ledger.Attempt{Kind: "recharge", At: at, Code: -1, Class: "unknown"}, State: ledger.StateUnknown},
		{Line: 2, Attempt: ledger.Attempt{Kind: "status", At: at, Code: 1, Class: "success"}, State: ledger.StateSuccess,
			Process: hostB.Process()},
	}
	if err := im.Attempts(ctx, oldAttempts); err != nil {
		t.Fatalf("import attempts: %v", err)
	}
	if err := im.Finish(ctx); err != nil {
		t.Fatalf("import finish: %v", err)
	}
	ob, err := l.Batch(ctx, old.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got := attempts(t, l, ob.Seq); !reflect.DeepEqual(got, oldAttempts) {
		t.Errorf("imported attempts:\n got %+v\nwant %+v", got, oldAttempts)
	}
	if err := l.Release(ctx, b.ID, hostA2); err != nil {
		t.Fatal(err)
	}
	dst := s.open(t, Options{Now: c.now})
	if _, err := ledger.Copy(ctx, l, dst, ledger.CopyOptions{}); err != nil {
		t.Fatalf("Copy: %v", err)
	}
	for _, id := range []string{b.ID, old.ID} {
		from, err := l.Batch(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		to, err := dst.Batch(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := attempts(t, dst, to.Seq), attempts(t, l, from.Seq); !reflect.DeepEqual(got, want) {
			t.Errorf("batch %s's attempts after Copy:\n got %+v\nwant %+v", id, got, want)
		}
	}
}

// MigratedAttemptsName checks a ledger l migrated from a version whose
// attempts named no process, holding ready batch "old" (seq 1) with line
// 2 pending and one attempt: that attempt reads back with no process, and
// the next writer's, of o, names o's. Each store's migration test calls it.
func MigratedAttemptsName(t *testing.T, l ledger.Store, o ledger.Owner) {
	t.Helper()
	ctx := context.Background()
	if _, err := l.Acquire(ctx, ledger.NewBatch{ID: "old"}, o, time.Minute); err != nil {
		t.Fatal(err)
	}
	w, err := l.NewWriter(ctx, 1, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Record(ledger.Update{Line: 2, To: ledger.StateSuccess, Code: 0,
		Attempt: &ledger.Attempt{Kind: "status", At: time.UnixMilli(9), Code: 0, Class: "success"}}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	var got []ledger.Process
	if err := l.EachAttempt(ctx, 1, func(a *ledger.AttemptRow) error {
		got = append(got, a.Process)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if want := []ledger.Process{{}, o.Process()}; !reflect.DeepEqual(got, want) {
		t.Errorf("processes of the attempts = %q, want %q", got, want)
	}
}
