package aop

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"
)

// Endpoint paths, appended to Options.BaseURL.
const (
	PathRecharge      = "/api/AOP/Recharge"
	PathStatus        = "/api/AOP/RechargeStatus"
	PathConsumerFetch = "/api/AOP/FetchConsumerDetails"
)

const (
	defaultMaxConns  = 64
	defaultUserAgent = "aopbatch"
)

// Options configures a Client.
type Options struct {
	// BaseURL is the provider's absolute http or https URL, such as
	// http://127.0.0.1:8080; endpoint paths are appended to it.
	BaseURL string
	// RegistrationID is sent in status enquiries.
	RegistrationID string
	// Auth adds the credential to every request; nil sends none.
	Auth Authenticator
	// HTTPClient, when set, is used as is (its redirect policy included).
	// When nil the client uses a tuned transport that keeps MaxConns
	// connections alive, always verifies TLS and never follows redirects.
	HTTPClient *http.Client
	// MaxConns is the number of idle keep-alive connections kept per host;
	// 64 when 0.
	MaxConns int
	// NotFoundCodes are the status-enquiry response codes that mean "no such
	// transaction"; {2} when empty.
	NotFoundCodes []int
	// UserAgent is sent with every request; "aopbatch" when empty.
	UserAgent string
}

// Client talks to the AOP Recharge API. It is safe for concurrent use.
type Client struct {
	rechargeURL    string
	statusURL      string
	registrationID string
	auth           Authenticator
	hc             *http.Client
	notFound       []int
	plainHTTP1     bool // a connection without TLS speaks HTTP/1 (no h2c)
	userAgent      string
	now            func() time.Time
}

// New returns a Client for o.BaseURL.
func New(o Options) (*Client, error) {
	base, err := parseBaseURL(o.BaseURL)
	if err != nil {
		return nil, err
	}
	if o.MaxConns < 0 {
		return nil, fmt.Errorf("max connections %d: must not be negative", o.MaxConns)
	}
	maxConns := o.MaxConns
	if maxConns == 0 {
		maxConns = defaultMaxConns
	}
	c := &Client{
		rechargeURL:    base + PathRecharge,
		statusURL:      base + PathStatus,
		registrationID: o.RegistrationID,
		auth:           o.Auth,
		hc:             o.HTTPClient,
		notFound:       append([]int(nil), o.NotFoundCodes...),
		userAgent:      strings.TrimSpace(o.UserAgent),
		now:            time.Now,
	}
	if c.auth == nil {
		c.auth = NoAuth()
	}
	if c.hc == nil {
		c.hc = defaultHTTPClient(maxConns)
	}
	c.plainHTTP1 = plainIsHTTP1(c.hc)
	if len(c.notFound) == 0 {
		c.notFound = []int{2}
	}
	if c.userAgent == "" {
		c.userAgent = defaultUserAgent
	}
	return c, nil
}

// parseBaseURL accepts an absolute http(s) URL without credentials, query or
// fragment, and returns it without a trailing slash. Error messages never
// repeat a URL that could hold a password.
func parseBaseURL(raw string) (string, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return "", errors.New("base url is empty")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", errors.New("base url is not a valid URL")
	}
	if u.User != nil {
		return "", fmt.Errorf("base url %s: credentials belong in the auth settings, not the URL", u.Redacted())
	}
	scheme := strings.ToLower(u.Scheme)
	if (scheme != "http" && scheme != "https") || u.Host == "" || u.Opaque != "" {
		return "", fmt.Errorf("base url %q: must be an absolute http or https URL", raw)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
		return "", fmt.Errorf("base url %q: must not have a query or fragment", raw)
	}
	u.Scheme = scheme
	return strings.TrimRight(u.String(), "/"), nil
}

// plainIsHTTP1 reports whether hc's connections without TLS surely speak
// HTTP/1: a net/http Transport not set for unencrypted HTTP/2. Any other
// RoundTripper may speak h2c, whose retries the transport-resend guard in
// post must see.
func plainIsHTTP1(hc *http.Client) bool {
	rt := hc.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	tr, ok := rt.(*http.Transport)
	return ok && (tr.Protocols == nil || !tr.Protocols.UnencryptedHTTP2())
}

