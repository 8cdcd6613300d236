package main

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/aopbatch/aopbatch/batch/aop/aoptest"
)

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var dir string
	var rows int
	fs := newFlagSet("demo", "demo [--dir DIR] [--rows N]", "aopbatch demo --dir /tmp/aopbatch-demo", stderr)
	fs.StringVar(&dir, "dir", "aopbatch-demo", "directory for the sample file, the ledger and the reports: new, empty, or an earlier demo's (whose files are replaced)")
	fs.IntVar(&rows, "rows", 300, "data rows in the sample file")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if rows < 10 {
		return start(errors.New("--rows must be at least 10"))
	}
	if err := demoDir(dir); err != nil {
		return start(err)
	}

	// A sandbox with a little of everything a real night brings: latency, a
	// few pending answers, an operator that is down, lost responses.
	cfg := aoptest.DefaultConfig()
	cfg.Seed = 42
	cfg.Latency = 2 * time.Millisecond
	cfg.LatencyJitter = 8 * time.Millisecond
	cfg.PendingRate = 0.05
	cfg.PendingDelay = time.Second
	cfg.PendingFailRate = 0.2
	cfg.LostRate = 0.02
	cfg.DownOperators = []int64{demoDownOperator}
	cfg.RegistrationID = "AOP-554"
	sb := aoptest.NewServer(cfg)
	defer sb.Close()
	fmt.Fprintf(stdout, "== sandbox listening on %s (in-process, loopback only)\n", sb.URL)

	file := filepath.Join(dir, "recharges.csv")
	if err := writeSampleCSV(file, rows); err != nil {
		return start(err)
	}
	fmt.Fprintf(stdout, "== sample file %s: %d rows, a few of them deliberately bad\n\n", file, rows)

	ledgerPath := filepath.Join(dir, "aopbatch.db")
	reportDir := filepath.Join(dir, "reports")
	runArgs := []string{"--csv", file, "--ledger", ledgerPath, "--base-url", sb.URL, "--registration-id", "AOP-554",
		"--rate", "500", "--burst", "20", "--workers", "16", "--timeout", "5s", "--resolve-timeout", "15s", "--progress", "never"}
	fmt.Fprintln(stdout, "== aopbatch run", joinArgs(runArgs))
	err := runRun(ctx, runArgs, stdout, stderr)
	fmt.Fprintf(stdout, "-> exit code %d\n\n", exitCode(err, stderr))
	if ctx.Err() != nil {
		return &exitError{code: exitIncomplete, err: errors.New("demo interrupted")}
	}

	sent := sb.Stats().Recharges
	sb.SetOperatorDown(demoDownOperator, false)
	fmt.Fprintf(stdout, "== operator %d is back up; the same command again resumes the batch: only the held rows go out, nothing is paid twice\n", demoDownOperator)
	err = runRun(ctx, runArgs, stdout, stderr)
	fmt.Fprintf(stdout, "-> exit code %d, recharge requests sent by the rerun: %d\n\n", exitCode(err, stderr), sb.Stats().Recharges-sent)

	stmt := filepath.Join(dir, "statement.csv")
	if err := download(ctx, sb.URL+"/api/AOP/Statement", stmt); err != nil {
		return &exitError{code: exitIncomplete, err: fmt.Errorf("fetch statement: %w", err)}
	}
	repArgs := []string{"--ledger", ledgerPath, "--statement", stmt, "--out", reportDir}
	fmt.Fprintln(stdout, "== aopbatch report", joinArgs(repArgs))
	err = runReport(ctx, repArgs, stdout, stderr)
	fmt.Fprintf(stdout, "-> exit code %d\n\n", exitCode(err, stderr))
	fmt.Fprintf(stdout, "Reports are in %s (open report.html in a browser).\n", reportDir)
	self := selfCommand()
	fmt.Fprintln(stdout, "Look around (from this directory; the ledger stays, the sandbox is gone):")
	for _, c := range []string{
		"status --ledger " + ledgerPath,
		"status --ledger " + ledgerPath + " --batch latest",
		"report --ledger " + ledgerPath + " --batch latest --out " + filepath.Join(dir, "reports-again"),
		"export --ledger " + ledgerPath + " --batch latest --state failed --statement " + stmt + " --out " + filepath.Join(dir, "failed.csv"),
	} {
		fmt.Fprintf(stdout, "  %s %s\n", self, c)
	}
	return nil
}

