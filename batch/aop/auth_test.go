package aop

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestMain lets the test binary act as the token command of Command when
// AOPTEST_HELPER is set, so the tests need no shell and no other program.
func TestMain(m *testing.M) {
	if mode := os.Getenv("AOPTEST_HELPER"); mode != "" {
		os.Exit(tokenHelper(mode))
	}
	os.Exit(m.Run())
}

// tokenHelper appends a line to $AOPTEST_COUNT, waits $AOPTEST_SLEEP, and
// prints "tok-N" where N is the number of runs so far.
func tokenHelper(mode string) int {
	switch mode {
	case "token":
		f, err := os.OpenFile(os.Getenv("AOPTEST_COUNT"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		_, _ = f.WriteString("run\n")
		f.Close()
		b, _ := os.ReadFile(os.Getenv("AOPTEST_COUNT"))
		if d, err := time.ParseDuration(os.Getenv("AOPTEST_SLEEP")); err == nil {
			time.Sleep(d)
		}
		fmt.Printf("  tok-%d  \nsecond line\n", strings.Count(string(b), "\n"))
		return 0
	case "failcount":
		f, err := os.OpenFile(os.Getenv("AOPTEST_COUNT"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
		if err == nil {
			_, _ = f.WriteString("run\n")
			f.Close()
		}
		fmt.Fprintln(os.Stderr, "vault unreachable")
		return 4
	case "flaky":
		// Fails its second run only: a token service's passing blip.
		f, err := os.OpenFile(os.Getenv("AOPTEST_COUNT"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
		if err != nil {
			return 1
		}
		_, _ = f.WriteString("run\n")
		f.Close()
		b, _ := os.ReadFile(os.Getenv("AOPTEST_COUNT"))
		n := strings.Count(string(b), "\n")
		if n == 2 {
			fmt.Fprintln(os.Stderr, "vault: 503 service unavailable")
			return 5
		}
		fmt.Printf("tok-%d\n", n)
		return 0
	case "fail":
		fmt.Println("leaked-token-value")
		fmt.Fprintf(os.Stderr, "login failed for leaked-token-value: %s", strings.Repeat("e", 500))
		return 3
	case "renewfail":
		// Gives a token of letters only (nothing shaped like a secret),
		// then fails naming it, as a tool reporting what it could not renew.
		f, err := os.OpenFile(os.Getenv("AOPTEST_COUNT"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
		if err != nil {
			return 1
		}
		_, _ = f.WriteString("run\n")
		f.Close()
		if b, _ := os.ReadFile(os.Getenv("AOPTEST_COUNT")); strings.Count(string(b), "\n") == 1 {
			fmt.Println("cachedsecretvalue")
			return 0
		}
		fmt.Fprintln(os.Stderr, "could not renew cachedsecretvalue: session ended")
		return 6
	case "empty":
		return 0
	case "env":
		// Prints, as its token, which of the secrets it was given.
		var seen []string
		for _, name := range []string{"AOP_TOKEN", "AOP_JWT_SECRET", "PGPASSWORD", "AOPBATCH_LEDGER", "AOPTEST_KEPT"} {
			if _, ok := os.LookupEnv(name); ok {
				seen = append(seen, name)
			}
		}
		fmt.Println("seen:" + strings.Join(seen, ","))
		return 0
	case "chatty":
		fmt.Fprintf(os.Stderr, "vault: login as svc-aop, token=s3cr3t-Pa55 refused; Bearer eyJhbGciOiJIUzI1NiJ9.eyJwIjoxfQ.c2lnbmF0dXJlMTIz expired, key 9f86d081884c7d659a2feaa0c55ad015 %s\nsecond line: password hunter2\n",
			strings.Repeat("x", 400))
		return 2
	}
	return 2
}

// fakeClock is a settable clock for the token cache.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// helperCommand returns a Command authenticator running the token helper,
// and a function that counts its runs.
func helperCommand(t *testing.T, mode string, ttl time.Duration, clock *fakeClock) (*commandAuth, func() int) {
	t.Helper()
	count := filepath.Join(t.TempDir(), "runs")
	env := []string{"AOPTEST_HELPER=" + mode, "AOPTEST_COUNT=" + count, "AOPTEST_SLEEP=100ms"}
	a := newCommand([]string{os.Args[0], "-test.run=^$"}, ttl, env, clock.now)
	runs := func() int {
		b, _ := os.ReadFile(count)
		return strings.Count(string(b), "\n")
	}
	return a, runs
}

// applyAll calls Apply from n goroutines at once and returns the
// Authorization headers they set.
func applyAll(t *testing.T, a Authenticator, n int) []string {
	t.Helper()
	got := make([]string, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			req, _ := http.NewRequest(http.MethodPost, "http://aop.example/", nil)
			if err := a.Apply(req); err != nil {
				t.Errorf("Apply: %v", err)
			}
			got[i] = req.Header.Get("Authorization")
		})
	}
	close(start)
	wg.Wait()
	return got
}

// TestCommandWithholdsSecrets: the token command is someone else's
// program; it gets the environment less aopbatch's other secrets.
func TestCommandWithholdsSecrets(t *testing.T) {
	t.Setenv("AOP_TOKEN", "bearer-secret")
	t.Setenv("AOP_JWT_SECRET", "jwt-secret")
	t.Setenv("PGPASSWORD", "pg-secret")
	// A shared ledger's URL may hold its password.
	t.Setenv("AOPBATCH_LEDGER", "postgres://aopbatch:pg-secret@db.internal/aopbatch")
	t.Setenv("AOPTEST_KEPT", "1")
	a, _ := helperCommand(t, "env", time.Minute, &fakeClock{t: fixedNow})
	req, _ := http.NewRequest(http.MethodPost, "http://aop.example/", nil)
	if err := a.Apply(req); err != nil {
		t.Fatal(err)
	}
	if got, want := req.Header.Get("Authorization"), "Bearer seen:AOPTEST_KEPT"; got != want {
		t.Errorf("the command saw %q, want %q", got, want)
	}
}

func TestCommandOneRunPerTTL(t *testing.T) {
	clock := &fakeClock{t: fixedNow}
	a, runs := helperCommand(t, "token", 10*time.Minute, clock)
	for round, want := range []string{"Bearer tok-1", "Bearer tok-2"} {
		for i, got := range applyAll(t, a, 50) {
			if got != want {
				t.Fatalf("round %d, goroutine %d: header %q, want %q", round, i, got, want)
			}
		}
		if got, want := runs(), round+1; got != want {
			t.Fatalf("round %d: command ran %d times, want %d", round, got, want)
		}
		clock.advance(10*time.Minute + time.Second) // expire the token
	}
}

func TestCommandRefreshAhead(t *testing.T) {
	clock := &fakeClock{t: fixedNow}
	a, runs := helperCommand(t, "token", 100*time.Second, clock)
	applyAll(t, a, 1)
	clock.advance(85 * time.Second)
	// Past 80% of the ttl the cached token is still served at once while a
	// new one is fetched in the background.
	if got, want := applyAll(t, a, 20)[0], "Bearer tok-1"; got != want {
		t.Errorf("header = %q, want %q", got, want)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		req, _ := http.NewRequest(http.MethodPost, "http://aop.example/", nil)
		if err := a.Apply(req); err != nil {
			t.Fatal(err)
		}
		if req.Header.Get("Authorization") == "Bearer tok-2" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("background refresh never delivered tok-2")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got, want := runs(), 2; got != want {
		t.Errorf("command ran %d times, want %d", got, want)
	}
}

func TestCommandRefresh(t *testing.T) {
	clock := &fakeClock{t: fixedNow}
	a, runs := helperCommand(t, "token", 0, clock)
	if a.ttl != 600*time.Second {
		t.Errorf("default ttl = %v, want 600s", a.ttl)
	}
	applyAll(t, a, 1)
	// A burst of 401s right after a fresh token costs no run.
	if err := a.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, want := runs(), 1; got != want {
		t.Fatalf("runs after an early Refresh = %d, want %d", got, want)
	}
	clock.advance(5 * time.Second)
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if err := a.Refresh(context.Background()); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if got, want := runs(), 2; got != want {
		t.Fatalf("runs after 20 concurrent Refresh = %d, want %d", got, want)
	}
	if got, want := applyAll(t, a, 1)[0], "Bearer tok-2"; got != want {
		t.Errorf("header = %q, want %q", got, want)
	}
}

func TestCommandWaitHonoursContext(t *testing.T) {
	clock := &fakeClock{t: fixedNow}
	a, _ := helperCommand(t, "token", 0, clock)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://aop.example/", nil)
	if err := a.Apply(req); err == nil {
		t.Error("Apply with a cancelled context: no error")
	}
}

func TestCommandErrors(t *testing.T) {
	tests := []struct {
		name string
		argv []string
		mode string
		want []string
	}{
		{"exit status", []string{os.Args[0]}, "fail", []string{os.Args[0], "exit status 3", "its stderr is in the log"}},
		{"no output", []string{os.Args[0]}, "empty", []string{"printed no token"}},
		{"no such program", []string{filepath.Join(t.TempDir(), "nope")}, "token", []string{"nope"}},
		{"no command", nil, "token", []string{"no command given"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := Command(tt.argv, 0, []string{"AOPTEST_HELPER=" + tt.mode, "AOPTEST_COUNT=" + filepath.Join(t.TempDir(), "n")})
			req, _ := http.NewRequest(http.MethodPost, "http://aop.example/", nil)
			err := a.Apply(req)
			if err == nil {
				t.Fatal("Apply: no error")
			}
			msg := err.Error()
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
			if strings.Contains(msg, "leaked-token-value") {
				t.Errorf("error %q shows the token", msg)
			}
			if strings.Contains(msg, "login failed") || strings.Contains(msg, "eee") {
				t.Errorf("error %q carries the command's stderr: it would reach the ledger", msg)
			}
			if req.Header.Get("Authorization") != "" {
				t.Error("a failed Apply set a header")
			}
		})
	}
}

func TestBearer(t *testing.T) {
	req, _ := http.NewRequest(http.MethodPost, "http://aop.example/", nil)
	if err := Bearer(" abc123 ").Apply(req); err != nil {
		t.Fatal(err)
	}
	if got, want := req.Header.Get("Authorization"), "Bearer abc123"; got != want {
		t.Errorf("header = %q, want %q", got, want)
	}
	if err := Bearer("").Apply(req); err == nil {
		t.Error("empty token: no error")
	}
	if err := Bearer("x").Refresh(context.Background()); err != nil {
		t.Errorf("Refresh: %v", err)
	}
	req2, _ := http.NewRequest(http.MethodPost, "http://aop.example/", nil)
	if err := NoAuth().Apply(req2); err != nil || len(req2.Header) != 0 {
		t.Errorf("NoAuth set %v, err %v", req2.Header, err)
	}
}

// verifyJWT decodes and checks a token independently of the package's
// encoder and returns its claims.
func verifyJWT(tok string, secret []byte) (map[string]any, error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("%d parts", len(parts))
	}
	for _, p := range parts {
		if strings.ContainsAny(p, "=+/") {
			return nil, fmt.Errorf("part %q is not unpadded base64url", p)
		}
	}
	hdr, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return nil, err
	}
	var h map[string]string
	if err := json.Unmarshal(hdr, &h); err != nil || h["alg"] != "HS256" || h["typ"] != "JWT" || len(h) != 2 {
		return nil, fmt.Errorf("header %s", hdr)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return nil, err
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(parts[0] + "." + parts[1]))
	if !hmac.Equal(sig, mac.Sum(nil)) {
		return nil, fmt.Errorf("bad signature")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, err
	}
	var claims map[string]any
	dec := json.NewDecoder(strings.NewReader(string(payload)))
	dec.UseNumber()
	if err := dec.Decode(&claims); err != nil {
		return nil, err
	}
	return claims, nil
}

func TestJWT(t *testing.T) {
	secret := []byte("jwt-secret-\x00\xff-raw")
	const n = 1000
	var mu sync.Mutex
	reqids := map[string]int{}
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		tok := r.Header.Get("Token")
		claims, err := verifyJWT(tok, secret)
		if err != nil {
			t.Errorf("token %q: %v", tok, err)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		ts, _ := claims["timestamp"].(json.Number)
		id, _ := claims["reqid"].(string)
		if ts.String() != strconv.FormatInt(fixedNow.Unix(), 10) || claims["partnerId"] != "PS001" || len(claims) != 3 {
			t.Errorf("claims = %v", claims)
		}
		if b, err := hex.DecodeString(id); err != nil || len(b) != 16 {
			t.Errorf("reqid %q is not 16 bytes of hex", id)
		}
		mu.Lock()
		reqids[id]++
		mu.Unlock()
		_, _ = io.WriteString(w, `{"status":true,"response_code":1}`)
	})
	c := newClient(t, srv.URL, func(o *Options) {
		o.Auth = JWT(secret, "PS001", "", func() time.Time { return fixedNow })
	})
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			r, err := c.Recharge(context.Background(), rechargeBody(t, "R"+strconv.Itoa(i)))
			if err != nil || r.Class != ClassSuccess {
				t.Errorf("Recharge: %v, %+v", err, r)
			}
		})
	}
	wg.Wait()
	if len(reqids) != n {
		t.Errorf("%d distinct reqids over %d requests, want %d", len(reqids), n, n)
	}
	for id, k := range reqids {
		if k > 1 {
			t.Errorf("reqid %s used %d times", id, k)
		}
	}
}

func TestJWTHeaderAndErrors(t *testing.T) {
	a := JWT([]byte("s"), "P", "X-Aop-Jwt", nil)
	req, _ := http.NewRequest(http.MethodPost, "http://aop.example/", nil)
	if err := a.Apply(req); err != nil {
		t.Fatal(err)
	}
	tok := req.Header.Get("X-Aop-Jwt")
	if strings.HasPrefix(tok, "Bearer") || req.Header.Get("Token") != "" || req.Header.Get("Authorization") != "" {
		t.Errorf("headers = %v, want the bare JWT in X-Aop-Jwt only", req.Header)
	}
	claims, err := verifyJWT(tok, []byte("s"))
	if err != nil {
		t.Fatal(err)
	}
	ts, _ := claims["timestamp"].(json.Number).Int64()
	if d := time.Since(time.Unix(ts, 0)); d < -time.Second || d > 5*time.Second {
		t.Errorf("timestamp %d is not now", ts)
	}
	if err := JWT(nil, "P", "", nil).Apply(req); err == nil {
		t.Error("empty secret: no error")
	}
	if err := JWT([]byte("s"), "", "", nil).Apply(req); err == nil {
		t.Error("empty partner id: no error")
	}
}

// TestSecretsNeverPrinted formats every authenticator, and structures that
// hold one, with every common verb and checks no secret comes out.
func TestSecretsNeverPrinted(t *testing.T) {
	const (
		bearerTok = "bearer-secret-4711"
		jwtSecret = "jwt-secret-4712"
	)
	clock := &fakeClock{t: fixedNow}
	cmd, _ := helperCommand(t, "token", 0, clock)
	cmdTok := strings.TrimPrefix(applyAll(t, cmd, 1)[0], "Bearer ")
	if cmdTok == "" {
		t.Fatal("command gave no token")
	}
	auths := map[string]Authenticator{
		"none":    NoAuth(),
		"bearer":  Bearer(bearerTok),
		"command": cmd,
		"jwt":     JWT([]byte(jwtSecret), "PS001", "", nil),
	}
	secrets := []string{bearerTok, jwtSecret, cmdTok}
	for _, s := range append([]string(nil), secrets...) {
		secrets = append(secrets, hex.EncodeToString([]byte(s)), fmt.Sprintf("%v", []byte(s)))
	}
	for mode, a := range auths {
		if got := a.Mode(); got != mode {
			t.Errorf("Mode() = %q, want %q", got, mode)
		}
		c := newClient(t, "http://127.0.0.1:1", func(o *Options) { o.Auth = a })
		values := map[string]any{
			"authenticator": a,
			"options":       Options{BaseURL: "http://127.0.0.1:1", Auth: a},
			"options ptr":   &Options{Auth: a},
			"client":        c,
			"slice":         []Authenticator{a},
		}
		for vname, v := range values {
			for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d"} {
				out := fmt.Sprintf(verb, v)
				for _, s := range secrets {
					if strings.Contains(out, s) {
						t.Errorf("%s %s formatted with %s shows a secret: %s", mode, vname, verb, out)
					}
				}
			}
		}
		if got := fmt.Sprint(a); got != mode {
			t.Errorf("fmt.Sprint(%s authenticator) = %q, want %q", mode, got, mode)
		}
	}
}

