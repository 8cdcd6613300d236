package reports

import (
	"context"
	"encoding/json"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/aopbatch/aopbatch/ledger"
	"github.com/aopbatch/aopbatch/ledger/sqlite"
)

// t0 is the fixture's epoch: the batch is created then, rows are sent in
// the following minutes, and reports are generated two hours later.
var t0 = time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)

const hyperlink = `=HYPERLINK("http://x","y")`

// clock is a settable clock for the ledger.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// fixtureRow is one row of the fixture batch and what happens to it.
type fixtureRow struct {
	ref      string
	op       int64
	ca       string
	paise    int64
	bill     bool     // add a bill_fetch with cellNumber and userName
	raw      []string // rejected/conflict cells
	problem  *ledger.Problem
	final    ledger.State // the state it ends in
	code     int
	message  string
	txn      string
	latency  time.Duration
	sentAt   time.Duration // after t0
	resolved bool          // refunded: success then refunded by a status enquiry
}

var fixtureHeader = []string{"operator", "canumber", "amount", "referenceid", "cellNumber", "userName"}

// fixtureRows: lines 2.. of the file, one of every state.
var fixtureRows = []fixtureRow{
	{ref: "REF002", op: 311, ca: "DL12CB4685", paise: 1000, bill: true, final: ledger.StateSuccess, code: 1, message: "Recharge successful", txn: "T002", latency: 80 * time.Millisecond, sentAt: time.Minute},
	{ref: "REF003", op: 311, ca: hyperlink, paise: 2550, final: ledger.StateSuccess, code: 1, message: "Recharge successful", txn: "T003", latency: 120 * time.Millisecond, sentAt: time.Minute + time.Second},
	{ref: "REF004", op: 312, ca: "MH01AB1234", paise: 500, final: ledger.StateFailed, code: 14, message: hyperlink, txn: "T004", latency: 300 * time.Millisecond, sentAt: time.Minute + 2*time.Second},
	{ref: "REF005", op: 312, ca: "MH01AB5678", paise: 10000, final: ledger.StateRefunded, code: 1, message: "Recharge successful", txn: "T005", latency: 700 * time.Millisecond, sentAt: time.Minute + 3*time.Second, resolved: true},
	{ref: "REF006", op: 311, ca: "DL01PQ1111", paise: 700, final: ledger.StatePending, code: 0, message: "Accepted", txn: "T006", latency: 1500 * time.Millisecond, sentAt: time.Minute + 4*time.Second},
	{ref: "REF007", op: 311, ca: "DL01PQ2222", paise: 1200, final: ledger.StateDuplicate, code: 18, message: "Duplicate Transaction", latency: 60 * time.Millisecond, sentAt: time.Minute + 5*time.Second},
	{ref: "REF008", op: 311, ca: "DL01PQ3333", paise: 999, final: ledger.StateUnknown, code: -1, message: "timeout awaiting response", latency: 12 * time.Second, sentAt: time.Minute + 6*time.Second},
	{ref: "REF009", op: 313, ca: "GJ05ZZ0009", paise: 2000, final: ledger.StateHeld, code: -1, message: "operator 313 is down: held"},
	{ref: "REF010", op: 313, ca: "GJ05ZZ0010", paise: 1500, final: ledger.StateQueued},
	{ref: "REF011", op: 311, ca: "DL01PQ4444", paise: 300, final: ledger.StateInflight, sentAt: time.Minute + 7*time.Second},
	{ref: "REF012", ca: "KA05XY9999", final: ledger.StateRejected, raw: []string{"311", "KA05XY9999", "10.005", "REF012", "9876543210", "RAVI KUMAR"},
		problem: &ledger.Problem{Code: "bad_amount", Column: "amount", Message: "line 12, column \"amount\", value \"10.005\": more than 2 decimals"}},
	{ref: "REF013", op: 311, ca: hyperlink, paise: 400, final: ledger.StateRejected, raw: []string{"311", hyperlink, "4", "REF013", "+919812345678", "@SUNITA DEVI"},
		problem: &ledger.Problem{Code: "bad_canumber", Column: "canumber", Message: "canumber has characters that are not allowed"}},
	{ref: "REF-OTHER", op: 311, ca: "UP32AA0014", paise: 3000, final: ledger.StateConflict, raw: []string{"311", "UP32AA0014", "30", "REF-OTHER", "", ""}},
	{ref: "REF002", op: 311, ca: "DL12CB4685", paise: 1000, final: ledger.StateRejected, raw: []string{"311", "DL12CB4685", "10", "REF002", "", ""}},
	{ref: "REF016", op: 311, ca: "DL01PQ6666", paise: 4000, final: ledger.StateSuccess, code: 1, message: "Recharge successful", txn: "T016", latency: 90 * time.Millisecond, sentAt: time.Minute + 8*time.Second},
	{ref: "REF017", op: 312, ca: "MH01AB7777", paise: 5000, final: ledger.StateSuccess, code: 1, message: "Recharge successful", txn: "T017", latency: 3 * time.Second, sentAt: time.Minute + 9*time.Second},
	{ref: "REF018", op: 311, ca: "DL01PQ8888", paise: 800, final: ledger.StateFailed, code: 17, message: "amount below the operator's minimum", latency: 40 * time.Millisecond, sentAt: time.Minute + 10*time.Second},
	{ref: "REF019", op: 311, ca: "DL01PQ9999", paise: 6000, final: ledger.StateSuccess, code: 1, message: "Recharge successful", txn: "T019", latency: 200 * time.Millisecond, sentAt: time.Minute + 11*time.Second},
	{ref: "REF020", op: 313, ca: "GJ05ZZ0020", paise: 2500, final: ledger.StateFailed, code: 13, message: "Operator is down", latency: 30 * time.Millisecond, sentAt: time.Minute + 12*time.Second},
}

