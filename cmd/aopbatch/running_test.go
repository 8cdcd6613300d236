package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/aopbatch/aopbatch/batch/aop"
	"github.com/aopbatch/aopbatch/batch/aop/aoptest"
	"github.com/aopbatch/aopbatch/ledger"
)

// heldIngress holds every Recharge until open is closed.
type heldIngress struct {
	h       http.Handler
	open    chan struct{}
	entered atomic.Int64
}

func (g *heldIngress) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == aop.PathRecharge {
		g.entered.Add(1)
		<-g.open
	}
	g.h.ServeHTTP(w, r)
}

// TestReadersSayARunIsWorkingOnTheBatch: status, report and export read a
// batch while a run is sending it. Its figures are a moment of that run,
// and its queued rows are being sent: a report must say so before anyone
// acts on it, and an export warns that its rows are changing. Once the run
// has ended, none of them says so.
func TestReadersSayARunIsWorkingOnTheBatch(t *testing.T) {
	t.Parallel()
	// The run's first Recharge is held until the readers are done: the
	// run is surely working on the batch while they read it.
	cfg := aoptest.DefaultConfig()
	cfg.Seed = 1
	gate := &heldIngress{h: aoptest.New(cfg), open: make(chan struct{})}
	hs := httptest.NewServer(gate)
	var once sync.Once
	release := func() { once.Do(func() { close(gate.open) }) }
	t.Cleanup(func() { release(); hs.Close() })
	db, csvPath := batchFiles(t)
	rows := goodRows(40, "W")
	writeCSV(t, csvPath, rows)
	run, runErr := startRun(t, runArgs(csvPath, db, hs.URL, "--batch", "busy", "--workers", "1", "--timeout", "2m"))
	for deadline := time.Now().Add(time.Minute); gate.entered.Load() == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the run sent nothing in a minute\n%s", runErr)
		}
	}

	st := aopbatch(t, nil, "status", "--ledger", db, "--batch", "busy")
	if st.code != 0 || !strings.Contains(st.stderr, "a run is working on batch busy now (pid ") {
		t.Errorf("status --batch during the run: exit %d, want 0 and a word that a run is working on it\n%s", st.code, st.stderr)
	}
	if st := aopbatch(t, nil, "status", "--ledger", db); !strings.Contains(st.stdout, "busy (running)") {
		t.Errorf("status list during the run does not mark the batch running:\n%s", st.stdout)
	}
	js := aopbatch(t, nil, "status", "--ledger", db, "--batch", "busy", "--format", "json")
	var got struct {
		Running []struct {
			Host string `json:"host"`
			PID  int    `json:"pid"`
		} `json:"running"`
	}
	if err := json.Unmarshal([]byte(js.stdout), &got); err != nil || len(got.Running) != 1 || got.Running[0].PID != run.Process.Pid {
		t.Errorf("status --format json during the run: running = %+v (%v), want the run's pid %d\n%s", got.Running, err, run.Process.Pid, js.stdout)
	}

	out := filepath.Join(t.TempDir(), "rep")
	rep := aopbatch(t, nil, "report", "--ledger", db, "--batch", "busy", "--out", out)
	if rep.code != 0 || !strings.Contains(rep.stdout, "A run is working on this batch now") {
		t.Errorf("report during the run: exit %d, want 0 and a verdict that a run is working on it\n%s%s", rep.code, rep.stdout, rep.stderr)
	}
	if b, err := os.ReadFile(filepath.Join(out, "report.json")); err != nil || !strings.Contains(string(b), `"running"`) {
		t.Errorf("report.json during the run has no running field (%v)", err)
	}
	if ex := aopbatch(t, nil, "export", "--ledger", db, "--batch", "busy", "--state", "queued", "--keep-refs", "--out", filepath.Join(out, "q.csv")); ex.code != 0 ||
		!strings.Contains(ex.stderr, "a run is working on batch busy now") {
		t.Errorf("export --state queued --keep-refs during the run: exit %d, want 0 and a word that the rows are changing\n%s", ex.code, ex.stderr)
	}

	release()
	if err := run.Wait(); err != nil {
		t.Fatalf("run: %v\n%s", err, runErr)
	}
	if st := aopbatch(t, nil, "status", "--ledger", db, "--batch", "busy"); strings.Contains(st.stderr, "a run is working") {
		t.Errorf("status after the run still says a run is working on it:\n%s", st.stderr)
	}
	rep = aopbatch(t, nil, "report", "--ledger", db, "--batch", "busy", "--out", out)
	if rep.code != 0 || strings.Contains(rep.stdout, "A run is working") || !strings.Contains(rep.stdout, "Every row is final") {
		t.Errorf("report after the run: exit %d\n%s", rep.code, rep.stdout)
	}
}

