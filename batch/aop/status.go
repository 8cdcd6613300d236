package aop

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// StatusData is the data object of a status enquiry's answer. The provider
// documents every field as a string; numbers are accepted too and kept as
// their literal text.
type StatusData struct {
	TxnID        string
	OperatorName string
	CANumber     string
	Amount       string
	Comm         string
	TDS          string
	Status       string
	RefID        string
	OperatorID   string
	DateAdded    string
	Refunded     string
	RefundTxnID  string
	DateRefunded string
}

type wireStatusData struct {
	TxnID        flexString `json:"txnid"`
	OperatorName flexString `json:"operatorname"`
	CANumber     flexString `json:"canumber"`
	Amount       flexString `json:"amount"`
	Comm         flexString `json:"comm"`
	TDS          flexString `json:"tds"`
	Status       flexString `json:"status"`
	RefID        flexString `json:"refid"`
	OperatorID   flexString `json:"operatorid"`
	DateAdded    flexString `json:"dateadded"`
	Refunded     flexString `json:"refunded"`
	RefundTxnID  flexString `json:"refundtxnid"`
	DateRefunded flexString `json:"daterefunded"`
}

// flexString reads a JSON string, number or boolean as text; null is "".
type flexString string

func (f *flexString) UnmarshalJSON(b []byte) error {
	s := strings.TrimSpace(string(b))
	switch {
	case s == "null":
		*f = ""
	case strings.HasPrefix(s, `"`):
		var v string
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		*f = flexString(v)
	case s == "true" || s == "false":
		*f = flexString(s)
	default:
		var n json.Number
		if err := json.Unmarshal(b, &n); err != nil {
			return fmt.Errorf("want a string or a number, got %.20s", s)
		}
		*f = flexString(n)
	}
	return nil
}

// Verdict is what a status enquiry says about one transaction.
type Verdict string

// The verdicts of a status enquiry (SPEC section 2, "Resolution").
const (
	// VerdictSuccess is data.status "1".
	VerdictSuccess Verdict = "success"
	// VerdictRefunded is data.status "1" with refunded "1": taken, then reversed.
	VerdictRefunded Verdict = "refunded"
	// VerdictFailed is data.status "0": failed, nothing kept by the provider.
	VerdictFailed Verdict = "failed"
	// VerdictPending is data.status "2": not final yet, ask again later.
	VerdictPending Verdict = "pending"
	// VerdictNotFound is an answer without data whose code is one of
	// Options.NotFoundCodes: the provider has no such referenceid.
	VerdictNotFound Verdict = "not-found"
	// VerdictUnknown is any answer that cannot be read as one of the above,
	// including data about another referenceid.
	VerdictUnknown Verdict = "unknown"
	// VerdictNotSent is a transport failure before the enquiry was sent.
	VerdictNotSent Verdict = "not-sent"
	// VerdictAuth is a rejected credential, still rejected after one refresh.
	VerdictAuth Verdict = "auth"
	// VerdictThrottled is HTTP 429; ask again after RetryAfter.
	VerdictThrottled Verdict = "throttled"
)

// StatusResult is the classified answer to one status enquiry.
type StatusResult struct {
	Verdict    Verdict
	HTTPStatus int           // 0 when no response arrived
	Code       int           // -1 when no code could be read
	Message    string        // provider message or what went wrong, at most 200 characters
	Data       StatusData    // as received, when the answer had a data object
	RetryAfter time.Duration // VerdictThrottled only
	Attempts   int           // HTTP requests made (an auth refresh retry makes 2)
	Wrote      time.Time     // when the request was written out; zero when it never was, or is unknown
	Timeout    bool          // no answer came within the request's deadline
	// NoCredential and RenewFailed (VerdictAuth) are as in Result: no
	// request was made, or a refused credential could not be renewed.
	NoCredential bool
	RenewFailed  bool
}

// MadeRequest reports whether the enquiry made a request, as
// Result.MadeRequest does.
func (r StatusResult) MadeRequest() bool {
	return r.HTTPStatus != 0 || !r.NoCredential && r.Verdict != VerdictNotSent
}

type statusRequest struct {
	ReferenceID    string `json:"referenceid"`
	RegistrationID string `json:"RegistrationID"`
}

