package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"time"

	"github.com/aopbatch/aopbatch/batch/aop/aoptest"
	"github.com/aopbatch/aopbatch/ledger/postgres/pgtest"
)

// The PostgreSQL sections (issue 14): the loopback run on a PostgreSQL
// ledger beside SQLite's, three processes sharing one batch and one rate
// against a provider answering in 100 ms, and how three processes scale
// against a latency-bound provider.
const (
	secPostgres = "postgres" // the throughput run on a PostgreSQL ledger
	secShared   = "shared"   // 3 processes, one batch, 100 ms, --rate 300
	secScaling  = "scaling"  // 1 vs 3 processes, --rate 0, --workers 4, 50 ms
)

// Targets of issue 14.
const (
	targetSharedShare = 0.95 // of --rate, the three together
	targetScaling     = 2.5  // three processes over one
	sharedRate        = 300
	sharedLatency     = 100 * time.Millisecond
	scalingLatency    = 50 * time.Millisecond
	scalingWorkers    = 4
)

// postgres starts the bench's PostgreSQL, once.
func (b *bench) postgres() (*pgtest.Server, error) {
	if b.pg == nil && b.pgErr == nil {
		b.logf("postgres: starting a throwaway server")
		b.pg, b.pgErr = pgtest.Launch()
	}
	return b.pg, b.pgErr
}

// pgLedger returns the URL of a new, empty database.
func (b *bench) pgLedger(ctx context.Context) (string, error) {
	srv, err := b.postgres()
	if err != nil {
		return "", err
	}
	name, err := srv.CreateDB(ctx)
	if err != nil {
		return "", err
	}
	return srv.URLNoPassword(name), nil
}

// pgEnv is what an aopbatch process on the bench's PostgreSQL needs: the
// password, from the environment as the README says.
func (b *bench) pgEnv() []string { return []string{"PGPASSWORD=" + b.pg.Password()} }

// postgresRun is the throughput run of the engine section on a PostgreSQL
// ledger.
func (b *bench) postgresRun(ctx context.Context) error {
	db, err := b.pgLedger(ctx)
	if err != nil {
		return skipped(b, "PostgreSQL run", err)
	}
	n := b.cfg.rows(b.cfg.RowsRun)
	csvPath, _ := b.files("pgrun")
	if err := writeCSV(csvPath, "Pgrun-", n); err != nil {
		return err
	}
	sb, err := startSandbox(n)
	if err != nil {
		return err
	}
	defer sb.close()
	b.logf("postgres: aopbatch run, %d rows, --rate 0, PostgreSQL ledger", n)
	r, err := b.aopbatch(ctx, sb, csvPath, db, 0, b.pgEnv())
	if err != nil {
		return err
	}
	whole := float64(n) / r.wall.Seconds()
	b.add(fmt.Sprintf("aopbatch run, %d rows, PostgreSQL ledger, whole process (send phase)", n),
		fmt.Sprintf("%s rows/s (%s)", thousands(whole), thousands(r.sendRate())))
	if b.sqliteWhole > 0 {
		b.add("  PostgreSQL / SQLite, whole process", fmt.Sprintf("%.2f", whole/b.sqliteWhole))
	}
	return nil
}

// skipped notes a section that could not run for want of PostgreSQL.
func skipped(b *bench, what string, err error) error {
	if os.Getenv("CI") == "true" {
		return err
	}
	b.add(what, "skipped: "+err.Error())
	return nil
}

// proc is an aopbatch process the bench started.
type proc struct {
	cmd    *exec.Cmd
	stderr tailBuffer // its end, shown if it fails
}

// startProcs starts n aopbatch processes with args against sb.
func (b *bench) startProcs(ctx context.Context, n int, args []string) ([]*proc, error) {
	ps := make([]*proc, n)
	for i := range ps {
		p := &proc{cmd: exec.CommandContext(ctx, b.bin, args...), stderr: tailBuffer{max: maxStderrKept}}
		p.cmd.Env = append(os.Environ(), append([]string{"AOP_LATITUDE=28.61", "AOP_LONGITUDE=77.20"}, b.pgEnv()...)...)
		p.cmd.Stderr = &p.stderr
		p.cmd.Cancel = func() error { return p.cmd.Process.Signal(os.Interrupt) }
		p.cmd.WaitDelay = 30 * time.Second
		if err := p.cmd.Start(); err != nil {
			return nil, err
		}
		ps[i] = p
	}
	return ps, nil
}

// waitProcs waits for the processes; any exit but 0 is an error.
func waitProcs(ps []*proc) error {
	var errs []error
	for i, p := range ps {
		if err := p.cmd.Wait(); err != nil {
			errs = append(errs, fmt.Errorf("process %d: %w\n%s", i, err, p.stderr.String()))
		}
	}
	return errors.Join(errs...)
}

