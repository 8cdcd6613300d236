package aop

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
)

// Authenticator adds the provider's credential to each request (SPEC
// section 5). Implementations are safe for concurrent use and never print
// their secret: String, GoString and Format show only the mode.
type Authenticator interface {
	// Apply sets the credential headers of one request. It may block while a
	// credential is fetched, up to req.Context().
	Apply(req *http.Request) error
	// Refresh replaces the credential after the provider rejected it (HTTP
	// 401, code 10 or 11).
	Refresh(ctx context.Context) error
	// Mode names the kind of credential: "none", "bearer", "command" or
	// "jwt". It never contains a secret.
	Mode() string
}

// redacted gives an authenticator a printed form that is only its mode, for
// every fmt verb, so a secret cannot reach a log line by accident.
type redacted struct{ mode string }

// Mode returns the authentication mode.
func (r redacted) Mode() string { return r.mode }

// String returns the authentication mode.
func (r redacted) String() string { return r.mode }

// GoString returns the authentication mode in Go-like syntax.
func (r redacted) GoString() string { return "aop.Authenticator(" + r.mode + ")" }

// Format prints the mode whatever the verb and flags.
func (r redacted) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		_, _ = io.WriteString(f, r.GoString())
		return
	}
	_, _ = io.WriteString(f, r.mode)
}

type noAuth struct{ redacted }

// NoAuth returns an Authenticator that adds nothing.
func NoAuth() Authenticator { return &noAuth{redacted{"none"}} }

func (*noAuth) Apply(*http.Request) error     { return nil }
func (*noAuth) Refresh(context.Context) error { return nil }

type bearerAuth struct {
	redacted
	token string
}

// Bearer returns an Authenticator that sends "Authorization: Bearer token".
// A fixed token cannot be renewed, so Refresh does nothing.
func Bearer(token string) Authenticator {
	return &bearerAuth{redacted: redacted{"bearer"}, token: strings.TrimSpace(token)}
}

