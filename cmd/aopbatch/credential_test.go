package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/aopbatch/aopbatch/batch/aop/aoptest"
	"github.com/aopbatch/aopbatch/ledger"
)

// TestTokenCommandThatFailsSendsNothing: a --token-command that cannot be
// started, or exits non-zero, gives no credential, so the request is
// never made. It was counted as a request sent, with a latency, and the
// stop spoke of the token, the JWT secret and the partner id instead of
// the command that failed.
func TestTokenCommandThatFailsSendsNothing(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(exe, " \t") {
		t.Skipf("test binary path %q has spaces; --token-command is split on spaces", exe)
	}
	// A program not there is refused before anything starts: it would
	// fail every request, after the file was recorded, and a run ending
	// "run again" each night.
	t.Run("not found", func(t *testing.T) {
		sb := sandbox(t, func(c *aoptest.Config) { c.Auth = aoptest.AuthBearer })
		db, csvPath := batchFiles(t)
		writeCSV(t, csvPath, goodRows(3, "NF"))
		missing := filepath.Join(t.TempDir(), "nonexist")
		p := aopbatch(t, noSecrets, runArgs(csvPath, db, sb.URL, "--token-command", missing)...)
		if p.code != 1 || !strings.Contains(p.stderr, missing+" cannot be run") {
			t.Errorf("a --token-command not there: exit %d, want 1 naming it\n%s", p.code, p.stderr)
		}
		if _, err := os.Stat(db); !errors.Is(err, os.ErrNotExist) || sb.Stats().Recharges != 0 {
			t.Errorf("a --token-command not there: ledger %v, %d Recharges; want neither", err, sb.Stats().Recharges)
		}
	})
	for _, tc := range []struct {
		name, command, want string
	}{
		{"exits non-zero", exe + " " + failTokenArg, "exit status 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sb := sandbox(t, func(c *aoptest.Config) { c.Auth = aoptest.AuthBearer })
			db, csvPath := batchFiles(t)
			writeCSV(t, csvPath, goodRows(3, "NC"))
			metrics := filepath.Join(t.TempDir(), "aopbatch.prom")
			p := aopbatch(t, noSecrets, runArgs(csvPath, db, sb.URL, "--token-command", tc.command, "--metrics-file", metrics)...)
			if p.code != 3 {
				t.Fatalf("exit %d, want 3\n%s", p.code, p.stderr)
			}
			if n := sb.Stats().Recharges; n != 0 {
				t.Fatalf("the sandbox saw %d Recharges, want none", n)
			}
			if c := countStates(rowsOf(t, db)); c[ledger.StateQueued] != 3 {
				t.Errorf("states %v, want all 3 queued", c)
			}
			if !strings.Contains(p.stdout, "sent 0 requests (0 recharges, 0 status enquiries)") || strings.Contains(p.stdout, "latency") {
				t.Errorf("the run's figures count a request that was never made:\n%s", p.stdout)
			}
			m, err := os.ReadFile(metrics)
			if err != nil {
				t.Fatal(err)
			}
			// No request made: none counted, and no latency measured, so
			// none written (a run that sent nothing writes none).
			if re := `aopbatch_run_requests\{[^}]*kind="recharge"\} 0\n`; !regexp.MustCompile(re).Match(m) {
				t.Errorf("metrics file has no %s:\n%s", re, m)
			}
			if strings.Contains(string(m), "aopbatch_run_latency_seconds{") || strings.Contains(string(m), `kind="achieved"`) {
				t.Errorf("metrics file has a latency or a rate for requests never made:\n%s", m)
			}
			// The run stopped: the file says so beside the batch's figures.
			if re := `aopbatch_run_exit_code\{[^}]*\} 3\n`; !regexp.MustCompile(re).Match(m) {
				t.Errorf("metrics file has no %s:\n%s", re, m)
			}
			if re := `aopbatch_run_stopped\{[^}]*reason="auth"\} 1\n`; !regexp.MustCompile(re).Match(m) {
				t.Errorf("metrics file has no %s:\n%s", re, m)
			}
			// The batch's figures, read from the attempts log, agree.
			if re := `aopbatch_requests\{[^}]*kind="recharge"\} 0\n`; !regexp.MustCompile(re).Match(m) {
				t.Errorf("metrics file has no %s: the attempts log counts tries without a credential as requests:\n%s", re, m)
			}
			stop := lastLine(p.stderr)
			if !strings.Contains(stop, tc.want) || !strings.Contains(stop, "token-command") {
				t.Errorf("stop %q does not name the command's failure (%q)", stop, tc.want)
			}
			for _, wrong := range []string{"JWT", "partner id", "refused", failTokenSecret} {
				if strings.Contains(stop, wrong) {
					t.Errorf("stop %q says %q", stop, wrong)
				}
			}
		})
	}
}

