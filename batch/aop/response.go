package aop

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Result is the classified answer to one Recharge call.
type Result struct {
	Class      Class
	HTTPStatus int           // 0 when no response arrived
	Code       int           // provider response code; -1 when none could be read
	Status     bool          // the provider's status boolean, informational only
	Message    string        // provider message or what went wrong, at most 200 characters
	RetryAfter time.Duration // ClassThrottled only
	Attempts   int           // HTTP requests made (an auth refresh retry makes 2)
	TxnID      string        // the provider's transaction id, when the answer carried data.txnid
	Untrusted  bool          // ClassNotSent because the server's TLS certificate was refused
	Wrote      time.Time     // when the request was written out; zero when it never was, or is unknown
	Timeout    bool          // no answer came within the request's deadline
	// NoCredential (ClassAuth) means the authenticator could not produce
	// a credential (a token command that failed to start or exited
	// non-zero), so no request was made: Attempts is 0 and nothing of this
	// call left the process. Message says why.
	NoCredential bool
	// RenewFailed (ClassAuth) means the provider refused the credential
	// and renewing it failed; Message says why.
	RenewFailed bool
}

// MadeRequest reports whether the exchange made a request the provider
// may have seen: one that had an answer, or that had a credential and did
// not fail before it could reach the provider (a refused connection).
func (r Result) MadeRequest() bool {
	return r.HTTPStatus != 0 || !r.NoCredential && r.Class != ClassNotSent
}

const (
	// maxBody caps every response body the client reads.
	maxBody = 1 << 20
	// maxMessage caps Result.Message and StatusResult.Message, in characters.
	maxMessage = 200
	// defaultRetryAfter applies to a 429 without a readable Retry-After.
	defaultRetryAfter = time.Second
	// maxRetryAfter caps what a provider can ask us to wait.
	maxRetryAfter = 5 * time.Minute
)

const msgTooBig = "response body over 1 MiB"

// readBody reads at most 1 MiB of body. tooBig reports a longer body, whose
// content is then not to be trusted. The caller drains and closes; a nil
// err without tooBig means the body was read to its end.
func readBody(r io.Reader) (body []byte, tooBig bool, err error) {
	body, err = io.ReadAll(io.LimitReader(r, maxBody+1))
	if len(body) > maxBody {
		return body[:maxBody], true, err
	}
	return body, false, err
}

// drainAndClose lets a keep-alive connection go back to the pool when the
// rest of the body is short, and gives the connection up when it is not.
func drainAndClose(rc io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(rc, 256<<10))
	_ = rc.Close()
}

// envelope is the provider's common answer: response_code (or responsecode),
// status, message, and for status enquiries a data object.
type envelope struct {
	code    int // -1 when absent, unreadable or contradictory
	status  bool
	message string
	data    json.RawMessage // nil when absent or empty
}

// utf8BOM is skipped before an answer, which some servers prepend.
var utf8BOM = []byte("\xef\xbb\xbf")

// parseEnvelope decodes the top level of an answer tolerantly. ok is false
// when the body is not a single JSON object. Keys match case-insensitively
// and ignoring '_', '-' and spaces; a code given twice with different values
// (or once unreadably) counts as no code at all.
//
// Most answers are read by scanEnvelope without encoding/json; whatever it
// declines goes to decodeEnvelope. FuzzEnvelopeFastPath holds the two to
// the same answer.
func parseEnvelope(body []byte) (env envelope, ok bool) {
	body = bytes.TrimPrefix(body, utf8BOM)
	if env, ok := scanEnvelope(body); ok {
		return env, true
	}
	return decodeEnvelope(body)
}

// decodeEnvelope is parseEnvelope for any body, through encoding/json.
func decodeEnvelope(body []byte) (env envelope, ok bool) {
	if !json.Valid(body) {
		return envelope{code: -1}, false
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return envelope{code: -1}, false
	}
	f := newEnvFields()
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return envelope{code: -1}, false
		}
		key, _ := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return envelope{code: -1}, false
		}
		f.add(envKeyOf(normKey(key)), raw)
	}
	return f.result(), true
}

// scanEnvelope is parseEnvelope for the usual answer, without encoding/json.
// ok is false when it declines: on anything that is not a valid JSON
// object, and on keys with escapes or bytes outside ASCII.
func scanEnvelope(body []byte) (env envelope, ok bool) {
	s := jsonScan{b: body}
	s.space()
	empty, ok := s.open('{', '}')
	if !ok {
		return envelope{}, false
	}
	f := newEnvFields()
	for !empty {
		key, raw, plain, ok := s.member()
		if !ok || !plain {
			return envelope{}, false
		}
		f.add(asciiEnvKey(key), raw)
		if empty, ok = s.more('}'); !ok {
			return envelope{}, false
		}
	}
	if !s.end() {
		return envelope{}, false
	}
	return f.result(), true
}