func (a *bearerAuth) Apply(req *http.Request) error {
	if a.token == "" {
		return errors.New("bearer token is empty")
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	return nil
}

func (*bearerAuth) Refresh(context.Context) error { return nil }

const (
	defaultTokenTTL   = 600 * time.Second
	commandTimeout    = 30 * time.Second
	maxTokenOutput    = 64 << 10
	maxStderrShown    = 200
	refreshGap        = 2 * time.Second // a token younger than this counts as already refreshed
	backgroundBackoff = 5 * time.Second // between failed ahead-of-expiry refreshes
)

// commandAuth runs a command that prints a bearer token and caches the token
// for ttl. At most one run is in progress at any time: callers that need a
// token while a run is going wait for that run.
type commandAuth struct {
	redacted
	argv    []string
	env     []string
	ttl     time.Duration
	now     func() time.Time
	timeout time.Duration
	log     *slog.Logger // gets a failed run's exit status and its stderr, redacted

	mu       sync.Mutex
	token    string
	valid    bool
	issuedAt time.Time // when the run that produced token started: expiry counts from here
	gotAt    time.Time // when that run finished
	bgFailAt time.Time // when an ahead-of-expiry run last failed
	inflight *tokenRun
	// missed is the failure of a run every caller had stopped waiting
	// for: given to the next caller instead of a new run. A command that
	// hangs until it is killed outlasts each request's deadline, and else
	// every row would start it again and only ever time out.
	missed error
}

type tokenRun struct {
	done    chan struct{}
	token   string
	err     error
	waiting int // callers waiting for it; under commandAuth.mu
}

// Command returns an Authenticator whose bearer token is printed by a
// command: argv is run directly (no shell), with the process environment
// (less the secrets it does not need: AOP_TOKEN, AOP_JWT_SECRET,
// PGPASSWORD and AOPBATCH_LEDGER) plus env, and the first line of its
// standard output, trimmed, is the token. The token is cached for ttl
// (600s when 0) and renewed in the background once 80% of ttl has
// passed; a caller blocks only when there is no valid token. Refresh forces a new run unless one finished in the last
// two seconds, so a burst of 401s costs one run; the Client, which knows
// the refused token, instead renews unless that token was already replaced,
// which also holds for tokens that live less than two seconds. A run is
// killed after 30s.
// Errors name argv[0] and the exit status, never what the command printed:
// they reach the ledger, and a token tool may print its secret when it
// fails. Its stderr goes to the log only (see CommandWithLog).
func Command(argv []string, ttl time.Duration, env []string) Authenticator {
	return newCommand(argv, ttl, env, time.Now)
}

// CommandWithLog is Command whose failed runs are logged to log: the exit
// status and the first line of stderr, at most 200 bytes, with the token
// and anything shaped like a secret replaced by "[redacted]".
func CommandWithLog(argv []string, ttl time.Duration, env []string, log *slog.Logger) Authenticator {
	a := newCommand(argv, ttl, env, time.Now)
	if log != nil {
		a.log = log
	}
	return a
}

func newCommand(argv []string, ttl time.Duration, env []string, now func() time.Time) *commandAuth {
	if ttl <= 0 {
		ttl = defaultTokenTTL
	}
	return &commandAuth{
		redacted: redacted{"command"},
		argv:     append([]string(nil), argv...),
		env:      append([]string(nil), env...),
		ttl:      ttl,
		now:      now,
		timeout:  commandTimeout,
		log:      slog.New(slog.DiscardHandler),
	}
}

func (a *commandAuth) Apply(req *http.Request) error {
	tok, err := a.get(req.Context())
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	return nil
}

// get returns a valid token, starting or joining a run when there is none,
// and starting a background run when the token is past 80% of its life.
func (a *commandAuth) get(ctx context.Context) (string, error) {
	a.mu.Lock()
	now := a.now()
	if a.valid {
		age := now.Sub(a.issuedAt)
		if age < a.ttl {
			if age >= a.ttl/10*8 && a.inflight == nil &&
				(a.bgFailAt.IsZero() || now.Sub(a.bgFailAt) >= backgroundBackoff) {
				a.start(true)
			}
			tok := a.token
			a.mu.Unlock()
			return tok, nil
		}
		a.valid = false
	}
	if err := a.missed; err != nil && a.inflight == nil {
		a.missed = nil
		a.mu.Unlock()
		return "", err
	}
	run := a.inflight
	if run == nil {
		run = a.start(false)
	}
	run.waiting++
	a.mu.Unlock()
	return a.wait(ctx, run)
}

func (a *commandAuth) Refresh(ctx context.Context) error {
	return a.renew(ctx, func() bool { return a.now().Sub(a.gotAt) < refreshGap })
}

// refreshRejected is Refresh for a request refused with the headers sent:
// when the token it carried has already been replaced, by a renewal that
// another refused request started or an ahead-of-expiry one, the new token
// is used as it is; otherwise the command runs (or the run in progress is
// joined). Unlike Refresh's two-second rule, this holds for tokens that
// the provider lets live less than that.
func (a *commandAuth) refreshRejected(ctx context.Context, sent http.Header) error {
	used := strings.TrimPrefix(sent.Get("Authorization"), "Bearer ")
	return a.renew(ctx, func() bool { return used != a.token })
}

// renew runs the command, or joins the run in progress, unless the current
// token is valid and keep (called with a.mu held) says it may stay.
func (a *commandAuth) renew(ctx context.Context, keep func() bool) error {
	a.mu.Lock()
	run := a.inflight
	if run == nil {
		if a.valid && keep() {
			a.mu.Unlock()
			return nil
		}
		a.valid = false
		run = a.start(false)
	}
	run.waiting++
	a.mu.Unlock()
	_, err := a.wait(ctx, run)
	return err
}

// wait waits for run, which the caller joined (run.waiting) under a.mu.
func (a *commandAuth) wait(ctx context.Context, run *tokenRun) (string, error) {
	select {
	case <-run.done:
		return run.token, run.err
	case <-ctx.Done():
		a.mu.Lock()
		run.waiting--
		a.mu.Unlock()
		return "", fmt.Errorf("wait for auth command: %w", ctx.Err())
	}
}

// start begins a run; a.mu is held. The run has its own timeout and does not
// depend on any caller's context, since other callers may be waiting for it.
func (a *commandAuth) start(background bool) *tokenRun {
	run := &tokenRun{done: make(chan struct{})}
	a.inflight = run
	started := a.now()
	worked := !a.gotAt.IsZero()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), a.timeout)
		tok, err := a.run(ctx)
		timedOut := ctx.Err() != nil
		cancel()
		if err != nil && !background && worked && !timedOut {
			// A command that has given tokens and now fails once (its
			// service's passing blip) is run once more (SPEC 5: renew
			// once, then stop), as the Client did before it stopped
			// renewing after a failure; one that hangs is not run again.
			ctx, cancel := context.WithTimeout(context.Background(), a.timeout)
			tok, err = a.run(ctx)
			cancel()
		}
		a.mu.Lock()
		switch {
		case err == nil:
			a.token, a.valid, a.issuedAt, a.gotAt = tok, true, started, a.now()
			a.bgFailAt, a.missed = time.Time{}, nil
		case background:
			a.bgFailAt = a.now()
		case run.waiting == 0:
			a.missed = err
		}
		a.inflight = nil
		run.token, run.err = tok, err
		a.mu.Unlock()
		close(run.done)
	}()
	return run
}