// TestCommandStderrOnlyInTheLog: what a failing token command prints on
// stderr never reaches the error (which the ledger records): the log gets
// its exit status and its first stderr line, bounded, with the token and
// anything that looks like a secret blanked out.
func TestCommandStderrOnlyInTheLog(t *testing.T) {
	for _, tc := range []struct {
		mode, status string
		leaks        []string
		want         []string
	}{
		{"fail", "exit status 3", []string{"leaked-token-value"}, []string{"login failed for [redacted]"}},
		{"chatty", "exit status 2", []string{"s3cr3t-Pa55", "eyJhbGciOiJIUzI1NiJ9", "c2lnbmF0dXJlMTIz", "9f86d081884c7d659a2feaa0c55ad015", "hunter2", "second line"},
			[]string{"vault: login as svc-aop, token=[redacted] refused; Bearer [redacted] expired, key [redacted]"}},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			var logs bytes.Buffer
			log := slog.New(slog.NewJSONHandler(&logs, nil))
			a := CommandWithLog([]string{os.Args[0]}, 0, []string{"AOPTEST_HELPER=" + tc.mode, "AOPTEST_COUNT=" + filepath.Join(t.TempDir(), "n")}, log)
			req, _ := http.NewRequest(http.MethodPost, "http://aop.example/", nil)
			err := a.Apply(req)
			if err == nil {
				t.Fatal("Apply: no error")
			}
			var rec struct {
				Msg, Command, Status, Stderr string
			}
			if jerr := json.Unmarshal(logs.Bytes(), &rec); jerr != nil {
				t.Fatalf("log %q: %v", logs.String(), jerr)
			}
			if rec.Status != tc.status || rec.Command != os.Args[0] {
				t.Errorf("log = %+v, want command and %q", rec, tc.status)
			}
			for _, w := range tc.want {
				if !strings.Contains(rec.Stderr, w) {
					t.Errorf("logged stderr %q does not contain %q", rec.Stderr, w)
				}
			}
			if len(rec.Stderr) > 200 {
				t.Errorf("logged stderr is %d bytes, want at most 200", len(rec.Stderr))
			}
			for _, l := range tc.leaks {
				if strings.Contains(logs.String()+err.Error(), l) {
					t.Errorf("%q leaked: log %s error %q", l, logs.String(), err)
				}
			}
			if strings.Contains(err.Error(), "vault") || strings.Contains(err.Error(), "login") {
				t.Errorf("error %q carries stderr", err)
			}
		})
	}
}