// envKey names the top-level keys an envelope reads.
type envKey uint8

const (
	keyOther envKey = iota
	keyCode
	keyStatus
	keyMessage
	keyData
)

// envKeyOf maps a key folded by normKey.
func envKeyOf(folded string) envKey {
	switch folded {
	case "responsecode":
		return keyCode
	case "status":
		return keyStatus
	case "message":
		return keyMessage
	case "data":
		return keyData
	}
	return keyOther
}

// asciiEnvKey is envKeyOf(normKey(key)) for an ASCII key, without
// allocating: on ASCII, normKey drops '_', '-' and ' ' and lowers A-Z.
func asciiEnvKey(key []byte) envKey {
	var buf [len("responsecode")]byte
	n := 0
	for _, c := range key {
		switch {
		case c == '_' || c == '-' || c == ' ':
			continue
		case n == len(buf):
			return keyOther
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		buf[n] = c
		n++
	}
	return envKeyOf(string(buf[:n]))
}

// envFields builds an envelope from an object's members in document order.
// Both decoders feed it, so they can differ only in how they split the
// object into keys and values.
type envFields struct {
	env      envelope
	codeSeen bool
	codeBad  bool
}

func newEnvFields() envFields { return envFields{env: envelope{code: -1}} }

func (f *envFields) add(key envKey, raw []byte) {
	switch key {
	case keyCode:
		c, present, good := parseCode(raw)
		switch {
		case !present:
		case !good:
			f.codeBad = true
		case f.codeSeen && c != f.env.code:
			f.codeBad = true
		default:
			f.codeSeen, f.env.code = true, c
		}
	case keyStatus:
		f.env.status = parseBool(raw)
	case keyMessage:
		f.env.message = parseText(raw)
	case keyData:
		f.env.data = nonEmpty(raw)
	}
}

func (f *envFields) result() envelope {
	if f.codeBad {
		f.env.code = -1
	}
	return f.env
}

// normKey folds a JSON key the way SPEC section 1 spells the same key twice.
func normKey(k string) string {
	var b strings.Builder
	for _, r := range k {
		switch r {
		case '_', '-', ' ':
			continue
		}
		b.WriteRune(unicode.ToLower(r))
	}
	return b.String()
}

// parseCode reads a response code given as a JSON integer or a string of
// digits. present is false for null; good is false for anything else
// (1.0, -1, "abc", true, an object).
func parseCode(raw []byte) (code int, present, good bool) {
	s := bytes.TrimSpace(raw)
	if string(s) == "null" {
		return 0, false, false
	}
	if len(s) > 0 && s[0] == '"' {
		if text, ok := plainString(s); ok {
			s = text
		} else {
			var str string
			if json.Unmarshal(s, &str) != nil {
				return 0, true, false
			}
			s = []byte(str)
		}
		s = bytes.TrimSpace(s)
	}
	if len(s) == 0 || len(s) > 9 {
		return 0, true, false
	}
	n := 0 // nine digits cannot overflow an int
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, true, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true, true
}

// parseBool reads true/false, "true"/"false", 1/0 and "1"/"0".
func parseBool(raw []byte) bool {
	s := bytes.TrimSpace(bytes.Trim(bytes.TrimSpace(raw), `"`))
	// Only ASCII letters lower to "true": no other rune maps onto t, r, u, e.
	if len(s) == 4 {
		for i, c := range s {
			if c|0x20 != "true"[i] {
				return false
			}
		}
		return true
	}
	return len(s) == 1 && s[0] == '1'
}

// parseText reads a JSON string, or keeps the literal text of anything else.
func parseText(raw []byte) string {
	if text, ok := plainString(raw); ok {
		return string(text)
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	if t := bytes.TrimSpace(raw); string(t) != "null" {
		return string(t)
	}
	return ""
}

// plainString returns the text of a JSON string that needs no decoding: no
// escapes, no control characters and valid UTF-8, which encoding/json would
// return byte for byte.
func plainString(raw []byte) ([]byte, bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return nil, false
	}
	text := raw[1 : len(raw)-1]
	ascii := true
	for _, c := range text {
		if c < 0x20 || c == '"' || c == '\\' {
			return nil, false
		}
		if c >= utf8.RuneSelf {
			ascii = false
		}
	}
	if !ascii && !utf8.Valid(text) {
		return nil, false
	}
	return text, true
}

// nonEmpty drops the ways a provider says "no data": null, "", [] and {},
// whatever white space (Unicode's, even inside the quotes) they hold.
func nonEmpty(raw []byte) json.RawMessage {
	var kept [5]byte // more than the 4 bytes of "null" means data
	n := 0
	for i := 0; i < len(raw); {
		r, size := rune(raw[i]), 1
		if r >= utf8.RuneSelf {
			r, size = utf8.DecodeRune(raw[i:])
		}
		if !unicode.IsSpace(r) {
			for _, c := range raw[i : i+size] {
				if n == len(kept) {
					return raw
				}
				kept[n] = c
				n++
			}
		}
		i += size
	}
	switch string(kept[:n]) {
	case "null", `""`, "[]", "{}":
		return nil
	}
	return raw
}

// clip makes a provider or error text safe to store and print: valid UTF-8,
// no control characters, trimmed, at most 200 characters.
func clip(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if utf8.RuneCountInString(s) <= maxMessage {
		return s
	}
	n := 0
	for i := range s {
		if n == maxMessage {
			return strings.TrimSpace(s[:i])
		}
		n++
	}
	return s
}

// parseRetryAfter reads Retry-After as delay-seconds or an HTTP-date. A
// missing or unreadable value is one second; any value is capped at five
// minutes so a confused server cannot park the run.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return defaultRetryAfter
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 {
			return defaultRetryAfter
		}
		if n > int64(maxRetryAfter/time.Second) {
			return maxRetryAfter
		}
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		d := t.Sub(now)
		switch {
		case d < 0:
			return 0
		case d > maxRetryAfter:
			return maxRetryAfter
		}
		return d.Round(time.Second)
	}
	return defaultRetryAfter
}

