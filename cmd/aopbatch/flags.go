package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"net"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aopbatch/aopbatch/batch"
	"github.com/aopbatch/aopbatch/batch/aop"
	"github.com/aopbatch/aopbatch/ledger/postgres"
)

// newFlagSet makes a subcommand's flag set whose usage prints a synopsis
// and an example before the flags.
func newFlagSet(name, synopsis, example string, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprintf(out, "usage: aopbatch %s\n\nexample:\n  %s\n\nflags:\n", synopsis, example)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args, turning a usage mistake into exit 1 and -h into 0.
func parseFlags(fs *flag.FlagSet, args []string) error {
	// The flag package prints the whole usage after a mistake, burying the
	// one line that matters: print that line, and the usage only for -h.
	usage, out := fs.Usage, fs.Output()
	fs.Usage = func() {}
	fs.SetOutput(io.Discard)
	var badDuration error
	restore := explainDurations(fs, &badDuration)
	var twice []string
	restoreOnce := refuseRepeats(fs, &twice)
	err := fs.Parse(args)
	restoreOnce()
	restore()
	fs.Usage = usage
	fs.SetOutput(out)
	if err == nil && len(twice) > 0 {
		return &exitError{code: exitStart, err: fmt.Errorf("%s: --%s given twice with different values: one file a run (see aopbatch %s -h)",
			fs.Name(), strings.Join(twice, ", --"), fs.Name())}
	}
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage()
			return err
		}
		if badDuration != nil {
			err = badDuration
		}
		return &exitError{code: exitStart, err: fmt.Errorf("%s: %w (see aopbatch %s -h)", fs.Name(), err, fs.Name())}
	}
	if fs.NArg() > 0 {
		return &exitError{code: exitStart, err: fmt.Errorf("%s: unexpected argument %q (flags go before it?)", fs.Name(), fs.Arg(0))}
	}
	// An empty variable in a cron script: the working directory would be
	// named as the ledger, then "empty path".
	if f := fs.Lookup("ledger"); f != nil && strings.TrimSpace(f.Value.String()) == "" {
		return &exitError{code: exitStart, err: fmt.Errorf("%s: --ledger is empty: name a SQLite file or a postgres:// URL, or leave the flag out for %s",
			fs.Name(), f.DefValue)}
	}
	return nil
}

// onceOnly are the flags that name an input file: given again with another
// value, the flag package keeps the last, so "--csv monday.csv --csv
// tuesday.csv" would send one file and drop the other without a word.
// Other flags keep "the last wins", which wrapper scripts use to override
// a setting.
var onceOnly = []string{"csv", "statement"}

// refuseRepeats has the onceOnly flags of fs note in *twice the name of
// each one given again with another value (the same value again is
// harmless). The returned func puts the flags back.
func refuseRepeats(fs *flag.FlagSet, twice *[]string) (restore func()) {
	var wrapped []*flag.Flag
	fs.VisitAll(func(f *flag.Flag) {
		if !slices.Contains(onceOnly, f.Name) {
			return
		}
		f.Value = &onceFlag{Value: f.Value, name: f.Name, twice: twice}
		wrapped = append(wrapped, f)
	})
	return func() {
		for _, f := range wrapped {
			f.Value = f.Value.(*onceFlag).Value
		}
	}
}

// onceFlag is a flag that notes being given twice with different values.
type onceFlag struct {
	flag.Value
	name  string
	twice *[]string
	set   bool
	first string
}

func (o *onceFlag) Set(v string) error {
	if err := o.Value.Set(v); err != nil {
		return err
	}
	now := o.Value.String()
	if o.set && now != o.first && !slices.Contains(*o.twice, o.name) {
		*o.twice = append(*o.twice, o.name)
	}
	if !o.set {
		o.set, o.first = true, now
	}
	return nil
}

// explainDurations has the duration flags of fs report a value they
// refuse in *bad: the flag package says only "parse error", and "--timeout
// 5" is an easy mistake. The returned func puts the flags back, so that
// -h still calls them durations.
func explainDurations(fs *flag.FlagSet, bad *error) (restore func()) {
	var wrapped []*flag.Flag
	fs.VisitAll(func(f *flag.Flag) {
		if g, ok := f.Value.(flag.Getter); ok {
			if _, ok := g.Get().(time.Duration); ok {
				f.Value = durationFlag{Value: f.Value, name: f.Name, bad: bad}
				wrapped = append(wrapped, f)
			}
		}
	})
	return func() {
		for _, f := range wrapped {
			f.Value = f.Value.(durationFlag).Value
		}
	}
}

