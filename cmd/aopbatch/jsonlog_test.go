package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aopbatch/aopbatch/batch/aop/aoptest"
)

// jsonLines parses every line of out as a JSON object with time, level and
// msg, as slog writes them, failing the test on any other line.
func jsonLines(t *testing.T, where, out string) []map[string]any {
	t.Helper()
	var recs []map[string]any
	for _, line := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Errorf("%s: not a JSON line: %q", where, line)
			continue
		}
		for _, k := range []string{"time", "level", "msg"} {
			if _, ok := m[k]; !ok {
				t.Errorf("%s: line without %q: %q", where, k, line)
			}
		}
		recs = append(recs, m)
	}
	return recs
}

// TestJSONLogsAreJSONOnly: with --log-format json, stdout is one JSON
// summary line with time and level like the log lines (no text table,
// no report listing), and stderr is JSON log lines only, the rows not
// accepted and the final error included, for run and resolve, for a
// finished batch and a stopped one.
func TestJSONLogsAreJSONOnly(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		wallet   int64
		wantCode int
	}{
		{"finished", -1, 2},
		{"stopped", 3000, 3}, // the wallet runs dry: exit 3 with an error
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sb := sandbox(t, func(c *aoptest.Config) { c.WalletPaise = tc.wallet })
			dir := t.TempDir()
			db, csvPath, rep := filepath.Join(dir, "l.db"), filepath.Join(dir, "in.csv"), filepath.Join(dir, "rep")
			writeCSV(t, csvPath, append(goodRows(20, "JS"), sampleRow{"311", "CA-BAD", "1.234", "JSBAD"}))
			p := aopbatch(t, nil, runArgs(csvPath, db, sb.URL, "--log-format", "json", "--report", rep, "--max-reject-rate", "1", "--workers", "1")...)
			if p.code != tc.wantCode {
				t.Fatalf("run: exit %d, want %d\n%s", p.code, tc.wantCode, p.stderr)
			}
			out := jsonLines(t, "run stdout", p.stdout)
			if len(out) != 1 {
				t.Fatalf("run stdout has %d JSON lines, want 1 summary:\n%s", len(out), p.stdout)
			}
			sum := out[0]
			if sum["msg"] != "run summary" || sum["exit_code"] != float64(tc.wantCode) || sum["batch"] == nil {
				t.Errorf("summary %v: want msg, batch and exit_code %d", sum, tc.wantCode)
			}
			if c, _ := sum["counts"].(map[string]any); c == nil || c["total"] != float64(21) || c["rejected"] != float64(1) {
				t.Errorf("summary counts %v, want total 21, rejected 1", sum["counts"])
			}
			if sum["reports"] != rep {
				t.Errorf("summary reports %v, want %s", sum["reports"], rep)
			}
			if sum["taken_over"] != false || sum["running"] != nil {
				t.Errorf("summary taken_over %v, running %v: want false and none (no other process)", sum["taken_over"], sum["running"])
			}
			if tc.wantCode == 3 && !strings.Contains(fmt.Sprint(sum["error"]), "wallet") {
				t.Errorf("summary error %v, want the stop named", sum["error"])
			}
			if want := map[int]string{3: "account"}[tc.wantCode]; sum["stop_reason"] != want {
				t.Errorf("summary stop_reason %q, want %q", sum["stop_reason"], want)
			}
			// The reports say what to fix before the rows left can go: the
			// wallet, not only "run again".
			b, err := os.ReadFile(filepath.Join(rep, "report.json"))
			if err != nil {
				t.Fatal(err)
			}
			var report struct {
				Attention struct{ Actions []string } `json:"attention"`
			}
			if err := json.Unmarshal(b, &report); err != nil {
				t.Fatal(err)
			}
			acts := strings.Join(report.Attention.Actions, "\n")
			if wallet := strings.Contains(acts, "top up the wallet, then run aopbatch run again"); wallet != (tc.wantCode == 3) {
				t.Errorf("report actions (stopped %v):\n%s\nwant the wallet named exactly when the wallet stopped the run", tc.wantCode == 3, acts)
			}
			errs := jsonLines(t, "run stderr", p.stderr)
			var sawReject, sawErr, sawRecorded bool
			for _, m := range errs {
				sawReject = sawReject || m["state"] == "rejected"
				sawErr = sawErr || m["level"] == "ERROR"
				if m["msg"] == "file recorded" {
					// Money in JSON is integer paise (SPEC 5), never a
					// rupees string: 20 rows to send, of goodRows' amounts.
					sawRecorded = true
					if _, ok := m["amount"]; ok || m["amount_paise"] != float64(goodRowsPaise(20)) {
						t.Errorf("file recorded: amount %#v, amount_paise %#v; want only amount_paise %d",
							m["amount"], m["amount_paise"], goodRowsPaise(20))
					}
				}
			}
			if !sawRecorded {
				t.Errorf("run stderr has no 'file recorded' line:\n%s", p.stderr)
			}
			if !sawReject {
				t.Errorf("run stderr does not log the rejected row:\n%s", p.stderr)
			}
			if tc.wantCode == 3 && !sawErr {
				t.Errorf("run stderr does not log the final error:\n%s", p.stderr)
			}

			r := aopbatch(t, nil, "resolve", "--ledger", db, "--base-url", sb.URL, "--log-format", "json", "--progress", "never")
			if len(jsonLines(t, "resolve stdout", r.stdout)) != 1 {
				t.Errorf("resolve stdout, want one JSON summary:\n%s", r.stdout)
			}
			jsonLines(t, "resolve stderr", r.stderr)
		})
	}
}

// With --log-format json stdout's one line is the run summary however the
// run ends: one that could not start (exit 1) and one a second signal
// ended at once (exit 3) write a summary with the exit code and the error.
func TestJSONSummaryOnEveryEnd(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := aopbatch(t, nil, "run", "--csv", filepath.Join(dir, "missing.csv"), "--ledger", filepath.Join(dir, "l.db"), "--log-format", "json")
	out := jsonLines(t, "exit 1 stdout", p.stdout)
	if p.code != 1 || len(out) != 1 || out[0]["msg"] != "run summary" || out[0]["exit_code"] != float64(1) ||
		out[0]["level"] != "ERROR" || !strings.Contains(fmt.Sprint(out[0]["error"]), "missing.csv") {
		t.Errorf("could not start: exit %d, stdout %q; want 1 and one ERROR run summary naming the file", p.code, p.stdout)
	}

	sb := sandbox(t, func(c *aoptest.Config) { c.Latency = 5 * time.Second })
	db, csvPath := batchFiles(t)
	writeCSV(t, csvPath, goodRows(1, "SS"))
	cmd := aopbatchCmd(context.Background(), nil, runArgs(csvPath, db, sb.URL, "--log-format", "json", "--timeout", "10s")...)
	var outb, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &outb, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	waitRecharges(t, sb, 1) // answered in 5 s: the first signal waits for it
	_ = cmd.Process.Signal(syscall.SIGINT)
	time.Sleep(50 * time.Millisecond)
	_ = cmd.Process.Signal(syscall.SIGINT)
	_ = cmd.Wait()
	out = jsonLines(t, "second signal stdout", outb.String())
	if code := cmd.ProcessState.ExitCode(); code != 3 || len(out) != 1 || out[0]["exit_code"] != float64(3) ||
		!strings.Contains(fmt.Sprint(out[0]["error"]), "second signal") {
		t.Errorf("second signal: exit %d, stdout %q; want 3 and one run summary saying so\n%s", code, outb.String(), errb.String())
	}
}
