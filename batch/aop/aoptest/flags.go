package aoptest

import (
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"
)

// FlagConfig registers the sandbox's behaviour flags on fs and returns a
// function that, after fs.Parse, builds and checks the Config. Secrets come
// from getenv, never from flags: AOP_SANDBOX_TOKEN (a static bearer token)
// and AOP_JWT_SECRET.
func FlagConfig(fs *flag.FlagSet, getenv func(string) string) func() (Config, error) {
	c := DefaultConfig()
	fs.Int64Var(&c.Seed, "seed", 0, "seed for every random decision (same seed, same answers)")
	fs.DurationVar(&c.Latency, "latency", 0, "latency added to every answer, e.g. 20ms")
	fs.DurationVar(&c.LatencyJitter, "latency-jitter", 0, "extra latency, uniform between 0 and this")
	wallet := fs.String("wallet", "", "starting wallet balance in rupees, e.g. 5000.00 (default unlimited)")
	down := fs.String("down", "", "comma-separated operator codes that answer 13 (operator down)")
	minAmount := fs.String("min-amount", "", "operator minimum in rupees, below it code 17")
	maxAmount := fs.String("max-amount", "", "operator maximum in rupees, above it code 17")
	fs.Float64Var(&c.PendingRate, "pending-rate", 0, "fraction of recharges answered 0 (pending)")
	fs.DurationVar(&c.PendingDelay, "pending-delay", c.PendingDelay, "time after which a pending transaction turns final")
	fs.Float64Var(&c.PendingFailRate, "pending-fail-rate", 0, "fraction of pendings that end failed (money returned)")
	fs.Float64Var(&c.RefundRate, "refund-rate", 0, "fraction of successes refunded later")
	fs.DurationVar(&c.RefundDelay, "refund-delay", c.RefundDelay, "time after which a refund happens")
	fs.Float64Var(&c.FailRate, "fail-rate", 0, "fraction of recharges answered 14 (failed, not charged)")
	fs.Float64Var(&c.Fault5xxRate, "fault-5xx", 0, "fraction answered HTTP 500/502/503 (nothing recorded)")
	fs.Float64Var(&c.LostRate, "fault-lost", 0, "fraction recorded and charged, then the connection closed unanswered")
	fs.Float64Var(&c.StallRate, "fault-stall", 0, "fraction recorded and charged, then the answer withheld for --stall-for")
	fs.DurationVar(&c.StallFor, "stall-for", c.StallFor, "how long a stalled answer is withheld")
	fs.Float64Var(&c.ThrottleRate, "fault-429", 0, "fraction answered HTTP 429 with Retry-After (nothing recorded)")
	fs.DurationVar(&c.RetryAfter, "retry-after", c.RetryAfter, "Retry-After of a 429, rounded up to whole seconds")
	fs.Float64Var(&c.UnknownCodeRate, "fault-unknown", 0, "fraction recorded and charged, then answered HTTP 412 code 9")
	fs.IntVar(&c.LimitRPS, "limit-rps", 0, "the provider's own throttle: HTTP 429 with Retry-After above this many requests in any second (0 = none)")
	fs.StringVar(&c.Auth, "auth", c.Auth, "authentication: none, bearer (AOP_SANDBOX_TOKEN or POST /sandbox/token) or jwt (AOP_JWT_SECRET)")
	fs.DurationVar(&c.TokenTTL, "token-ttl", c.TokenTTL, "lifetime of tokens minted at POST /sandbox/token")
	fs.StringVar(&c.PartnerID, "partner-id", "", "jwt: required partnerId claim (default: any)")
	fs.StringVar(&c.JWTHeader, "jwt-header", c.JWTHeader, "jwt: header carrying the bare JWT")
	fs.DurationVar(&c.JWTMaxSkew, "jwt-max-skew", c.JWTMaxSkew, "jwt: allowed difference between the timestamp claim and now")
	fs.StringVar(&c.RegistrationID, "registration-id", "", "if set, requests with another RegistrationID get code 8")
	fs.IntVar(&c.NotFoundCode, "not-found-code", c.NotFoundCode, "response_code of a status enquiry for an unknown referenceid")

	return func() (Config, error) {
		cfg := c
		var err error
		if *wallet != "" {
			if cfg.WalletPaise, err = parseRupeesFlag("wallet", *wallet, true); err != nil {
				return Config{}, err
			}
		}
		if *minAmount != "" {
			if cfg.MinAmountPaise, err = parseRupeesFlag("min-amount", *minAmount, false); err != nil {
				return Config{}, err
			}
		}
		if *maxAmount != "" {
			if cfg.MaxAmountPaise, err = parseRupeesFlag("max-amount", *maxAmount, false); err != nil {
				return Config{}, err
			}
		}
		if cfg.MinAmountPaise > 0 && cfg.MaxAmountPaise > 0 && cfg.MinAmountPaise > cfg.MaxAmountPaise {
			return Config{}, fmt.Errorf("--min-amount %s is above --max-amount %s", *minAmount, *maxAmount)
		}
		for f := range strings.SplitSeq(*down, ",") {
			if f = strings.TrimSpace(f); f == "" {
				continue
			}
			op, ok := parseOperator([]byte(f))
			if !ok {
				return Config{}, fmt.Errorf("--down: %q is not an operator code", f)
			}
			cfg.DownOperators = append(cfg.DownOperators, op)
		}
		for _, r := range []struct {
			name string
			v    float64
		}{
			{"pending-rate", cfg.PendingRate}, {"pending-fail-rate", cfg.PendingFailRate},
			{"refund-rate", cfg.RefundRate}, {"fail-rate", cfg.FailRate},
			{"fault-5xx", cfg.Fault5xxRate}, {"fault-lost", cfg.LostRate},
			{"fault-stall", cfg.StallRate}, {"fault-429", cfg.ThrottleRate},
			{"fault-unknown", cfg.UnknownCodeRate},
		} {
			if !(r.v >= 0 && r.v <= 1) {
				return Config{}, fmt.Errorf("--%s %v: a rate is a fraction between 0 and 1", r.name, r.v)
			}
		}
		if cfg.LimitRPS < 0 {
			return Config{}, fmt.Errorf("--limit-rps %d: must not be negative", cfg.LimitRPS)
		}
		for _, d := range []struct {
			name string
			v    time.Duration
		}{
			{"latency", cfg.Latency}, {"latency-jitter", cfg.LatencyJitter},
			{"pending-delay", cfg.PendingDelay}, {"refund-delay", cfg.RefundDelay},
			{"stall-for", cfg.StallFor}, {"retry-after", cfg.RetryAfter},
			{"token-ttl", cfg.TokenTTL}, {"jwt-max-skew", cfg.JWTMaxSkew},
		} {
			if d.v < 0 {
				return Config{}, fmt.Errorf("--%s %v: must not be negative", d.name, d.v)
			}
		}
		if tok := getenv("AOP_SANDBOX_TOKEN"); tok != "" {
			cfg.Tokens = []string{tok}
		}
		if sec := getenv("AOP_JWT_SECRET"); sec != "" {
			cfg.JWTSecret = []byte(sec)
		}
		switch cfg.Auth {
		case AuthNone, AuthBearer:
		case AuthJWT:
			if len(cfg.JWTSecret) == 0 {
				return Config{}, errors.New("--auth jwt needs AOP_JWT_SECRET in the environment")
			}
		default:
			return Config{}, fmt.Errorf("--auth %q: want none, bearer or jwt", cfg.Auth)
		}
		return cfg, nil
	}
}

func parseRupeesFlag(name, v string, zeroOK bool) (int64, error) {
	p, err := parsePaise(strings.TrimSpace(v))
	if err == nil && (p < 0 || (p == 0 && !zeroOK)) {
		err = errAmountRange
	}
	if err != nil {
		return 0, fmt.Errorf("--%s %q: want rupees with at most two decimals, e.g. 5000.00: %w", name, v, err)
	}
	return p, nil
}