// Status asks the provider for the outcome of referenceID. An enquiry is
// read-only, so a caller may repeat it freely; every outcome is a
// StatusResult with a nil error, which is non-nil only for a misuse (nil
// client, empty referenceID). A rejected credential is refreshed once and
// the enquiry repeated, as for Recharge.
func (c *Client) Status(ctx context.Context, referenceID string) (StatusResult, error) {
	if c == nil {
		return StatusResult{Verdict: VerdictNotSent, Code: -1}, errors.New("status enquiry: nil client")
	}
	if strings.TrimSpace(referenceID) == "" {
		return StatusResult{Verdict: VerdictNotSent, Code: -1}, errors.New("status enquiry: empty referenceid")
	}
	body, err := json.Marshal(statusRequest{ReferenceID: referenceID, RegistrationID: c.registrationID})
	if err != nil {
		return StatusResult{Verdict: VerdictNotSent, Code: -1}, fmt.Errorf("status enquiry: encode: %w", err)
	}
	r, sent := c.statusOnce(ctx, referenceID, body)
	if r.Verdict != VerdictAuth || r.NoCredential {
		return r, nil // no credential: as in Recharge
	}
	if err := c.refreshAuth(ctx, sent); err != nil {
		if ctx.Err() != nil {
			return StatusResult{Verdict: VerdictNotSent, HTTPStatus: r.HTTPStatus, Code: r.Code,
				Message: clip("not sent: " + describe(ctx, err)), Attempts: r.Attempts}, nil
		}
		r.Message, r.RenewFailed = refreshFailed(err), true
		return r, nil
	}
	r2, _ := c.statusOnce(ctx, referenceID, body)
	if r2.NoCredential { // as in Recharge
		r2.NoCredential, r2.RenewFailed = false, true
		r2.HTTPStatus, r2.Code = r.HTTPStatus, r.Code
	}
	r2.Attempts += r.Attempts
	return r2, nil
}

func (c *Client) statusOnce(ctx context.Context, referenceID string, body []byte) (StatusResult, http.Header) {
	rp := c.post(ctx, c.statusURL, body)
	r := StatusResult{HTTPStatus: rp.status, Code: -1, Message: rp.msg, Attempts: rp.attempts}
	switch rp.kind {
	case replyCredential:
		r.Verdict, r.NoCredential = VerdictAuth, true
	case replyNotSent:
		r.Verdict = VerdictNotSent
	case replyLost:
		r.Verdict = VerdictUnknown
		if rp.status == http.StatusTooManyRequests {
			r.Verdict, r.RetryAfter = VerdictThrottled, parseRetryAfter(rp.header.Get("Retry-After"), c.now())
		}
	default:
		r = decodeStatus(referenceID, c.notFound, rp.status, rp.header, rp.body, rp.tooBig, c.now())
		r.Attempts = rp.attempts
	}
	r.Wrote, r.Timeout = rp.wrote, rp.timeout
	r.Message = hideCredential(r.Message, rp.sent)
	return r, rp.sent
}

