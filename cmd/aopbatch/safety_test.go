package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aopbatch/aopbatch/batch/aop/aoptest"
	"github.com/aopbatch/aopbatch/ledger"
	"github.com/aopbatch/aopbatch/ledger/postgres/pgtest"
	_ "modernc.org/sqlite"
)

// TestChaosKillAndResume is the never-pay-twice test: a real run against a
// sandbox with every fault on, killed with SIGKILL at random moments many
// times, then rerun and resolved until done. The sandbox and the ledger
// must then agree on every row and on the total, to the paisa.
func TestChaosKillAndResume(t *testing.T) {
	db, _ := batchFiles(t)
	chaosKillAndResume(t, db)
}

// TestChaosKillAndResumePostgres is the chaos test on a PostgreSQL ledger.
// No run there knows another died but by its lease expiring, so the lease
// is short.
func TestChaosKillAndResumePostgres(t *testing.T) {
	srv := pgtest.Start(t)
	chaosKillAndResume(t, srv.URL(srv.NewDB(t)), "--lease-ttl", "1s")
}

// chaosSeed is the seed of a chaos test's faults and kill instants: def,
// or AOPBATCH_CHAOS_SEED to sweep others by hand (a failure names it).
func chaosSeed(t *testing.T, def int64) int64 {
	t.Helper()
	if v := os.Getenv("AOPBATCH_CHAOS_SEED"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatalf("AOPBATCH_CHAOS_SEED=%q: %v", v, err)
		}
		def = n
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("chaos seed %d (AOPBATCH_CHAOS_SEED)", def)
		}
	})
	return def
}

// chaosSandbox is a sandbox with every fault at once, drawn from seed.
func chaosSandbox(t *testing.T, seed int64) *aoptest.TestServer {
	t.Helper()
	return sandbox(t, func(c *aoptest.Config) {
		c.Seed = seed
		c.Latency = 2 * time.Millisecond
		c.LatencyJitter = 10 * time.Millisecond
		c.PendingRate = 0.1
		c.PendingDelay = 300 * time.Millisecond
		c.PendingFailRate = 0.3
		c.Fault5xxRate = 0.05
		c.LostRate = 0.05
		c.StallRate = 0.03
		c.StallFor = 3 * time.Second
		c.ThrottleRate = 0.03
		c.RetryAfter = time.Second
		c.UnknownCodeRate = 0.03
	})
}

// chaosKillAndResume runs a batch under every fault, killing the run at
// random instants, then lets it settle and checks the ledger at db against
// what reached the sandbox.
func chaosKillAndResume(t *testing.T, db string, extra ...string) {
	seed := chaosSeed(t, 7)
	sb := chaosSandbox(t, seed)
	_, csvPath := batchFiles(t)
	rows := goodRows(500, "C")
	writeCSV(t, csvPath, rows)
	args := runArgs(csvPath, db, sb.URL, append([]string{"--timeout", "400ms", "--rate", "400", "--resolve-timeout", "3s",
		"--max-attempts", "3"}, extra...)...)

	rng := rand.New(rand.NewPCG(uint64(seed), uint64(seed)))
	kills := 0
	for i := 0; i < 12; i++ {
		cmd := aopbatchCmd(context.Background(), nil, args...)
		var errb bytes.Buffer
		cmd.Stderr = &errb
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		// One kill in four at a random instant from the start (recording
		// the file, preparing); the others at one from the run's first
		// request, so that a loaded machine, slow to start a process, still
		// kills runs while they send and the faults fire.
		now := make(chan struct{})
		close(now)
		var started <-chan struct{} = now
		if rng.IntN(4) != 0 {
			started = firstRequest(sb, done)
		}
		select {
		case <-done:
		case <-started:
		}
		select {
		case <-done:
		case <-time.After(time.Duration(50+rng.IntN(700)) * time.Millisecond):
			_ = cmd.Process.Signal(syscall.SIGKILL)
			<-done
			kills++
		}
		if strings.Contains(errb.String(), "panic:") {
			t.Fatalf("run crashed:\n%s", errb.String())
		}
	}
	t.Logf("%d of 12 runs killed mid-way", kills)
	if kills < 6 {
		t.Fatalf("only %d of 12 runs were killed mid-way: the test did not test", kills)
	}

	// Faults off, let everything settle: rerun until every row is final.
	sb.SetFaults(aoptest.Faults{})
	final := false
	for i := 0; i < 6 && !final; i++ {
		p := aopbatch(t, nil, args...)
		switch p.code {
		case 0, 2:
			final = true
		case 3:
			// Pending rows settle at the sandbox; on a shared ledger the
			// killed runs' leases run out.
			time.Sleep(1100 * time.Millisecond)
		default:
			t.Fatalf("rerun exit %d\n%s", p.code, p.stderr)
		}
	}
	if !final {
		t.Fatal("batch never finished after the faults stopped")
	}

	ledgerAgreesWithSandbox(t, sb, db, rows)
	st := sb.Stats().Faults
	if st.Lost == 0 || st.Stall == 0 || st.Fault5xx == 0 || st.Throttle == 0 || st.UnknownCode == 0 {
		t.Errorf("not every fault fired: %+v", st)
	}
	t.Logf("%d kills; faults %+v", kills, st)
}

