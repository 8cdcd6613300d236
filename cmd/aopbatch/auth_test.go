package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aopbatch/aopbatch/batch/aop/aoptest"
	"github.com/aopbatch/aopbatch/ledger"
)

// The test binary, run as "BINARY mint-sandbox-token" with tokenURLEnv set,
// is a real --token-command: see TestMain and mintToken.
const (
	tokenURLEnv   = "AOPBATCH_TEST_TOKEN_URL"   // the sandbox's /sandbox/token
	tokenCountEnv = "AOPBATCH_TEST_TOKEN_COUNT" // file that gets a line per run
	mintTokenArg  = "mint-sandbox-token"
)

// mintToken asks the sandbox at url for a token, prints it, and appends a
// line to countFile so the test can count the runs. It returns the exit code.
func mintToken(url, countFile string) int {
	hc := &http.Client{Timeout: 10 * time.Second}
	resp, err := hc.Post(url, "application/json", strings.NewReader("{}"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "mint token:", err)
		return 1
	}
	defer resp.Body.Close()
	var ans struct {
		Token string `json:"token"`
	}
	err = json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&ans)
	if err != nil || resp.StatusCode != http.StatusOK || ans.Token == "" {
		fmt.Fprintf(os.Stderr, "mint token: HTTP %d, no token (%v)\n", resp.StatusCode, err)
		return 1
	}
	if countFile != "" {
		f, err := os.OpenFile(countFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			fmt.Fprintln(os.Stderr, "mint token:", err)
			return 1
		}
		_, werr := fmt.Fprintln(f, "minted")
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			fmt.Fprintln(os.Stderr, "mint token:", werr)
			return 1
		}
	}
	fmt.Println(ans.Token)
	return 0
}

// tokenCommand makes the test binary the --token-command for sb. It returns
// the flag's value, the environment the aopbatch process (and so the
// command) needs, and a func reporting how many times the command has run.
func tokenCommand(t *testing.T, sb *aoptest.TestServer) (string, []string, func() int) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(exe, " \t\r\n") {
		t.Skipf("test binary path %q has spaces; --token-command is split on spaces", exe)
	}
	counter := filepath.Join(t.TempDir(), "token-runs")
	runs := func() int {
		b, err := os.ReadFile(counter)
		if errors.Is(err, os.ErrNotExist) {
			return 0
		}
		if err != nil {
			t.Fatal(err)
		}
		return bytes.Count(b, []byte("\n"))
	}
	env := []string{tokenURLEnv + "=" + sb.URL + "/sandbox/token", tokenCountEnv + "=" + counter,
		// A -race binary sleeps 1s at exit by default, which would make
		// every token as old as the sandbox's TTL by the time it arrives.
		"GORACE=" + strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0")}
	return exe + " " + mintTokenArg, env, runs
}

// checkAllSuccessOnce asserts that every row is success in the ledger and
// was processed exactly once by the sandbox.
func checkAllSuccessOnce(t *testing.T, sb *aoptest.TestServer, db string, rows []sampleRow) {
	t.Helper()
	_, byRef, all := ledgerRows(t, db)
	if got, want := len(all), len(rows); got != want {
		t.Fatalf("ledger rows = %d, want %d", got, want)
	}
	bad := 0
	for _, r := range rows {
		st := byRef[r.ref].State
		n := sb.NonDuplicateAnswers(r.ref)
		if (st != ledger.StateSuccess || n != 1 || sb.Charged(r.ref) != 1) && bad < 5 {
			bad++
			t.Errorf("ref %s: ledger %s, processed %d times, charged %d; want success, 1, 1",
				r.ref, st, n, sb.Charged(r.ref))
		}
	}
}

