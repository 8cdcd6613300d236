package batch

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aopbatch/aopbatch/batch/aop"
	"github.com/aopbatch/aopbatch/batch/aop/aoptest"
	"github.com/aopbatch/aopbatch/ledger"
)

// A row that retries another (retryof) is sent only when this ledger holds
// the row it retries and that row is one to pay again (failed, refunded,
// rejected, conflict); otherwise it is rejected, naming why, and the rest
// of the file goes on.
func TestIngestChecksWhatARetryRetries(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := openLedger(t)
	orig := writeRows(t, 6, "1,CAX,abc,BAD-1") // line 8: rejected, a bad amount
	o := ingestOpts(NoControls())
	o.BatchID = "orig"
	res, err := Ingest(ctx, l, orig, o)
	if err != nil {
		t.Fatal(err)
	}
	// Lines 2-7 as a run may leave them: 2 success, 3 failed, 4 pending,
	// 5 refunded, 6 queued, 7 held.
	w, err := l.NewWriter(ctx, res.Batch.Seq, o.Owner)
	if err != nil {
		t.Fatal(err)
	}
	for line, to := range map[int]ledger.State{2: ledger.StateSuccess, 3: ledger.StateFailed, 4: ledger.StatePending, 5: ledger.StateFailed} {
		if err := w.MarkInflight(ctx, line, 0); err != nil {
			t.Fatal(err)
		}
		if err := w.Record(ledger.Update{Line: line, To: to, Code: 1}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Record(ledger.Update{Line: 5, To: ledger.StateRefunded, Code: 1}); err != nil {
		t.Fatal(err)
	}
	if err := w.Record(ledger.Update{Line: 7, To: ledger.StateHeld, Code: -1, Message: "operator down"}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(ctx, "orig", o.Owner); err != nil {
		t.Fatal(err)
	}

	var b strings.Builder
	b.WriteString("operator,canumber,amount,referenceid,Retry Of\n")
	for i, of := range []string{"orig:2", "orig:3", "orig:4", "orig:5", "orig:6", "orig:7", "orig:8", "orig:99", "elsewhere:3", "retry:2", "orig:x", "", "orig:3"} {
		fmt.Fprintf(&b, "1,CA1,10.00,N-%d,%s\n", i, of)
	}
	retry := filepath.Join(t.TempDir(), "retry.csv")
	if err := os.WriteFile(retry, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	o.BatchID, o.Owner = "retry", ledger.NewOwner("retry")
	if _, err := Ingest(ctx, l, retry, o); err != nil {
		t.Fatal(err)
	}
	rb, err := l.Batch(ctx, "retry")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		line  int
		state ledger.State
		code  string
		says  string
	}{
		{2, ledger.StateRejected, CodeBadRetryOf, "batch orig line 2 is success now: it was paid"},
		{3, ledger.StateQueued, "", ""},
		{4, ledger.StateRejected, CodeBadRetryOf, "is pending now: it may have been charged"},
		{5, ledger.StateQueued, "", ""}, // refunded
		{6, ledger.StateRejected, CodeBadRetryOf, "is queued now: it is still that batch's to send"},
		{7, ledger.StateRejected, CodeBadRetryOf, "is held now"},
		{8, ledger.StateQueued, "", ""}, // rejected: never sent
		{9, ledger.StateRejected, CodeBadRetryOf, "batch orig has no row on line 99"},
		{10, ledger.StateRejected, CodeRetryElsewhere, "this ledger holds no batch elsewhere"},
		{11, ledger.StateRejected, CodeBadRetryOf, "a row of this same batch"},
		{12, ledger.StateRejected, "bad_retryof", `value "orig:x": must be BATCH:LINE`},
		{13, ledger.StateRejected, CodeMissingValue, "names none"}, // the column is there, the cell empty
		{14, ledger.StateRejected, "duplicate_retryof", "retries the same row as line 3 of this file"},
	} {
		r, err := l.Row(ctx, rb.Seq, tc.line)
		if err != nil {
			t.Fatal(err)
		}
		if r.State != tc.state || r.ErrorCode != tc.code || !strings.Contains(r.Message, tc.says) {
			t.Errorf("line %d: %s %s %q, want %s %s saying %q", tc.line, r.State, r.ErrorCode, r.Message, tc.state, tc.code, tc.says)
		}
		if tc.state == ledger.StateRejected && (r.ErrorColumn != "retryof" || len(r.Raw) != 5) {
			t.Errorf("line %d: column %q, %d cells kept; want retryof and all 5", tc.line, r.ErrorColumn, len(r.Raw))
		}
	}
}

// A retry of a retry pays the first row too: the check follows each
// row's retryof back to it, and refuses once any row on the way was
// found charged since (a review: reconcile turned the first row into
// success, and the retry of its failed retry paid it again). "b:02" is
// "b:2".
func TestIngestFollowsARetryToTheFirstPayment(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := openLedger(t)
	orig := recorded(t, l, "orig", "operator,canumber,amount,referenceid\n1,CA1,10.00,P-1\n1,CA2,10.00,P-2\n")
	setRows(t, l, orig, ledger.StateFailed, 2, 3)
	retryA := recorded(t, l, "retryA", "operator,canumber,amount,referenceid,retryof\n1,CA1,10.00,RA-1,orig:02\n1,CA2,10.00,RA-2,orig:3\n")
	setRows(t, l, retryA, ledger.StateFailed, 2, 3)
	setRows(t, l, orig, ledger.StateSuccess, 2) // the provider's statement shows P-1 charged after all
	retryB := recorded(t, l, "retryB", "operator,canumber,amount,referenceid,retryof\n1,CA1,10.00,RB-1,retryA:2\n1,CA2,10.00,RB-2,retryA:3\n1,CA2,10.00,RB-3,orig:003\n")
	for line, want := range map[int]struct {
		state ledger.State
		says  string
	}{
		2: {ledger.StateRejected, "batch orig line 2 (the payment behind the row it retries, itself a retry) is success now"},
		3: {ledger.StateQueued, ""},
		4: {ledger.StateConflict, "retryof orig:3 is already retried by batch retryA line 3"},
	} {
		r, err := l.Row(ctx, retryB.Seq, line)
		if err != nil {
			t.Fatal(err)
		}
		if r.State != want.state || !strings.Contains(r.Message, want.says) {
			t.Errorf("line %d: %s %q, want %s saying %q", line, r.State, r.Message, want.state, want.says)
		}
	}
}

// A retry recorded (a dry run, or a run stopped part way) and then found
// paying a row charged since is not sent when its batch is resumed: the
// run is refused, nothing sent.
func TestResumeRechecksWhatARetryRetries(t *testing.T) {
	t.Parallel()
	l := openLedger(t)
	orig := recorded(t, l, "orig", "operator,canumber,amount,referenceid\n1,CA1,10.00,P-1\n")
	setRows(t, l, orig, ledger.StateFailed, 2)
	retry := "operator,canumber,amount,referenceid,retryof\n1,CA1,10.00,R-1,orig:2\n"
	recorded(t, l, "retry", retry)
	if _, err := recordFile(t, l, "retry", retry); err != nil {
		t.Fatalf("resumed while orig line 2 is still failed: %v", err)
	}
	setRows(t, l, orig, ledger.StateSuccess, 2)
	_, err := recordFile(t, l, "retry", retry)
	if err == nil || !strings.Contains(err.Error(), "line 2 retries orig:2, and batch orig line 2 is success now") ||
		!strings.Contains(err.Error(), "nothing was sent") {
		t.Fatalf("resumed after orig line 2 was found charged: %v, want it refused naming the row", err)
	}
}

// setRows moves lines of batch b, as a run (or reconcile) would: queued
// rows are taken in flight first.
func setRows(t *testing.T, l ledger.Store, b ledger.Batch, to ledger.State, lines ...int) {
	t.Helper()
	ctx := context.Background()
	o := ledger.NewOwner("set")
	if _, err := l.Acquire(ctx, ledger.NewBatch{ID: b.ID}, o, time.Minute); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := l.Release(ctx, b.ID, o); err != nil {
			t.Fatal(err)
		}
	}()
	if to == ledger.StateSuccess {
		for _, line := range lines {
			if err := l.Correct(ctx, b.Seq, o, ledger.Correction{Line: line, From: ledger.StateFailed, To: ledger.StateSuccess,
				Evidence: ledger.Attempt{Kind: "status", At: time.Now(), Code: 1, Class: "success"}, Message: "charged after all"}); err != nil {
				t.Fatal(err)
			}
		}
		return
	}
	w, err := l.NewWriter(ctx, b.Seq, o)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range lines {
		if err := w.MarkInflight(ctx, line, 0); err != nil {
			t.Fatal(err)
		}
		if err := w.Record(ledger.Update{Line: line, To: to, Code: -1}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// A retry is checked once more right before it goes, not only when its
// batch is recorded or resumed: the row it retries may be found charged
// while its run waits to send it (reconcile of the earlier batch running
// alongside), or while it is unknown and the provider has no record of it
// (resolve would send it again). A review paid both twice. Neither goes;
// the run stops, saying why.
func TestARetryIsCheckedAgainRightBeforeItGoes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rec := &recorder{h: aoptest.New(aoptest.DefaultConfig())}
	client := clientOf(t, rec)
	l := openLedger(t)
	orig := recorded(t, l, "orig", "operator,canumber,amount,referenceid\n1,CA1,10.00,P-2\n1,CA2,11.00,P-3\n")
	setRows(t, l, orig, ledger.StateFailed, 2, 3)
	retry := recorded(t, l, "retry", "operator,canumber,amount,referenceid,retryof\n1,CA1,10.00,RT-2,orig:2\n1,CA2,11.00,RT-3,orig:3\n")
	setRows(t, l, orig, ledger.StateSuccess, 2) // reconcile finds line 2 charged

	engine := func(name string) *Engine {
		o := ledger.NewOwner(name)
		if _, err := l.Acquire(ctx, ledger.NewBatch{ID: "retry"}, o, time.Minute); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = l.Release(ctx, "retry", o) })
		return New(l, client, Config{Owner: o, Workers: 1, Timeout: 2 * time.Second,
			ResolveBackoff: 20 * time.Millisecond, ResolveTimeout: 5 * time.Second})
	}
	e := engine("run")
	err := e.Send(ctx, retry)
	var stop *StopError
	if !errors.As(err, &stop) || stop.Reason != StopRetryPaid || !strings.Contains(stop.Detail, "line 2 retries orig:2") {
		t.Fatalf("send: %v, want the retry-paid stop naming line 2", err)
	}
	if err := l.Release(ctx, "retry", e.cfg.Owner); err != nil {
		t.Fatal(err)
	}
	setRows(t, l, retry, ledger.StateUnknown, 3) // sent, no answer: the provider has no record
	setRows(t, l, orig, ledger.StateSuccess, 3)  // then reconcile finds line 3 charged
	e = engine("resolve")
	err = e.Resolve(ctx, retry)
	if !errors.As(err, &stop) || stop.Reason != StopRetryPaid || !strings.Contains(stop.Detail, "line 3 retries orig:3") {
		t.Fatalf("resolve: %v, want the retry-paid stop naming line 3", err)
	}
	for _, a := range rec.since(0) {
		if a.path == aop.PathRecharge && strings.HasPrefix(a.ref, "RT-") {
			t.Errorf("Recharge for %s: its first payment was found charged", a.ref)
		}
	}
	if r, err := l.Row(ctx, retry.Seq, 2); err != nil || r.State != ledger.StateQueued {
		t.Errorf("line 2: %s %v, want queued, unsent", r.State, err)
	}
	if r, err := l.Row(ctx, retry.Seq, 3); err != nil || r.State != ledger.StateUnknown {
		t.Errorf("line 3: %s %v, want unknown still", r.State, err)
	}
}

// A retry whose request got no decision (a 429) goes again after a wait:
// checked again then too, it does not go once its first payment was
// found charged during the wait.
func TestARetryIsCheckedAgainBeforeItsRequestGoesAgain(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := openLedger(t)
	var orig ledger.Batch
	var recharges atomic.Int32
	var corrected atomic.Value
	sb := aoptest.New(aoptest.DefaultConfig())
	rec := &recorder{h: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == aop.PathRecharge && recharges.Add(1) == 1 {
			// Reconcile of the earlier batch finds the first payment
			// charged while this request is throttled.
			o := ledger.NewOwner("reconcile")
			_, err := l.Acquire(ctx, ledger.NewBatch{ID: "orig"}, o, time.Minute)
			if err == nil {
				err = l.Correct(ctx, orig.Seq, o, ledger.Correction{Line: 2, From: ledger.StateFailed, To: ledger.StateSuccess,
					Evidence: ledger.Attempt{Kind: "status", At: time.Now(), Code: 1, Class: "success"}, Message: "charged after all"})
			}
			if err == nil {
				err = l.Release(ctx, "orig", o)
			}
			corrected.Store(fmt.Sprint(err))
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		sb.ServeHTTP(w, r)
	})}
	client := clientOf(t, rec)
	orig = recorded(t, l, "orig", "operator,canumber,amount,referenceid\n1,CA1,10.00,P-2\n")
	setRows(t, l, orig, ledger.StateFailed, 2)
	retry := recorded(t, l, "retry", "operator,canumber,amount,referenceid,retryof\n1,CA1,10.00,RT-2,orig:2\n")
	o := ledger.NewOwner("run")
	if _, err := l.Acquire(ctx, ledger.NewBatch{ID: "retry"}, o, time.Minute); err != nil {
		t.Fatal(err)
	}
	e := New(l, client, Config{Owner: o, Workers: 1, Timeout: 2 * time.Second, AllowKnownRefs: true,
		ResolveBackoff: 20 * time.Millisecond, ResolveTimeout: 5 * time.Second})
	err := e.Send(ctx, retry)
	if got := corrected.Load(); got != "<nil>" {
		t.Fatalf("setup: the correction during the 429: %v", got)
	}
	var stop *StopError
	if !errors.As(err, &stop) || stop.Reason != StopRetryPaid || !strings.Contains(stop.Detail, "line 2 retries orig:2") {
		t.Errorf("send: %v, want the retry-paid stop naming line 2", err)
	}
	if n := recharges.Load(); n != 1 {
		t.Errorf("%d Recharges of RT-2, want the one throttled only", n)
	}
	if r, err := l.Row(ctx, retry.Seq, 2); err != nil || r.State != ledger.StateQueued {
		t.Errorf("line 2: %s %v, want queued, unsent", r.State, err)
	}
}

// recordFile records body as batch id of ledger l, as a run does, and
// lets go of its lease; the error is Ingest's.
func recordFile(t *testing.T, l ledger.Store, id, body string) (IngestResult, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), id+".csv")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	o := ingestOpts(NoControls())
	o.BatchID, o.Owner = id, ledger.NewOwner(id)
	res, err := Ingest(context.Background(), l, path, o)
	if err == nil {
		err = l.Release(context.Background(), id, o.Owner)
	}
	return res, err
}

// recorded is recordFile's batch; the recording must succeed.
func recorded(t *testing.T, l ledger.Store, id, body string) ledger.Batch {
	t.Helper()
	res, err := recordFile(t, l, id, body)
	if err != nil {
		t.Fatal(err)
	}
	return res.Batch
}

// clientOf is a provider client of handler h, served on loopback.
func clientOf(t *testing.T, h http.Handler) *aop.Client {
	t.Helper()
	hs := httptest.NewServer(h)
	t.Cleanup(hs.Close)
	client, err := aop.New(aop.Options{BaseURL: hs.URL})
	if err != nil {
		t.Fatal(err)
	}
	return client
}