// ledgerAgreesWithSandbox checks a settled batch against the provider:
// every row final, no referenceid charged or processed twice, success in
// the ledger exactly where the sandbox holds the money, and the totals
// equal to the paisa.
func ledgerAgreesWithSandbox(t *testing.T, sb *aoptest.TestServer, db string, rows []sampleRow) {
	t.Helper()
	_, byRef, all := ledgerRows(t, db)
	if len(all) != len(rows) {
		t.Fatalf("ledger has %d rows, want %d (a row was lost)", len(all), len(rows))
	}
	var ledgerSuccess int64
	for _, r := range rows {
		lr := byRef[r.ref]
		if !lr.State.Final() {
			t.Errorf("ref %s is %s, want a final state", r.ref, lr.State)
		}
		if n := sb.Charged(r.ref); n > 1 {
			t.Errorf("ref %s charged %d times", r.ref, n)
		}
		if n := sb.NonDuplicateAnswers(r.ref); n > 1 {
			t.Errorf("ref %s was processed %d times (answers other than 18): sent twice", r.ref, n)
		}
		// The sandbox de-duplicates, so a blind resend costs nothing there
		// and shows only here: a real provider may not be so forgiving.
		if n := sb.Resent(r.ref); n > 0 {
			t.Errorf("ref %s was sent %d more time(s) after the provider had recorded it (answered 18): a resend without an enquiry", r.ref, n)
		}
		txn, recorded := sb.Txn(r.ref)
		charged := recorded && txn.Status == "1" && !txn.Refunded
		switch {
		case lr.State == ledger.StateSuccess && !charged:
			t.Errorf("ref %s: ledger success, sandbox not charged (%+v)", r.ref, txn)
		case lr.State != ledger.StateSuccess && charged:
			t.Errorf("ref %s: ledger %s, sandbox charged", r.ref, lr.State)
		case lr.State == ledger.StateRefunded && !(recorded && txn.Refunded):
			t.Errorf("ref %s: ledger refunded, sandbox %+v", r.ref, txn)
		}
		if lr.State == ledger.StateSuccess {
			ledgerSuccess += lr.AmountPaise
		}
	}
	if _, sandboxCharged := sb.Totals(); sandboxCharged != ledgerSuccess {
		t.Errorf("ledger success total %d paise, sandbox charged %d paise", ledgerSuccess, sandboxCharged)
	}
}

// sendAhead charges ref at the sandbox (for canumber CA000001) behind
// aopbatch's back, as an earlier send whose answer was lost, or another
// system reusing the referenceid, would.
func sendAhead(t *testing.T, sb *aoptest.TestServer, ref, rupees string) {
	t.Helper()
	body := `{"operator":311,"canumber":"CA000001","amount":` + rupees + `,"referenceid":"` + ref +
		`","latitude":"1","longitude":"1","RegistrationID":"AOP-554"}`
	resp, err := http.Post(sb.URL+"/api/AOP/Recharge", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if sb.Charged(ref) != 1 {
		t.Fatal("setup: the early send was not recorded")
	}
}

// TestDuplicateResolvesToSuccess: the provider already has the referenceid
// (sent earlier, answer lost, ledger none the wiser), answers 18, and the
// status enquiry settles it as success — never counted before that.
func TestDuplicateResolvesToSuccess(t *testing.T) {
	sb := sandbox(t, nil)
	db, csvPath := batchFiles(t)
	rows := goodRows(3, "D")
	writeCSV(t, csvPath, rows)
	sendAhead(t, sb, rows[1].ref, "11.01")

	p := aopbatch(t, nil, runArgs(csvPath, db, sb.URL)...)
	if p.code != 0 {
		t.Fatalf("exit %d, want 0\n%s", p.code, p.stderr)
	}
	_, byRef, _ := ledgerRows(t, db)
	got := byRef[rows[1].ref]
	if got.State != ledger.StateSuccess || got.ResponseCode != 18 || !strings.Contains(got.Message, "status enquiry") {
		t.Errorf("row: state %s code %d message %q; want success settled by enquiry after code 18", got.State, got.ResponseCode, got.Message)
	}
	if n := sb.Charged(rows[1].ref); n != 1 {
		t.Errorf("charged %d times, want 1", n)
	}
}

func TestPendingResolvesToFinal(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*aoptest.Config)
		want   ledger.State
		code   int
	}{
		{"success", func(c *aoptest.Config) { c.PendingRate = 1; c.PendingDelay = 300 * time.Millisecond }, ledger.StateSuccess, 0},
		{"failed", func(c *aoptest.Config) {
			c.PendingRate = 1
			c.PendingDelay = 300 * time.Millisecond
			c.PendingFailRate = 1
		}, ledger.StateFailed, 2},
		{"refunded", func(c *aoptest.Config) {
			c.PendingRate = 1
			c.PendingDelay = 200 * time.Millisecond
			c.RefundRate = 1
			c.RefundDelay = 200 * time.Millisecond
		}, ledger.StateRefunded, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sb := sandbox(t, tc.mutate)
			dir := t.TempDir()
			db, csvPath := filepath.Join(dir, "l.db"), filepath.Join(dir, "in.csv")
			rows := goodRows(20, "P")
			writeCSV(t, csvPath, rows)
			p := aopbatch(t, nil, runArgs(csvPath, db, sb.URL)...)
			if p.code != tc.code {
				t.Fatalf("exit %d, want %d\n%s", p.code, tc.code, p.stderr)
			}
			_, byRef, _ := ledgerRows(t, db)
			for _, r := range rows {
				if got := byRef[r.ref]; got.State != tc.want || got.ResponseCode != 0 {
					t.Errorf("ref %s: %s (code %d), want %s after code 0", r.ref, got.State, got.ResponseCode, tc.want)
				}
			}
		})
	}
}

