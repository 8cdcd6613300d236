package aoptest

import "time"

// Authentication modes accepted in Config.Auth.
const (
	AuthNone   = "none"   // no credential checked
	AuthBearer = "bearer" // Authorization: Bearer <token>, static or minted
	AuthJWT    = "jwt"    // a bare HS256 JWT in Config.JWTHeader
)

// Config describes the sandbox's behaviour. Use DefaultConfig and change what
// the test needs: the zero value has an empty wallet, so every Recharge would
// answer 16. Zero durations and codes listed in DefaultConfig are replaced by
// their defaults in New; rates at or below 0 never fire, at or above 1 always.
type Config struct {
	Seed          int64
	Latency       time.Duration // added to every answer
	LatencyJitter time.Duration // uniform extra 0..LatencyJitter

	WalletPaise    int64   // starting balance; < 0 means unlimited
	DownOperators  []int64 // answered 13
	MinAmountPaise int64   // 17 below it; 0 = no minimum
	MaxAmountPaise int64   // 17 above it; 0 = no maximum

	PendingRate     float64       // fraction answered 0 (recorded, charged, final later)
	PendingDelay    time.Duration // after which a pending transaction turns final
	PendingFailRate float64       // fraction of pendings that end failed (wallet re-credited)
	RefundRate      float64       // fraction of successes refunded RefundDelay later
	RefundDelay     time.Duration
	FailRate        float64 // fraction answered 14 (not recorded, not charged)

	// Faults, each a fraction of Recharge requests.
	Fault5xxRate    float64       // HTTP 500/502/503 before recording
	LostRate        float64       // recorded, then the connection is closed unanswered
	StallRate       float64       // recorded, then the answer withheld for StallFor
	StallFor        time.Duration // default 30s
	ThrottleRate    float64       // HTTP 429 with Retry-After, nothing recorded
	RetryAfter      time.Duration // default 1s; sent rounded up to whole seconds
	UnknownCodeRate float64       // recorded, then HTTP 412 code 9

	// LimitRPS is the provider's own throttle: above this many API
	// requests (Recharge, RechargeStatus, FetchConsumerDetails) in any one
	// second, a request is answered HTTP 429 with a Retry-After saying
	// when a slot frees, and nothing is recorded. 429s do not count
	// toward the limit. 0 means none.
	LimitRPS int

	Auth           string        // AuthNone (default), AuthBearer or AuthJWT
	Tokens         []string      // bearer: static tokens that never expire
	TokenTTL       time.Duration // bearer: lifetime of minted tokens, default 600s
	JWTSecret      []byte        // jwt: HMAC key, raw bytes
	PartnerID      string        // jwt: required partnerId claim; empty accepts any non-empty one
	JWTHeader      string        // jwt: header carrying the bare JWT, default "Token"
	JWTMaxSkew     time.Duration // jwt: allowed |now - timestamp|, default 60s
	RegistrationID string        // if set, requests with another RegistrationID get code 8
	NotFoundCode   int           // response_code for an unknown referenceid, default 2

	Now func() time.Time // clock for timestamps, pending and refund timers, token expiry
}

// Faults holds the fault rates that can be changed while the server runs.
type Faults struct {
	Fault5xxRate    float64
	LostRate        float64
	StallRate       float64
	ThrottleRate    float64
	UnknownCodeRate float64
}

// DefaultConfig returns a well-behaved sandbox: unlimited wallet, no faults,
// no authentication, and the documented defaults for every duration.
func DefaultConfig() Config {
	return Config{
		WalletPaise:  -1,
		PendingDelay: 2 * time.Second,
		RefundDelay:  10 * time.Second,
		StallFor:     30 * time.Second,
		RetryAfter:   time.Second,
		Auth:         AuthNone,
		TokenTTL:     600 * time.Second,
		JWTHeader:    "Token",
		JWTMaxSkew:   60 * time.Second,
		NotFoundCode: 2,
		Now:          time.Now,
	}
}

// withDefaults fills the zero values that have no sensible zero meaning.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.StallFor <= 0 {
		c.StallFor = d.StallFor
	}
	if c.RetryAfter <= 0 {
		c.RetryAfter = d.RetryAfter
	}
	if c.Auth == "" {
		c.Auth = d.Auth
	}
	if c.TokenTTL <= 0 {
		c.TokenTTL = d.TokenTTL
	}
	if c.JWTHeader == "" {
		c.JWTHeader = d.JWTHeader
	}
	if c.JWTMaxSkew <= 0 {
		c.JWTMaxSkew = d.JWTMaxSkew
	}
	if c.NotFoundCode == 0 {
		c.NotFoundCode = d.NotFoundCode
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	c.Tokens = append([]string(nil), c.Tokens...)
	c.JWTSecret = append([]byte(nil), c.JWTSecret...)
	c.DownOperators = append([]int64(nil), c.DownOperators...)
	return c
}

func (c Config) faults() Faults {
	return Faults{
		Fault5xxRate:    c.Fault5xxRate,
		LostRate:        c.LostRate,
		StallRate:       c.StallRate,
		ThrottleRate:    c.ThrottleRate,
		UnknownCodeRate: c.UnknownCodeRate,
	}
}