// durationFlag is a duration flag that explains a value it refuses.
type durationFlag struct {
	flag.Value
	name string
	bad  *error
}

func (d durationFlag) Set(v string) error {
	err := d.Value.Set(v)
	if err == nil {
		return nil
	}
	if n := strings.TrimLeft(v, "+-"); n != "" && strings.Trim(n, "0123456789.") == "" {
		*d.bad = fmt.Errorf("--%s %q: a duration needs a unit, e.g. 5s or 500ms", d.name, v)
	} else {
		*d.bad = fmt.Errorf("--%s %q: not a duration: a number and a unit (h, m, s, ms), e.g. 5s, 500ms or 1m30s", d.name, v)
	}
	return err
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func ledgerFlag(fs *flag.FlagSet) *string {
	p := fs.String("ledger", envOr("AOPBATCH_LEDGER", "aopbatch.db"), "ledger: a SQLite file, or a postgres:// URL shared by hosts (password from PGPASSWORD or ~/.pgpass; env AOPBATCH_LEDGER)")
	// The default shown by -h comes from the environment: never with a
	// password in it.
	if f := fs.Lookup("ledger"); postgres.IsURL(f.DefValue) {
		f.DefValue = postgres.Redact(f.DefValue)
	}
	return p
}

// logFlags are the logging flags shared by the commands that talk to the API.
type logFlags struct {
	format string
}

func (lf *logFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&lf.format, "log-format", "text", "log format: text or json")
}

// json reports whether the logs, and the summary on stdout, are JSON.
func (lf *logFlags) json() bool { return lf.format == "json" }

// progressMode is --progress as the logs need it: with JSON logs, auto
// means log lines even on a terminal, since something reads them.
func (lf *logFlags) progressMode(mode string) string {
	if lf.json() && mode == "auto" {
		return "lines"
	}
	return mode
}

// run runs a command that logs with the logger the flags ask for, and
// ends it as done says.
func (lf *logFlags) run(stderr io.Writer, fn func(*slog.Logger) error) error {
	log, err := lf.logger(stderr)
	if err != nil {
		return start(err)
	}
	if lf.json() {
		notices.Store(log)
		defer notices.Store(nil)
	}
	return lf.done(log, fn(log))
}

// done ends a command that logs: with JSON logs its error goes out as an
// ERROR log line rather than the text "aopbatch: ..." line, so that
// stderr holds nothing but JSON. The exit code is kept.
func (lf *logFlags) done(log *slog.Logger, err error) error {
	if !lf.json() || err == nil {
		return err
	}
	code := codeOf(err)
	if msg := err.Error(); msg != "" {
		log.Error(msg, "exit_code", code)
	}
	return &exitError{code: code}
}

func (lf *logFlags) logger(w io.Writer) (*slog.Logger, error) {
	switch lf.format {
	case "text":
		return slog.New(slog.NewTextHandler(w, nil)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, nil)), nil
	}
	return nil, fmt.Errorf("--log-format must be text or json, not %q", lf.format)
}

// connFlags are the connection, auth and engine flags of run and resolve.
type connFlags struct {
	baseURL        string
	registrationID string
	insecureHTTP   bool
	auth           string
	tokenFile      string
	tokenCommand   string
	tokenTTL       time.Duration
	jwtSecretFile  string
	jwtHeader      string
	partnerID      string
	// log gets the connection's notes (the auth mode chosen, a token
	// command's failures); nil discards them.
	log *slog.Logger

	rate           float64
	burst          int
	workers        int
	maxInFlight    int
	timeout        time.Duration
	maxAttempts    int
	resolveTimeout time.Duration
	holdAfter      int
	maxUnknown     string
	notFound       string
	notFoundCodes  []int // notFound, parsed by check
}