// selfCommand is how a person runs this same aopbatch again from the
// current directory: the path it was started by ("bin/aopbatch" from
// make demo), "aopbatch" when found on PATH, or "go run ./cmd/aopbatch"
// for a binary that go run built and has since deleted.
func selfCommand() string {
	arg0 := os.Args[0]
	exe, _ := os.Executable()
	if filepath.Base(filepath.Dir(exe)) == "exe" && strings.Contains(exe, "go-build") {
		return "go run ./cmd/aopbatch"
	}
	if strings.ContainsAny(arg0, " \t'\"") {
		return strconv.Quote(arg0)
	}
	return arg0 // "bin/aopbatch" as make demo starts it, or "aopbatch" from PATH
}

// demoMarker marks a directory the demo made, whose files it may replace.
const demoMarker = ".aopbatch-demo"

// demoDir readies dir for the demo. It deletes only what an earlier demo
// left there: a directory it did not make (say, one holding a real ledger
// called aopbatch.db) is refused, not emptied.
func demoDir(dir string) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return err
	case len(entries) > 0:
		if _, err := os.Stat(filepath.Join(dir, demoMarker)); err != nil {
			return fmt.Errorf("--dir %s is not empty and not an earlier demo's: pick a new or empty directory", dir)
		}
		for _, name := range []string{"recharges.csv", "aopbatch.db", "aopbatch.db-wal", "aopbatch.db-shm", "statement.csv"} {
			if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
		for _, sub := range []string{"reports", "reports-again", "failed.csv"} {
			if err := os.RemoveAll(filepath.Join(dir, sub)); err != nil {
				return err
			}
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, demoMarker), []byte("made by aopbatch demo: its files here are replaced by the next demo\n"), 0o600)
}

// demoDownOperator is down in the demo's sandbox until the rerun.
const demoDownOperator = 13

func joinArgs(a []string) string {
	s := ""
	for i, v := range a {
		if i > 0 {
			s += " "
		}
		s += v
	}
	return s
}

// writeSampleCSV writes n rows across a few operators, with the usual
// mistakes sprinkled in: too many decimals, a negative and a non-numeric
// amount, an empty canumber, and a referenceid used twice.
func writeSampleCSV(path string, n int) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	_ = w.Write([]string{"operator", "canumber", "amount", "referenceid", "latitude", "longitude", "billAmount", "userName"})
	ops := []string{"311", "12", "27", "311", "12", "27", "13"}
	base := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC).Unix()
	for i := 1; i <= n; i++ {
		op := ops[i%len(ops)]
		ca := fmt.Sprintf("DL%02dCB%04d", i%90, i)
		amount := strconv.Itoa(10+i%490) + "." + fmt.Sprintf("%02d", (i*7)%100)
		ref := strconv.FormatInt(base*1000+int64(i), 10)
		bill, user := "", ""
		if i%5 == 0 {
			bill, user = amount, "Demo Customer "+strconv.Itoa(i)
		}
		switch i {
		case 7:
			amount = "10.005"
		case 19:
			amount = "-5"
		case 33:
			amount = "abc"
		case 48:
			ca = ""
		case 61:
			ref = strconv.FormatInt(base*1000+60, 10) // same as row 60
		}
		_ = w.Write([]string{op, ca, amount, ref, "28.61", "77.20", bill, user})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func download(ctx context.Context, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, io.LimitReader(resp.Body, 256<<20)); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
