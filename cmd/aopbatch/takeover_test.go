package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/aopbatch/aopbatch/batch/aop"
	"github.com/aopbatch/aopbatch/batch/aop/aoptest"
	"github.com/aopbatch/aopbatch/ledger/postgres/pgtest"
)

// slowIngress holds each Recharge for d before the provider records it (a
// provider that records a transaction some time after the request reached
// it, or a slow network). Enquiries are answered at once.
type slowIngress struct {
	h       http.Handler
	d       time.Duration
	entered atomic.Int64
}

func (s *slowIngress) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == aop.PathRecharge {
		s.entered.Add(1)
		time.Sleep(s.d)
	}
	s.h.ServeHTTP(w, r)
}

// TestTakeoverWaitsForARequestStillInFlight: process A sends, then is
// paused (SIGSTOP) with its requests on their way. Its lease runs out; B
// takes its rows over, enquires at once, hears "not found" (the provider has
// not recorded A's request yet) and sends the same referenceids again.
func TestTakeoverWaitsForARequestStillInFlight(t *testing.T) {
	srv := pgtest.Start(t)
	db := srv.URL(srv.NewDB(t))
	cfg := aoptest.DefaultConfig()
	cfg.Seed = 1
	s := aoptest.New(cfg)
	slow := &slowIngress{h: s, d: 4 * time.Second}
	hs := httptest.NewServer(slow)
	t.Cleanup(func() { s.ReleaseStalls(); hs.Close() })
	sb := &aoptest.TestServer{Server: s, URL: hs.URL}

	_, csvPath := batchFiles(t)
	rows := goodRows(3, "T")
	writeCSV(t, csvPath, rows)
	args := runArgs(csvPath, db, sb.URL, "--batch", "takeover-1", "--lease-ttl", "1s", "--timeout", "8s", "--workers", "4")
	a, aErr := startRun(t, args)
	for deadline := time.Now().Add(30 * time.Second); slow.entered.Load() < int64(len(rows)); {
		if time.Now().After(deadline) {
			t.Fatalf("A sent %d", slow.entered.Load())
		}
		time.Sleep(2 * time.Millisecond)
	}
	pauseOutsideTx(t, a, db) // paused with its requests in flight
	b, bErr := startRun(t, args)
	_ = b.Wait()
	_ = a.Process.Signal(syscall.SIGKILL)
	_ = a.Wait()
	_ = aErr
	if code := b.ProcessState.ExitCode(); code != 0 {
		t.Errorf("B: exit %d, want 0 (A's rows settled by enquiry)\n%s", code, bErr)
	}
	// B said why it waited rather than seeming stalled.
	if got := bErr.String(); strings.Count(got, "once --timeout has passed since it went") != 1 {
		t.Errorf("B did not say once why it waits before sending A's rows again:\n%s", got)
	}
	for _, r := range rows {
		if n := sb.Resent(r.ref); n > 0 {
			t.Errorf("ref %s sent %d more time(s) after the provider recorded it: B resent A's request still in flight", r.ref, n)
		}
		if n := sb.Charged(r.ref); n > 1 {
			t.Errorf("ref %s charged %d times", r.ref, n)
		}
	}
}

// pauseOutsideTx stops c (SIGSTOP) at a moment it holds no transaction
// open on the ledger at db, the only client of db. Paused inside one (its
// heartbeat's recovery holds its own session), it keeps its session locked
// until PostgreSQL ends the transaction (postgres.AbandonTx), and the
// takeover comes that much later: by design, but not the takeover a test
// of a lease running out means to see.
func pauseOutsideTx(t *testing.T, c *exec.Cmd, db string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatalf("connect to the ledger: %v", err)
	}
	defer conn.Close(ctx)
	for range 200 {
		if err := c.Process.Signal(syscall.SIGSTOP); err != nil {
			t.Fatalf("stop process %d: %v", c.Process.Pid, err)
		}
		var open int
		err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND pid <> pg_backend_pid() AND xact_start IS NOT NULL`).Scan(&open)
		if err != nil {
			t.Fatalf("read the ledger's sessions: %v", err)
		}
		if open == 0 {
			return
		}
		if err := c.Process.Signal(syscall.SIGCONT); err != nil {
			t.Fatalf("continue process %d: %v", c.Process.Pid, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("process %d was inside a ledger transaction at each of 200 tries", c.Process.Pid)
}