// TestLeaseLostBeforeSendingExitsIncomplete: a run paused past its lease
// before it sent anything (a chaos run: SIGSTOP 11.5 s right after it
// started) finds the batch taken over as it takes over the rows in flight.
// Nothing went and a rerun goes on: exit 3, not 1 (nothing could start).
func TestLeaseLostBeforeSendingExitsIncomplete(t *testing.T) {
	var stderr bytes.Buffer
	lost := fmt.Errorf("recover rows in flight: batch 1: %w", ledger.ErrLeaseLost)
	if code := exitCode(prepareError(lost), &stderr); code != exitIncomplete || !strings.Contains(stderr.String(), "run again") {
		t.Errorf("lease lost before sending: exit %d, want %d and the way on\n%s", code, exitIncomplete, stderr.String())
	}
	stderr.Reset()
	if code := exitCode(prepareError(errors.New("recover rows in flight: connection refused")), &stderr); code != exitStart {
		t.Errorf("ledger unreachable before sending: exit %d, want %d", code, exitStart)
	}
}

// TestRecordingCutByATakeoverExitsIncomplete: a process frozen while it
// recorded the file, whose connection the taker ended, fails when it goes
// on with the server's 57P01 or, as often (a chaos run: 4 of 13), with a
// broken pipe as it writes; its abort then finds its lease gone. Either
// way nothing went and a rerun joins the batch: exit 3, not 1.
func TestRecordingCutByATakeoverExitsIncomplete(t *testing.T) {
	lost := fmt.Errorf("ingest lines 251650-251905: write failed: write: broken pipe; meanwhile another process took the recording over (%w)", ledger.ErrLeaseLost)
	ended := fmt.Errorf("ingest lines 2-257: %w", &pgconn.PgError{Severity: "FATAL", Code: "57P01", Message: "terminating connection due to administrator command"})
	for name, err := range map[string]error{"broken pipe": lost, "57P01": ended} {
		var stderr bytes.Buffer
		if code := exitCode(recordingError("f.csv", "l.db", err), &stderr); code != exitIncomplete || !strings.Contains(stderr.String(), "nothing was sent: run again") {
			t.Errorf("%s: exit %d, want %d and the way on\n%s", name, code, exitIncomplete, stderr.String())
		}
	}
	var stderr bytes.Buffer
	if code := exitCode(recordingError("f.csv", "l.db", errors.New("ingest: connection refused")), &stderr); code != exitStart {
		t.Errorf("ledger unreachable while recording: exit %d, want %d", code, exitStart)
	}
	// A server that stopped answering: the store's bound on the call.
	stderr.Reset()
	stalled := fmt.Errorf("ingest: timeout: %w", context.DeadlineExceeded)
	if code := exitCode(recordingError("f.csv", "l.db", stalled), &stderr); code != exitIncomplete || !strings.Contains(stderr.String(), "the ledger stopped answering while this run recorded the file") {
		t.Errorf("ledger stalled while recording: exit %d, want %d and what happened\n%s", code, exitIncomplete, stderr.String())
	}
}

// Two runs sending two batches of one SQLite ledger each keep their own
// --rate: together they send more than the account allows (a walkthrough:
// 49.9/s each at --rate 50). The second says so as it starts; a run alone
// says nothing of it.
func TestSecondRunOnASQLiteLedgerWarnsTheRateIsNotShared(t *testing.T) {
	sb := sandbox(t, func(c *aoptest.Config) { c.Latency = 100 * time.Millisecond })
	dir := t.TempDir()
	db, first, second := filepath.Join(dir, "l.db"), filepath.Join(dir, "a.csv"), filepath.Join(dir, "b.csv")
	writeCSV(t, first, goodRows(200, "RA"))
	writeCSV(t, second, goodRows(3, "RB"))
	cmd, errb := startRunOut(t, runArgs(first, db, sb.URL, "--rate", "5"), false)
	waitRecharges(t, sb, 1)
	p := aopbatch(t, nil, runArgs(second, db, sb.URL, "--rate", "50")...)
	if p.code != 0 || !strings.Contains(p.stderr, "another run is sending from this ledger now: on a SQLite ledger each run keeps its own --rate (50/s here)") ||
		!strings.Contains(p.stderr, fmt.Sprintf("pid %d on", cmd.Process.Pid)) {
		t.Errorf("the second run: exit %d, want 0 warning that the first (pid %d) does not share the rate\n%s", p.code, cmd.Process.Pid, p.stderr)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if strings.Contains(errb.String(), "another run is sending") {
		t.Errorf("the first run, alone when it started, warns of another:\n%s", errb)
	}
}