// TestCommandFailureHidesTheTokenItHad: a token command that fails to
// renew may name the token it was asked to replace. The log line blanks
// that token too, not only one the failed run printed.
func TestCommandFailureHidesTheTokenItHad(t *testing.T) {
	var logs bytes.Buffer
	clock := &fakeClock{t: fixedNow}
	a, runs := helperCommand(t, "renewfail", 0, clock)
	a.log = slog.New(slog.NewJSONHandler(&logs, nil))
	if got := applyAll(t, a, 1)[0]; got != "Bearer cachedsecretvalue" {
		t.Fatalf("first token: %q", got)
	}
	clock.advance(time.Minute) // past Refresh's two seconds
	if err := a.Refresh(context.Background()); err == nil {
		t.Fatal("Refresh: no error from a command that failed")
	}
	if runs() < 2 {
		t.Fatalf("the command ran %d times, want a renewal", runs())
	}
	if !strings.Contains(logs.String(), "could not renew [redacted]") {
		t.Errorf("log does not carry the failed run's stderr, redacted: %s", logs.String())
	}
	if strings.Contains(logs.String(), "cachedsecretvalue") {
		t.Errorf("the log shows the token the command had given: %s", logs.String())
	}
}

// TestCommandThatHangsFailsTheNextCaller: a token command that hangs
// outlasts the deadline of every request waiting for it. When it is
// killed, nobody hears why; the next caller is told, rather than starting
// it again to time out once more (each row would, for ever), and the one
// after that runs it anew.
func TestCommandThatHangsFailsTheNextCaller(t *testing.T) {
	a, runs := helperCommand(t, "token", 0, &fakeClock{t: fixedNow})
	a.env = append(a.env, "AOPTEST_SLEEP=1h") // the last of a name wins
	a.timeout = 300 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	_, err := a.get(ctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("get while the command hangs: %v, want the request's deadline", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		a.mu.Lock()
		done := a.inflight == nil
		a.mu.Unlock()
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the hanging command was not killed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	_, err = a.get(context.Background())
	if err == nil || !strings.Contains(err.Error(), "timed out after 300ms") {
		t.Errorf("get after the command was killed: %v, want why it failed", err)
	}
	if n := runs(); n != 1 {
		t.Errorf("command runs after the killed one was reported: %d, want 1 (no new run)", n)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
	_, _ = a.get(ctx)
	cancel()
	if n := runs(); n != 2 {
		t.Errorf("command runs after its failure was told once: %d, want 2 (run anew)", n)
	}
}

// TestNoCredentialRunsTheCommandOnce: a token command that fails is run
// once for a request, not once more as a renewal straight after.
func TestNoCredentialRunsTheCommandOnce(t *testing.T) {
	a, runs := helperCommand(t, "failcount", 0, &fakeClock{t: fixedNow})
	c, err := New(Options{BaseURL: "http://127.0.0.1:1", RegistrationID: "AOP-554", Auth: a})
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.Recharge(context.Background(), []byte(`{"referenceid":"R1"}`))
	if err != nil || r.Class != ClassAuth || !r.NoCredential || r.MadeRequest() {
		t.Errorf("Recharge = %+v, %v; want no credential, no request", r, err)
	}
	st, err := c.Status(context.Background(), "R1")
	if err != nil || st.Verdict != VerdictAuth || !st.NoCredential {
		t.Errorf("Status = %+v, %v; want no credential", st, err)
	}
	if n := runs(); n != 2 {
		t.Errorf("command runs for one Recharge and one Status: %d, want 2", n)
	}
}

// TestCommandFailingOnceIsRunAgain: a token command that has worked
// fails once when its token is renewed (a passing blip of the token
// service). SPEC 5: renew once and retry before stopping. Before
// 304b1bd the Client renewed after the failure and the row was sent;
// since, the exchange ended "no credential", which stops the whole run
// (exit 3) for one blip.
func TestCommandFailingOnceIsRunAgain(t *testing.T) {
	clock := &fakeClock{t: fixedNow}
	a, runs := helperCommand(t, "flaky", time.Minute, clock)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer tok-") {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"status":false,"response_code":10,"message":"Signature verification failed"}`)
			return
		}
		fmt.Fprint(w, `{"status":true,"response_code":1,"message":"Recharge successful"}`)
	}))
	t.Cleanup(srv.Close)
	c, err := New(Options{BaseURL: srv.URL, RegistrationID: "AOP-554", Auth: a})
	if err != nil {
		t.Fatal(err)
	}
	for i, ref := range []string{"R1", "R2"} {
		r, err := c.Recharge(context.Background(), []byte(`{"referenceid":"`+ref+`"}`))
		if err != nil || r.Class != ClassSuccess {
			t.Errorf("Recharge %s = %+v, %v; want success (command runs: %d)", ref, r, err, runs())
		}
		if i == 0 {
			clock.advance(2 * time.Minute) // the token expires: the next Recharge renews it
		}
	}
	if n := runs(); n != 3 {
		t.Errorf("command runs: %d, want 3 (one, the failed renewal, its retry)", n)
	}
}
