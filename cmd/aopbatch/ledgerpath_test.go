package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/aopbatch/aopbatch/batch/aop/aoptest"
	"github.com/aopbatch/aopbatch/ledger"
)

// TestLedgerPathWithKeyValueNameResumes: a SQLite ledger whose path holds
// "dbname=" or begins "host=" (a directory per database or per host, as
// data lakes name them) is a file path, not a connection string. One
// such ledger, made before the refusal of key=value strings, holds a batch
// interrupted with its rows unsettled: the rerun must resume it, resolve
// its rows and charge each once, and ledger copy must move it out. Refused,
// the batch could be neither resumed nor resolved nor copied, and its
// unknown rows stayed money at risk.
func TestLedgerPathWithKeyValueNameResumes(t *testing.T) {
	for _, name := range []string{filepath.Join("dbname=prod", "aopbatch.db"), filepath.Join("host=web1", "aopbatch.db")} {
		t.Run(name, func(t *testing.T) {
			sb := sandbox(t, func(c *aoptest.Config) { c.Fault5xxRate = 1 })
			dir := t.TempDir()
			csvPath := filepath.Join(dir, "in.csv")
			rows := goodRows(5, "KV")
			writeCSV(t, csvPath, rows)
			// The interrupted run, on a ledger then named plainly.
			plain := filepath.Join(dir, "plain.db")
			if p := aopbatch(t, nil, runArgs(csvPath, plain, sb.URL, "--resolve-timeout", "1s")...); p.code != 3 {
				t.Fatalf("first run: exit %d, want 3\n%s", p.code, p.stderr)
			}
			loc := filepath.Join(dir, name)
			if err := os.MkdirAll(filepath.Dir(loc), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(plain, loc); err != nil {
				t.Fatal(err)
			}
			sb.SetFaults(aoptest.Faults{})
			// The path as the job gives it: relative to its directory.
			args := runArgs(csvPath, name, sb.URL)
			cmd := aopbatchCmd(context.Background(), nil, args...)
			cmd.Dir = dir
			out, err := cmd.CombinedOutput()
			p := finished(t, args, err, "", string(out))
			if p.code != 0 {
				t.Fatalf("rerun on --ledger %s: exit %d, want 0\n%s", name, p.code, out)
			}
			wantOnce(t, rows, "charged", sb.Charged)
			if p := aopbatch(t, nil, "ledger", "copy", "--from", loc, "--to", filepath.Join(dir, "moved.db")); p.code != 0 {
				t.Errorf("ledger copy --from %s: exit %d\n%s%s", loc, p.code, p.stdout, p.stderr)
			}
		})
	}
}

// TestMissingLedgerNamedAsResolved: a typo'd or relative --ledger that
// names no file is refused by every command but run, naming the path as
// the command resolved it (a relative one from the working directory, as
// a cron job's is not the one meant) and that only run makes a ledger,
// not telling someone who passed --ledger to pass --ledger.
func TestMissingLedgerNamedAsResolved(t *testing.T) {
	t.Parallel()
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"status", "--ledger", "aopbtach.db"},
		{"export", "--ledger", "aopbtach.db", "--state", "failed", "--out", "x.csv"},
	} {
		cmd := aopbatchCmd(context.Background(), nil, args...)
		cmd.Dir = dir
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		p := finished(t, args, cmd.Run(), out.String(), errb.String())
		want := "no ledger at " + filepath.Join(dir, "aopbtach.db") + ": check --ledger"
		if p.code != 1 || !strings.Contains(p.stderr, want) || !strings.Contains(p.stderr, "only aopbatch run creates a ledger") {
			t.Errorf("aopbatch %s: exit %d, want 1 with %q and that only run creates a ledger\n%s", args[0], p.code, want, p.stderr)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) > 0 {
		t.Errorf("a missing --ledger left %v behind", ents)
	}
}

