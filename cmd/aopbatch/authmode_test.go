package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aopbatch/aopbatch/batch/aop/aoptest"
	"github.com/aopbatch/aopbatch/ledger"
)

// noSecrets clears every credential variable the tests' own environment
// might carry, so each test says exactly what is configured.
var noSecrets = []string{"AOP_TOKEN=", "AOP_JWT_SECRET=", "AOP_PARTNER_ID="}

// TestAuthModeFollowsWhatIsConfigured: without --auth, a token in
// AOP_TOKEN means bearer, in run and in resolve alike, instead of sending
// unauthenticated and stopping on "authentication failed"; two kinds of
// secret configured at once are refused, naming both.
func TestAuthModeFollowsWhatIsConfigured(t *testing.T) {
	t.Parallel()
	const token = "tok-AUTO-3b9e1f"
	sb := sandbox(t, func(c *aoptest.Config) {
		c.Auth = aoptest.AuthBearer
		c.Tokens = []string{token}
		c.PendingRate = 1
		c.PendingDelay = 500 * time.Millisecond
	})
	db, csvPath := batchFiles(t)
	rows := goodRows(5, "AM")
	writeCSV(t, csvPath, rows)
	env := append(noSecrets, "AOP_TOKEN="+token)
	// Every answer pending, and no time to ask again: resolve has work.
	p := aopbatch(t, env, runArgs(csvPath, db, sb.URL, "--resolve-timeout", "1ms")...)
	if p.code != 3 {
		t.Fatalf("run without --auth, AOP_TOKEN set: exit %d, want 3 (rows pending)\n%s", p.code, p.stderr)
	}
	if !strings.Contains(p.stderr, "auth=bearer") || !strings.Contains(p.stderr, "AOP_TOKEN") {
		t.Errorf("run does not log the mode it chose and why:\n%s", p.stderr)
	}
	if strings.Contains(p.stderr+p.stdout, token) {
		t.Errorf("the token reached the output:\n%s", p.stderr)
	}
	_, _, all := ledgerRows(t, db)
	if c := countStates(all); c[ledger.StatePending] != len(rows) {
		t.Fatalf("states %v, want all %d pending", c, len(rows))
	}
	time.Sleep(600 * time.Millisecond)
	p = aopbatch(t, env, "resolve", "--ledger", db, "--base-url", sb.URL, "--progress", "never")
	if p.code != 0 {
		t.Fatalf("resolve without --auth, AOP_TOKEN set: exit %d, want 0\n%s", p.code, p.stderr)
	}
	if n := sb.Stats().AuthFailures; n != 0 {
		t.Errorf("%d requests refused for want of a credential", n)
	}

	// Two secrets and no choice: refused before anything, naming both.
	db2 := filepath.Join(t.TempDir(), "l.db")
	before := sb.Stats().Requests
	both := append(noSecrets, "AOP_TOKEN="+token, "AOP_JWT_SECRET=jwt-secret-AUTO")
	p = aopbatch(t, both, runArgs(csvPath, db2, sb.URL)...)
	if p.code != 1 || !strings.Contains(p.stderr, "AOP_TOKEN") || !strings.Contains(p.stderr, "AOP_JWT_SECRET") || !strings.Contains(p.stderr, "--auth") {
		t.Errorf("two secrets, no --auth: exit %d, want 1 naming both and --auth\n%s", p.code, p.stderr)
	}
	if n := sb.Stats().Requests - before; n != 0 {
		t.Errorf("%d requests sent with the mode undecided", n)
	}
	// An explicit --auth settles it. Another file: the first is paid, and
	// sent again from a new ledger it would stop as a file sent before.
	csv2 := filepath.Join(t.TempDir(), "in.csv")
	writeCSV(t, csv2, goodRows(5, "AB"))
	p = aopbatch(t, both, runArgs(csv2, db2, sb.URL, "--auth", "bearer", "--resolve-timeout", "5s")...)
	if p.code != 0 {
		t.Errorf("two secrets, --auth bearer: exit %d, want 0\n%s", p.code, p.stderr)
	}
}

