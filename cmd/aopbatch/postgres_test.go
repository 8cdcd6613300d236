package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aopbatch/aopbatch/batch/aop"
	"github.com/aopbatch/aopbatch/batch/aop/aoptest"
	"github.com/aopbatch/aopbatch/ledger"
	"github.com/aopbatch/aopbatch/ledger/postgres/pgtest"
)

// TestPostgresEndToEnd runs the whole job on a PostgreSQL ledger: run,
// status, report, export and resolve, with the password in the URL and
// then from PGPASSWORD. The password appears in no output, report file or
// ledger row.
func TestPostgresEndToEnd(t *testing.T) {
	srv := pgtest.Start(t)
	db := srv.NewDB(t)
	sb := sandbox(t, func(c *aoptest.Config) {
		c.PendingRate = 0.1
		c.PendingDelay = 200 * time.Millisecond
		c.FailRate = 0.05
	})
	dir := t.TempDir()
	csvPath, rep := filepath.Join(dir, "in.csv"), filepath.Join(dir, "rep")
	rows := goodRows(300, "P")
	writeCSV(t, csvPath, rows)

	var seen strings.Builder
	check := func(p proc, wantCodes ...int) {
		t.Helper()
		seen.WriteString(p.stdout + p.stderr)
		for _, c := range wantCodes {
			if p.code == c {
				return
			}
		}
		t.Fatalf("exit %d, want one of %v\n%s%s", p.code, wantCodes, p.stdout, p.stderr)
	}
	withPW := srv.URL(db)
	p := aopbatch(t, nil, runArgs(csvPath, withPW, sb.URL, "--report", rep)...)
	check(p, 0, 2)
	ledgerAgreesWithSandbox(t, sb, withPW, rows)
	const psWarning = "other users of this host can see"
	if !strings.Contains(p.stderr, psWarning) {
		t.Errorf("a password on the command line is not warned about:\n%s", p.stderr)
	}

	// The rest with the password from the environment, as the README says.
	env := []string{"PGPASSWORD=" + srv.Password()}
	noPW := srv.URLNoPassword(db)
	for _, args := range [][]string{
		{"status", "--ledger", noPW},
		{"status", "--ledger", noPW, "--batch", "latest"},
		{"report", "--ledger", noPW, "--batch", "latest", "--out", filepath.Join(dir, "rep2")},
		{"export", "--ledger", noPW, "--batch", "latest", "--state", "failed", "--out", filepath.Join(dir, "failed.csv")},
		{"resolve", "--ledger", noPW, "--batch", "latest", "--base-url", sb.URL, "--registration-id", "AOP-554", "--progress", "never"},
	} {
		p := aopbatch(t, env, args...)
		check(p, 0, 2)
		if strings.Contains(p.stderr, psWarning) {
			t.Errorf("%s: warns of a password on the command line, and there is none:\n%s", args[0], p.stderr)
		}
	}
	// A wrong password is one clear line, without the password.
	p = aopbatch(t, nil, "status", "--ledger", strings.Replace(withPW, srv.Password(), "not-"+srv.Password()+"-x", 1))
	if p.code != 1 || !strings.Contains(p.stderr, "password authentication failed") {
		t.Errorf("wrong password: exit %d, want 1 with a clear reason\n%s", p.code, p.stderr)
	}
	seen.WriteString(p.stdout + p.stderr)

	if strings.Contains(seen.String(), srv.Password()) {
		t.Error("the PostgreSQL password appears in aopbatch's output")
	}
	if !strings.Contains(seen.String(), "127.0.0.1") {
		t.Error("no output names the ledger's host: the check above saw nothing")
	}
	for _, d := range []string{rep, filepath.Join(dir, "rep2")} {
		filepath.WalkDir(d, func(path string, e os.DirEntry, err error) error {
			if err != nil || e.IsDir() {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(b), srv.Password()) {
				t.Errorf("%s holds the PostgreSQL password", path)
			}
			return nil
		})
	}
	l, err := openLedgerFile(context.Background(), withPW)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	b, err := l.Batch(context.Background(), "latest")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.EachRow(context.Background(), b.Seq, func(r *ledger.Row) error {
		if strings.Contains(r.Message+string(r.Request), srv.Password()) {
			t.Errorf("line %d holds the password", r.Line)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(l.Location(), srv.Password()) {
		t.Errorf("Location() = %q holds the password", l.Location())
	}
}

// TestLedgerCopyRoundTrip copies a SQLite ledger to PostgreSQL and back:
// the counts, the sums and report.json are the same in all three. An
// archived batch goes along as what is left of it: its referenceids stay
// held in each copy, so a file reusing one is a conflict there and nothing
// of it is sent (paid twice).
func TestLedgerCopyRoundTrip(t *testing.T) {
	srv := pgtest.Start(t)
	pg := srv.URL(srv.NewDB(t))
	sb := sandbox(t, func(c *aoptest.Config) {
		c.PendingRate = 0.2
		c.PendingDelay = time.Hour // some stay pending: not every row is final
		c.FailRate = 0.1
	})
	dir := t.TempDir()
	csvPath, src, back := filepath.Join(dir, "in.csv"), filepath.Join(dir, "src.db"), filepath.Join(dir, "back.db")
	// A finished batch, archived: its rows keep only states, amounts and
	// referenceids.
	paid := sandbox(t, nil)
	oldCSV := filepath.Join(dir, "old.csv")
	old := goodRows(20, "OLD")
	writeCSV(t, oldCSV, old)
	if p := aopbatch(t, nil, runArgs(oldCSV, src, paid.URL, "--batch", "old")...); p.code != 0 && p.code != 2 {
		t.Fatalf("run old: exit %d\n%s", p.code, p.stderr)
	}
	rows := goodRows(200, "R")
	rows[5].amount = "abc" // one rejected
	writeCSV(t, csvPath, rows)
	if p := aopbatch(t, nil, runArgs(csvPath, src, sb.URL, "--resolve-timeout", "1s")...); p.code != 3 {
		t.Fatalf("run: exit %d, want 3 (rows left pending)\n%s", p.code, p.stderr)
	}
	// The batch with rows pending is refused: exit 2.
	if p := aopbatch(t, nil, "ledger", "archive", "--ledger", src, "--before", "2999-01-01", "--out", filepath.Join(dir, "old.ledger.gz")); p.code != 2 ||
		!strings.Contains(p.stdout, "archived batch old") {
		t.Fatalf("archive: exit %d, want 2 with batch old archived\n%s%s", p.code, p.stdout, p.stderr)
	}
	for _, hop := range [][2]string{{src, pg}, {pg, back}} {
		p := aopbatch(t, nil, "ledger", "copy", "--from", hop[0], "--to", hop[1])
		if p.code != 0 || !strings.Contains(p.stdout, "counts and sums by state agree") {
			t.Fatalf("ledger copy %s: exit %d\n%s%s", hop[1], p.code, p.stdout, p.stderr)
		}
		if strings.Contains(p.stdout+p.stderr, srv.Password()) {
			t.Error("ledger copy printed the PostgreSQL password")
		}
	}
	want := reportJSON(t, src, "latest")
	if c, _ := want["counts"].(map[string]any); c == nil || c["pending"] == float64(0) || c["rejected"] != float64(1) {
		t.Fatalf("source report counts %v: want pending and one rejected row, or the copy tests little", want["counts"])
	}
	for _, loc := range []string{pg, back} {
		if got := reportJSON(t, loc, "latest"); !reflect.DeepEqual(got, want) {
			gj, _ := json.MarshalIndent(got, "", " ")
			wj, _ := json.MarshalIndent(want, "", " ")
			t.Errorf("report.json from the copy differs:\n%s\nwant\n%s", gj, wj)
		}
	}
	reuse := filepath.Join(dir, "reuse.csv")
	writeCSV(t, reuse, old[:1])
	for _, loc := range []string{pg, back} {
		before := paid.Stats().Recharges
		p := aopbatch(t, nil, runArgs(reuse, loc, paid.URL, "--batch", "reuse")...)
		if p.code != 2 || !strings.Contains(p.stderr, "already used by batch old") {
			t.Errorf("a file reusing an archived referenceid, in the copy: exit %d, want 2 with a conflict\n%s%s", p.code, p.stdout, p.stderr)
		}
		if c, _ := reportJSON(t, loc, "reuse")["counts"].(map[string]any); c["conflict"] != float64(1) || c["queued"] != float64(0) {
			t.Errorf("the reusing row in the copy: counts %v, want one conflict, none queued", c)
		}
		if n := paid.Stats().Recharges - before; n != 0 {
			t.Errorf("%d Recharges for an archived referenceid reused in the copy, want none", n)
		}
	}
	// Copying again leaves the batches the copy holds the same as they
	// are (a copy run again after one that stopped part way), and refuses
	// one that differs there: here a batch "reuse" of another file.
	other := filepath.Join(dir, "other.csv")
	writeCSV(t, other, old[1:2])
	if p := aopbatch(t, nil, runArgs(other, src, paid.URL, "--batch", "reuse")...); p.code != 2 {
		t.Fatalf("a batch reuse of another file in the source: exit %d, want 2 (a conflict)\n%s", p.code, p.stderr)
	}
	p := aopbatch(t, nil, "ledger", "copy", "--from", src, "--to", back)
	if p.code != 1 || !strings.Contains(p.stderr, "batch reuse is in "+back+" already, recorded from another file") ||
		strings.Count(p.stdout, "the same rows in the same states: left as it is") != 2 {
		t.Errorf("second copy: exit %d, want 1: the two batches there alike left as they are, batch reuse refused\n%s%s", p.code, p.stdout, p.stderr)
	}
}

// reportJSON is report.json of batch id in the ledger at loc, without
// what depends on when it was written (generated_at, ages).
func reportJSON(t *testing.T, loc, id string) map[string]any {
	t.Helper()
	out := filepath.Join(t.TempDir(), "rep")
	if p := aopbatch(t, nil, "report", "--ledger", loc, "--batch", id, "--format", "json", "--out", out); p.code != 0 {
		t.Fatalf("report %s from %s: exit %d\n%s", id, loc, p.code, p.stderr)
	}
	b, err := os.ReadFile(filepath.Join(out, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	delete(m, "generated_at")
	scrubAges(m)
	return m
}

// scrubAges removes the report's ages in seconds, which depend on when it
// was written, at any depth.
func scrubAges(v any) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if strings.HasSuffix(k, "unresolved_seconds") {
				delete(v, k)
				continue
			}
			scrubAges(x)
		}
	case []any:
		for _, x := range v {
			scrubAges(x)
		}
	}
}

// arrivals records when each Recharge reached a sandbox.
type arrivals struct {
	h  http.Handler
	mu sync.Mutex
	at []time.Time
}

func (a *arrivals) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == aop.PathRecharge {
		a.mu.Lock()
		a.at = append(a.at, time.Now())
		a.mu.Unlock()
	}
	a.h.ServeHTTP(w, r)
}

// rate is the arrivals per second from the first to the last.
func (a *arrivals) rate() float64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.at) < 2 {
		return 0
	}
	lo, hi := slices.MinFunc(a.at, time.Time.Compare), slices.MaxFunc(a.at, time.Time.Compare)
	return float64(len(a.at)-1) / hi.Sub(lo).Seconds()
}

