package batch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aopbatch/aopbatch/ledger"
	"github.com/aopbatch/aopbatch/ledger/sqlite"
)

// writeRows writes a CSV of n valid rows, then the extra lines given.
func writeRows(t *testing.T, n int, extra ...string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("operator,canumber,amount,referenceid\n")
	for i := range n {
		fmt.Fprintf(&b, "%d,CA%07d,%d.%02d,R-%d\n", 1+i%5, i, 10+i%90, i%100, i)
	}
	for _, l := range extra {
		b.WriteString(l + "\n")
	}
	path := filepath.Join(t.TempDir(), "rows.csv")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func openLedger(t *testing.T) ledger.Store {
	t.Helper()
	l, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "l.db"), sqlite.Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func ingestOpts(c Controls) IngestOptions {
	return IngestOptions{Reader: ReaderOptions{RegistrationID: "REG-1", Latitude: "28.6", Longitude: "77.2"}, Controls: c, Owner: ledger.NewOwner("test"), LeaseTTL: time.Minute}
}

// A file of several ledger transactions' worth of rows (the ledger commits
// every 8192) goes in whole, with its bad and repeated rows recorded.
func TestIngestLargeFile(t *testing.T) {
	t.Parallel()
	const n = 10_000
	path := writeRows(t, n, "1,CAX,abc,BAD-1", "2,CAY,5.00,R-7") // a bad amount; R-7 repeated
	l := openLedger(t)
	res, err := Ingest(context.Background(), l, path, ingestOpts(NoControls()))
	if err != nil {
		t.Fatal(err)
	}
	if res.Rows != n+2 || res.Queued != n || res.Rejected != 2 || res.Conflicts != 0 {
		t.Errorf("result %+v, want %d rows, %d queued, 2 rejected", res, n+2, n)
	}
	if !res.Batch.Ready || res.Batch.RowsTotal != n+2 {
		t.Errorf("batch %+v, want ready with %d rows", res.Batch, n+2)
	}
	c, err := l.Counts(context.Background(), res.Batch.Seq)
	if err != nil {
		t.Fatal(err)
	}
	if c[ledger.StateQueued].Rows != n || c[ledger.StateRejected].Rows != 2 || c[ledger.StateQueued].Paise != res.Paise {
		t.Errorf("ledger counts %v, want %d queued (%d paise) and 2 rejected", c, n, res.Paise)
	}
}

// A file refused after thousands of rows were stored leaves nothing behind.
func TestIngestRefusedLeavesNothing(t *testing.T) {
	t.Parallel()
	path := writeRows(t, 10_000, "3,CAZ,999999.00,BIG-1")
	l := openLedger(t)
	c := NoControls()
	c.MaxAmountPaise = 100_000_00
	_, err := Ingest(context.Background(), l, path, ingestOpts(c))
	var ce *ControlError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "line(s) 10002") {
		t.Fatalf("Ingest = %v, want a control error naming line 20002", err)
	}
	if _, err := l.Batch(context.Background(), ""); !errors.Is(err, ledger.ErrNoBatch) {
		t.Errorf("after a refused file: Batch = %v, want ErrNoBatch", err)
	}
}

// A process waiting to join a batch says each new reason once, and the
// same one again each stillWaitingEvery, with how long it has waited: a
// wait of many minutes (a frozen recording another role may not end)
// must not read as a hang.
func TestWaitingToJoinSaysItStillWaits(t *testing.T) {
	start := time.Date(2026, 12, 4, 2, 0, 0, 0, time.UTC)
	w := waitSayer{since: start}
	type said struct {
		at   time.Duration
		why  string
		want string // "" nothing
	}
	for _, c := range []said{
		{5 * time.Second, "busy", "another process holds this batch: waiting to join it"},
		{10 * time.Second, "busy", ""},
		{50 * time.Second, "busy: may not end it", "another process holds this batch: waiting to join it"},
		{64 * time.Second, "busy", ""}, // a minute from the last thing said, not the first
		{110 * time.Second, "busy", "still waiting to join this batch: another process holds it"},
		{115 * time.Second, "busy", ""},
		{171 * time.Second, "busy: may not end it", "still waiting to join this batch: another process holds it"},
	} {
		msg, waited, ok := w.say(start.Add(c.at), c.why)
		if ok != (c.want != "") || msg != c.want {
			t.Errorf("at %s (%s): said %q (%v), want %q", c.at, c.why, msg, ok, c.want)
		}
		if ok && waited != c.at {
			t.Errorf("at %s: waited %s, want %s", c.at, waited, c.at)
		}
	}
}
