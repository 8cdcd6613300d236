package aoptest

import (
	"cmp"
	"encoding/json"
	"hash/maphash"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// maxBody caps every request body the sandbox reads.
const maxBody = 1 << 20

// Server is the sandbox as an http.Handler. It is safe for concurrent use.
type Server struct {
	cfg Config

	mu        sync.Mutex // guards the fields below
	refs      map[string]*entry
	wallet    int64
	unlimited bool
	down      map[int64]bool
	faults    Faults
	events    eventHeap

	static map[string]bool // immutable after New
	tokMu  sync.Mutex
	minted map[string]int64 // token -> expiry, unix nanoseconds

	jwtMu   sync.Mutex
	seen    map[uint64]int64 // reqid hash -> when seen, unix nanoseconds
	seenQ   []seenReq
	seenOff int
	hseed   maphash.Seed

	quit     chan struct{}
	quitOnce sync.Once

	st      counters
	canned  cannedAnswers
	retryAt string // Retry-After header value

	latency, jitter atomic.Int64 // nanoseconds, see SetLatency
	limit           *rpsLimit    // nil: no throttle of its own
}

type seenReq struct {
	h uint64
	t int64
}

// New returns a sandbox configured by cfg. It panics on an unknown
// cfg.Auth, a programming error.
func New(cfg Config) *Server {
	cfg = cfg.withDefaults()
	switch cfg.Auth {
	case AuthNone, AuthBearer, AuthJWT:
	default:
		panic("aoptest: unknown auth mode " + strconv.Quote(cfg.Auth))
	}
	s := &Server{
		cfg:       cfg,
		refs:      make(map[string]*entry),
		wallet:    cfg.WalletPaise,
		unlimited: cfg.WalletPaise < 0,
		down:      make(map[int64]bool),
		faults:    cfg.faults(),
		static:    make(map[string]bool),
		minted:    make(map[string]int64),
		seen:      make(map[uint64]int64),
		hseed:     maphash.MakeSeed(),
		quit:      make(chan struct{}),
	}
	if s.unlimited {
		s.wallet = 0
	}
	for _, op := range cfg.DownOperators {
		s.down[op] = true
	}
	for _, t := range cfg.Tokens {
		if t != "" {
			s.static[t] = true
		}
	}
	secs := (cfg.RetryAfter + time.Second - 1) / time.Second
	s.retryAt = strconv.FormatInt(int64(secs), 10)
	s.canned = newCannedAnswers(cfg.NotFoundCode)
	s.latency.Store(int64(cfg.Latency))
	s.jitter.Store(int64(cfg.LatencyJitter))
	if cfg.LimitRPS > 0 {
		s.limit = newRPSLimit(cfg.LimitRPS)
	}
	return s
}

// SetLatency changes the latency added to every answer, and its jitter,
// for the requests that follow (a provider slowing down mid-run).
func (s *Server) SetLatency(latency, jitter time.Duration) {
	s.latency.Store(int64(latency))
	s.jitter.Store(int64(jitter))
}

// ServeHTTP routes the sandbox's endpoints.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.st.requests.Add(1)
	switch r.URL.Path {
	case "/api/AOP/Recharge":
		if s.allow(w, r, http.MethodPost) {
			s.serveRecharge(w, r)
		}
	case "/api/AOP/RechargeStatus":
		if s.allow(w, r, http.MethodPost) {
			s.serveStatus(w, r)
		}
	case "/api/AOP/FetchConsumerDetails":
		if s.allow(w, r, http.MethodPost) {
			s.serveFetch(w, r)
		}
	case "/api/AOP/Statement":
		if s.allow(w, r, http.MethodGet) {
			s.serveStatement(w, r)
		}
	case "/sandbox/refund", "/sandbox/charge":
		if s.allow(w, r, http.MethodPost) {
			s.serveAfter(w, r, r.URL.Path == "/sandbox/refund")
		}
	case "/sandbox/token":
		if s.allow(w, r, http.MethodPost) {
			s.serveToken(w, r)
		}
	default:
		s.reply(w, r, http.StatusNotFound, -1, s.canned.notFound)
	}
}

func (s *Server) allow(w http.ResponseWriter, r *http.Request, method string) bool {
	if r.Method == method {
		return true
	}
	w.Header().Set("Allow", method)
	s.reply(w, r, http.StatusMethodNotAllowed, -1, s.canned.badMethod)
	return false
}

// ReleaseStalls ends every stalled or delayed answer now and makes later
// ones answer at once. Call it before shutting down an http.Server that
// serves the sandbox, so shutdown does not wait for StallFor.
func (s *Server) ReleaseStalls() {
	s.quitOnce.Do(func() { close(s.quit) })
}

// delay waits for the configured latency. It reports false when the client
// went away meanwhile, in which case nothing should be written.
func (s *Server) delay(r *http.Request) bool {
	d := time.Duration(s.latency.Load())
	if j := s.jitter.Load(); j > 0 {
		d += time.Duration(rand.Int64N(j + 1))
	}
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.quit:
		return true
	case <-r.Context().Done():
		return false
	}
}

