package batch

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aopbatch/aopbatch/batch/aop"
	"github.com/aopbatch/aopbatch/batch/aop/aoptest"
	"github.com/aopbatch/aopbatch/ledger"
	"github.com/aopbatch/aopbatch/ledger/sqlite"
)

// arrival is one request as it reached the sandbox.
type arrival struct {
	path string
	ref  string
}

// recorder stands in front of the sandbox and logs every request in the
// order it arrived: what reached the provider is what a safety rule is
// about, whatever the ledger says.
type recorder struct {
	h          http.Handler
	mu         sync.Mutex
	log        []arrival
	recharges  int
	onRecharge func(n int)
	onStatus   func() // before a status enquiry reaches h
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	req.Body = io.NopCloser(bytes.NewReader(body))
	var v struct {
		Ref string `json:"referenceid"`
	}
	_ = json.Unmarshal(body, &v)
	r.mu.Lock()
	r.log = append(r.log, arrival{req.URL.Path, v.Ref})
	n := 0
	if req.URL.Path == aop.PathRecharge {
		r.recharges++
		n = r.recharges
	}
	cb, sc := r.onRecharge, r.onStatus
	r.mu.Unlock()
	if cb != nil && n > 0 {
		cb(n)
	}
	if sc != nil && req.URL.Path == aop.PathStatus {
		sc()
	}
	r.h.ServeHTTP(w, req)
}

// setOnRecharge sets the hook under the lock: a handler still running
// (one that hijacked and closed its connection) reads it.
func (r *recorder) setOnRecharge(f func(n int)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.onRecharge = f
}

func (r *recorder) since(mark int) []arrival {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]arrival(nil), r.log[mark:]...)
}

func (r *recorder) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.log)
}