// TestSecretFileReadableByOthersRefused: a --token-file or
// --jwt-secret-file that others can read is refused before anything is
// sent, as ssh refuses such a key; private, or shared with a group only,
// it is used.
func TestSecretFileReadableByOthersRefused(t *testing.T) {
	t.Parallel()
	const token, secret, partner = "tok-FILE-7c2a90", "jwt-FILE-secret-51d3", "PARTNER-F"
	sbBearer := sandbox(t, func(c *aoptest.Config) { c.Auth = aoptest.AuthBearer; c.Tokens = []string{token} })
	sbJWT := sandbox(t, func(c *aoptest.Config) { c.Auth = aoptest.AuthJWT; c.JWTSecret = []byte(secret); c.PartnerID = partner })
	dir := t.TempDir()
	for _, tc := range []struct {
		flag, value string
		sb          *aoptest.TestServer
	}{
		{"--token-file", token, sbBearer},
		{"--jwt-secret-file", secret, sbJWT},
	} {
		for _, mode := range []os.FileMode{0o644, 0o604, 0o602, 0o600, 0o640} {
			name := fmt.Sprintf("%s %#o", tc.flag, mode)
			path := filepath.Join(dir, fmt.Sprintf("secret-%s-%o", tc.flag[2:], mode))
			if err := os.WriteFile(path, []byte(tc.value+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, mode); err != nil {
				t.Fatal(err)
			}
			db, csvPath := filepath.Join(dir, fmt.Sprintf("%s-%o.db", tc.flag[2:], mode)), filepath.Join(dir, "in.csv")
			writeCSV(t, csvPath, goodRows(2, fmt.Sprintf("SF%o%s", mode, tc.flag[2:5])))
			before := tc.sb.Stats().Requests
			p := aopbatch(t, append(noSecrets, "AOP_PARTNER_ID="+partner), runArgs(csvPath, db, tc.sb.URL, tc.flag, path)...)
			if strings.Contains(p.stdout+p.stderr, tc.value) {
				t.Errorf("%s: the secret reached the output", name)
			}
			if mode&0o007 != 0 {
				if p.code != 1 || !strings.Contains(p.stderr, path) || !strings.Contains(p.stderr, "chmod 600") {
					t.Errorf("%s: exit %d, want 1 naming the file and the fix\n%s", name, p.code, p.stderr)
				}
				if n := tc.sb.Stats().Requests - before; n != 0 {
					t.Errorf("%s: %d requests sent", name, n)
				}
				continue
			}
			if p.code != 0 {
				t.Errorf("%s: exit %d, want 0\n%s", name, p.code, p.stderr)
			}
		}
	}
}

// failTokenArg makes the test binary a token command that fails, printing
// a secret on stderr as a careless token tool might.
const (
	failTokenArg    = "fail-token-command"
	failTokenSecret = "SECRET-VALUE-8d1f3a"
)

func failToken() int {
	fmt.Fprintf(os.Stderr, "vault: token=%s refused for svc-aop\nvault: %s again\n", failTokenSecret, failTokenSecret)
	return 2
}

// TestTokenCommandStderrKeptOutOfTheLedger: a failing --token-command's
// stderr never reaches the ledger; the log says its exit status and one
// bounded line with the secret blanked out.
func TestTokenCommandStderrKeptOutOfTheLedger(t *testing.T) {
	t.Parallel()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(exe, " \t") {
		t.Skipf("test binary path %q has spaces; --token-command is split on spaces", exe)
	}
	sb := sandbox(t, func(c *aoptest.Config) { c.Auth = aoptest.AuthBearer })
	db, csvPath := batchFiles(t)
	writeCSV(t, csvPath, goodRows(3, "TC"))
	p := aopbatch(t, noSecrets, runArgs(csvPath, db, sb.URL, "--auth", "command", "--token-command", exe+" "+failTokenArg)...)
	if p.code != 3 {
		t.Fatalf("exit %d, want 3 (no credential: rows stay queued)\n%s", p.code, p.stderr)
	}
	if strings.Contains(p.stdout+p.stderr, failTokenSecret) {
		t.Errorf("the token command's secret reached the output:\n%s", p.stderr)
	}
	if !strings.Contains(p.stderr, "exit status 2") || !strings.Contains(p.stderr, `stderr="vault: token=[redacted] refused for svc-aop"`) {
		t.Errorf("the log does not give the exit status and the redacted line:\n%s", p.stderr)
	}
	for _, name := range []string{db, db + "-wal"} {
		b, err := os.ReadFile(name)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		for _, s := range []string{failTokenSecret, "vault"} {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("%s holds %q from the token command's stderr", filepath.Base(name), s)
			}
		}
	}
	_, _, all := ledgerRows(t, db)
	if c := countStates(all); c[ledger.StateQueued] != 3 {
		t.Errorf("states %v, want all 3 queued", c)
	}
}