// reply writes a JSON body after the configured latency. code is the
// response_code carried by body, or -1, and only feeds Stats.
func (s *Server) reply(w http.ResponseWriter, r *http.Request, status, code int, body []byte) {
	if !s.delay(r) {
		return
	}
	s.write(w, status, code, ctypeJSON, body)
}

// contentTypes holds shared header values, so that writing one allocates
// nothing; net/http never modifies a header value in place.
var contentTypes = map[string][]string{
	ctypeJSON: {ctypeJSON},
	ctypeHTML: {ctypeHTML},
	ctypeCSV:  {ctypeCSV},
}

const (
	ctypeJSON = "application/json; charset=utf-8"
	ctypeHTML = "text/html; charset=utf-8"
	ctypeCSV  = "text/csv; charset=utf-8"
)

func (s *Server) write(w http.ResponseWriter, status, code int, ctype string, body []byte) {
	// Direct map writes skip canonicalisation; net/http adds
	// Content-Length itself for bodies this small.
	w.Header()["Content-Type"] = contentTypes[ctype]
	w.WriteHeader(status)
	_, _ = w.Write(body)
	s.st.status(status)
	if code >= 0 {
		s.st.code(code)
	}
}

func (s *Server) replyValue(w http.ResponseWriter, r *http.Request, status, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil { // only plain structs of strings reach here
		panic("aoptest: encode answer: " + err.Error())
	}
	s.reply(w, r, status, code, b)
}

// readBody reads a request body, at most maxBody bytes.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	return io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
}

// answer is the provider's ordinary envelope.
type answer struct {
	Status       bool   `json:"status"`
	ResponseCode int    `json:"response_code"`
	Message      string `json:"message"`
	Data         any    `json:"data,omitempty"`
}

// authAnswer is the envelope of a 401, spelled as the provider's document
// shows it.
type authAnswer struct {
	Status       bool   `json:"status"`
	ResponseCode int    `json:"responsecode"`
	Message      string `json:"message"`
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// cannedAnswers are bodies that never vary, encoded once.
type cannedAnswers struct {
	duplicate, down, limits, failed, funds, unknown, notFound, badMethod []byte
	throttled, internal, badGateway, unavailable, tooLarge, txnNotFound  []byte
}

func newCannedAnswers(notFoundCode int) cannedAnswers {
	return cannedAnswers{
		duplicate:   mustJSON(answer{Status: true, ResponseCode: 18, Message: "Duplicate Transaction"}),
		down:        mustJSON(answer{ResponseCode: 13, Message: "Operator is down, try later"}),
		limits:      mustJSON(answer{ResponseCode: 17, Message: "Amount is outside the operator's limits"}),
		failed:      mustJSON(answer{ResponseCode: 14, Message: "Bill payment failed"}),
		funds:       mustJSON(answer{ResponseCode: 16, Message: "Insufficient funds in the wallet"}),
		unknown:     mustJSON(answer{ResponseCode: 9, Message: "Unable to process request"}),
		txnNotFound: mustJSON(answer{ResponseCode: notFoundCode, Message: "Transaction not found"}),
		tooLarge:    mustJSON(answer{ResponseCode: 8, Message: "Request body too large"}),
		notFound:    []byte(`{"status":false,"message":"Not found"}`),
		badMethod:   []byte(`{"status":false,"message":"Method not allowed"}`),
		throttled:   []byte(`{"status":false,"message":"Too many requests"}`),
		internal:    []byte(`{"status":false,"message":"Internal server error"}`),
		badGateway:  []byte("<html><body><h1>502 Bad Gateway</h1></body></html>\n"),
		unavailable: []byte("<html><body><h1>503 Service Unavailable</h1></body></html>\n"),
	}
}

// Charged reports how many times ref was charged. The sandbox de-duplicates,
// so this is 0 or 1; later re-credits (failed pending, refund) do not lower it.
func (s *Server) Charged(ref string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.refs[ref]; e != nil {
		return int(e.charged)
	}
	return 0
}

// Requests reports how many Recharge requests carried ref, whatever they
// were answered (authentication failures and faults included).
func (s *Server) Requests(ref string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.refs[ref]; e != nil {
		return int(e.requests)
	}
	return 0
}

// NonDuplicateAnswers reports how many Recharge requests for ref got past the
// de-duplication check: those declined there after (13, 14, 16, 17) and the
// one that was recorded, whether its answer arrived or was lost. A client
// that resends only after a decline or after learning the provider has no
// record keeps this at 1 for every ref that was charged.
func (s *Server) NonDuplicateAnswers(ref string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.refs[ref]; e != nil {
		return int(e.nonDup)
	}
	return 0
}

// Resent reports how many Recharge requests carried ref after the sandbox
// had recorded it: each a send of a referenceid the provider already held,
// answered 18 at best. A client that settles every unclear outcome by
// enquiry before sending again keeps this at 0.
func (s *Server) Resent(ref string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.refs[ref]; e != nil {
		return int(e.resent)
	}
	return 0
}

// Txn returns the current state of the transaction recorded under ref.
func (s *Server) Txn(ref string) (Txn, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.settle(s.cfg.Now().UnixNano())
	e := s.refs[ref]
	if e == nil || !e.recorded {
		return Txn{}, false
	}
	return s.txnOf(e), true
}

// Txns returns every recorded transaction, sorted by referenceid.
func (s *Server) Txns() []Txn {
	s.mu.Lock()
	s.settle(s.cfg.Now().UnixNano())
	out := make([]Txn, 0, len(s.refs))
	for _, e := range s.refs {
		if e.recorded {
			out = append(out, s.txnOf(e))
		}
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b Txn) int { return cmp.Compare(a.Ref, b.Ref) })
	return out
}