// Rows an earlier run left pending, duplicate or unknown are asked about
// while the send phase runs, not after it: Send alone settles them. And
// the rules hold: nothing is sent again before an enquiry found no record
// of it, and the provider never answers 18 (nothing it holds is re-sent).
func TestSendEnquiresEarlierRowsMeanwhile(t *testing.T) {
	cfg := aoptest.DefaultConfig()
	cfg.Seed = 3
	cfg.Latency = 5 * time.Millisecond
	cfg.PendingRate = 0.3
	cfg.PendingDelay = 100 * time.Millisecond
	sb := aoptest.New(cfg)
	rec := &recorder{h: sb}
	hs := httptest.NewServer(rec)
	t.Cleanup(func() { sb.ReleaseStalls(); hs.Close() })
	client, err := aop.New(aop.Options{BaseURL: hs.URL})
	if err != nil {
		t.Fatal(err)
	}

	const rows = 300
	l := openLedger(t)
	res, err := Ingest(context.Background(), l, writeRows(t, rows), ingestOpts(NoControls()))
	if err != nil {
		t.Fatal(err)
	}
	b := res.Batch
	// Two rows the provider already holds (an earlier answer lost before
	// the ledger knew): the first run is answered 18 for them.
	for _, body := range []string{
		`{"operator":1,"canumber":"CA0000000","amount":10,"referenceid":"R-0","RegistrationID":"REG-1"}`,
		`{"operator":2,"canumber":"CA0000001","amount":11.01,"referenceid":"R-1","RegistrationID":"REG-1"}`,
	} {
		resp, err := http.Post(hs.URL+aop.PathRecharge, "application/json", bytes.NewReader([]byte(body)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}

	sb.SetFaults(aoptest.Faults{
		LostRate:     0.15, // recorded, answer lost: unknown, the provider has it
		Fault5xxRate: 0.15, // not recorded: unknown, the provider has no record
	})
	// The first run sends 60 rows and is interrupted.
	owner := ledger.NewOwner("test")
	ctx1, stop1 := context.WithCancel(context.Background())
	rec.setOnRecharge(func(n int) {
		if n >= 62 {
			stop1()
		}
	})
	// A --timeout far above the sandbox's 5 ms: a request timed out while
	// the provider still holds it unrecorded (a stall of a loaded CI
	// machine) is sent again after "not found" and answered 18, which is
	// not the blind resend this test looks for.
	e1 := New(l, client, Config{Owner: owner, Rate: 200, Timeout: 20 * time.Second})
	if err := e1.Send(ctx1, b); err != nil {
		t.Fatalf("first run: %v", err)
	}
	rec.setOnRecharge(nil)
	earlier := map[string]ledger.State{}
	for _, s := range unsettledStates {
		page, err := l.Page(context.Background(), b.Seq, s, 0, rows)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range page {
			earlier[r.ReferenceID] = r.State
		}
	}
	byState := map[ledger.State]int{}
	for _, s := range earlier {
		byState[s]++
	}
	if byState[ledger.StatePending] == 0 || byState[ledger.StateDuplicate] == 0 || byState[ledger.StateUnknown] < 4 {
		t.Fatalf("setup: the first run left %v unsettled, want some of each", byState)
	}
	queued, err := l.CountState(context.Background(), b.Seq, ledger.StateQueued)
	if err != nil || queued < 150 { // 60 sent, more under load before the cancel lands
		t.Fatalf("setup: %d rows queued (%v), want most of them", queued, err)
	}

	// The second run, faults off: Send only, no Resolve.
	time.Sleep(cfg.PendingDelay) // the pending ones are final at the provider now
	sb.SetFaults(aoptest.Faults{})
	dupBefore := sb.Stats().ByCode[18]
	mark := rec.len()
	e2 := New(l, client, Config{Owner: owner, Rate: 100, Timeout: 20 * time.Second})
	if err := e2.Prepare(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	if err := e2.Send(context.Background(), b); err != nil {
		t.Fatalf("second run: %v", err)
	}
	log := rec.since(mark)

	if n := sb.Stats().ByCode[18] - dupBefore; n != 0 {
		// Name them, and what the ledger said of them before this run.
		var which []string
		for _, a := range log {
			if a.path == aop.PathRecharge && sb.Resent(a.ref) > 0 && !slices.Contains(which, a.ref) {
				was, ok := earlier[a.ref]
				if !ok {
					was = ledger.StateQueued
				}
				which = append(which, fmt.Sprintf("%s (%s before this run)", a.ref, was))
			}
		}
		t.Errorf("the provider answered 18 to %d requests of the second run: something it held was sent again: %v", n, which)
	}
	enquired := map[string]int{} // ref -> index of its first enquiry
	lastQueued := -1
	for i, a := range log {
		switch a.path {
		case aop.PathStatus:
			if _, ok := enquired[a.ref]; !ok {
				enquired[a.ref] = i
			}
		case aop.PathRecharge:
			if _, ok := earlier[a.ref]; !ok {
				lastQueued = i
				continue
			}
			// An earlier row goes again only after an enquiry found
			// no record of it: an unknown row, enquired before.
			if at, ok := enquired[a.ref]; !ok || at > i {
				t.Errorf("%s (%s) was sent again with no enquiry before it", a.ref, earlier[a.ref])
			}
			if earlier[a.ref] != ledger.StateUnknown {
				t.Errorf("%s was %s, and was sent again", a.ref, earlier[a.ref])
			}
		}
	}
	for ref, s := range earlier {
		at, ok := enquired[ref]
		switch {
		case !ok:
			t.Errorf("%s (%s from the first run) was not enquired during the send phase", ref, s)
		case at > lastQueued:
			t.Errorf("%s was enquired only after the last queued row was sent", ref)
		}
		if n := sb.NonDuplicateAnswers(ref); n > 1 {
			t.Errorf("%s was processed %d times by the provider", ref, n)
		}
	}
	// Send alone settled them: every earlier row is final now, or
	// pending again after the provider took it afresh. (The second run's
	// own pending rows wait for Resolve.)
	resent := map[string]bool{} // earlier rows sent again
	for _, a := range log {
		if _, ok := earlier[a.ref]; ok && a.path == aop.PathRecharge {
			resent[a.ref] = true
		}
	}
	err = l.EachRow(context.Background(), b.Seq, func(r *ledger.Row) error {
		s, ok := earlier[r.ReferenceID]
		if ok && r.State != ledger.StateSuccess && !(r.State == ledger.StatePending && resent[r.ReferenceID]) {
			t.Errorf("%s, %s after the first run: %s after the second run's send phase (%s), want settled", r.ReferenceID, s, r.State, r.Message)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(resent) == 0 {
		t.Error("no earlier row was sent again: the test did not test the re-send rule")
	}
	st := e2.Stats()
	if st.Enquiries < int64(len(earlier)) {
		t.Errorf("Stats: %d enquiries, want at least the %d earlier rows", st.Enquiries, len(earlier))
	}
}

// interruptedRun ingests rows into a fresh ledger and sends them through
// the sandbox cfg (behind a recorder) with run, stopping it once the
// provider has seen stopAt Recharges: the earlier run the next Send finds.
func interruptedRun(t *testing.T, cfg aoptest.Config, rows, stopAt int, run Config) (*recorder, *aop.Client, ledger.Store, ledger.Batch, ledger.Owner) {
	t.Helper()
	return interruptedRunOn(t, openLedger(t), nil, cfg, rows, stopAt, run)
}

// interruptedRunOn is interruptedRun on ledger l; join, when not nil, has
// the runs' owner join the batch (a shared ledger's writes need a lease).
func interruptedRunOn(t *testing.T, l ledger.Store, join func(ledger.Batch, ledger.Owner), cfg aoptest.Config, rows, stopAt int, run Config) (*recorder, *aop.Client, ledger.Store, ledger.Batch, ledger.Owner) {
	t.Helper()
	rec := &recorder{h: aoptest.New(cfg)}
	client, b := servedBatchIn(t, rec, l, rows)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	rec.setOnRecharge(func(n int) {
		if n >= stopAt {
			stop()
		}
	})
	run.Owner, run.Timeout = ledger.NewOwner("test"), 2*time.Second
	if join != nil {
		join(b, run.Owner)
	}
	if err := New(l, client, run).Send(ctx, b); err != nil {
		t.Fatalf("first run: %v", err)
	}
	rec.setOnRecharge(nil)
	return rec, client, l, b, run.Owner
}

// Rows an earlier run left pending are asked about again while the send
// phase lasts, not once and then only after it: pending at the provider
// when the second run starts, final 1.5 s after they were sent, they are
// success when Send returns from its 4 s of sending, with no Resolve.
func TestSendAsksEarlierPendingRowsAgainWhileSending(t *testing.T) {
	cfg := aoptest.DefaultConfig()
	cfg.PendingRate = 1
	cfg.PendingDelay = 1500 * time.Millisecond
	rec, client, l, b, owner := interruptedRun(t, cfg, 220, 20, Config{Rate: 200, Workers: 1})
	earlier, err := l.Page(context.Background(), b.Seq, ledger.StatePending, 0, 100)
	if err != nil || len(earlier) < 15 {
		t.Fatalf("setup: %d rows pending after the first run (%v), want about 20", len(earlier), err)
	}
	mark := rec.len()
	e2 := New(l, client, Config{Owner: owner, Rate: 50, Timeout: 2 * time.Second})
	if err := e2.Send(context.Background(), b); err != nil {
		t.Fatalf("second run: %v", err)
	}
	asked := map[string]int{}
	for _, a := range rec.since(mark) {
		if a.path == aop.PathStatus {
			asked[a.ref]++
		}
	}
	again := 0
	for _, r := range earlier {
		got, err := l.Row(context.Background(), b.Seq, r.Line)
		if err != nil {
			t.Fatal(err)
		}
		if got.State != ledger.StateSuccess {
			t.Errorf("%s: %s after the send phase, asked %d times; want success", r.ReferenceID, got.State, asked[r.ReferenceID])
		}
		if asked[r.ReferenceID] > 1 {
			again++
		}
	}
	if again == 0 {
		t.Error("no earlier row was asked about twice: every one was final when first asked, so the test tested nothing")
	}
}

// A round of the earlier rows reads their states after the round before
// is committed: with no pause between rounds (ResolveBackoff 1 µs), a row
// settled a moment ago is not read as still pending and recorded again,
// which the ledger would refuse ("please report this") and the progress
// would count twice. (A money-safety review's case.)
func TestSendRoundsReadCommittedStates(t *testing.T) {
	cfg := aoptest.DefaultConfig()
	cfg.PendingRate = 1
	cfg.PendingDelay = 300 * time.Millisecond
	const rows = 400
	_, client, l, b, owner := interruptedRun(t, cfg, rows, 40, Config{Rate: 400, Workers: 4})
	var logs syncBuffer
	e2 := New(l, client, Config{Owner: owner, Rate: 100, Timeout: 2 * time.Second, ResolveBackoff: time.Microsecond,
		Log: slog.New(slog.NewTextHandler(&logs, nil))})
	if err := e2.Send(context.Background(), b); err != nil {
		t.Fatalf("second run: %v", err)
	}
	if strings.Contains(logs.String(), "refused") {
		t.Errorf("the ledger refused an outcome:\n%s", logs.String())
	}
	if n := e2.Progress().Success.Load(); n > rows {
		t.Errorf("progress counts %d successes of %d rows", n, rows)
	}
}

// A row answered 429 whose operator is held while it waits out the
// Retry-After is held, not sent again to fail with code 13.
func TestRowWaitingToRetryIsHeldWithItsOperator(t *testing.T) {
	cfg := aoptest.DefaultConfig()
	cfg.DownOperators = []int64{1}
	cfg.RetryAfter = time.Second
	sb := aoptest.New(cfg)
	// The first 40 requests are answered 429 and wait out a second; the
	// rows after them go at once, and operator 1's answer 13: it is held
	// while 8 of its rows wait to retry.
	sb.SetFaults(aoptest.Faults{ThrottleRate: 1})
	rec := &recorder{h: sb}
	rec.setOnRecharge(func(n int) {
		if n == 41 {
			sb.SetFaults(aoptest.Faults{})
		}
	})
	client, l, b := servedBatch(t, rec, 100)
	e := New(l, client, Config{Owner: ledger.NewOwner("test"), Rate: 200, Timeout: time.Second, HoldAfter: 3})
	if err := e.Send(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	failed, held := 0, 0
	err := l.EachRow(context.Background(), b.Seq, func(r *ledger.Row) error {
		if r.Operator != 1 {
			return nil
		}
		switch r.State {
		case ledger.StateFailed:
			failed++
		case ledger.StateHeld:
			held++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Three answers decide the hold; a few more may be out by then.
	if failed > 5 || held+failed != 20 {
		t.Errorf("operator 1: %d failed, %d held of 20; want at most 5 failed, the rest held", failed, held)
	}
}

// An unknown row the provider has no record of, whose operator is down,
// is held with that operator's queued rows, not sent again to fail with
// code 13 (a final failure, needing a new referenceid); a rerun with the
// operator back sends it, once.
func TestUnfoundUnknownRowIsHeldWithItsOperator(t *testing.T) {
	testUnfoundUnknownRowIsHeld(t, openLedger(t), nil)
}

// testUnfoundUnknownRowIsHeld is TestUnfoundUnknownRowIsHeldWithItsOperator
// on ledger l; join as for interruptedRunOn.
func testUnfoundUnknownRowIsHeld(t *testing.T, l ledger.Store, join func(ledger.Batch, ledger.Owner)) {
	cfg := aoptest.DefaultConfig()
	cfg.DownOperators = []int64{1}
	cfg.Fault5xxRate = 1 // the first run's rows: 5xx, not recorded, unknown
	rec, client, l, b, owner := interruptedRunOn(t, l, join, cfg, 100, 8, Config{Rate: 200, Workers: 1})
	sb := rec.h.(*aoptest.Server)
	unknown, err := l.Page(context.Background(), b.Seq, ledger.StateUnknown, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	earlier := map[string]int64{} // ref -> operator
	for _, r := range unknown {
		earlier[r.ReferenceID] = r.Operator
	}
	if earlier["R-0"] != 1 || earlier["R-5"] != 1 || len(earlier) < 7 {
		t.Fatalf("setup: unknown after the first run %v, want R-0..R-7 (R-0, R-5 of operator 1)", earlier)
	}

	// The second run: the enquiries wait until operator 1 is held (three
	// of its queued rows answered 13).
	sb.SetFaults(aoptest.Faults{})
	e2 := New(l, client, Config{Owner: owner, Rate: 200, Timeout: 2 * time.Second, HoldAfter: 3})
	rec.mu.Lock()
	rec.onStatus = func() {
		for end := time.Now().Add(10 * time.Second); !e2.held(1) && time.Now().Before(end); {
			time.Sleep(time.Millisecond)
		}
	}
	rec.mu.Unlock()
	mark := rec.len()
	if err := e2.Send(context.Background(), b); err != nil {
		t.Fatalf("second run: %v", err)
	}
	if !e2.held(1) {
		t.Fatal("setup: operator 1 was not held in the second run")
	}
	for _, a := range rec.since(mark) {
		if op, ok := earlier[a.ref]; ok && op == 1 && a.path == aop.PathRecharge {
			t.Errorf("%s (unknown, operator 1 down) was sent again", a.ref)
		}
	}
	for ref, op := range earlier {
		r := rowByRef(t, l, b, ref)
		switch {
		case op == 1 && r.State != ledger.StateHeld:
			t.Errorf("%s of operator 1: %s (%s), want held", ref, r.State, r.Message)
		case op == 1 && !strings.Contains(r.Message, "operator 1 is down"):
			t.Errorf("%s held with message %q, want it to say operator 1 is down", ref, r.Message)
		case op != 1 && r.State != ledger.StateSuccess:
			t.Errorf("%s of operator %d: %s (%s), want success (sent again after no record)", ref, op, r.State, r.Message)
		}
	}

	// The operator is back: a rerun sends the held rows, each charged once.
	sb.SetOperatorDown(1, false)
	e3 := New(l, client, Config{Owner: owner, Rate: 200, Timeout: 2 * time.Second})
	if err := e3.Prepare(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	if err := e3.Send(context.Background(), b); err != nil {
		t.Fatalf("third run: %v", err)
	}
	for _, ref := range []string{"R-0", "R-5"} {
		if r := rowByRef(t, l, b, ref); r.State != ledger.StateSuccess || sb.NonDuplicateAnswers(ref) != 1 {
			t.Errorf("%s after the rerun: %s (%s), the provider processed it %d times; want success, once", ref, r.State, r.Message, sb.NonDuplicateAnswers(ref))
		}
	}
}

// rowByRef returns batch b's row with referenceid ref.
func rowByRef(t *testing.T, l ledger.Store, b ledger.Batch, ref string) ledger.Row {
	t.Helper()
	var got *ledger.Row
	err := l.EachRow(context.Background(), b.Seq, func(r *ledger.Row) error {
		if r.ReferenceID == ref {
			c := *r
			got = &c
		}
		return nil
	})
	if err != nil || got == nil {
		t.Fatalf("row %s: %v", ref, err)
	}
	return *got
}

// The run's figures: configured and achieved rate, latency percentiles,
// 429s and the most requests in flight, as the sandbox saw them.
func TestSendStats(t *testing.T) {
	cfg := aoptest.DefaultConfig()
	cfg.Seed = 5
	cfg.Latency = 40 * time.Millisecond
	cfg.ThrottleRate = 0.1
	cfg.RetryAfter = time.Second
	ts := aoptest.NewServer(cfg)
	t.Cleanup(ts.Close)
	client, err := aop.New(aop.Options{BaseURL: ts.URL})
	if err != nil {
		t.Fatal(err)
	}
	const rows = 120
	l := openLedger(t)
	res, err := Ingest(context.Background(), l, writeRows(t, rows), ingestOpts(NoControls()))
	if err != nil {
		t.Fatal(err)
	}
	e := New(l, client, Config{Owner: ledger.NewOwner("test"), Rate: 200, MaxInFlight: 16, Timeout: 2 * time.Second})
	if err := e.Send(context.Background(), res.Batch); err != nil {
		t.Fatal(err)
	}
	st := e.Stats()
	sst := ts.Stats()
	if st.Recharges != sst.Recharges || st.Throttled != sst.Faults.Throttle || st.Throttled == 0 {
		t.Errorf("Stats: %d recharges, %d 429s; the sandbox saw %d and answered %d 429s (want equal, and some)",
			st.Recharges, st.Throttled, sst.Recharges, sst.Faults.Throttle)
	}
	if st.ConfiguredRate != 200 || st.AchievedRate <= 0 || st.AchievedRate > 200*1.05 || st.SendPhase <= 0 {
		t.Errorf("Stats: configured %v, achieved %v over %v; want 200, and above 0 but not above it", st.ConfiguredRate, st.AchievedRate, st.SendPhase)
	}
	if st.LatencyP50 < cfg.Latency || st.LatencyP99 < st.LatencyP50 || st.LatencyP90 < st.LatencyP50 {
		t.Errorf("Stats: latency p50 %v p90 %v p99 %v; want ordered and at least the sandbox's %v", st.LatencyP50, st.LatencyP90, st.LatencyP99, cfg.Latency)
	}
	if st.PeakInFlight < 1 || st.PeakInFlight > 16 || st.InFlightCap != 16 || st.Fixed {
		t.Errorf("Stats: peak in flight %d, cap %d, fixed %v; want 1..16, 16, automatic", st.PeakInFlight, st.InFlightCap, st.Fixed)
	}
	c, err := l.Counts(context.Background(), res.Batch.Seq)
	if err != nil {
		t.Fatal(err)
	}
	if c[ledger.StateSuccess].Rows != rows {
		t.Errorf("counts %v: a 429 must never be a row's outcome", c)
	}
}

// A row a run that died had sent again is not sent by the next run until
// --timeout has passed since that run could last have sent it (the row's
// recovery), even when the row's first send is far older: the dead run's
// request, on its way for 200 ms of a 300 ms --timeout, arrives, and the
// next run's enquiries find it instead of sending the row a third time.
// (A money-safety review: the wait was measured from the first send, and
// an unreadable answer to the first enquiry rewrote the message the wait
// goes by.)
//
// The wait holds when the ledger's clock, which dates the recovery, is
// behind this host's (a shared ledger's is the database's): measured with
// the host's clock, 10 s would already have passed.
func TestResendOfADeadRunsRowWaitsFromItsRecovery(t *testing.T) {
	t.Run("first enquiry not found", func(t *testing.T) { deadRunsResend(t, false, 0) })
	t.Run("first enquiry unreadable", func(t *testing.T) { deadRunsResend(t, true, 0) })
	t.Run("ledger clock behind", func(t *testing.T) { deadRunsResend(t, false, 10*time.Second) })
}

func deadRunsResend(t *testing.T, garble bool, behind time.Duration) {
	sb := aoptest.New(aoptest.DefaultConfig())
	const target = "R-0"
	var mu sync.Mutex
	sends, enquiries := 0, 0
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		if !bytes.Contains(body, []byte(`"referenceid":"`+target+`"`)) {
			sb.ServeHTTP(w, r)
			return
		}
		mu.Lock()
		if r.URL.Path == aop.PathRecharge {
			sends++
		} else {
			enquiries++
		}
		n, m := sends, enquiries
		mu.Unlock()
		if r.URL.Path == aop.PathRecharge && n == 2 { // the dead run's request: on its way a while
			time.Sleep(200 * time.Millisecond)
		}
		if r.URL.Path == aop.PathStatus && m == 1 && garble {
			w.Header().Set("Content-Type", "text/html")
			_, _ = io.WriteString(w, "<html>maintenance</html>")
			return
		}
		sb.ServeHTTP(w, r)
	})
	l, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "l.db"),
		sqlite.Options{Synchronous: "NORMAL", Now: func() time.Time { return time.Now().Add(-behind) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	client, b := servedBatchIn(t, h, l, 3)
	ctx := context.Background()
	owner := ingestOpts(NoControls()).Owner
	// The first run: every answer a 5xx, nothing recorded, the rows unknown.
	sb.SetFaults(aoptest.Faults{Fault5xxRate: 1})
	if err := New(l, client, Config{Owner: owner, Timeout: time.Second}).Send(ctx, b); err != nil {
		t.Fatal(err)
	}
	sb.SetFaults(aoptest.Faults{})
	// What the first run asked before its first send is not the waiting
	// row's: its enquiries are counted from here.
	mu.Lock()
	enquiries = 0
	mu.Unlock()
	time.Sleep(400 * time.Millisecond) // the first send is older than --timeout now

	// The second run found no record of R-0, marked it in flight, and its
	// request left; the process dies before the answer.
	row := rowByRef(t, l, b, target)
	if row.State != ledger.StateUnknown {
		t.Fatalf("setup: %s is %s after the first run, want unknown", target, row.State)
	}
	markInflight(t, l, b, owner, row)
	dead := make(chan struct{})
	go func() { defer close(dead); _, _ = client.Recharge(context.Background(), row.Request) }()
	t.Cleanup(func() { <-dead })
	for {
		mu.Lock()
		n := sends
		mu.Unlock()
		if n == 2 {
			break
		}
		time.Sleep(time.Millisecond)
	}

	// The next run takes the batch over 50 ms later, --timeout 300 ms.
	time.Sleep(50 * time.Millisecond)
	next := takeOver(t, l, b, owner)
	dup := sb.Stats().ByCode[18]
	e3 := New(l, client, Config{Owner: next, Timeout: 300 * time.Millisecond, ResolveBackoff: 20 * time.Millisecond, ResolveTimeout: 3 * time.Second})
	if err := e3.Prepare(ctx, b); err != nil {
		t.Fatal(err)
	}
	if err := e3.Resolve(ctx, b); err != nil {
		t.Fatal(err)
	}
	<-dead
	got := rowByRef(t, l, b, target)
	mu.Lock()
	n := sends
	mu.Unlock()
	if n != 2 || sb.Stats().ByCode[18] != dup || sb.Resent(target) != 0 {
		t.Errorf("%s: %d Recharges (want 2: the first run's, the dead run's), %d answered 18, %d sent after the provider held it",
			target, n, sb.Stats().ByCode[18]-dup, sb.Resent(target))
	}
	if got.State != ledger.StateSuccess || sb.Charged(target) != 1 {
		t.Errorf("%s: %s (%s), charged %d; want success, once", target, got.State, got.Message, sb.Charged(target))
	}
	// Asked about when it is found not there, and again when it may be
	// sent, not every round between (an unreadable first answer is asked
	// again at once): each enquiry is spent from the account's rate.
	mu.Lock()
	m := enquiries
	mu.Unlock()
	if most := map[bool]int{false: 2, true: 3}[garble]; m > most {
		t.Errorf("%s: %d status enquiries while it waited, want at most %d", target, m, most)
	}
}

// A row a dead run left in flight, whose every enquiry is first answered
// 429, is still sent again once --timeout has passed since its recovery:
// the enquiry that waited out the 429 leaves the row as it was, and the
// wait does not start again each round. (A review: each round's retry
// rewrote the row, and with it the time the wait goes by.)
func TestDeadRunsRowIsSentDespiteThrottledEnquiries(t *testing.T) {
	sb := aoptest.New(aoptest.DefaultConfig())
	var mu sync.Mutex
	enquiries := 0
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == aop.PathStatus {
			mu.Lock()
			enquiries++
			odd := enquiries%2 == 1
			mu.Unlock()
			if odd { // the first enquiry of every round
				w.Header().Set("Retry-After", "1")
				w.WriteHeader(http.StatusTooManyRequests)
				return
			}
		}
		sb.ServeHTTP(w, r)
	})
	resolveDeadRunsRow(t, sb, h, Config{Timeout: 2 * time.Second, ResolveBackoff: 20 * time.Millisecond, ResolveTimeout: 8 * time.Second})
}

// resolveDeadRunsRow serves h (over sb) for a batch of one row, R-0, that
// a run marked in flight and died before its request left; a run taking
// it over with cfg resolves it. R-0 must end success, charged once.
func resolveDeadRunsRow(t *testing.T, sb *aoptest.Server, h http.Handler, cfg Config) {
	t.Helper()
	client, l, b := servedBatch(t, h, 1)
	ctx := context.Background()
	owner := ingestOpts(NoControls()).Owner
	markInflight(t, l, b, owner, rowByRef(t, l, b, "R-0"))
	cfg.Owner = takeOver(t, l, b, owner)
	e := New(l, client, cfg)
	if err := e.Prepare(ctx, b); err != nil {
		t.Fatal(err)
	}
	if err := e.Resolve(ctx, b); err != nil {
		t.Fatal(err)
	}
	if got := rowByRef(t, l, b, "R-0"); got.State != ledger.StateSuccess || sb.Charged("R-0") != 1 {
		t.Errorf("R-0: %s (%s), charged %d; want sent again once --timeout had passed, success", got.State, got.Message, sb.Charged("R-0"))
	}
}

// A row a dead run left in flight, not at the provider, is sent again by
// the run that took it over, within its --resolve-timeout, when that is
// no longer than --timeout (their defaults are both 30 s): the resolve
// rounds' growing pauses used to end the run before the row's wait was
// over. (A walkthrough: a rerun after kill -9 exited 3 with 40 rows it
// could not yet send.)
func TestDeadRunsRowIsSentWithinTheResolveTimeout(t *testing.T) {
	sb := aoptest.New(aoptest.DefaultConfig())
	var enquiries atomic.Int64
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == aop.PathStatus {
			enquiries.Add(1)
		}
		sb.ServeHTTP(w, r)
	})
	resolveDeadRunsRow(t, sb, h, Config{Timeout: 1500 * time.Millisecond, ResolveBackoff: 300 * time.Millisecond,
		ResolveTimeout: 1500 * time.Millisecond})
	// Asked about until it may be sent (a dead run's request may arrive
	// meanwhile), and then once more: the round it is sent in.
	if n := enquiries.Load(); n < 2 {
		t.Errorf("R-0 asked about %d times, want it asked while it waited and when it was sent", n)
	}
}

// markInflight marks row in flight for owner, as a run does before its
// request leaves.
func markInflight(t *testing.T, l ledger.Store, b ledger.Batch, owner ledger.Owner, row ledger.Row) {
	t.Helper()
	ctx := context.Background()
	w, err := l.NewWriter(ctx, b.Seq, owner)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.MarkInflight(ctx, row.Line, row.Attempts); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// takeOver hands batch b from owner, a run that died, to a new one.
func takeOver(t *testing.T, l ledger.Store, b ledger.Batch, owner ledger.Owner) ledger.Owner {
	t.Helper()
	ctx := context.Background()
	if err := l.Release(ctx, b.ID, owner); err != nil {
		t.Fatal(err)
	}
	next := ledger.NewOwner("rerun")
	if _, err := l.Acquire(ctx, ledger.NewBatch{ID: b.ID}, next, time.Minute); err != nil {
		t.Fatal(err)
	}
	return next
}