func (c *connFlags) register(fs *flag.FlagSet) {
	d := batch.DefaultConfig()
	fs.StringVar(&c.baseURL, "base-url", os.Getenv("AOP_BASE_URL"), "provider base URL, e.g. https://api.example.in (env AOP_BASE_URL)")
	fs.StringVar(&c.registrationID, "registration-id", os.Getenv("AOP_REGISTRATION_ID"), "RegistrationID for rows without one (env AOP_REGISTRATION_ID)")
	fs.BoolVar(&c.insecureHTTP, "insecure-http", false, "allow a plain http:// base URL that is not loopback")
	fs.StringVar(&c.auth, "auth", "", "authentication: none, bearer (env AOP_TOKEN or --token-file), command (--token-command), jwt (env AOP_JWT_SECRET or --jwt-secret-file); default: the mode whose secret is configured, none when none is")
	fs.StringVar(&c.tokenFile, "token-file", "", "file holding the bearer token (instead of AOP_TOKEN)")
	fs.StringVar(&c.tokenCommand, "token-command", "", "command that prints a token (split on spaces, no shell), for --auth command")
	fs.DurationVar(&c.tokenTTL, "token-ttl", 600*time.Second, "how long a --token-command token is used before a new one is fetched")
	fs.StringVar(&c.jwtSecretFile, "jwt-secret-file", "", "file holding the JWT secret (instead of AOP_JWT_SECRET)")
	fs.StringVar(&c.jwtHeader, "jwt-header", "Token", "header carrying the JWT")
	fs.StringVar(&c.partnerID, "partner-id", os.Getenv("AOP_PARTNER_ID"), "JWT partnerId claim (env AOP_PARTNER_ID)")
	fs.Float64Var(&c.rate, "rate", d.Rate, "requests per second at most; 0 means no limit")
	fs.IntVar(&c.burst, "burst", d.Burst, "requests allowed at once above the rate")
	fs.IntVar(&c.workers, "workers", d.Workers, "requests in flight, fixed; 0 is automatic: as many as the provider's latency needs to reach --rate, up to --max-in-flight")
	fs.IntVar(&c.maxInFlight, "max-in-flight", d.MaxInFlight, "most requests in flight with automatic --workers")
	fs.DurationVar(&c.timeout, "timeout", d.Timeout, "per-request timeout")
	fs.IntVar(&c.maxAttempts, "max-attempts", d.MaxAttempts, "tries for a request that never reached the provider")
	fs.DurationVar(&c.resolveTimeout, "resolve-timeout", d.ResolveTimeout, "how long to keep asking about pending/unknown rows")
	fs.IntVar(&c.holdAfter, "hold-after", d.HoldAfter, "operator-down answers in a row before that operator's rows are held")
	fs.StringVar(&c.maxUnknown, "max-unknown-amount", "", "stop sending once this many rupees sit in rows of unknown outcome")
	nf := os.Getenv("AOP_NOT_FOUND_CODES")
	if nf == "" {
		nf = "2"
	}
	fs.StringVar(&c.notFound, "not-found-codes", nf, "status-enquiry response codes meaning \"no such transaction\", comma-separated; such a row is sent again under its referenceid (env AOP_NOT_FOUND_CODES)")
}

// parseNotFoundCodes reads --not-found-codes. A code of the provider's
// published table is refused: it means something else, and read as "not
// found" it would send again a row the provider may have charged.
func parseNotFoundCodes(v string) ([]int, error) {
	var codes []int
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		n, err := strconv.Atoi(f)
		switch {
		case err != nil || n < 0:
			return nil, fmt.Errorf("--not-found-codes %q: %q is not a response code", v, f)
		case aop.Published(n):
			return nil, fmt.Errorf("--not-found-codes %q: code %d has its own meaning in the provider's table (%s); read as \"not found\" it could send again a row that was charged",
				v, n, aop.ClassOf(n))
		}
		codes = append(codes, n)
	}
	return codes, nil
}

// maxWorkers bounds --workers and --max-in-flight: each request in flight
// holds a connection and a goroutine.
const maxWorkers = 4096

// check validates the connection flags that need no I/O.
func (c *connFlags) check() error {
	if c.baseURL == "" {
		return errors.New("no provider: set --base-url or AOP_BASE_URL (try 'aopbatch sandbox' for a local one)")
	}
	u, err := url.Parse(c.baseURL)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return fmt.Errorf("--base-url %q is not an http(s) URL", redactedURL(c.baseURL))
	}
	if u.Scheme == "http" && !c.insecureHTTP && !isLoopback(u.Hostname()) {
		return fmt.Errorf("--base-url %q is plain http to a non-loopback host: tokens and payments would travel unencrypted (use https, or --insecure-http if you must)", u.Redacted())
	}
	if c.workers < 0 || c.workers > maxWorkers {
		return fmt.Errorf("--workers must be 0 (automatic) or up to %d, not %d", maxWorkers, c.workers)
	}
	if c.maxInFlight < 1 || c.maxInFlight > maxWorkers {
		return fmt.Errorf("--max-in-flight must be between 1 and %d, not %d", maxWorkers, c.maxInFlight)
	}
	// A value that would quietly turn a safety limit off is refused: NaN
	// compares false with everything, and the engine reads zero as "use
	// the default".
	if math.IsNaN(c.rate) || math.IsInf(c.rate, 0) || c.rate < 0 {
		return fmt.Errorf("--rate must be 0 (no limit) or a positive number, not %v", c.rate)
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"--burst", c.burst}, {"--max-attempts", c.maxAttempts}, {"--hold-after", c.holdAfter}} {
		if f.v < 1 {
			return fmt.Errorf("%s must be at least 1, not %d", f.name, f.v)
		}
	}
	for _, f := range []struct {
		name string
		v    time.Duration
	}{{"--timeout", c.timeout}, {"--resolve-timeout", c.resolveTimeout}, {"--token-ttl", c.tokenTTL}} {
		if f.v <= 0 {
			return fmt.Errorf("%s must be positive, not %s", f.name, f.v)
		}
	}
	c.notFoundCodes, err = parseNotFoundCodes(c.notFound)
	return err
}