// defaultHTTPClient keeps maxConns connections per host alive for reuse,
// verifies TLS always, and does not follow redirects: a payment POST is
// never replayed to another address, nor turned into a GET.
func defaultHTTPClient(maxConns int) *http.Client {
	tr := &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: (&net.Dialer{
			Timeout:   30 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           maxConns,
		MaxIdleConnsPerHost:    maxConns,
		MaxConnsPerHost:        0,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    10 * time.Second,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: 1 << 20,
		DisableCompression:     false,
		TLSClientConfig:        &tls.Config{MinVersion: tls.VersionTLS12},
	}
	return &http.Client{
		Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// CloseIdleConnections closes the keep-alive connections not in use.
func (c *Client) CloseIdleConnections() { c.hc.CloseIdleConnections() }

// String describes the client without its credential.
func (c *Client) String() string {
	return fmt.Sprintf("aop.Client(%s, auth=%s)", c.rechargeURL, c.auth.Mode())
}

// GoString describes the client without its credential.
func (c *Client) GoString() string { return c.String() }

// Format prints String for every verb, so no field is ever dumped.
func (c *Client) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, c.String()) }

// Recharge posts body, the exact bytes of a JSON-encoded RechargeRequest as
// stored in the ledger, and classifies the answer. Every outcome, transport
// failures included, is a Result with a nil error; the error is non-nil only
// for a misuse (nil client, body that is not JSON). A Result is ClassSuccess
// only when the provider answered code 1 with a 2xx status.
//
// When the credential is rejected (ClassAuth) the authenticator is refreshed
// once and the same bytes are sent once more (safe: the same referenceid
// would answer 18 if the first had been taken); the second answer is
// returned with Attempts 2.
func (c *Client) Recharge(ctx context.Context, body []byte) (Result, error) {
	if c == nil {
		return Result{Class: ClassNotSent, Code: -1}, errors.New("recharge: nil client")
	}
	if !validJSON(body) {
		return Result{Class: ClassNotSent, Code: -1}, errors.New("recharge: body is not valid JSON")
	}
	r, sent := c.rechargeOnce(ctx, body)
	if r.Class != ClassAuth || r.NoCredential {
		// No credential: the authenticator has just tried to make one (or
		// says why its last try failed), and a renewal would only try
		// again, a command that hangs hanging again.
		return r, nil
	}
	if err := c.refreshAuth(ctx, sent); err != nil {
		if ctx.Err() != nil {
			// A rejected credential means nothing was processed.
			return Result{Class: ClassNotSent, HTTPStatus: r.HTTPStatus, Code: r.Code,
				Message: clip("not sent: " + describe(ctx, err)), Attempts: r.Attempts}, nil
		}
		r.Message, r.RenewFailed = refreshFailed(err), true
		return r, nil
	}
	r2, _ := c.rechargeOnce(ctx, body)
	if r2.NoCredential {
		r2.NoCredential, r2.RenewFailed = false, true
		r2.HTTPStatus, r2.Code = r.HTTPStatus, r.Code
	}
	r2.Attempts += r.Attempts
	return r2, nil
}

// refreshFailed is the message of an exchange whose credential the
// provider refused and that could not be renewed (err). A second try
// with no credential after a renewal (RenewFailed too) made no request:
// the exchange's one request, and its answer, is the first, refused.
func refreshFailed(err error) string { return clip("credential refresh failed: " + err.Error()) }

// AuthMode names the kind of credential the client sends
// (Authenticator.Mode): what to fix when the provider refuses it, or when
// none can be had, depends on it.
func (c *Client) AuthMode() string { return c.auth.Mode() }

// refreshAuth renews the credential after a request carrying the headers
// sent was refused. An authenticator that can tell whether that credential
// has already been replaced (by another refused request) skips the renewal
// then, however short the credential's life; others get Refresh.
func (c *Client) refreshAuth(ctx context.Context, sent http.Header) error {
	if r, ok := c.auth.(interface {
		refreshRejected(ctx context.Context, sent http.Header) error
	}); ok && sent != nil {
		return r.refreshRejected(ctx, sent)
	}
	return c.auth.Refresh(ctx)
}

// rechargeOnce makes one Recharge exchange; it also returns the request
// headers sent, for refreshAuth.
func (c *Client) rechargeOnce(ctx context.Context, body []byte) (Result, http.Header) {
	rp := c.post(ctx, c.rechargeURL, body)
	r := Result{HTTPStatus: rp.status, Code: -1, Message: rp.msg, Attempts: rp.attempts}
	switch rp.kind {
	case replyCredential:
		r.Class, r.NoCredential = ClassAuth, true
	case replyNotSent:
		r.Class = ClassNotSent
		r.Untrusted = rp.untrusted
	case replyLost:
		r.Class = ClassUnknown
		if rp.status == http.StatusTooManyRequests {
			r.Class, r.RetryAfter = ClassThrottled, parseRetryAfter(rp.header.Get("Retry-After"), c.now())
		}
	default:
		r = classifyRecharge(rp.status, rp.header, rp.body, rp.tooBig, c.now())
		r.Attempts = rp.attempts
	}
	r.Wrote, r.Timeout = rp.wrote, rp.timeout
	r.Message = hideCredential(r.Message, rp.sent)
	return r, rp.sent
}

// replyKind says how far one exchange got.
type replyKind int

const (
	replyAnswer     replyKind = iota // status and body read in full (or capped)
	replyNotSent                     // failed before the request could reach the server
	replyLost                        // failed after the request may have reached the server
	replyCredential                  // the authenticator could not produce a credential: no request was made
)

type reply struct {
	kind      replyKind
	msg       string
	status    int
	header    http.Header
	body      []byte
	tooBig    bool
	attempts  int
	sent      http.Header // the request's headers, credential included, once applied
	untrusted bool        // the server's TLS certificate was refused
	wrote     time.Time   // when the request was written; zero if unknown or never
	timeout   bool        // it ended at the request's deadline
}

// post makes one POST and reads its answer. It tells "not sent" from "lost"
// with httptrace: an error before a connection was obtained for the final
// attempt (dial, DNS, TLS handshake, a context already done) is not sent;
// an error once a connection was in hand may follow bytes on the wire and
// is lost. A write that fails on a connection is counted as lost too, since
// part of the request may have been delivered.
func (c *Client) post(ctx context.Context, url string, body []byte) reply {
	if err := ctx.Err(); err != nil {
		return reply{kind: replyNotSent, msg: "not sent: " + describe(ctx, err)}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return reply{kind: replyNotSent, msg: clip("not sent: " + err.Error())}
	}
	// Canonical keys set directly, the values sharing one array: Header.Set
	// would allocate each. The capacities keep an Add from overwriting a
	// neighbour.
	v := &[len(ownHeaders)]string{"application/json", "application/json", c.userAgent}
	for i, k := range ownHeaders {
		req.Header[k] = v[i : i+1 : i+1]
	}
	// The credential comes before the request is handed to the
	// transport: when there is none, no connection was asked for and no
	// byte went out.
	if err := c.auth.Apply(req); err != nil {
		if ctx.Err() != nil {
			return reply{kind: replyNotSent, msg: clip("not sent: " + describe(ctx, err))}
		}
		return reply{kind: replyCredential, msg: clip("no credential: " + err.Error())}
	}

	// An Idempotency-Key header (a --jwt-header so named) makes HTTP/1
	// replay a POST it wrote, as HTTP/2 does: guarded the same way.
	tr := connTrace{plainHTTP1: c.plainHTTP1, replayable: req.Header["Idempotency-Key"] != nil || req.Header["X-Idempotency-Key"] != nil}
	// The transport may post a request again by itself, asking GetBody for
	// its body anew. HTTP/1 does so only when none of it reached the
	// connection, which is safe (its trace may say "written" before a
	// flush that then failed). HTTP/2 also does after the server reset the
	// stream with PROTOCOL_ERROR having read it whole, when the provider
	// may have processed it (thousands of times in 5 s, measured). So once
	// a try wrote the request over HTTP/2 there is no body for another: a
	// request goes again only after an enquiry found no record of it. The
	// tries HTTP/2 says are safe (REFUSED_STREAM, GOAWAY) are refused too,
	// and the row is asked about; so is a redirect's answer over HTTP/2,
	// which CheckRedirect would refuse anyway.
	getBody := req.GetBody
	req.GetBody = func() (io.ReadCloser, error) {
		if tr.writtenOnce() {
			return nil, errWrittenOnce
		}
		return getBody()
	}
	req = req.WithContext(httptrace.WithClientTrace(ctx, tr.hooks()))
	resp, err := c.hc.Do(req)
	if err != nil {
		if tr.reachedServer() {
			why := describe(ctx, err)
			return reply{kind: replyLost, attempts: 1, sent: req.Header, wrote: tr.wroteTime(), timeout: why == "timeout",
				msg: clip("no response: " + why + " " + tr.phase())}
		}
		return reply{kind: replyNotSent, attempts: 1, sent: req.Header, msg: clip("not sent: " + describe(ctx, err)),
			untrusted: untrustedCert(err)}
	}
	b, tooBig, err := readBody(resp.Body)
	if err == nil && !tooBig {
		_ = resp.Body.Close() // read to its end: nothing to drain
	} else {
		drainAndClose(resp.Body)
	}
	if err != nil {
		why := describe(ctx, err)
		return reply{kind: replyLost, attempts: 1, status: resp.StatusCode, header: resp.Header, sent: req.Header, wrote: tr.wroteTime(),
			timeout: why == "timeout", msg: clip(fmt.Sprintf("incomplete response: HTTP %d, %s while reading the body", resp.StatusCode, why))}
	}
	return reply{kind: replyAnswer, attempts: 1, status: resp.StatusCode, header: resp.Header, body: b, tooBig: tooBig, sent: req.Header,
		wrote: tr.wroteTime()}
}

// ownHeaders are the headers post sets itself, before the authenticator
// sets the credential's.
var ownHeaders = [...]string{"Content-Type", "Accept", "User-Agent"}

// hideCredential blanks in msg, the message made of a provider's answer,
// the credential the request carried (the headers the authenticator set),
// which a provider may echo in an error ("invalid token ..."): the message
// reaches the ledger, the reports and the log. It works on the message,
// never on the answer, which decides the row's outcome; JSON escapes in
// the answer are decoded by then. The message was cut to length, maybe
// through a credential: what is left of one at its end goes too. Values
// shorter than minCredential are left: they could match by chance.
func hideCredential(msg string, sent http.Header) string {
	if msg == "" {
		return msg
	}
	// Only a message near the cap was cut (clip trims what it cuts at).
	cut := utf8.RuneCountInString(msg) > maxMessage-minCut
	for k, vs := range sent {
		if slices.Contains(ownHeaders[:], k) {
			continue // every other header is the authenticator's
		}
		for _, v := range vs {
			for _, c := range []string{v, strings.TrimPrefix(v, "Bearer ")} {
				if len(c) < minCredential {
					continue
				}
				msg = strings.ReplaceAll(msg, c, "[redacted]")
				for n := len(c) - 1; cut && n >= minCut; n-- {
					if strings.HasSuffix(msg, c[:n]) {
						msg = msg[:len(msg)-n] + "[redacted]"
						break
					}
				}
			}
		}
	}
	return msg
}

// minCut is the shortest start of a credential hideCredential blanks at
// the end of a message cut to length: fewer characters tell nothing of
// it, and would match the end of a message by chance.
const minCut = 6

// minCredential is the shortest credential hideCredential looks for.
const minCredential = 8

// connTrace records, for the latest attempt the transport made, whether a
// connection was obtained and whether the request was fully written. The
// hooks may run on the transport's goroutines, hence the mutex.
type connTrace struct {
	mu         sync.Mutex
	getConn    bool
	gotConn    bool
	wrote      bool
	wroteFail  bool
	replays    bool                  // the latest try's transport may post the request again once written: HTTP/2, or a replayable request
	plainHTTP1 bool                  // a connection without TLS speaks HTTP/1
	replayable bool                  // HTTP/1 may replay this request too
	written    bool                  // some try, not only the latest, wrote the whole request where replays held
	wroteAt    time.Time             // when the final attempt's request was written
	ct         httptrace.ClientTrace // the hooks, here to save an allocation
}

func (t *connTrace) hooks() *httptrace.ClientTrace {
	t.ct = httptrace.ClientTrace{
		GetConn: func(string) {
			t.mu.Lock()
			t.getConn, t.gotConn, t.wrote, t.wroteFail = true, false, false, false
			t.mu.Unlock()
		},
		GotConn: func(i httptrace.GotConnInfo) {
			// HTTP/1 only where provable: TLS that negotiated something
			// else, or no TLS on a transport without h2c.
			h2 := true
			if tc, ok := i.Conn.(*tls.Conn); ok {
				h2 = tc.ConnectionState().NegotiatedProtocol == "h2"
			} else if i.Conn != nil {
				h2 = !t.plainHTTP1
			}
			t.mu.Lock()
			t.gotConn, t.replays = true, h2 || t.replayable
			t.mu.Unlock()
		},
		WroteRequest: func(i httptrace.WroteRequestInfo) {
			t.mu.Lock()
			if i.Err == nil {
				t.wrote, t.wroteAt = true, time.Now()
				t.written = t.written || t.replays
			} else {
				t.wroteFail = true
			}
			t.mu.Unlock()
		},
	}
	return &t.ct
}

// wroteTime is when the final attempt's request was written, or zero.
func (t *connTrace) wroteTime() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.wroteAt
}

