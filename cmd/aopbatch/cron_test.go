package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aopbatch/aopbatch/batch/aop/aoptest"
)

// readmeBlock returns the fenced code block that follows the HTML comment
// starting with marker in the repository's README.
func readmeBlock(t *testing.T, marker string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)<!-- " + regexp.QuoteMeta(marker) + "[^\n]*-->\n```[a-z]*\n(.*?)```").FindSubmatch(b)
	if m == nil {
		t.Fatalf("README has no code block after <!-- %s", marker)
	}
	return string(m[1])
}

// pathWithAopbatch makes a directory holding an "aopbatch" that runs this
// test binary as aopbatch, and returns a PATH with it first.
func pathWithAopbatch(t *testing.T) string {
	t.Helper()
	bin := t.TempDir()
	wrapper := fmt.Sprintf("#!/bin/sh\nAOPBATCH_BE_MAIN=1 exec '%s' \"$@\"\n", os.Args[0])
	if err := os.WriteFile(filepath.Join(bin, "aopbatch"), []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin + string(os.PathListSeparator) + os.Getenv("PATH")
}

// sh runs script with sh in dir under env (added to a bare environment,
// as cron gives), and returns its exit code and output.
func sh(t *testing.T, dir string, env []string, script string) proc {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", script)
	cmd.Dir = dir
	cmd.Env = env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	return finished(t, []string{"sh", "-c", "..."}, cmd.Run(), out.String(), errb.String())
}

// TestREADMECronExample runs the README's cron script and its morning
// commands as written, against the sandbox, from a working directory
// that is not the ledger's, with only what cron would give: the ledger
// lands where --ledger says, the run pays every row once, a second run
// (the 06:00 one) sends nothing, and status lists the batch.
func TestREADMECronExample(t *testing.T) {
	t.Parallel()
	const token = "tok-CRON-0f3e9a"
	sb := sandbox(t, func(c *aoptest.Config) { c.Auth = aoptest.AuthBearer; c.Tokens = []string{token} })
	script, morning := readmeBlock(t, "cron-script"), readmeBlock(t, "cron-morning")

	home := t.TempDir()
	for _, d := range []string{"inbox", "reports"} {
		if err := os.MkdirAll(filepath.Join(home, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	envFile := fmt.Sprintf("export AOP_BASE_URL=%s AOP_REGISTRATION_ID=AOP-554 AOP_LATITUDE=28.61 AOP_LONGITUDE=77.20\n", sb.URL)
	if err := os.WriteFile(filepath.Join(home, "env"), []byte(envFile), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, "token"), []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rows := goodRows(40, "CRON")
	// Today's file, and tomorrow's in case the clock turns midnight
	// between here and the script's date.
	for _, d := range []time.Time{time.Now(), time.Now().Add(time.Hour)} {
		writeCSV(t, filepath.Join(home, "inbox", "recharges-"+d.Format("2006-01-02")+".csv"), rows)
	}
	cwd := t.TempDir() // cron's working directory: the user's home, not the ledger's
	env := []string{"PATH=" + pathWithAopbatch(t), "HOME=" + cwd, "AOPBATCH_HOME=" + home}

	p := sh(t, cwd, env, script)
	if p.code != 0 {
		t.Fatalf("cron script: exit %d\nstdout:\n%s\nstderr:\n%s", p.code, p.stdout, p.stderr)
	}
	ledgerPath := filepath.Join(home, "ledger.db")
	if _, err := os.Stat(ledgerPath); err != nil {
		t.Fatalf("no ledger where --ledger says: %v", err)
	}
	if entries, _ := os.ReadDir(cwd); len(entries) != 0 {
		t.Errorf("the job left files in its working directory: %v", entries)
	}
	// A night without a file: the script's own line is JSON too, so the
	// log cron appends to holds nothing else.
	empty := t.TempDir()
	if err := os.WriteFile(filepath.Join(empty, "env"), []byte(envFile), 0o600); err != nil {
		t.Fatal(err)
	}
	q := sh(t, cwd, []string{"PATH=" + pathWithAopbatch(t), "HOME=" + cwd, "AOPBATCH_HOME=" + empty}, script)
	var note map[string]any
	if err := json.Unmarshal([]byte(strings.TrimSpace(q.stdout+q.stderr)), &note); q.code != 0 || err != nil ||
		note["level"] != "INFO" || !strings.Contains(fmt.Sprint(note["msg"]), "nothing to send") || note["time"] == nil {
		t.Errorf("no file: exit %d, output %q; want 0 and one JSON line saying nothing to send", q.code, q.stdout+q.stderr)
	}
	first, _, _ := strings.Cut(p.stderr, "\n")
	var rec map[string]any
	if err := json.Unmarshal([]byte(first), &rec); err != nil || rec["msg"] != "ledger" || rec["path"] != ledgerPath {
		t.Errorf("first log line %q, want the ledger's absolute path %s", first, ledgerPath)
	}
	var sum map[string]any
	if err := json.Unmarshal([]byte(strings.TrimSpace(p.stdout)), &sum); err != nil || sum["msg"] != "run summary" || sum["exit_code"] != float64(0) {
		t.Errorf("stdout %q, want one JSON run summary, exit_code 0", p.stdout)
	}
	wantOnce(t, rows, "charged", sb.Charged)
	for _, f := range []string{"aopbatch.prom"} {
		if _, err := os.Stat(filepath.Join(home, f)); err != nil {
			t.Errorf("no %s: %v", f, err)
		}
	}
	if reps, _ := filepath.Glob(filepath.Join(home, "reports", "*", "report.json")); len(reps) != 1 {
		t.Errorf("reports written: %v, want one report.json", reps)
	}

	prom := filepath.Join(home, "aopbatch.prom")
	if b, _ := os.ReadFile(prom); !strings.Contains(string(b), `kind="achieved"}`) {
		t.Errorf("the 02:00 run's metrics have no achieved rate:\n%s", b)
	}
	before := sb.Stats().Recharges
	if p := sh(t, cwd, env, script); p.code != 0 {
		t.Fatalf("06:00 run: exit %d\n%s", p.code, p.stderr)
	}
	if n := sb.Stats().Recharges - before; n != 0 {
		t.Errorf("the second run sent %d recharges, want 0", n)
	}
	// The 06:00 run measured no rate: it writes none (an alert on the
	// achieved rate read its 0 every morning), and the batch's figures.
	b, err := os.ReadFile(prom)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{`aopbatch_rows{batch="recharges-`, `state="success"} 40`, `kind="recharge"} 0`, `kind="configured"} 20`} {
		if !strings.Contains(string(b), w) {
			t.Errorf("the 06:00 run's metrics lack %q", w)
		}
	}
	if strings.Contains(string(b), `kind="achieved"}`) {
		t.Errorf("the 06:00 run, which sent nothing, wrote an achieved rate:\n%s", b)
	}

	m := sh(t, cwd, env, "set -e\n"+morning)
	if m.code != 0 {
		t.Fatalf("morning commands: exit %d\nstdout:\n%s\nstderr:\n%s", m.code, m.stdout, m.stderr)
	}
	for _, w := range []string{"ledger " + ledgerPath, "age", "recharges-", "40"} {
		if !strings.Contains(m.stdout, w) {
			t.Errorf("morning status does not show %q:\n%s", w, m.stdout)
		}
	}
}

// TestFirstLogLineNamesTheLedger: every command that uses a ledger says
// first which file, as an absolute path, even when --ledger is relative;
// and status lists each batch with its age and size.
func TestFirstLogLineNamesTheLedger(t *testing.T) {
	t.Parallel()
	sb := sandbox(t, nil)
	dir := t.TempDir()
	writeCSV(t, filepath.Join(dir, "in.csv"), goodRows(3, "HOME"))
	abs := filepath.Join(dir, "rel.db")
	for _, args := range [][]string{
		runArgs("in.csv", "rel.db", sb.URL),
		{"resolve", "--ledger", "rel.db", "--base-url", sb.URL, "--progress", "never"},
		{"status", "--ledger", "rel.db"},
		{"report", "--ledger", "rel.db", "--out", "rep"},
		{"export", "--ledger", "rel.db", "--state", "success", "--keep-refs", "--out", "ok.csv"},
		{"ledger", "archive", "--ledger", "rel.db", "--before", "2000-01-01", "--out", "old.ledger.gz"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		cmd := aopbatchCmd(ctx, nil, args...)
		cmd.Dir = dir
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		p := finished(t, args, cmd.Run(), out.String(), errb.String())
		cancel()
		if p.code != 0 {
			t.Fatalf("%s: exit %d\n%s", args[0], p.code, p.stderr)
		}
		first, _, _ := strings.Cut(p.stderr, "\n")
		if !strings.Contains(first, "msg=ledger path="+abs) {
			t.Errorf("%s: first log line %q, want msg=ledger path=%s", args[0], first, abs)
		}
		if args[0] == "status" {
			if !regexp.MustCompile(`(?m)^ledger `+regexp.QuoteMeta(abs)+` \([0-9.]+ [KM]?B\): 1 batch, 3 rows$`).MatchString(p.stdout) ||
				!regexp.MustCompile(`(?m)^batch\s+file\s+created\s+age\s+rows\s+amount \(Rs\)\s+size \(est\.\)`).MatchString(p.stdout) ||
				!regexp.MustCompile(`\s0m\s+3\s+\d+\.\d\d\s+~[0-9.]+ [KM]?B\s`).MatchString(p.stdout) {
				t.Errorf("status does not list the batch with its age and size:\n%s", p.stdout)
			}
			j := aopbatch(t, nil, "status", "--ledger", abs, "--format", "json")
			var bs []map[string]any
			if err := json.Unmarshal([]byte(j.stdout), &bs); err != nil || len(bs) != 1 || bs[0]["age_seconds"] == nil || bs[0]["amount_paise"] == nil {
				t.Errorf("status --format json: want age_seconds and amount_paise (%v)\n%s", err, j.stdout)
			}
		}
	}
}

// TestDamagedLedgerRefusedBeforeSending: a ledger with a page overwritten
// inside, or a file that is not a ledger, is refused by every command
// with exit 1 and a message naming it and what is wrong, before anything
// is sent, and is left as it was.
func TestDamagedLedgerRefusedBeforeSending(t *testing.T) {
	t.Parallel()
	sb := sandbox(t, nil)
	db, csvPath := batchFiles(t)
	rows := goodRows(3000, "DMG")
	writeCSV(t, csvPath, rows)
	if p := aopbatch(t, nil, runArgs(csvPath, db, sb.URL, "--dry-run")...); p.code != 0 {
		t.Fatalf("dry run: exit %d\n%s", p.code, p.stderr)
	}
	b, err := os.ReadFile(db)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(db + "-wal"); err == nil {
		t.Fatalf("a WAL was left behind: the damage would not be in the file")
	}
	const page = 4096
	at := len(b) / page / 2 * page
	for i := at; i < at+page; i++ {
		b[i] = byte(i * 7)
	}
	if err := os.WriteFile(db, b, 0o600); err != nil {
		t.Fatal(err)
	}
	notLedger := filepath.Join(t.TempDir(), "notes.db")
	if err := os.WriteFile(notLedger, []byte("operator,canumber,amount\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path, want string
	}{{db, "damaged"}, {notLedger, "not an aopbatch ledger"}} {
		before, _ := os.ReadFile(tc.path)
		for _, args := range [][]string{
			runArgs(csvPath, tc.path, sb.URL),
			{"resolve", "--ledger", tc.path, "--base-url", sb.URL},
			{"status", "--ledger", tc.path},
		} {
			p := aopbatch(t, nil, args...)
			if p.code != 1 || !strings.Contains(p.stderr, tc.path) || !strings.Contains(p.stderr, tc.want) {
				t.Errorf("%s on %s: exit %d, want 1 naming the file and %q\n%s", args[0], filepath.Base(tc.path), p.code, tc.want, p.stderr)
			}
		}
		if after, _ := os.ReadFile(tc.path); !bytes.Equal(before, after) {
			t.Errorf("%s was changed", tc.path)
		}
	}
	if n := sb.Stats().Requests; n != 0 {
		t.Errorf("%d requests sent on a damaged ledger", n)
	}
}

// The first log line's size counts the write-ahead log: after a crash most
// of a ledger may sit there (a walkthrough read 16 KB for a 1 MB ledger).
func TestLedgerSizeCountsTheWAL(t *testing.T) {
	db := filepath.Join(t.TempDir(), "l.db")
	if err := os.WriteFile(db, make([]byte, 100), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(db+"-wal", make([]byte, 50), 0o600); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	noteLedger(slog.New(slog.NewTextHandler(&b, nil)), db, false)
	if !strings.Contains(b.String(), "bytes=150") {
		t.Errorf("first line %q, want bytes=150 (the file and its -wal)", b.String())
	}
}