// TestWalletExhaustionStopsAndTopUpFinishes: code 16 stops the run at once
// with the remaining rows queued (not failed); after a top-up the rerun
// sends exactly those.
func TestWalletExhaustionStopsAndTopUpFinishes(t *testing.T) {
	sb := sandbox(t, func(c *aoptest.Config) { c.WalletPaise = 100_000 })
	db, csvPath := batchFiles(t)
	rows := goodRows(60, "W")
	writeCSV(t, csvPath, rows)
	p := aopbatch(t, nil, runArgs(csvPath, db, sb.URL, "--workers", "2")...)
	if p.code != 3 {
		t.Fatalf("exit %d, want 3\n%s", p.code, p.stderr)
	}
	if !strings.Contains(p.stderr, "top up the wallet") {
		t.Errorf("stderr does not say what to fix:\n%s", p.stderr)
	}
	_, _, all := ledgerRows(t, db)
	c := countStates(all)
	if c[ledger.StateFailed] != 0 || c[ledger.StateQueued] == 0 || c[ledger.StateSuccess] == 0 {
		t.Fatalf("states after exhaustion %v: want some success, the rest queued, none failed", c)
	}
	if got := sb.Stats().ByCode[16]; got > 2 {
		t.Errorf("%d requests answered 16: the run did not stop at once", got)
	}
	sb.TopUp(10_000_000)
	p = aopbatch(t, nil, runArgs(csvPath, db, sb.URL)...)
	if p.code != 0 {
		t.Fatalf("after top-up: exit %d, want 0\n%s", p.code, p.stderr)
	}
	wantOnce(t, rows, "charged", sb.Charged)
}

// TestAuthStormStopsWithoutFailingRows: every request refused 401, the run
// refreshes once, then stops with rows queued, not failed, and says which
// credential to check.
func TestAuthStormStopsWithoutFailingRows(t *testing.T) {
	sb := sandbox(t, func(c *aoptest.Config) { c.Auth = aoptest.AuthBearer; c.Tokens = []string{"right-token"} })
	db, csvPath := batchFiles(t)
	writeCSV(t, csvPath, goodRows(40, "U"))
	p := aopbatch(t, []string{"AOP_TOKEN=wrong-token"}, runArgs(csvPath, db, sb.URL, "--auth", "bearer", "--workers", "4")...)
	if p.code != 3 {
		t.Fatalf("exit %d, want 3\n%s", p.code, p.stderr)
	}
	if !strings.Contains(p.stderr, "AOP_TOKEN") {
		t.Errorf("stderr does not name the credential:\n%s", p.stderr)
	}
	if strings.Contains(p.stderr+p.stdout, "wrong-token") {
		t.Errorf("the token leaked into the output")
	}
	_, _, all := ledgerRows(t, db)
	c := countStates(all)
	if c[ledger.StateFailed] != 0 || c[ledger.StateQueued] != 40 {
		t.Errorf("states %v: want all 40 queued, none failed", c)
	}
	if n := sb.Stats().AuthFailures; n > 16 {
		t.Errorf("%d auth failures: the run kept hammering", n)
	}
}

// TestSIGTERMExitsThreeAndResumes: SIGTERM stops taking rows, records those
// in flight, exits 3; the rerun finishes with nothing sent twice.
func TestSIGTERMExitsThreeAndResumes(t *testing.T) {
	sb := sandbox(t, func(c *aoptest.Config) { c.Latency = 30 * time.Millisecond })
	db, csvPath := batchFiles(t)
	rows := goodRows(400, "S")
	writeCSV(t, csvPath, rows)
	cmd, errb := startRun(t, runArgs(csvPath, db, sb.URL, "--rate", "200"))
	waitRecharges(t, sb, 50)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	err := cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 3 {
		t.Fatalf("exit %d (%v), want 3\n%s", code, err, errb.String())
	}
	_, _, all := ledgerRows(t, db)
	c := countStates(all)
	if c[ledger.StateInflight] != 0 || c[ledger.StateUnknown] != 0 {
		t.Errorf("after SIGTERM %v: rows in flight were not recorded", c)
	}
	if c[ledger.StateQueued] == 0 {
		t.Errorf("after SIGTERM %v: want rows left queued", c)
	}
	// The last word says what is left, not only "run again".
	if want := fmt.Sprintf("interrupted: run the same command again to resume (%d not sent yet", c[ledger.StateQueued]); !strings.Contains(errb.String(), want) {
		t.Errorf("after SIGTERM: want %q\n%s", want, errb.String())
	}
	p := aopbatch(t, nil, runArgs(csvPath, db, sb.URL)...)
	if p.code != 0 {
		t.Fatalf("rerun exit %d\n%s", p.code, p.stderr)
	}
	wantOnce(t, rows, "sent", sb.Requests)
}