// withheld are the secrets of aopbatch's own environment a token command
// does not need: the other auth modes' secrets and the ledger's password,
// which AOPBATCH_LEDGER, a postgres:// URL, may hold as well.
// A token tool is someone else's program, and may log its environment.
var withheld = []string{"AOP_TOKEN", "AOP_JWT_SECRET", "PGPASSWORD", "AOPBATCH_LEDGER"}

// commandEnv is env without the withheld variables.
func commandEnv(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if !slices.Contains(withheld, name) {
			out = append(out, kv)
		}
	}
	return out
}

// run executes the command once and returns the token it printed.
func (a *commandAuth) run(ctx context.Context) (string, error) {
	if len(a.argv) == 0 || a.argv[0] == "" {
		return "", errors.New("auth command: no command given")
	}
	name := a.argv[0]
	cmd := exec.CommandContext(ctx, name, a.argv[1:]...)
	cmd.Env = append(commandEnv(os.Environ()), a.env...)
	stdout := &capBuffer{max: maxTokenOutput}
	stderr := &capBuffer{max: 4 << 10}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.WaitDelay = 2 * time.Second
	err := cmd.Run()
	tok := firstLine(stdout.Bytes())
	if err != nil {
		var why string
		var ee *exec.ExitError
		switch {
		case ctx.Err() != nil:
			why = fmt.Sprintf("timed out after %s", a.timeout)
		case errors.As(err, &ee):
			why = ee.ProcessState.String()
		default:
			why = err.Error()
		}
		return "", a.failed(name, why, stderr.Bytes(), tok)
	}
	if tok == "" {
		return "", a.failed(name, "printed no token", stderr.Bytes(), "")
	}
	if strings.IndexFunc(tok, unicode.IsControl) >= 0 {
		return "", fmt.Errorf("auth command %q printed a token with control characters", name)
	}
	return tok, nil
}

// firstLine is the token: the first line of output, trimmed.
func firstLine(b []byte) string {
	s := string(b)
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s)
}

// failed logs a failed run, with what it printed on stderr redacted, and
// returns the error for the caller, which names only the command and why.
func (a *commandAuth) failed(name, why string, stderr []byte, token string) error {
	// A tool failing to renew may name the token it was to replace.
	a.mu.Lock()
	had := a.token
	a.mu.Unlock()
	line := redactLine(stderr, token, had)
	a.log.Warn("auth command failed", "command", name, "status", why, "stderr", line)
	if line != "" {
		why += " (its stderr is in the log)"
	}
	if why == "printed no token" {
		return fmt.Errorf("auth command %q %s", name, why)
	}
	return fmt.Errorf("auth command %q: %s", name, why)
}

var (
	// secretAfterKey matches a value that follows a word naming a secret:
	// "token=...", "password: ...", "Bearer ...".
	secretAfterKey = regexp.MustCompile(`(?i)((?:bearer|token|secret|password|passwd|pass|pwd|apikey|api[_-]key|key|authorization)["']?(?:\s*[:=]\s*|\s+)["']?)[^\s"',;]+`)
	// longWord matches a run of token characters long enough to be a key.
	longWord = regexp.MustCompile(`[A-Za-z0-9+/=_.~-]{16,}`)
)