// sharedRun sends one batch from three processes on one PostgreSQL ledger
// at --rate 300 against a provider answering in 100 ms.
func (b *bench) sharedRun(ctx context.Context) error {
	db, err := b.pgLedger(ctx)
	if err != nil {
		return skipped(b, "three processes, one batch", err)
	}
	n := max(b.cfg.rows(30_000), 600)
	csvPath, _ := b.files("shared")
	if err := writeCSV(csvPath, "Shared-", n); err != nil {
		return err
	}
	cfg := aoptest.DefaultConfig()
	cfg.Latency = sharedLatency
	sb, err := startSandboxWith(cfg, n)
	if err != nil {
		return err
	}
	defer sb.close()
	b.logf("shared: 3 aopbatch processes, %d rows, --rate %d, %s latency, PostgreSQL ledger", n, sharedRate, sharedLatency)
	args := []string{"run", "--csv", csvPath, "--ledger", db, "--batch", "shared", "--base-url", sb.url,
		"--registration-id", registrationID, "--rate", strconv.Itoa(sharedRate), "--burst", strconv.Itoa(burst),
		"--progress", "never", "--resolve-timeout", resolveTimeout}
	start := time.Now()
	ps, err := b.startProcs(ctx, 3, args)
	if err != nil {
		return err
	}
	if err := waitProcs(ps); err != nil {
		return err
	}
	wall := time.Since(start)
	arr := sb.since(0)
	if len(arr) != n {
		return fmt.Errorf("the sandbox saw %d Recharges for %d rows", len(arr), n)
	}
	twice := 0
	for i := range n {
		if sb.sb.Charged(rowRequest("Shared-", i).ReferenceID) != 1 {
			twice++
		}
	}
	r := runResult{arrivals: arr, firstAt: arr[0], lastAt: arr[len(arr)-1]}
	rate := r.sendRate()
	sliding, _ := maxPerSecond(arr)
	label := fmt.Sprintf("3 processes, one %d-row batch, %s latency, --rate %d", n, sharedLatency, sharedRate)
	b.check(label+": achieved together", fmt.Sprintf("%.1f req/s (%.1f%%) in %.1f s", rate, 100*rate/sharedRate, wall.Seconds()),
		fmt.Sprintf("≥ %.0f", targetSharedShare*sharedRate), rate >= targetSharedShare*sharedRate)
	limit := float64(sharedRate+burst) * 1.05
	b.check("  largest 1-second window at the sandbox", strconv.Itoa(sliding),
		fmt.Sprintf("≤ rate + burst, +5%% (%.0f)", limit), float64(sliding) <= limit)
	b.check("  rows not charged exactly once", strconv.Itoa(twice), "0", twice == 0)
	return nil
}

// scalingRun compares one process with three against a provider whose
// latency bounds each process (--rate 0, --workers 4).
func (b *bench) scalingRun(ctx context.Context) error {
	n := max(b.cfg.rows(2400), 240)
	var perSec [2]float64
	for i, procs := range []int{1, 3} {
		db, err := b.pgLedger(ctx)
		if err != nil {
			return skipped(b, "scaling", err)
		}
		name := fmt.Sprintf("scale%d", procs)
		csvPath, _ := b.files(name)
		prefix := fmt.Sprintf("Scale%d-", procs)
		if err := writeCSV(csvPath, prefix, n); err != nil {
			return err
		}
		cfg := aoptest.DefaultConfig()
		cfg.Latency = scalingLatency
		sb, err := startSandboxWith(cfg, n)
		if err != nil {
			return err
		}
		b.logf("scaling: %d process(es), %d rows, --rate 0, --workers %d, %s latency", procs, n, scalingWorkers, scalingLatency)
		args := []string{"run", "--csv", csvPath, "--ledger", db, "--batch", name, "--base-url", sb.url,
			"--registration-id", registrationID, "--rate", "0", "--workers", strconv.Itoa(scalingWorkers),
			"--progress", "never", "--resolve-timeout", resolveTimeout}
		ps, err := b.startProcs(ctx, procs, args)
		if err == nil {
			err = waitProcs(ps)
		}
		arr := sb.since(0)
		sb.close()
		if err != nil {
			return err
		}
		if len(arr) != n {
			return fmt.Errorf("the sandbox saw %d Recharges for %d rows", len(arr), n)
		}
		perSec[i] = runResult{arrivals: arr, firstAt: arr[0], lastAt: arr[len(arr)-1]}.sendRate()
	}
	ratio := perSec[1] / perSec[0]
	b.add(fmt.Sprintf("scaling, %d rows, %s latency, --rate 0, --workers %d: 1 process / 3 processes", n, scalingLatency, scalingWorkers),
		fmt.Sprintf("%.1f / %.1f req/s", perSec[0], perSec[1]))
	b.check("  3 processes over 1", fmt.Sprintf("%.2f", ratio), fmt.Sprintf("≥ %.1f", targetScaling), ratio >= targetScaling)
	return nil
}