// TestSecondRunOnSameBatchRefuses: while one run holds the batch, a second
// exits 1 without sending anything.
func TestSecondRunOnSameBatchRefuses(t *testing.T) {
	sb := sandbox(t, func(c *aoptest.Config) { c.Latency = 50 * time.Millisecond })
	db, csvPath := batchFiles(t)
	writeCSV(t, csvPath, goodRows(200, "L"))
	first := aopbatchCmd(context.Background(), nil, runArgs(csvPath, db, sb.URL, "--rate", "50")...)
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = first.Process.Kill(); _ = first.Wait() }()
	waitRecharges(t, sb, 5)
	before := sb.Stats().Recharges
	p := aopbatch(t, nil, runArgs(csvPath, db, sb.URL)...)
	if p.code != 1 {
		t.Fatalf("second run exit %d, want 1\n%s", p.code, p.stderr)
	}
	if !strings.Contains(p.stderr, "another process") {
		t.Errorf("stderr does not explain the refusal:\n%s", p.stderr)
	}
	// The first run keeps sending at 50/s; the second must add nothing
	// beyond that pace.
	if got := sb.Stats().Recharges - before; got > 40 {
		t.Errorf("%d requests during the second run's attempt: did it send?", got)
	}
}

// TestDuplicateOfAnotherPaymentIsNotSuccess: the provider already holds the
// referenceid, but for a different amount (the id was reused elsewhere).
// Its success is not ours, and this row's request was refused (18): the
// row was not paid, and ends failed with the way out in its message.
func TestDuplicateOfAnotherPaymentIsNotSuccess(t *testing.T) {
	sb := sandbox(t, nil)
	db, csvPath := batchFiles(t)
	rows := goodRows(2, "O")
	writeCSV(t, csvPath, rows)
	sendAhead(t, sb, rows[1].ref, "999")

	p := aopbatch(t, nil, runArgs(csvPath, db, sb.URL, "--resolve-timeout", "1s")...)
	if p.code != 2 {
		t.Fatalf("exit %d, want 2 (finished, a row not paid)\n%s", p.code, p.stderr)
	}
	_, byRef, _ := ledgerRows(t, db)
	got := byRef[rows[1].ref]
	if got.State != ledger.StateFailed || !strings.Contains(got.Message, "another payment") || !strings.Contains(got.Message, "not paid") {
		t.Errorf("row: %s %q; want failed, flagged as another payment, not paid", got.State, got.Message)
	}
	if got.ProviderTxnID != "" {
		t.Errorf("row carries the other payment's txnid %q", got.ProviderTxnID)
	}
	if tx, _ := sb.Txn(rows[1].ref); tx.AmountPaise != 99900 || sb.Charged(rows[1].ref) != 1 {
		t.Errorf("provider's record %+v: want the other payment, Rs 999, charged once", tx)
	}
	if got := byRef[rows[0].ref].State; got != ledger.StateSuccess {
		t.Errorf("the other row: %s, want success", got)
	}
}

// TestBreakerStopsABrokenProvider: every answer is a 5xx (an unknown
// outcome); the breaker stops the run instead of burning the file, and
// leaves the untouched rows queued.
func TestBreakerStopsABrokenProvider(t *testing.T) {
	sb := sandbox(t, func(c *aoptest.Config) { c.Fault5xxRate = 1 })
	db, csvPath := batchFiles(t)
	writeCSV(t, csvPath, goodRows(400, "B"))
	p := aopbatch(t, nil, runArgs(csvPath, db, sb.URL, "--workers", "4", "--resolve-timeout", "1s")...)
	if p.code != 3 || !strings.Contains(p.stderr, "most of the last") {
		t.Fatalf("exit %d, want 3 with the breaker named\n%s", p.code, p.stderr)
	}
	_, _, all := ledgerRows(t, db)
	c := countStates(all)
	if c[ledger.StateQueued] < 300 {
		t.Errorf("states %v: want most rows left queued", c)
	}
	if n := sb.Stats().Recharges; n > 80 {
		t.Errorf("%d requests before stopping, want about the breaker's window", n)
	}
}