// checkSession validates the flags run and resolve share beyond the
// connection's.
func checkSession(progress string, leaseTTL time.Duration) error {
	switch progress {
	case "auto", "always", "never":
	default:
		return fmt.Errorf("--progress must be auto, always or never, not %q", progress)
	}
	return checkLeaseTTL(leaseTTL)
}

// checkLeaseTTL validates --lease-ttl. The lease is renewed every third
// of it; below a second that is a busy loop on the ledger.
func checkLeaseTTL(d time.Duration) error {
	if d < time.Second {
		return fmt.Errorf("--lease-ttl must be at least 1s, not %s", d)
	}
	return nil
}

// redactedURL is raw as an error may print it: without the password of
// its user information, even when it is no valid URL.
func redactedURL(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Redacted()
	}
	if at := strings.LastIndex(raw, "@"); at >= 0 {
		start := 0
		if i := strings.Index(raw, "://"); i >= 0 && i < at {
			start = i + len("://")
		}
		return raw[:start] + "xxxxx" + raw[at:]
	}
	return raw
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// authSource is a credential that is configured, and the mode it is for.
type authSource struct{ mode, name string }

// configuredAuth lists the credentials set in the environment or by flags.
func (c *connFlags) configuredAuth() []authSource {
	var found []authSource
	for _, s := range []struct {
		set        bool
		mode, name string
	}{
		{os.Getenv("AOP_TOKEN") != "", "bearer", "AOP_TOKEN"},
		{c.tokenFile != "", "bearer", "--token-file"},
		{c.tokenCommand != "", "command", "--token-command"},
		{os.Getenv("AOP_JWT_SECRET") != "", "jwt", "AOP_JWT_SECRET"},
		{c.jwtSecretFile != "", "jwt", "--jwt-secret-file"},
	} {
		if s.set {
			found = append(found, authSource{s.mode, s.name})
		}
	}
	return found
}

// authMode is the --auth mode to use and where it comes from: the flag, or
// the one kind of credential configured. A token set while the run goes
// unauthenticated only ends in "authentication failed"; two kinds set with
// no choice made is refused, naming them.
func (c *connFlags) authMode() (mode, from string, err error) {
	found := c.configuredAuth()
	if c.auth != "" {
		return c.auth, "--auth", nil
	}
	if len(found) == 0 {
		return "none", "no credential configured", nil
	}
	var names, modes []string
	for _, f := range found {
		names = append(names, f.name)
		if !slices.Contains(modes, f.mode) {
			modes = append(modes, f.mode)
		}
	}
	if len(modes) > 1 {
		for i, m := range modes {
			modes[i] = "--auth " + m
		}
		return "", "", fmt.Errorf("credentials for more than one --auth mode are set (%s): choose with %s, or unset the others",
			strings.Join(names, ", "), strings.Join(modes, " or "))
	}
	return modes[0], strings.Join(names, " and "), nil
}