// maxInWindow is the most arrivals in any window of length d.
func (a *arrivals) maxInWindow(d time.Duration) int {
	a.mu.Lock()
	ts := slices.Clone(a.at)
	a.mu.Unlock()
	slices.SortFunc(ts, func(x, y time.Time) int { return x.Compare(y) })
	best, lo := 0, 0
	for hi := range ts {
		for ts[hi].Sub(ts[lo]) >= d {
			lo++
		}
		best = max(best, hi-lo+1)
	}
	return best
}

// arrivalSandbox is a sandbox whose Recharge arrivals are recorded.
func arrivalSandbox(t *testing.T, mutate func(*aoptest.Config)) (*aoptest.TestServer, *arrivals) {
	t.Helper()
	cfg := aoptest.DefaultConfig()
	cfg.Seed = 1
	if mutate != nil {
		mutate(&cfg)
	}
	s := aoptest.New(cfg)
	rec := &arrivals{h: s}
	hs := httptest.NewServer(rec)
	t.Cleanup(func() { s.ReleaseStalls(); hs.Close() })
	return &aoptest.TestServer{Server: s, URL: hs.URL}, rec
}

// startRuns starts n aopbatch processes with the same arguments; each
// one's buffer has its log and its output.
func startRuns(t *testing.T, n int, args []string) ([]*exec.Cmd, []*bytes.Buffer) {
	t.Helper()
	cmds := make([]*exec.Cmd, n)
	errs := make([]*bytes.Buffer, n)
	for i := range n {
		cmds[i], errs[i] = startRunOut(t, args, true)
	}
	return cmds, errs
}