// TestAuthTokenExpiresMidRun: a run that outlives several sandbox tokens
// (TTL 1s, 5s of sending) finishes with every row paid exactly once,
// whether the client renews ahead of expiry (--token-ttl shorter than the
// provider's) or learns of it from a 401 (--token-ttl longer) and refreshes.
func TestAuthTokenExpiresMidRun(t *testing.T) {
	t.Parallel()
	const sandboxTTL = time.Second
	for _, tc := range []struct {
		name      string
		ttl       time.Duration
		expect401 bool
	}{
		{"renewed-ahead", 500 * time.Millisecond, false},
		{"renewed-after-401", 10 * time.Second, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sb := sandbox(t, func(c *aoptest.Config) { c.Auth = aoptest.AuthBearer; c.TokenTTL = sandboxTTL })
			tokenCmd, env, runs := tokenCommand(t, sb)
			dir := t.TempDir()
			db, csvPath := filepath.Join(dir, "l.db"), filepath.Join(dir, "in.csv")
			rows := goodRows(250, "E")
			writeCSV(t, csvPath, rows)

			start := time.Now()
			p := aopbatch(t, env, runArgs(csvPath, db, sb.URL, "--auth", "command", "--token-command", tokenCmd,
				"--token-ttl", tc.ttl.String(), "--rate", "50")...)
			elapsed := time.Since(start)
			if p.code != 0 {
				t.Fatalf("exit %d, want 0\nstderr:\n%s", p.code, p.stderr)
			}
			checkAllSuccessOnce(t, sb, db, rows)

			// Each token lives 1s at the sandbox: four or more tokens mean
			// the run crossed at least three expiries.
			n, fails := runs(), sb.Stats().AuthFailures
			t.Logf("%v: %d token runs, %d auth failures", elapsed.Round(time.Millisecond), n, fails)
			if n < 4 {
				t.Errorf("token command ran %d times in %v: the run did not span 3 expiries", n, elapsed)
			}
			// One run per token lifetime, not one per rejected request.
			life := min(tc.ttl*8/10, sandboxTTL)
			if limit := int(elapsed/life) + 2; n > limit {
				t.Errorf("token command ran %d times in %v, want at most %d (one per token lifetime)", n, elapsed, limit)
			}
			switch {
			case tc.expect401 && fails == 0:
				t.Errorf("no request was refused: the 401-then-refresh path was not exercised")
			case !tc.expect401 && fails != 0:
				t.Errorf("%d requests refused: the token was not renewed before it expired", fails)
			}
		})
	}
}

// TestJWTWrongSecretStopsThenRightSecretFinishes: a wrong secret stops the
// run at once with every row still queued and a message that names the
// setting without printing it; the rerun with the right secret sends every
// row once, each request with a fresh reqid (the sandbox refuses a replay).
func TestJWTWrongSecretStopsThenRightSecretFinishes(t *testing.T) {
	t.Parallel()
	const right, wrong, partner = "jwt-RIGHT-secret-5d1c07", "jwt-WRONG-secret-8e2f94", "PARTNER-9"
	sb := sandbox(t, func(c *aoptest.Config) {
		c.Auth = aoptest.AuthJWT
		c.JWTSecret = []byte(right)
		c.PartnerID = partner
	})
	db, csvPath := batchFiles(t)
	rows := goodRows(200, "J")
	writeCSV(t, csvPath, rows)
	// A generous timeout: a request timed out on a loaded machine would be
	// unknown, not queued, and that is not what this test is about.
	args := runArgs(csvPath, db, sb.URL, "--auth", "jwt", "--timeout", "15s")

	p := aopbatch(t, []string{"AOP_JWT_SECRET=" + wrong, "AOP_PARTNER_ID=" + partner}, args...)
	if p.code != 3 {
		t.Fatalf("wrong secret: exit %d, want 3\nstderr:\n%s", p.code, p.stderr)
	}
	if !strings.Contains(p.stderr, "AOP_JWT_SECRET") || !strings.Contains(p.stderr, "authentication failed") {
		t.Errorf("stderr does not say authentication failed and name AOP_JWT_SECRET:\n%s", p.stderr)
	}
	for _, s := range []string{right, wrong} {
		if strings.Contains(p.stdout+p.stderr, s) {
			t.Errorf("a JWT secret leaked into the output:\n%s\n%s", p.stdout, p.stderr)
		}
	}
	_, _, all := ledgerRows(t, db)
	if c := countStates(all); c[ledger.StateQueued] != len(rows) {
		t.Errorf("states after a wrong secret %v: want all %d queued, none failed", c, len(rows))
	}
	if n := sb.Stats().Recorded; n != 0 {
		t.Errorf("sandbox recorded %d transactions under a wrong secret", n)
	}
	if n := sb.Stats().AuthFailures; n > 40 {
		t.Errorf("%d auth failures: the run kept sending after the credential was refused", n)
	}

	before := sb.Stats().AuthFailures
	p = aopbatch(t, []string{"AOP_JWT_SECRET=" + right, "AOP_PARTNER_ID=" + partner}, args...)
	if p.code != 0 {
		t.Fatalf("right secret: exit %d, want 0\nstderr:\n%s", p.code, p.stderr)
	}
	if n := sb.Stats().AuthFailures - before; n != 0 {
		t.Errorf("%d requests refused with the right secret (reqid reused?)", n)
	}
	checkAllSuccessOnce(t, sb, db, rows)
}