// TestResolveWithAFailingTokenCommandAsksNothing: the enquiries' side of
// the above: aopbatch resolve whose credential cannot be obtained counts
// no enquiry and names the command.
func TestResolveWithAFailingTokenCommandAsksNothing(t *testing.T) {
	sb := sandbox(t, func(c *aoptest.Config) { c.Fault5xxRate = 1 })
	db, csvPath := batchFiles(t)
	writeCSV(t, csvPath, goodRows(20, "RC"))
	// 5xx answers leave rows unknown; the limit stops the run with them so.
	if p := aopbatch(t, nil, runArgs(csvPath, db, sb.URL, "--workers", "1", "--max-unknown-amount", "20", "--resolve-timeout", "1s")...); p.code != 3 {
		t.Fatalf("run: exit %d, want 3\n%s", p.code, p.stderr)
	}
	unknown := countStates(rowsOf(t, db))[ledger.StateUnknown]
	if unknown == 0 {
		t.Fatal("no unknown row to ask about")
	}
	before := sb.Stats().Enquiries
	// A command that is there and fails: one not there is refused before
	// resolve starts (TestTokenCommandThatFailsSendsNothing).
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(exe, " \t") {
		t.Skipf("test binary path %q has spaces; --token-command is split on spaces", exe)
	}
	p := aopbatch(t, noSecrets, "resolve", "--ledger", db, "--base-url", sb.URL, "--registration-id", "AOP-554",
		"--token-command", exe+" "+failTokenArg, "--resolve-timeout", "2s", "--progress", "never")
	if p.code != 3 {
		t.Fatalf("resolve: exit %d, want 3\n%s", p.code, p.stderr)
	}
	if n := sb.Stats().Enquiries - before; n != 0 {
		t.Errorf("the sandbox saw %d enquiries, want none", n)
	}
	if got := countStates(rowsOf(t, db))[ledger.StateUnknown]; got != unknown {
		t.Errorf("%d unknown rows after, want %d", got, unknown)
	}
	if !strings.Contains(p.stdout, "sent 0 requests (0 recharges, 0 status enquiries)") {
		t.Errorf("resolve's figures count an enquiry that was never made:\n%s", p.stdout)
	}
	if stop := lastLine(p.stderr); !strings.Contains(stop, exe) || !strings.Contains(stop, "exit status 2") || strings.Contains(stop, "JWT") {
		t.Errorf("stop %q does not name the command that failed", stop)
	}
}

// TestTokenRefusedThenCommandFailsSaysSo: the provider refused the token
// the command printed and the command then failed to renew it. That
// request (the status enquiry a run makes before its first send) did
// reach the provider and stays counted; the stop says the renewal failed,
// and how, not that a renewed credential was refused.
func TestTokenRefusedThenCommandFailsSaysSo(t *testing.T) {
	sb := sandbox(t, func(c *aoptest.Config) { c.Auth = aoptest.AuthBearer })
	db, csvPath := batchFiles(t)
	writeCSV(t, csvPath, goodRows(1, "RF"))
	// Prints a token the sandbox never issued, then fails every run after.
	script := filepath.Join(t.TempDir(), "token.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nif [ -e \"$0.ran\" ]; then exit 4; fi\n: > \"$0.ran\"\necho not-issued-by-the-sandbox\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	p := aopbatch(t, noSecrets, runArgs(csvPath, db, sb.URL, "--token-command", script)...)
	if p.code != 3 {
		t.Fatalf("exit %d, want 3\n%s", p.code, p.stderr)
	}
	if st := sb.Stats(); st.Recharges != 0 || st.Enquiries != 1 {
		t.Fatalf("the sandbox saw %d Recharges and %d enquiries, want the 1 enquiry refused and nothing after", st.Recharges, st.Enquiries)
	}
	if !strings.Contains(p.stdout, "sent 1 requests (0 recharges, 1 status enquiries)") {
		t.Errorf("the refused request is not counted:\n%s", p.stdout)
	}
	if th, _ := reportJSON(t, db, "latest")["throughput"].(map[string]any); th["status_enquiries"] != float64(1) {
		t.Errorf("the report counts %v status enquiries, want the 1 refused", th["status_enquiries"])
	}
	stop := lastLine(p.stderr)
	for _, want := range []string{"refused the credential (HTTP 401", "credential refresh failed", "exit status 4", "token-command"} {
		if !strings.Contains(stop, want) {
			t.Errorf("stop %q does not say %q", stop, want)
		}
	}
	if strings.Contains(stop, "renewed once") || strings.Contains(stop, "not-issued") {
		t.Errorf("stop %q: says it was renewed, or prints the token", stop)
	}
}

// TestNoCredentialRefusedSaysSetOne: with no credential configured (auth
// none) a 401 stop said a --token-command or JWT "was renewed once and
// refused again"; none was sent.
func TestNoCredentialRefusedSaysSetOne(t *testing.T) {
	sb := sandbox(t, func(c *aoptest.Config) { c.Auth = aoptest.AuthBearer })
	db, csvPath := batchFiles(t)
	writeCSV(t, csvPath, goodRows(3, "NA"))
	p := aopbatch(t, noSecrets, runArgs(csvPath, db, sb.URL)...)
	if p.code != 3 {
		t.Fatalf("exit %d, want 3\n%s", p.code, p.stderr)
	}
	stop := lastLine(p.stderr)
	for _, want := range []string{"no credential", "--auth none", "set one"} {
		if !strings.Contains(stop, want) {
			t.Errorf("stop %q does not say %q", stop, want)
		}
	}
	if strings.Contains(stop, "renewed") {
		t.Errorf("stop %q speaks of a renewal", stop)
	}
}

// rowsOf is every row of the ledger's only batch.
func rowsOf(t *testing.T, db string) []ledger.Row {
	t.Helper()
	_, _, all := ledgerRows(t, db)
	return all
}

// A night the provider cannot be reached sends no request: a refused
// connection is a try, logged, but not a request made, and the run's
// figures and the report's say none went out, with no rate or latency (a
// walkthrough: "sent 302 requests ... at 20.0 requests/s; latency p50 0s",
// a healthy night on a dashboard).
func TestUnreachableProviderMakesNoRequests(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	ln.Close() // refused from now on
	dir := t.TempDir()
	db, in, metrics, out := filepath.Join(dir, "l.db"), filepath.Join(dir, "in.csv"), filepath.Join(dir, "m.prom"), filepath.Join(dir, "rep")
	writeCSV(t, in, goodRows(3, "UR"))
	p := aopbatch(t, nil, runArgs(in, db, url, "--rate", "20", "--metrics-file", metrics, "--report", out)...)
	if p.code == 0 {
		t.Fatalf("exit 0 with the provider unreachable\n%s", p.stderr)
	}
	if c := countStates(rowsOf(t, db)); c[ledger.StateQueued] != 3 {
		t.Errorf("states %v, want all 3 queued: nothing reached the provider", c)
	}
	if !strings.Contains(p.stdout, "sent 0 requests (0 recharges, 0 status enquiries)") || strings.Contains(p.stdout, "latency") ||
		strings.Contains(p.stdout, "requests going out at") {
		t.Errorf("the run's figures count requests that never reached the provider:\n%s", p.stdout)
	}
	m, err := os.ReadFile(metrics)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(m), `kind="achieved"`) || strings.Contains(string(m), "aopbatch_run_latency_seconds{") {
		t.Errorf("metrics file has a rate or a latency for requests never made:\n%s", m)
	}
	if re := `aopbatch_requests\{[^}]*kind="recharge"\} 0\n`; !regexp.MustCompile(re).Match(m) {
		t.Errorf("metrics file has no %s:\n%s", re, m)
	}
}