// decodeStatus turns one status-enquiry answer into a StatusResult. It is
// pure so the fuzzer can drive it. The rules, in order: 429 is throttled; a
// body over 1 MiB or not a JSON object is unknown (auth for 401/403); code
// 10/11, or 401/403 without a code, is auth; a data object decides, but only
// with a 2xx status, a readable status and a refid that is empty or equal to
// referenceID; without data, a not-found code is not-found; the rest is
// unknown.
func decodeStatus(referenceID string, notFound []int, httpStatus int, header http.Header, body []byte, tooBig bool, now time.Time) StatusResult {
	r := StatusResult{Verdict: VerdictUnknown, HTTPStatus: httpStatus, Code: -1}
	if httpStatus == http.StatusTooManyRequests {
		r.Verdict = VerdictThrottled
		r.RetryAfter = parseRetryAfter(header.Get("Retry-After"), now)
		r.Message = "HTTP 429: throttled"
		return r
	}
	if tooBig {
		r.Message = msgTooBig
		return r
	}
	env, ok := parseEnvelope(body)
	if !ok {
		if isAuthStatus(httpStatus) {
			r.Verdict = VerdictAuth
		}
		r.Message = unreadable(httpStatus, body)
		return r
	}
	r.Code, r.Message = env.code, clip(env.message)
	if ClassOf(env.code) == ClassAuth || (env.code < 0 && isAuthStatus(httpStatus)) {
		r.Verdict = VerdictAuth
		return r
	}
	if env.data != nil {
		if !is2xx(httpStatus) {
			r.Message = clip(fmt.Sprintf("transaction data with HTTP %d: %s", httpStatus, env.message))
			return r
		}
		d, err := decodeStatusData(env.data)
		if err != nil {
			r.Message = clip("unreadable transaction data: " + err.Error())
			return r
		}
		r.Data = d
		if r.Data.RefID != "" && r.Data.RefID != referenceID {
			// Never trust an answer about another transaction.
			r.Message = clip(fmt.Sprintf("answer is about referenceid %q, not %q", r.Data.RefID, referenceID))
			return r
		}
		r.Verdict, ok = verdictOf(r.Data)
		if !ok {
			r.Message = clip(fmt.Sprintf("transaction status %q refunded %q not understood", r.Data.Status, r.Data.Refunded))
		}
		return r
	}
	// "Not found" lets an unknown row be sent again, so it is believed only
	// from a server that is not failing: a 5xx says nothing reliable.
	if env.code >= 0 && slices.Contains(notFound, env.code) && httpStatus < 500 {
		r.Verdict = VerdictNotFound
		return r
	}
	if r.Message == "" {
		r.Message = fmt.Sprintf("HTTP %d without transaction data", httpStatus)
	}
	if env.code >= 0 && httpStatus < 500 && !Published(env.code) {
		// Perhaps this provider's "not found": say how to tell aopbatch so,
		// or the row stays unknown for good.
		r.Message = clip(fmt.Sprintf("%s (code %d without transaction data; the not-found codes are %s: --not-found-codes)",
			r.Message, env.code, joinCodes(notFound)))
	}
	return r
}

// joinCodes writes codes as a flag value: "2" or "2,77".
func joinCodes(codes []int) string {
	s := make([]string, len(codes))
	for i, c := range codes {
		s[i] = strconv.Itoa(c)
	}
	return strings.Join(s, ",")
}

// verdictOf reads data.status and data.refunded; ok is false when either
// holds a value outside the documented ones.
func verdictOf(d StatusData) (Verdict, bool) {
	var refunded bool
	switch strings.ToLower(strings.TrimSpace(d.Refunded)) {
	case "", "0", "false":
	case "1", "true":
		refunded = true
	default:
		return VerdictUnknown, false
	}
	switch strings.TrimSpace(d.Status) {
	case "1":
		if refunded {
			return VerdictRefunded, true
		}
		return VerdictSuccess, true
	case "0":
		return VerdictFailed, true
	case "2":
		return VerdictPending, true
	}
	return VerdictUnknown, false
}

// statusDataFields are wireStatusData's JSON names, in its field order.
var statusDataFields = [...]string{
	"txnid", "operatorname", "canumber", "amount", "comm", "tds", "status",
	"refid", "operatorid", "dateadded", "refunded", "refundtxnid", "daterefunded",
}

// decodeStatusData reads a status answer's data object as json.Unmarshal
// into wireStatusData does; scanFields reads the usual one without
// encoding/json, and declines the rest.
func decodeStatusData(data []byte) (StatusData, error) {
	var v [len(statusDataFields)]string
	if scanFields(data, statusDataFields[:], v[:]) {
		return StatusData{
			TxnID:        v[0],
			OperatorName: v[1],
			CANumber:     v[2],
			Amount:       v[3],
			Comm:         v[4],
			TDS:          v[5],
			Status:       v[6],
			RefID:        v[7],
			OperatorID:   v[8],
			DateAdded:    v[9],
			Refunded:     v[10],
			RefundTxnID:  v[11],
			DateRefunded: v[12],
		}, nil
	}
	var w wireStatusData
	if err := json.Unmarshal(data, &w); err != nil {
		return StatusData{}, err
	}
	return w.data(), nil
}

func (w wireStatusData) data() StatusData {
	return StatusData{
		TxnID:        string(w.TxnID),
		OperatorName: string(w.OperatorName),
		CANumber:     string(w.CANumber),
		Amount:       string(w.Amount),
		Comm:         string(w.Comm),
		TDS:          string(w.TDS),
		Status:       string(w.Status),
		RefID:        string(w.RefID),
		OperatorID:   string(w.OperatorID),
		DateAdded:    string(w.DateAdded),
		Refunded:     string(w.Refunded),
		RefundTxnID:  string(w.RefundTxnID),
		DateRefunded: string(w.DateRefunded),
	}
}