// TestNewLedgerStopsAFileSentBefore: a file run again under a mistyped
// --ledger (a new, empty ledger) stops before its first Recharge, exit 3,
// saying why and what to do: status enquiries find its first rows at the
// provider. Sent whole, the rows the provider failed without keeping
// their referenceid would be charged again, while the retry file of those
// very rows has paid them already. Run again, it stops again. With
// --allow-known-refs (the ledger that sent it is lost) it goes on.
func TestNewLedgerStopsAFileSentBefore(t *testing.T) {
	t.Parallel()
	sb := sandbox(t, func(c *aoptest.Config) { c.FailRate = 0.25 })
	dir := t.TempDir()
	csvPath := filepath.Join(dir, "in.csv")
	rows := goodRows(60, "KR")
	writeCSV(t, csvPath, rows)
	first := filepath.Join(dir, "aopbatch.db")
	if p := aopbatch(t, nil, runArgs(csvPath, first, sb.URL)...); p.code != 2 {
		t.Fatalf("first run: exit %d, want 2 (some rows failed)\n%s", p.code, p.stderr)
	}
	recharges := func() int {
		n := 0
		for _, r := range rows {
			n += sb.Requests(r.ref)
		}
		return n
	}
	before := recharges()

	typo := filepath.Join(dir, "aopbtach.db")
	metrics := filepath.Join(dir, "aopbatch.prom")
	for run := 1; run <= 2; run++ {
		rep := filepath.Join(dir, "reports")
		p := aopbatch(t, nil, runArgs(csvPath, typo, sb.URL, "--metrics-file", metrics, "--report", rep)...)
		if p.code != 3 {
			t.Fatalf("run %d under a new ledger: exit %d, want 3\n%s", run, p.code, p.stderr)
		}
		for _, want := range []string{"already at the provider", "sent before", "--ledger", "--allow-known-refs", "this run's ledger is " + typo, "ledger drop"} {
			if !strings.Contains(p.stderr, want) {
				t.Errorf("run %d: stderr does not say %q:\n%s", run, want, p.stderr)
			}
		}
		if sent := recharges() - before; sent != 0 {
			t.Errorf("run %d: %d Recharges for the file's referenceids from the new ledger, want none", run, sent)
		}
		if prom, err := os.ReadFile(metrics); err != nil || !regexp.MustCompile(`(?m)^aopbatch_run_stopped\{[^}]*reason="known-refs"\} 1$`).Match(prom) {
			t.Errorf("run %d: metrics do not say the run stopped for known referenceids (%v):\n%s", run, err, prom)
		}
		// Not "run again to resume": the report says why nothing was sent.
		md, err := os.ReadFile(filepath.Join(rep, "summary.md"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(md), "sent before, most likely from another ledger") || strings.Contains(string(md), "run aopbatch run again to resume") {
			t.Errorf("run %d: summary.md does not say the file was sent before, or says to run again:\n%s", run, md)
		}
	}

	// Nothing of it was sent from the new ledger: the batch can be dropped
	// from it (the enquiries before the first send go with it), and a run
	// with --allow-known-refs records it again.
	b, _, _ := ledgerRows(t, typo)
	if p := aopbatch(t, nil, "ledger", "drop", "--ledger", typo, "--batch", b.ID); p.code != 0 {
		t.Errorf("ledger drop of the batch stopped before its first send: exit %d, want 0\n%s%s", p.code, p.stdout, p.stderr)
	}
	if p := aopbatch(t, nil, runArgs(csvPath, typo, sb.URL, "--allow-known-refs")...); p.code != 0 && p.code != 2 {
		t.Fatalf("run with --allow-known-refs: exit %d, want 0 or 2\n%s", p.code, p.stderr)
	}
	_, _, all := ledgerRows(t, typo)
	for _, r := range all {
		if r.State == ledger.StateQueued {
			t.Errorf("line %d still queued after --allow-known-refs", r.Line)
		}
	}
}