// TestMaxUnknownAmountStops: responses are lost after recording; once the
// money in unknown rows passes --max-unknown-amount the run stops, and
// resolution still settles what was sent.
func TestMaxUnknownAmountStops(t *testing.T) {
	sb := sandbox(t, func(c *aoptest.Config) { c.LostRate = 1 })
	db, csvPath := batchFiles(t)
	writeCSV(t, csvPath, goodRows(100, "M"))
	p := aopbatch(t, nil, runArgs(csvPath, db, sb.URL, "--workers", "1", "--max-unknown-amount", "50", "--resolve-timeout", "2s")...)
	if p.code != 3 || !strings.Contains(p.stderr, "max-unknown-amount") {
		t.Fatalf("exit %d, want 3 naming --max-unknown-amount\n%s", p.code, p.stderr)
	}
	_, _, all := ledgerRows(t, db)
	c := countStates(all)
	if c[ledger.StateQueued] < 90 {
		t.Errorf("states %v: want the rest queued", c)
	}
	// The sent rows reached the provider (answers lost on the way back):
	// asked about before the run exits, none is left unknown, and none was
	// sent twice.
	if c[ledger.StateUnknown] != 0 || c[ledger.StateSuccess] == 0 {
		t.Errorf("states %v: want the rows sent before the stop asked about and success, none unknown", c)
	}
	if st := sb.Stats(); st.Recharges != int64(c[ledger.StateSuccess]) || st.Resent != 0 {
		t.Errorf("%d Recharge requests (%d resent) for %d rows sent: want one each", st.Recharges, st.Resent, c[ledger.StateSuccess])
	}
	sb.SetFaults(aoptest.Faults{})
	if p := aopbatch(t, nil, runArgs(csvPath, db, sb.URL)...); p.code != 0 {
		t.Fatalf("rerun exit %d\n%s", p.code, p.stderr)
	}
}

// TestOperatorDownHoldsItsRowsOnly: after a few code-13 answers in a row,
// that operator's rows are held and the others carry on; a rerun after the
// operator is back sends the held rows.
func TestOperatorDownHoldsItsRowsOnly(t *testing.T) {
	sb := sandbox(t, func(c *aoptest.Config) { c.DownOperators = []int64{12} })
	db, csvPath := batchFiles(t)
	rows := goodRows(300, "H") // operators 311, 12, 27 in turn
	writeCSV(t, csvPath, rows)
	p := aopbatch(t, nil, runArgs(csvPath, db, sb.URL, "--workers", "2")...)
	if p.code != 3 {
		t.Fatalf("exit %d, want 3 (held rows remain)\n%s", p.code, p.stderr)
	}
	held, failed := downOperatorRows(t, db, rows, "12")
	if failed < 3 || failed > 6 || held+failed != 100 {
		t.Errorf("operator 12: %d failed, %d held; want 3-6 failed (then held) and the rest held", failed, held)
	}
	sb.SetOperatorDown(12, false)
	if p := aopbatch(t, nil, runArgs(csvPath, db, sb.URL)...); p.code != 2 {
		t.Fatalf("rerun exit %d, want 2 (the few failed rows stay failed)\n%s", p.code, p.stderr)
	}
	_, byRef, _ := ledgerRows(t, db)
	for _, r := range rows {
		if byRef[r.ref].State == ledger.StateHeld {
			t.Errorf("ref %s still held after the operator came back", r.ref)
		}
	}
}

// TestOperatorDownHoldsRowsWaitingForTheRate: at a low rate every worker
// holds a row waiting for its token; once the operator is held, those of
// its rows are held too, not sent when their token comes. Counted at the
// provider: it sees the few answers that decided the hold and the rows
// already on their way, not the rows that were waiting (32 workers: about
// ten of them are the operator's).
func TestOperatorDownHoldsRowsWaitingForTheRate(t *testing.T) {
	sb := sandbox(t, func(c *aoptest.Config) { c.DownOperators = []int64{12} })
	db, csvPath := batchFiles(t)
	rows := goodRows(150, "W") // operators 311, 12, 27 in turn
	writeCSV(t, csvPath, rows)
	p := aopbatch(t, nil, runArgs(csvPath, db, sb.URL, "--rate", "50", "--burst", "1", "--workers", "32", "--hold-after", "3")...)
	if p.code != 3 {
		t.Fatalf("exit %d, want 3 (held rows remain)\n%s", p.code, p.stderr)
	}
	held, failed := downOperatorRows(t, db, rows, "12")
	// 3 answers decide the hold; its rows go 60 ms apart at 50/s, so one
	// or two more may be out by then on a loaded machine (without the
	// check after the wait, about 13 fail).
	if failed < 3 || failed > 6 || held+failed != 50 {
		t.Errorf("operator 12: %d failed, %d held; want 3-6 failed and the rest held", failed, held)
	}
	if n := sb.Stats().Recharges; n != int64(100+failed) {
		t.Errorf("the provider saw %d recharges, want %d: the other operators' 100 and the %d that failed", n, 100+failed, failed)
	}
}

// downOperatorRows counts the rows of operator down held and failed in
// the ledger at db, failing the test for any row of another operator that
// did not succeed.
func downOperatorRows(t *testing.T, db string, rows []sampleRow, down string) (held, failed int) {
	t.Helper()
	_, byRef, _ := ledgerRows(t, db)
	for _, r := range rows {
		switch got := byRef[r.ref].State; {
		case r.operator != down && got != ledger.StateSuccess:
			t.Errorf("ref %s (operator %s): %s, want success", r.ref, r.operator, got)
		case r.operator == down && got == ledger.StateHeld:
			held++
		case r.operator == down && got == ledger.StateFailed:
			failed++
		}
	}
	return held, failed
}