// authenticator builds the credential from the environment or files named
// by flags: a secret is never a flag value, since argv is visible in ps.
func (c *connFlags) authenticator() (aop.Authenticator, error) {
	mode, from, err := c.authMode()
	if err != nil {
		return nil, err
	}
	log := c.log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log.Info("authentication", "auth", mode, "from", from)
	if mode == "none" {
		for _, f := range c.configuredAuth() {
			log.Warn("--auth none: a credential is configured but not used", "setting", f.name)
		}
	}
	switch mode {
	case "none":
		return aop.NoAuth(), nil
	case "bearer":
		tok, err := secret("AOP_TOKEN", c.tokenFile, "--token-file")
		if err != nil {
			return nil, err
		}
		return aop.Bearer(tok), nil
	case "command":
		argv := strings.Fields(c.tokenCommand)
		if len(argv) == 0 {
			return nil, errors.New("--auth command needs --token-command")
		}
		// A program that is not there fails every run at its first
		// request, after the file was recorded: exit 3, "run again", each
		// night. Found missing now, nothing starts (exit 1).
		if _, err := exec.LookPath(argv[0]); err != nil {
			why := "not found in $PATH: give its full path, or install it"
			switch {
			case errors.Is(err, fs.ErrPermission):
				why = "not executable: chmod +x it"
			case strings.Contains(argv[0], "/"):
				why = "no such file"
			}
			return nil, fmt.Errorf("--token-command %s cannot be run: %s", argv[0], why)
		}
		// Its stderr goes to the log, redacted, never into an error that
		// the ledger would record.
		return aop.CommandWithLog(argv, c.tokenTTL, nil, log), nil
	case "jwt":
		sec, err := secret("AOP_JWT_SECRET", c.jwtSecretFile, "--jwt-secret-file")
		if err != nil {
			return nil, err
		}
		if c.partnerID == "" {
			return nil, errors.New("--auth jwt needs a partner id: set --partner-id or AOP_PARTNER_ID")
		}
		return aop.JWT([]byte(sec), c.partnerID, c.jwtHeader, nil), nil
	}
	return nil, fmt.Errorf("--auth must be none, bearer, command or jwt, not %q", c.auth)
}

func secret(env, file, flagName string) (string, error) {
	if file != "" {
		b, err := readPrivate(file, flagName)
		if err != nil {
			return "", err
		}
		s := strings.TrimSpace(string(b))
		if s == "" {
			return "", fmt.Errorf("%s %s is empty", flagName, file)
		}
		return s, nil
	}
	if s := os.Getenv(env); s != "" {
		return s, nil
	}
	return "", fmt.Errorf("no secret: set %s in the environment or use %s", env, flagName)
}

// readPrivate reads a secret file that only its owner (and its group) may
// read. One that others can read or write is refused, as ssh refuses such
// a key: the secret is already exposed, and a warning in a cron log is
// read by nobody while the job carries on with it. Group read is allowed,
// for a secrets group (mode 0640). The mode is checked on the open file,
// so it is the file that is read.
func readPrivate(file, flagName string) ([]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", flagName, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", flagName, err)
	}
	if perm := fi.Mode().Perm(); perm&0o007 != 0 {
		return nil, fmt.Errorf("%s %s is open to others (mode %#o): a secret file must be private, as ssh requires of keys (chmod 600 %s; 640 to share it with a group)",
			flagName, file, perm, file)
	}
	b, err := io.ReadAll(io.LimitReader(f, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", flagName, err)
	}
	return b, nil
}

func (c *connFlags) client() (*aop.Client, error) {
	a, err := c.authenticator()
	if err != nil {
		return nil, err
	}
	conns := c.maxInFlight
	if c.workers > 0 {
		conns = c.workers
	}
	return aop.New(aop.Options{BaseURL: c.baseURL, RegistrationID: c.registrationID, Auth: a, MaxConns: conns, UserAgent: "aopbatch",
		NotFoundCodes: c.notFoundCodes})
}

func (c *connFlags) engineConfig(log *slog.Logger) (batch.Config, error) {
	cfg := batch.Config{
		Workers: c.workers, MaxInFlight: c.maxInFlight, Rate: c.rate, Burst: c.burst, Timeout: c.timeout, MaxAttempts: c.maxAttempts,
		HoldAfter: c.holdAfter, ResolveTimeout: c.resolveTimeout, Log: log, Account: c.account(),
	}
	if c.maxUnknown != "" {
		p, err := batch.ParseRupees(c.maxUnknown)
		if err != nil {
			return cfg, fmt.Errorf("--max-unknown-amount %q: %w", c.maxUnknown, err)
		}
		cfg.MaxUnknownPaise = p
	}
	return cfg, nil
}

// account names the provider account the rate belongs to: the
// RegistrationID at the provider's host. Processes sharing a ledger share
// the rate of each account.
func (c *connFlags) account() string {
	host := c.baseURL
	if u, err := url.Parse(c.baseURL); err == nil && u.Host != "" {
		host = u.Host
	}
	return c.registrationID + "@" + host
}