// TestTokenCommandRunsOncePerTTL: sixteen workers starting at once share one
// run of the token command, and its token lasts the whole --token-ttl.
func TestTokenCommandRunsOncePerTTL(t *testing.T) {
	t.Parallel()
	sb := sandbox(t, func(c *aoptest.Config) { c.Auth = aoptest.AuthBearer; c.Latency = 2 * time.Millisecond })
	tokenCmd, env, runs := tokenCommand(t, sb)
	db, csvPath := batchFiles(t)
	rows := goodRows(200, "O")
	writeCSV(t, csvPath, rows)
	p := aopbatch(t, env, runArgs(csvPath, db, sb.URL, "--auth", "command", "--token-command", tokenCmd,
		"--token-ttl", "600s", "--workers", "16")...)
	if p.code != 0 {
		t.Fatalf("exit %d, want 0\nstderr:\n%s", p.code, p.stderr)
	}
	if got := runs(); got != 1 {
		t.Errorf("token command ran %d times for 200 rows on 16 workers, want 1", got)
	}
	if n := sb.Stats().AuthFailures; n != 0 {
		t.Errorf("%d requests refused", n)
	}
	checkAllSuccessOnce(t, sb, db, rows)
}

// TestSecretsNeverLeak runs bearer and jwt, with right and wrong
// credentials, in both log formats, with reports and a later resolve, and
// then looks for every token and secret in every byte aopbatch wrote: the
// ledger and its journal files, the reports, standard output and error.
func TestSecretsNeverLeak(t *testing.T) {
	t.Parallel()
	const (
		goodToken   = "tok-LEAKCHECK-good-3f9a1b7c"
		badToken    = "tok-LEAKCHECK-bad-77d02e19"
		goodSecret  = "jwt-LEAKCHECK-good-c2e8d4a6"
		badSecret   = "jwt-LEAKCHECK-bad-91b3f05e"
		partner     = "PARTNER-LEAK"
		rowsPerCase = 30
	)
	secrets := []string{goodToken, badToken, goodSecret, badSecret}
	for _, mode := range []string{"bearer", "jwt"} {
		for _, format := range []string{"text", "json"} {
			for _, right := range []bool{true, false} {
				name := fmt.Sprintf("%s-%s-right=%v", mode, format, right)
				t.Run(name, func(t *testing.T) {
					t.Parallel()
					sb := sandbox(t, func(c *aoptest.Config) {
						c.Auth = mode
						c.Tokens = []string{goodToken}
						c.JWTSecret = []byte(goodSecret)
						c.PartnerID = partner
						c.FailRate = 0.1
						c.PendingRate = 0.1
						c.PendingDelay = 200 * time.Millisecond
					})
					env := []string{"AOP_PARTNER_ID=" + partner, "AOP_TOKEN=" + badToken, "AOP_JWT_SECRET=" + badSecret}
					if right {
						env = []string{"AOP_PARTNER_ID=" + partner, "AOP_TOKEN=" + goodToken, "AOP_JWT_SECRET=" + goodSecret}
					}
					dir := t.TempDir()
					db, csvPath := filepath.Join(dir, "l.db"), filepath.Join(dir, "in.csv")
					reportDir := filepath.Join(dir, "report")
					rows := append(goodRows(rowsPerCase, "S"), sampleRow{"311", "CA-BAD", "1.234", "SBAD"})
					writeCSV(t, csvPath, rows)
					p := aopbatch(t, env, runArgs(csvPath, db, sb.URL, "--auth", mode, "--log-format", format,
						"--report", reportDir, "--max-reject-rate", "1")...)
					wantCode := 2 // the rejected row, and failures
					if !right {
						wantCode = 3
					}
					if p.code != wantCode {
						t.Fatalf("run exit %d, want %d\nstderr:\n%s", p.code, wantCode, p.stderr)
					}
					if _, err := os.Stat(filepath.Join(reportDir, "report.json")); err != nil {
						t.Fatalf("no report written: %v", err)
					}
					r := aopbatch(t, env, "resolve", "--ledger", db, "--base-url", sb.URL, "--auth", mode,
						"--log-format", format, "--progress", "never", "--resolve-timeout", "2s",
						"--report", filepath.Join(dir, "report2"))
					out := map[string]string{
						"run stdout": p.stdout, "run stderr": p.stderr,
						"resolve stdout": r.stdout, "resolve stderr": r.stderr,
					}
					err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
						if err != nil || d.IsDir() || path == csvPath {
							return err
						}
						b, err := os.ReadFile(path)
						out[path] = string(b)
						return err
					})
					if err != nil {
						t.Fatal(err)
					}
					if len(out) < 4+1+5 {
						t.Fatalf("only %d outputs to inspect: the ledger or the reports are missing", len(out))
					}
					for where, text := range out {
						for _, s := range secrets {
							if strings.Contains(text, s) {
								t.Errorf("%s contains the credential %q", where, s)
							}
						}
					}
				})
			}
		}
	}
}