// hold stops a process for d.
func hold(t *testing.T, c *exec.Cmd, d time.Duration) {
	t.Helper()
	if err := c.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatalf("stop process %d: %v", c.Process.Pid, err)
	}
	time.Sleep(d)
	if err := c.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatalf("continue process %d: %v", c.Process.Pid, err)
	}
}

// TestPostgresThreeProcessesShareABatch: three processes run one batch on
// one PostgreSQL ledger against a provider answering in 100 ms. Each row
// is charged once by the sandbox's own record, never sent twice, and the
// three together keep to --rate at the sandbox (no second above rate +
// burst, with the 5% SPEC section 4 allows for clocks between hosts), even
// when one is held up for a while, as a loaded machine holds a process:
// its slots pass meanwhile, and sent late they crowded the next second
// (up to 172 at --rate 150).
func TestPostgresThreeProcessesShareABatch(t *testing.T) {
	srv := pgtest.Start(t)
	db := srv.URL(srv.NewDB(t))
	sb, rec := arrivalSandbox(t, func(c *aoptest.Config) { c.Latency = 100 * time.Millisecond })
	_, csvPath := batchFiles(t)
	rows := goodRows(1500, "M")
	writeCSV(t, csvPath, rows)
	const rate = 150
	args := withoutFixedWorkers(runArgs(csvPath, db, sb.URL, "--batch", "shared-1", "--rate", fmt.Sprint(rate)))
	cmds, errs := startRuns(t, 3, args)
	for i, at := range []int64{300, 800} {
		waitRecharges(t, sb, at)
		hold(t, cmds[i], 300*time.Millisecond)
	}
	for i, c := range cmds {
		if err := c.Wait(); c.ProcessState.ExitCode() != 0 {
			t.Errorf("process %d: exit %d (%v), want 0\n%s", i, c.ProcessState.ExitCode(), err, errs[i])
		}
	}
	ledgerAgreesWithSandbox(t, sb, db, rows)
	wantOnce(t, rows, "sent", sb.Requests)
	if got, limit := rec.maxInWindow(time.Second), (rate+1)*105/100; got > limit {
		t.Errorf("%d Recharges reached the sandbox in one second, want at most %d (rate %d + burst 1, +5%%)", got, limit, rate)
	}
	t.Logf("combined: %.1f Recharges/s at the sandbox, at most %d in a second", rec.rate(), rec.maxInWindow(time.Second))
	// All three took part: each names the batch it joined, and says its
	// rate is a share of the account's; one that joined says so, not that
	// it resumed.
	joined := 0
	for i := range errs {
		if strings.Contains(errs[i].String(), `msg="joining batch" batch=shared-1`) {
			joined++
		}
		if !strings.Contains(errs[i].String(), "shared-1") {
			t.Errorf("process %d never mentions the batch:\n%s", i, errs[i])
		}
		if !strings.Contains(errs[i].String(), "configured for the account, shared by every process on this ledger") {
			t.Errorf("process %d's summary does not say the rate is shared:\n%s", i, errs[i])
		}
	}
	if joined == 0 {
		t.Errorf("no process says it joined the batch the others were sending:\n%s\n%s\n%s", errs[0], errs[1], errs[2])
	}
}