// redactLine makes a token command's stderr fit for a log line: the first
// non-empty line only, tokens (the one the failed run printed, the one an
// earlier run gave) and whatever looks like a secret (a value after
// "token=", "password", "Bearer" and the like; a long run of letters and
// digits) replaced by "[redacted]", at most 200 bytes.
func redactLine(b []byte, tokens ...string) string {
	s := ""
	for _, l := range strings.Split(strings.ToValidUTF8(string(b), "\uFFFD"), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			s = l
			break
		}
	}
	for _, tok := range tokens {
		if tok != "" {
			s = strings.ReplaceAll(s, tok, "[redacted]")
		}
	}
	s = secretAfterKey.ReplaceAllString(s, "${1}[redacted]")
	s = longWord.ReplaceAllStringFunc(s, func(w string) string {
		if strings.ContainsAny(w, "0123456789") && strings.IndexFunc(w, unicode.IsLetter) >= 0 {
			return "[redacted]"
		}
		return w
	})
	s = clip(s)
	if len(s) > maxStderrShown {
		s = strings.ToValidUTF8(s[:maxStderrShown], "")
	}
	return s
}

// capBuffer keeps the first max bytes written and discards the rest without
// failing, so a chatty command is not killed by a broken pipe.
type capBuffer struct {
	buf bytes.Buffer
	max int
}

func (b *capBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.buf.Len(); room > 0 {
		if len(p) > room {
			b.buf.Write(p[:room])
		} else {
			b.buf.Write(p)
		}
	}
	return len(p), nil
}

func (b *capBuffer) Bytes() []byte { return b.buf.Bytes() }

// jwtHeader is the encoded JOSE header of every token: {"alg":"HS256","typ":"JWT"}.
var jwtHeader = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))

type jwtAuth struct {
	redacted
	secret  []byte
	partner string
	header  string
	now     func() time.Time
}

type jwtClaims struct {
	Timestamp int64  `json:"timestamp"`
	PartnerID string `json:"partnerId"`
	ReqID     string `json:"reqid"`
}

// JWT returns an Authenticator that signs a fresh HS256 JWT for every
// request, with claims timestamp (Unix seconds), partnerId and reqid (16
// random bytes in hex), and sends the bare token in header ("Token" when
// empty). The secret is used as raw bytes and copied. now defaults to
// time.Now. Refresh does nothing: every request already has a new token.
func JWT(secret []byte, partnerID, header string, now func() time.Time) Authenticator {
	header = strings.TrimSpace(header)
	if header == "" {
		header = "Token"
	}
	if now == nil {
		now = time.Now
	}
	return &jwtAuth{
		redacted: redacted{"jwt"},
		secret:   append([]byte(nil), secret...),
		partner:  partnerID,
		header:   header,
		now:      now,
	}
}

func (a *jwtAuth) Apply(req *http.Request) error {
	tok, err := a.token()
	if err != nil {
		return err
	}
	req.Header.Set(a.header, tok)
	return nil
}

func (*jwtAuth) Refresh(context.Context) error { return nil }

func (a *jwtAuth) token() (string, error) {
	if len(a.secret) == 0 {
		return "", errors.New("jwt secret is empty")
	}
	if a.partner == "" {
		return "", errors.New("jwt partner id is empty")
	}
	var id [16]byte
	_, _ = rand.Read(id[:]) // never fails since Go 1.24
	claims, err := json.Marshal(jwtClaims{
		Timestamp: a.now().Unix(),
		PartnerID: a.partner,
		ReqID:     hex.EncodeToString(id[:]),
	})
	if err != nil {
		return "", fmt.Errorf("encode jwt claims: %w", err)
	}
	signing := jwtHeader + "." + base64.RawURLEncoding.EncodeToString(claims)
	mac := hmac.New(sha256.New, a.secret)
	mac.Write([]byte(signing))
	return signing + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil)), nil
}