// errWrittenOnce refuses the transport a second try of a written request.
var errWrittenOnce = errors.New("the request was written once already, and the transport or a redirect would post it again: not done without an enquiry")

// writtenOnce reports whether some try wrote the whole request where the
// transport may post it again by itself.
func (t *connTrace) writtenOnce() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.written
}

// reachedServer is false only when the trace shows the final attempt never
// got a connection, and no earlier one wrote the request where the
// transport may post it again (HTTP/1 tries again only what it did not
// write). A transport that
// reports no trace events at all (a custom RoundTripper) proves nothing, so
// it counts as reached.
func (t *connTrace) reachedServer() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return !t.getConn || t.gotConn || t.written
}

func (t *connTrace) phase() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.wrote {
		return "after the request was sent"
	}
	return "while the request was being sent (it may have been received)"
}

// untrustedCert reports whether err is a refused server certificate: no
// retry can fix that, only configuration.
func untrustedCert(err error) bool {
	var (
		certErr *tls.CertificateVerificationError
		uaErr   x509.UnknownAuthorityError
		hostErr x509.HostnameError
	)
	return errors.As(err, &certErr) || errors.As(err, &uaErr) || errors.As(err, &hostErr)
}

// describe names a transport failure in a few words for Result.Message.
func describe(ctx context.Context, err error) string {
	var (
		dnsErr  *net.DNSError
		netErr  net.Error
		certErr *tls.CertificateVerificationError
		uaErr   x509.UnknownAuthorityError
		hostErr x509.HostnameError
		recErr  tls.RecordHeaderError
	)
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled) || errors.Is(ctx.Err(), context.Canceled):
		return "canceled"
	case errors.As(err, &dnsErr):
		return "DNS lookup of " + dnsErr.Name + " failed"
	case errors.As(err, &certErr), errors.As(err, &uaErr), errors.As(err, &hostErr):
		return "TLS certificate not trusted"
	case errors.As(err, &recErr):
		return "TLS handshake failed"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed"
	case errors.As(err, &netErr) && netErr.Timeout():
		return "timeout"
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}