// withoutFixedWorkers drops runArgs' --workers setting: the processes size
// their concurrency to the provider's latency.
func withoutFixedWorkers(args []string) []string {
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		if args[i] == "--workers" {
			i++
			continue
		}
		out = append(out, args[i])
	}
	return out
}

// TestPostgresKillOneOfThree: of three processes on one batch, one is
// killed mid-run. The other two finish the batch: the dead one's rows in
// flight are taken over once its lease runs out and checked with the
// provider before anything is sent again; nothing is charged twice.
func TestPostgresKillOneOfThree(t *testing.T) {
	srv := pgtest.Start(t)
	db := srv.URL(srv.NewDB(t))
	sb, _ := arrivalSandbox(t, func(c *aoptest.Config) { c.Latency = 100 * time.Millisecond })
	_, csvPath := batchFiles(t)
	rows := goodRows(1200, "D")
	writeCSV(t, csvPath, rows)
	args := withoutFixedWorkers(runArgs(csvPath, db, sb.URL, "--batch", "kill-1", "--rate", "200", "--lease-ttl", "2s"))
	cmds, errs := startRuns(t, 3, args)
	waitRecharges(t, sb, 300)
	_ = cmds[0].Process.Signal(syscall.SIGKILL)
	_ = cmds[0].Wait()
	enquiriesAtKill := sb.Stats().Enquiries
	for i, c := range cmds[1:] {
		if err := c.Wait(); c.ProcessState.ExitCode() != 0 {
			t.Errorf("survivor %d: exit %d (%v), want 0\n%s", i+1, c.ProcessState.ExitCode(), err, errs[i+1])
		}
	}
	ledgerAgreesWithSandbox(t, sb, db, rows)
	wantOnce(t, rows, "processed", sb.NonDuplicateAnswers)
	if n := sb.Stats().Enquiries - enquiriesAtKill; n == 0 {
		t.Error("no status enquiry after the kill: the dead process's rows in flight were not checked")
	}
	// The survivor that took over names the dead process, so the
	// operator knows which host's run to look into.
	dead := fmt.Sprintf(`from="pid %d on `, cmds[0].Process.Pid)
	took := false
	for _, e := range errs[1:] {
		for _, line := range strings.Split(e.String(), "\n") {
			took = took || strings.Contains(line, "stopped renewing its lease") && strings.Contains(line, dead)
		}
	}
	if !took {
		t.Errorf("no survivor says it took over rows of the dead process, naming it (%s):\n%s\n%s", dead, errs[1], errs[2])
	}
	// The ledger itself says which process made each request, the morning
	// after: the dead one's recharges, and a survivor's enquiries of what
	// it left in flight; none is of a process not known.
	host, _ := os.Hostname()
	procs := make([]ledger.Process, len(cmds))
	for i, c := range cmds {
		procs[i] = ledger.Process{Host: host, PID: c.Process.Pid}
	}
	made := attemptsByProcess(t, db)
	for p := range made {
		if !slices.Contains(procs, p) {
			t.Errorf("attempts by %q, not one of the three processes %q", p, procs)
		}
	}
	if made[procs[0]]["recharge"] == 0 {
		t.Errorf("no recharge of the killed process (%s) in the ledger: %v", procs[0], made)
	}
	if made[procs[1]]["status"]+made[procs[2]]["status"] == 0 {
		t.Errorf("no enquiry by a survivor in the ledger: %v", made)
	}
}