// Totals reports the transactions whose final effect is a charge: status "1"
// and not refunded. Pending ones are counted by PendingCount.
func (s *Server) Totals() (charged int, chargedPaise int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.settle(s.cfg.Now().UnixNano())
	for _, e := range s.refs {
		if e.recorded && e.status == statusSuccess && !e.refunded {
			charged++
			chargedPaise += e.amount
		}
	}
	return charged, chargedPaise
}

// PendingCount reports the transactions still pending (status "2").
func (s *Server) PendingCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.settle(s.cfg.Now().UnixNano())
	n := 0
	for _, e := range s.refs {
		if e.recorded && e.status == statusPending {
			n++
		}
	}
	return n
}

// Balance reports the wallet in paise, or -1 when the wallet is unlimited.
func (s *Server) Balance() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.unlimited {
		return -1
	}
	s.settle(s.cfg.Now().UnixNano())
	return s.wallet
}

// TopUp adds paise to the wallet. An unlimited wallet stays unlimited.
func (s *Server) TopUp(paise int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.credit(paise)
}

// SetOperatorDown makes op answer 13 (down) or serve normally again.
func (s *Server) SetOperatorDown(op int64, down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if down {
		s.down[op] = true
	} else {
		delete(s.down, op)
	}
}

// SetFaults replaces the fault rates for the requests that follow.
func (s *Server) SetFaults(f Faults) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = f
}

// Stats is a snapshot of what the sandbox has answered.
type Stats struct {
	Requests     int64         // HTTP requests of every kind
	Recharges    int64         // Recharge requests
	Enquiries    int64         // RechargeStatus requests
	Recorded     int64         // transactions recorded (wallet debited)
	Resent       int64         // Recharges of a referenceid already recorded (see Resent)
	ByCode       map[int]int64 // response_code of the answers written
	ByHTTPStatus map[int]int64 // HTTP status of the answers written
	Faults       FaultCounts
	AuthFailures int64
}

// FaultCounts counts the faults injected, by kind. Limited counts the 429s
// of Config.LimitRPS, the provider's own throttle.
type FaultCounts struct {
	Fault5xx, Lost, Stall, Throttle, UnknownCode, Limited int64
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	c := &s.st
	st := Stats{
		Requests:     c.requests.Load(),
		Recharges:    c.recharges.Load(),
		Enquiries:    c.enquiries.Load(),
		Recorded:     c.recorded.Load(),
		Resent:       c.resent.Load(),
		ByCode:       make(map[int]int64),
		ByHTTPStatus: make(map[int]int64),
		Faults: FaultCounts{
			Fault5xx:    c.fault5xx.Load(),
			Lost:        c.lost.Load(),
			Stall:       c.stall.Load(),
			Throttle:    c.throttle.Load(),
			UnknownCode: c.unknownCode.Load(),
			Limited:     c.limited.Load(),
		},
		AuthFailures: c.authFailures.Load(),
	}
	for i := range c.codes {
		if n := c.codes[i].Load(); n > 0 {
			st.ByCode[i] = n
		}
	}
	for i := range c.statuses {
		if n := c.statuses[i].Load(); n > 0 {
			st.ByHTTPStatus[i+100] = n
		}
	}
	c.otherMu.Lock()
	for k, v := range c.otherCodes {
		st.ByCode[k] += v
	}
	c.otherMu.Unlock()
	return st
}

// counters are atomics so that counting never takes the state lock.
type counters struct {
	requests, recharges, enquiries, recorded, resent atomic.Int64
	fault5xx, lost, stall, throttle, unknownCode     atomic.Int64
	limited                                          atomic.Int64
	authFailures                                     atomic.Int64
	codes                                            [32]atomic.Int64
	statuses                                         [500]atomic.Int64
	otherMu                                          sync.Mutex
	otherCodes                                       map[int]int64
}

func (c *counters) code(code int) {
	if code >= 0 && code < len(c.codes) {
		c.codes[code].Add(1)
		return
	}
	c.otherMu.Lock()
	if c.otherCodes == nil {
		c.otherCodes = make(map[int]int64)
	}
	c.otherCodes[code]++
	c.otherMu.Unlock()
}

func (c *counters) status(status int) {
	if i := status - 100; i >= 0 && i < len(c.statuses) {
		c.statuses[i].Add(1)
	}
}