// TestResolveTheMorningAfter: rows still pending when run gives up are
// settled later by aopbatch resolve, which sends nothing new.
func TestResolveTheMorningAfter(t *testing.T) {
	sb := sandbox(t, func(c *aoptest.Config) { c.PendingRate = 1; c.PendingDelay = 1500 * time.Millisecond })
	db, csvPath := batchFiles(t)
	rows := goodRows(10, "Z")
	writeCSV(t, csvPath, rows)
	p := aopbatch(t, nil, runArgs(csvPath, db, sb.URL, "--resolve-timeout", "200ms")...)
	if p.code != 3 {
		t.Fatalf("run exit %d, want 3 (rows pending)\n%s", p.code, p.stderr)
	}
	if got := countStates(func() []ledger.Row { _, _, all := ledgerRows(t, db); return all }())[ledger.StatePending]; got != 10 {
		t.Fatalf("pending rows after run = %d, want 10", got)
	}
	time.Sleep(1600 * time.Millisecond)
	sent := sb.Stats().Recharges
	p = aopbatch(t, nil, "resolve", "--ledger", db, "--base-url", sb.URL, "--registration-id", "AOP-554", "--progress", "never")
	if p.code != 0 {
		t.Fatalf("resolve exit %d, want 0\n%s", p.code, p.stderr)
	}
	if n := sb.Stats().Recharges - sent; n != 0 {
		t.Errorf("resolve sent %d recharges, want 0", n)
	}
	_, byRef, _ := ledgerRows(t, db)
	for _, r := range rows {
		if got := byRef[r.ref].State; got != ledger.StateSuccess {
			t.Errorf("ref %s: %s, want success", r.ref, got)
		}
	}
}

// TestThrottledRequestsAreRetriedNotFailed: 429s are never an outcome; the
// rows they hit are sent again after Retry-After and all succeed once.
func TestThrottledRequestsAreRetriedNotFailed(t *testing.T) {
	sb := sandbox(t, func(c *aoptest.Config) { c.ThrottleRate = 0.1; c.RetryAfter = time.Second })
	db, csvPath := batchFiles(t)
	rows := goodRows(20, "T")
	writeCSV(t, csvPath, rows)
	p := aopbatch(t, nil, runArgs(csvPath, db, sb.URL, "--workers", "8", "--max-attempts", "5")...)
	if p.code != 0 {
		t.Fatalf("exit %d, want 0\n%s", p.code, p.stderr)
	}
	if n := sb.Stats().ByHTTPStatus[429]; n == 0 {
		t.Fatal("the sandbox answered no 429: the test did not test")
	}
	wantOnce(t, rows, "charged", sb.Charged)
}

// TestPausedRunTakenOverStaysOut: a run paused (SIGSTOP) past its lease
// while requests were in flight, and taken over by a rerun, writes nothing
// and sends nothing once it resumes; it exits 3 saying why. The rerun
// settles every row, and the ledger agrees with the provider: nothing
// charged twice, no charged row recorded as never sent.
//
// The paused run's --log-format json summary and --metrics-file say it was
// taken over: they showed its mid-run counts as if nothing else were
// running the batch, and a monitor took them for the batch's state.
func TestPausedRunTakenOverStaysOut(t *testing.T) {
	sb := sandbox(t, func(c *aoptest.Config) { c.Latency = 400 * time.Millisecond })
	db, csvPath := batchFiles(t)
	rows := goodRows(12, "P")
	writeCSV(t, csvPath, rows)
	metrics := filepath.Join(t.TempDir(), "a.prom")
	args := func(workers string, extra ...string) []string {
		return runArgs(csvPath, db, sb.URL, append([]string{"--workers", workers, "--lease-ttl", "1s", "--timeout", "20s", "--resolve-timeout", "20s"}, extra...)...)
	}
	a, aerr := startRunOut(t, args("2", "--log-format", "json", "--metrics-file", metrics), true)
	waitRecharges(t, sb, 2)
	_ = a.Process.Signal(syscall.SIGSTOP)
	time.Sleep(1500 * time.Millisecond) // past A's lease

	b, berr := startRun(t, args("8"))
	// Resume A while B is settling the rows A left in flight.
	for before := sb.Stats().Enquiries; sb.Stats().Enquiries == before; {
		time.Sleep(5 * time.Millisecond)
	}
	_ = a.Process.Signal(syscall.SIGCONT)
	aErr := a.Wait()
	if code := a.ProcessState.ExitCode(); code != 3 || !strings.Contains(aerr.String(), "lease") {
		t.Errorf("paused run: exit %d (%v), want 3 naming the lease\n%s", code, aErr, aerr.String())
	}
	var sum struct {
		ExitCode  int            `json:"exit_code"`
		Counts    map[string]int `json:"counts"`
		TakenOver *bool          `json:"taken_over"`
	}
	for line := range strings.Lines(aerr.String()) {
		if strings.Contains(line, `"msg":"run summary"`) {
			if err := json.Unmarshal([]byte(line), &sum); err != nil {
				t.Fatalf("summary %s: %v", line, err)
			}
		}
	}
	if sum.ExitCode != 3 || sum.Counts == nil || sum.TakenOver == nil || !*sum.TakenOver {
		t.Errorf("paused run's JSON summary: exit_code %d, counts %v, taken_over %v; want 3, counts, true\n%s",
			sum.ExitCode, sum.Counts, sum.TakenOver, aerr.String())
	}
	if prom, err := os.ReadFile(metrics); err != nil || !regexp.MustCompile(`(?m)^aopbatch_run_taken_over\{[^}]*\} 1$`).Match(prom) {
		t.Errorf("paused run's metrics do not say the batch was taken over (%v):\n%s", err, prom)
	}
	bErr := b.Wait()
	if code := b.ProcessState.ExitCode(); code != 0 {
		t.Errorf("rerun: exit %d (%v), want 0\n%s", code, bErr, berr.String())
	}
	// A had two requests out when it was paused, and dispatched the rest.
	// B found those two charged and sent each of the others once: had A
	// sent anything after resuming, some referenceid would show twice.
	wantOnce(t, rows, "sent", sb.Requests)
	ledgerAgreesWithSandbox(t, sb, db, rows)
}