// attemptsByProcess counts the attempts of the latest batch in the ledger
// at location by the process that made them, and kind.
func attemptsByProcess(t *testing.T, location string) map[ledger.Process]map[string]int {
	t.Helper()
	ctx := context.Background()
	l, err := openLedgerFile(ctx, location)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	b, err := l.Batch(ctx, "latest")
	if err != nil {
		t.Fatal(err)
	}
	made := map[ledger.Process]map[string]int{}
	if err := l.EachAttempt(ctx, b.Seq, func(a *ledger.AttemptRow) error {
		if made[a.Process] == nil {
			made[a.Process] = map[string]int{}
		}
		made[a.Process][a.Kind]++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return made
}

// TestChaosSeveralProcessesPostgres: rounds of three processes on one
// batch under every fault, killed at random instants, then left to settle.
// No referenceid is charged twice or sent again after the provider
// recorded it, and every row ends final and agrees with the sandbox.
func TestChaosSeveralProcessesPostgres(t *testing.T) {
	srv := pgtest.Start(t)
	db := srv.URL(srv.NewDB(t))
	seed := chaosSeed(t, 11)
	sb := chaosSandbox(t, seed)
	_, csvPath := batchFiles(t)
	rows := goodRows(600, "X")
	writeCSV(t, csvPath, rows)
	args := runArgs(csvPath, db, sb.URL, "--batch", "chaos-1", "--timeout", "400ms", "--rate", "300",
		"--resolve-timeout", "3s", "--max-attempts", "3", "--lease-ttl", "1s")
	rng := rand.New(rand.NewPCG(uint64(seed), uint64(seed)))
	kills := 0
	for round := 0; round < 6; round++ {
		cmds, errs := startRuns(t, 3, args)
		done := make([]chan struct{}, len(cmds))
		for i, c := range cmds {
			done[i] = make(chan struct{})
			go func() { _ = c.Wait(); close(done[i]) }()
		}
		for i := range cmds {
			select {
			case <-done[i]:
			case <-time.After(time.Duration(100+rng.IntN(900)) * time.Millisecond):
				_ = cmds[i].Process.Signal(syscall.SIGKILL)
				<-done[i]
				kills++
			}
			if strings.Contains(errs[i].String(), "panic:") {
				t.Fatalf("a run crashed:\n%s", errs[i])
			}
		}
	}
	if kills < 8 {
		t.Fatalf("only %d runs were killed mid-way: the test did not test", kills)
	}
	// Faults off; two processes at a time until every row is final (the
	// killed ones' leases run out meanwhile).
	sb.SetFaults(aoptest.Faults{})
	final := false
	for i := 0; i < 6 && !final; i++ {
		cmds, errs := startRuns(t, 2, args)
		final = true
		for j, c := range cmds {
			_ = c.Wait()
			switch code := c.ProcessState.ExitCode(); code {
			case 0, 2:
			case 3:
				final = false
			default:
				t.Fatalf("settling run exit %d\n%s", code, errs[j])
			}
		}
		if !final {
			time.Sleep(1100 * time.Millisecond)
		}
	}
	if !final {
		t.Fatal("the batch never finished after the faults stopped")
	}
	ledgerAgreesWithSandbox(t, sb, db, rows)
	st := sb.Stats()
	if f := st.Faults; f.Lost == 0 || f.Fault5xx == 0 || f.Throttle == 0 || f.UnknownCode == 0 {
		t.Errorf("not every fault fired: %+v", f)
	}
	t.Logf("%d kills; %d Recharges, %d enquiries; faults %+v", kills, st.Recharges, st.Enquiries, st.Faults)
}
