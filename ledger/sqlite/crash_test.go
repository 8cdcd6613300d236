package sqlite

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aopbatch/aopbatch/ledger"
)

// crashEnv, when set, names the ledger TestCrashHelperProcess writes to
// before it kills itself.
const crashEnv = "AOPBATCH_LEDGER_CRASH_HELPER"

// TestCrashHelperProcess is not a test on its own: TestCrashDurability runs
// the test binary again with crashEnv set, and then this is the child.
func TestCrashHelperProcess(t *testing.T) {
	path := os.Getenv(crashEnv)
	if path == "" {
		t.Skip("helper process for TestCrashDurability")
	}
	crashChild(path) // never returns
}

// crashChild ingests 20 rows (lines 2..21), marks lines 2..6 inflight,
// settles line 7 as success, marks line 8 inflight and is killed with
// SIGKILL the moment that MarkInflight returns: no deferred close, no
// checkpoint, nothing flushed on the way out.
func crashChild(path string) {
	ctx := context.Background()
	check := func(what string, err error) {
		if err != nil {
			fmt.Fprintf(os.Stderr, "crash helper: %s: %v\n", what, err)
			os.Exit(2)
		}
	}
	l, err := Open(ctx, path, Options{})
	check("open", err)
	o := ledger.NewOwner("child")
	b, err := l.Acquire(ctx, ledger.NewBatch{ID: "crash", ContentHash: "h"}, o, time.Hour)
	check("acquire", err)
	in, err := l.BeginIngest(ctx, b, o, time.Hour)
	check("ingest", err)
	for _, r := range rowsFor("k", 20) {
		_, err := in.AddMany(ctx, []ledger.IngestRow{r})
		check("add", err)
	}
	check("finish", in.Finish(ctx))
	w, err := l.NewWriter(ctx, b.Seq, o)
	check("writer", err)
	for line := 2; line <= 6; line++ {
		check("mark", w.MarkInflight(ctx, line, 0))
	}
	check("mark", w.MarkInflight(ctx, 7, 0))
	check("record", w.Record(ledger.Update{Line: 7, To: ledger.StateSuccess, Code: 1, TxnID: "T7"}))
	check("flush", w.Flush(ctx))
	check("mark", w.MarkInflight(ctx, 8, 0))
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {}
}

func TestCrashDurability(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "ledger.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashEnv+"="+path)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("child: %v, want killed\n%s", err, out)
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child: %v, want killed by SIGKILL\n%s", err, out)
	}
	if _, err := os.Stat(path + "-wal"); err != nil {
		t.Errorf("no -wal after the crash (%v): the test did not catch the ledger mid-run", err)
	}

	l := openAt(t, path, Options{})
	b, err := l.Batch(ctx, "crash")
	if err != nil {
		t.Fatalf("Batch: %v", err)
	}
	if !b.Ready || b.RowsTotal != 20 {
		t.Errorf("batch Ready=%v RowsTotal=%d, want true 20", b.Ready, b.RowsTotal)
	}
	want := func(line int) ledger.State {
		switch {
		case line <= 6 || line == 8:
			return ledger.StateInflight
		case line == 7:
			return ledger.StateSuccess
		}
		return ledger.StateQueued
	}
	for line := 2; line <= 21; line++ {
		r := getRow(t, l, b.Seq, line)
		if r.State != want(line) {
			t.Errorf("line %d = %s, want %s", line, r.State, want(line))
		}
		if sent := r.State != ledger.StateQueued; sent != (r.Attempts == 1) || sent == r.FirstSent.IsZero() {
			t.Errorf("line %d: %s with attempts %d first sent %v", line, r.State, r.Attempts, r.FirstSent)
		}
	}

	// The child's lease names a dead pid on this host: taken over at once.
	me := ledger.NewOwner("parent")
	if _, err := l.Acquire(ctx, ledger.NewBatch{ID: "crash", ContentHash: "h"}, me, testTTL); err != nil {
		t.Fatalf("Acquire after the crash: %v", err)
	}
	rec, err := l.RecoverInflight(ctx, b.Seq, me)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Rows != 6 {
		t.Errorf("RecoverInflight moved %d rows, want 6", rec.Rows)
	}
	for line := 2; line <= 21; line++ {
		r := getRow(t, l, b.Seq, line)
		w := want(line)
		if w == ledger.StateInflight {
			w = ledger.StateUnknown
		}
		if r.State != w {
			t.Errorf("after recovery line %d = %s, want %s", line, r.State, w)
		}
	}
	if r := getRow(t, l, b.Seq, 7); r.ProviderTxnID != "T7" {
		t.Errorf("line 7 txn id = %q, want T7", r.ProviderTxnID)
	}
	integrityCheck(t, path)
	if strings.Contains(string(out), "crash helper:") {
		t.Errorf("child reported: %s", out)
	}
}