// TestLedgerStallDoesNotStopARun: a run whose ledger is locked by another
// process for longer than its lease (a backup, a stalled disk) renews the
// lease once it can write again and carries on: no one took the batch
// over, so there is no reason to stop.
func TestLedgerStallDoesNotStopARun(t *testing.T) {
	sb := sandbox(t, func(c *aoptest.Config) { c.Latency = 5 * time.Millisecond })
	db, csvPath := batchFiles(t)
	rows := goodRows(300, "T")
	writeCSV(t, csvPath, rows)
	cmd, errb := startRun(t, runArgs(csvPath, db, sb.URL, "--rate", "100", "--lease-ttl", "1s"))
	waitRecharges(t, sb, 20)
	// Hold the write lock for 2.5 s: more than two leases, less than the
	// ledger's 5 s busy wait.
	lock, err := sql.Open("sqlite", "file:"+db+"?_pragma=busy_timeout(5000)&_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	tx, err := lock.Begin()
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2500 * time.Millisecond)
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit %d (%v), want 0: a stall is not a takeover\n%s", code, err, errb.String())
	}
	wantOnce(t, rows, "sent", sb.Requests)
}

// startRun starts aopbatch with args, keeping its stderr; the test's end
// kills it if it is still running.
func startRun(t *testing.T, args []string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	return startRunOut(t, args, false)
}

// startRunOut is startRun, with the run's standard output in the buffer
// too when withStdout.
func startRunOut(t *testing.T, args []string, withStdout bool) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	// No run of a test takes minutes: one that does is stuck, and says where.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	cmd := aopbatchCmd(ctx, nil, args...)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if withStdout {
		cmd.Stdout = &errb // one writer: exec writes to it from one goroutine at a time
	}
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); cancel() })
	return cmd, &errb
}