// TestSecretsNotInHelp: flag defaults come from the environment for some
// settings; a secret set there must not be printed by -h.
func TestSecretsNotInHelp(t *testing.T) {
	t.Parallel()
	const token, secret = "tok-HELPCHECK-6a0e5c", "jwt-HELPCHECK-0b7d3f"
	env := []string{"AOP_TOKEN=" + token, "AOP_JWT_SECRET=" + secret}
	for _, sub := range []string{"run", "resolve"} {
		p := aopbatch(t, env, sub, "-h")
		if p.code != 0 || !strings.Contains(p.stderr+p.stdout, "-auth") {
			t.Fatalf("%s -h: exit %d, want 0 and the flags\n%s%s", sub, p.code, p.stdout, p.stderr)
		}
		for _, s := range []string{token, secret} {
			if strings.Contains(p.stdout+p.stderr, s) {
				t.Errorf("%s -h prints the secret %q from the environment", sub, s)
			}
		}
	}
}

// TestSecretFlagsRefused: a secret is never a flag value (argv is visible
// in ps). Every flag about a credential names a file, a command or a
// duration, and the obvious names do not exist.
func TestSecretFlagsRefused(t *testing.T) {
	t.Parallel()
	for _, sub := range []string{"run", "resolve"} {
		for _, name := range []string{"token", "jwt-secret", "secret", "password", "aop-token"} {
			p := aopbatch(t, nil, sub, "--"+name, "x")
			if p.code != 1 || !strings.Contains(p.stderr, "flag provided but not defined: -"+name) {
				t.Errorf("%s --%s x: exit %d, want 1 with a flag error\n%s", sub, name, p.code, p.stderr)
			}
		}
		p := aopbatch(t, nil, sub, "-h")
		names := regexp.MustCompile(`(?m)^\s+-([a-z0-9-]+)`).FindAllStringSubmatch(p.stderr+p.stdout, -1)
		if len(names) < 10 {
			t.Fatalf("%s -h lists %d flags: cannot check them\n%s", sub, len(names), p.stderr)
		}
		credential := regexp.MustCompile(`token|secret|password|passwd|apikey|api-key`)
		safe := regexp.MustCompile(`-(file|command|ttl)$`)
		for _, m := range names {
			if credential.MatchString(m[1]) && !safe.MatchString(m[1]) {
				t.Errorf("%s has flag --%s, which would take a secret on the command line", sub, m[1])
			}
		}
	}
}