// fullCANumbers are the personal values of the fixture --mask-pii must hide.
var fullPII = []string{"DL12CB4685", "MH01AB1234", "MH01AB5678", "DL01PQ1111", "KA05XY9999", "9876543210", "RAVI KUMAR",
	"+919812345678", "SUNITA DEVI", "UP32AA0014", "DL01PQ9999", "NITESH KUMAR SHARMA"}

func request(r fixtureRow) []byte {
	body := map[string]any{
		"operator": r.op, "canumber": r.ca, "amount": json.Number(rupees(r.paise)), "referenceid": r.ref,
		"latitude": "28.61", "longitude": "77.20", "RegistrationID": "AOP-554",
	}
	if r.bill {
		body["bill_fetch"] = map[string]any{"billAmount": "10.00", "cellNumber": "9812300000", "userName": "NITESH KUMAR SHARMA"}
	}
	b, _ := json.Marshal(body)
	return b
}

// fixture is a ledger with two batches: "other" (earlier; holds REF-OTHER
// and REF-ELSEWHERE) and "b1" (every state, rejected rows with their cells,
// a conflict with "other").
type fixture struct {
	l     ledger.Reader
	b     ledger.Batch
	clock *clock
}

func (f *fixture) options(mask bool) Options {
	return Options{MaskPII: mask, Now: func() time.Time { return t0.Add(2 * time.Hour) }}
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	c := &clock{t: t0.Add(-24 * time.Hour)}
	l, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "ledger.db"), sqlite.Options{Now: c.now, Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	owner := ledger.NewOwner("test")

	ingest := func(id string, rows []fixtureRow) ledger.Batch {
		t.Helper()
		b, err := l.Acquire(ctx, ledger.NewBatch{ID: id, ContentHash: "hash-" + id, Source: id + ".csv", Header: fixtureHeader}, owner, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		in, err := l.BeginIngest(ctx, b, owner, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range rows {
			ir := ledger.IngestRow{Line: i + 2, ReferenceID: r.ref, Operator: r.op, CANumber: r.ca, AmountPaise: r.paise, Raw: r.raw, Problem: r.problem}
			if r.problem == nil {
				ir.Request = request(r)
			}
			added, err := in.AddMany(ctx, []ledger.IngestRow{ir})
			if err != nil {
				t.Fatal(err)
			}
			st := added[0].State
			want := ledger.StateQueued
			if r.final == ledger.StateRejected || r.final == ledger.StateConflict {
				want = r.final
			}
			if st != want {
				t.Fatalf("ingest %s line %d: state %s, want %s", id, i+2, st, want)
			}
		}
		if err := in.Finish(ctx); err != nil {
			t.Fatal(err)
		}
		return b
	}
	send := func(b ledger.Batch, rows []fixtureRow) {
		t.Helper()
		w, err := l.NewWriter(ctx, b.Seq, owner)
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range rows {
			line := i + 2
			switch r.final {
			case ledger.StateQueued, ledger.StateRejected, ledger.StateConflict:
				continue
			case ledger.StateHeld:
				if err := w.Record(ledger.Update{Line: line, To: ledger.StateHeld, Code: -1, Message: r.message}); err != nil {
					t.Fatal(err)
				}
				continue
			}
			at := t0.Add(r.sentAt)
			c.set(at)
			if err := w.MarkInflight(ctx, line, 0); err != nil {
				t.Fatal(err)
			}
			if r.final == ledger.StateInflight {
				continue
			}
			to := r.final
			if r.resolved {
				to = ledger.StateSuccess
			}
			a := &ledger.Attempt{Kind: "recharge", At: at, Latency: r.latency, HTTPStatus: 200, Code: r.code, Class: string(to), Message: r.message}
			if err := w.Record(ledger.Update{Line: line, To: to, Code: r.code, Message: r.message, TxnID: r.txn, Attempt: a}); err != nil {
				t.Fatal(err)
			}
			if r.resolved {
				at := t0.Add(r.sentAt + 30*time.Minute)
				a := &ledger.Attempt{Kind: "status", At: at, Latency: 50 * time.Millisecond, HTTPStatus: 200, Code: 1, Class: "found", Message: "Transaction refunded"}
				if err := w.Record(ledger.Update{Line: line, To: r.final, Code: 1, Message: "Transaction refunded", Attempt: a}); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := w.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if err := w.Refused(); err != nil {
			t.Fatal(err)
		}
	}

	other := []fixtureRow{
		{ref: "REF-OTHER", op: 311, ca: "UP32AA0001", paise: 3000, final: ledger.StateSuccess, code: 1, message: "Recharge successful", txn: "TO1", sentAt: -23 * time.Hour},
		{ref: "REF-ELSEWHERE", op: 311, ca: "UP32AA0002", paise: 1100, final: ledger.StateSuccess, code: 1, message: "Recharge successful", txn: "TO2", sentAt: -23 * time.Hour},
	}
	ob := ingest("other", other)
	send(ob, other)
	c.set(t0)
	b := ingest("b1", fixtureRows)
	send(b, fixtureRows)
	b, err = l.Batch(ctx, "b1")
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{l: l, b: b, clock: c}
}