// waitRecharges waits until the sandbox has seen n Recharge requests.
// firstRequest is closed once the sandbox sees a request after now, or
// when done is; it gives up after 10 s.
func firstRequest(sb *aoptest.TestServer, done <-chan struct{}) <-chan struct{} {
	seen := make(chan struct{})
	base := sb.Stats().Requests
	go func() {
		defer close(seen)
		for end := time.Now().Add(10 * time.Second); sb.Stats().Requests == base && time.Now().Before(end); {
			select {
			case <-done:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	return seen
}

func waitRecharges(t *testing.T, sb *aoptest.TestServer, n int64) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); sb.Stats().Recharges < n; {
		if time.Now().After(deadline) {
			t.Fatalf("the sandbox saw %d Recharges in a minute, want %d", sb.Stats().Recharges, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestInterruptWhileRecordingExits3: SIGINT while the ledger is opened
// or the file recorded is an interrupt (exit 3, SPEC 4), not "nothing
// could start" (1, a setup to fix), says so in words rather than
// "context canceled", and sends nothing.
func TestInterruptWhileRecordingExits3(t *testing.T) {
	sb := sandbox(t, nil)
	dir := t.TempDir()
	csvPath := filepath.Join(dir, "in.csv")
	writeCSV(t, csvPath, goodRows(200000, "IR"))
	for i, after := range []time.Duration{0, 300 * time.Millisecond} {
		db := filepath.Join(dir, fmt.Sprintf("l%d.db", i))
		cmd, errb := startRun(t, runArgs(csvPath, db, sb.URL))
		deadline := time.Now().Add(time.Minute)
		for {
			if _, err := os.Stat(db); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("no ledger after a minute")
			}
			time.Sleep(time.Millisecond)
		}
		time.Sleep(after)
		_ = cmd.Process.Signal(syscall.SIGINT)
		_ = cmd.Wait()
		if code := cmd.ProcessState.ExitCode(); code != 3 {
			t.Errorf("signal %s after the ledger appeared: exit %d, want 3 (interrupted)\n%s", after, code, errb.String())
		}
		if strings.Contains(errb.String(), "context canceled") {
			t.Errorf("signal %s after the ledger appeared: the message says context canceled\n%s", after, errb.String())
		}
		if !strings.Contains(errb.String(), "interrupted before this run recorded the file") {
			t.Logf("signal %s after the ledger appeared: the file was recorded before it came:\n%s", after, errb.String())
			continue
		}
		if n := sb.Stats().Recharges; n != 0 {
			t.Errorf("%d recharges sent while recording, want none", n)
		}
	}
}

// TestLedgerRemovedMidRunIsNotSuccess: the ledger's directory removed
// while the run sends. SQLite goes on writing into the unlinked file, so
// the run finished "every row success" and exited 0 with its record
// gone; it must not exit 0, and must say the ledger is lost.
func TestLedgerRemovedMidRunIsNotSuccess(t *testing.T) {
	sb := sandbox(t, nil)
	dir := filepath.Join(t.TempDir(), "ledgers")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	db, csvPath := filepath.Join(dir, "l.db"), filepath.Join(t.TempDir(), "in.csv")
	rows := goodRows(60, "GONE")
	writeCSV(t, csvPath, rows)
	cmd, errb := startRun(t, runArgs(csvPath, db, sb.URL, "--rate", "30"))
	waitRecharges(t, sb, 5)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 3 || !strings.Contains(errb.String(), "was removed or replaced") {
		t.Fatalf("exit %d, want 3 saying the ledger was removed\n%s", code, errb.String())
	}
}

// TestLedgerRemovedMidResolveIsNotSuccess: as for run, the ledger's
// directory removed while resolve settles rows. SQLite goes on writing
// into the unlinked file, so resolve reported every row settled and
// exited 0 while what it recorded (outcomes, rows sent again) was gone.
func TestLedgerRemovedMidResolveIsNotSuccess(t *testing.T) {
	sb := sandbox(t, func(c *aoptest.Config) { c.PendingRate, c.PendingDelay = 1, 2*time.Second })
	dir := filepath.Join(t.TempDir(), "ledgers")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	db, csvPath := filepath.Join(dir, "l.db"), filepath.Join(t.TempDir(), "in.csv")
	writeCSV(t, csvPath, goodRows(40, "GONER"))
	if p := aopbatch(t, nil, runArgs(csvPath, db, sb.URL, "--resolve-timeout", "10ms")...); p.code != 3 {
		t.Fatalf("run: exit %d, want 3 (rows pending)\n%s", p.code, p.stderr)
	}
	time.Sleep(2500 * time.Millisecond) // the pendings turn final
	removedWhileAsking(t, sb.Server, dir, []string{"resolve", "--ledger", db, "--base-url", sb.URL, "--registration-id", "AOP-554",
		"--rate", "10", "--progress", "never"})
}

// removedWhileAsking starts args (a command that asks the provider about
// rows), removes the ledger's directory dir once it has made 5 status
// enquiries at sb, and wants exit 3 saying the ledger was removed.
func removedWhileAsking(t *testing.T, sb *aoptest.Server, dir string, args []string) {
	t.Helper()
	before := sb.Stats().Enquiries
	cmd, errb := startRun(t, args)
	for deadline := time.Now().Add(time.Minute); sb.Stats().Enquiries < before+5; {
		if time.Now().After(deadline) {
			t.Fatalf("%s made no enquiries", args[0])
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 3 || !strings.Contains(errb.String(), "was removed or replaced") {
		t.Fatalf("%s: exit %d, want 3 saying the ledger was removed\n%s", args[0], code, errb.String())
	}
}

// TestLedgerRemovedMidReconcileIsNotSuccess: reconcile records what the
// provider confirms; with its ledger's directory removed meanwhile, that
// record is gone, and it says so with exit 3 rather than "agree".
func TestLedgerRemovedMidReconcileIsNotSuccess(t *testing.T) {
	sb := newRecordingSandbox(t, nil)
	dir := filepath.Join(t.TempDir(), "ledgers")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	db, csvPath := filepath.Join(dir, "l.db"), filepath.Join(t.TempDir(), "in.csv")
	rows := goodRows(40, "RECGONE")
	writeCSV(t, csvPath, rows)
	if p := aopbatch(t, nil, runArgs(csvPath, db, sb.URL)...); p.code != 0 {
		t.Fatalf("run: exit %d\n%s", p.code, p.stderr)
	}
	for _, r := range rows { // reversed at the provider: each a disagreement to ask about
		if !sb.RefundNow(r.ref) {
			t.Fatalf("refund %s", r.ref)
		}
	}
	statement := filepath.Join(t.TempDir(), "statement.csv")
	fetchStatement(t, sb.URL, statement)
	removedWhileAsking(t, sb.Server, dir, []string{"reconcile", "--statement", statement, "--ledger", db, "--base-url", sb.URL,
		"--registration-id", "AOP-554", "--rate", "10", "--out", filepath.Join(t.TempDir(), "recon")})
}