// TestBaseURLPasswordNotRepeated: a --base-url refused for its scheme or
// host must not print a password it carries, which belongs in the auth
// settings (the client refuses such a URL, naming it without one).
func TestBaseURLPasswordNotRepeated(t *testing.T) {
	t.Parallel()
	const pw = "URLPASS-4c1e9a"
	for _, u := range []string{
		"http://svc:" + pw + "@api.example.in",
		"https://svc:" + pw + "@",
		"ftp://svc:" + pw + "@api.example.in",
		"https://svc:" + pw + "@api example.in",
	} {
		c := connFlags{baseURL: u}
		err := c.check()
		if err == nil {
			t.Fatalf("--base-url %q accepted", u)
		}
		if strings.Contains(err.Error(), pw) {
			t.Errorf("--base-url %q refused with its password: %v", u, err)
		}
	}
}

// TestMisreadLedgerURLNotRepeated: a --ledger meant as a database but
// not a postgres:// URL (the scheme in capitals, a key=value string) is
// refused before anything is created, without repeating its password:
// taken as a file name, it was printed back whole in the log and the
// error, and run created a SQLite file of that name.
func TestMisreadLedgerURLNotRepeated(t *testing.T) {
	t.Parallel()
	const pw = "LEDGERPASS-7d2f"
	_, csvPath := batchFiles(t)
	writeCSV(t, csvPath, goodRows(1, "M"))
	dir := t.TempDir()
	for _, loc := range []string{
		"POSTGRES://svc:" + pw + "@127.0.0.1:1/aop",
		"mysql://svc:" + pw + "@127.0.0.1:1/aop",
		"host=127.0.0.1 port=1 dbname=aop user=svc password=" + pw,
	} {
		for _, args := range [][]string{
			{"status", "--ledger", loc},
			runArgs(csvPath, loc, "http://127.0.0.1:1"),
		} {
			// In dir: taken as a relative file name, the location is
			// created there.
			cmd := aopbatchCmd(context.Background(), []string{"HOME=" + dir}, args...)
			cmd.Dir = dir
			var out, errb bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errb
			p := finished(t, args, cmd.Run(), out.String(), errb.String())
			if p.code != 1 {
				t.Errorf("aopbatch %s --ledger %q: exit %d, want 1\n%s", args[0], loc, p.code, p.stderr)
			}
			if strings.Contains(p.stdout+p.stderr, pw) {
				t.Errorf("aopbatch %s --ledger %q repeats the password:\n%s%s", args[0], loc, p.stdout, p.stderr)
			}
			if !strings.Contains(p.stderr, "postgres://") {
				t.Errorf("aopbatch %s --ledger %q does not say what a PostgreSQL ledger is named by:\n%s", args[0], loc, p.stderr)
			}
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) > 0 {
		t.Errorf("a misread --ledger created %v", ents)
	}
}