// is2xx reports an HTTP success status.
func is2xx(status int) bool { return status >= 200 && status <= 299 }

// isAuthStatus reports the HTTP statuses that mean "credential rejected"
// when the body carries no code.
func isAuthStatus(status int) bool {
	return status == http.StatusUnauthorized || status == http.StatusForbidden
}

// unreadable explains why a body gave no answer.
func unreadable(httpStatus int, body []byte) string {
	if len(bytes.TrimSpace(body)) == 0 {
		return fmt.Sprintf("HTTP %d with an empty body", httpStatus)
	}
	return fmt.Sprintf("HTTP %d with a body that is not a JSON object", httpStatus)
}

// classifyRecharge turns one Recharge answer into a Result. It is pure so the
// fuzzer can drive it. The rules, in order: 429 is throttled; a body over
// 1 MiB is unknown; a readable code decides through the code table, except
// that code 1 counts as success only with a 2xx status; with no code, 401 and
// 403 are auth and everything else is unknown. Nothing but code 1 is success.
func classifyRecharge(httpStatus int, header http.Header, body []byte, tooBig bool, now time.Time) Result {
	r := Result{HTTPStatus: httpStatus, Code: -1, Class: ClassUnknown}
	if httpStatus == http.StatusTooManyRequests {
		r.Class = ClassThrottled
		r.RetryAfter = parseRetryAfter(header.Get("Retry-After"), now)
		if env, ok := parseEnvelope(body); ok && !tooBig {
			r.Code, r.Status, r.Message = env.code, env.status, clip(env.message)
		}
		if r.Message == "" {
			r.Message = "HTTP 429: throttled"
		}
		return r
	}
	if tooBig {
		r.Message = msgTooBig
		return r
	}
	env, ok := parseEnvelope(body)
	if !ok {
		if isAuthStatus(httpStatus) {
			r.Class = ClassAuth
		}
		r.Message = unreadable(httpStatus, body)
		return r
	}
	r.Code, r.Status, r.Message = env.code, env.status, clip(env.message)
	r.TxnID = txnID(env.data)
	switch {
	case env.code >= 0:
		r.Class = ClassOf(env.code)
		if r.Class == ClassSuccess && !is2xx(httpStatus) {
			r.Class = ClassUnknown
			r.Message = clip(fmt.Sprintf("code 1 with HTTP %d: %s", httpStatus, env.message))
		}
	case isAuthStatus(httpStatus):
		r.Class = ClassAuth
	}
	if r.Message == "" && r.Code == -1 {
		r.Message = fmt.Sprintf("HTTP %d without a response code", httpStatus)
	}
	return r
}

// txnID reads data.txnid from an answer, if it has one: informational, for
// the reports; it never decides an outcome.
func txnID(data json.RawMessage) string {
	if data == nil {
		return ""
	}
	var v [1]string
	if scanFields(data, txnIDField[:], v[:]) {
		return clip(v[0])
	}
	return decodeTxnID(data)
}

var txnIDField = [1]string{"txnid"}

// decodeTxnID is txnID for any data, through encoding/json.
func decodeTxnID(data json.RawMessage) string {
	var d struct {
		TxnID flexString `json:"txnid"`
	}
	if json.Unmarshal(data, &d) != nil {
		return ""
	}
	return clip(string(d.TxnID))
}
