package aoptest

import (
	"bytes"
	"container/heap"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/aopbatch/aopbatch/ledger"
)

// rechargeWire is the Recharge body as SPEC section 1 shows it. operator and
// amount are kept raw: operator may be a number or a numeric string, and the
// amount must be a JSON number read exactly, never through a float.
// latitude, longitude and bill_fetch are accepted and ignored.
type rechargeWire struct {
	Operator       json.RawMessage `json:"operator"`
	CANumber       string          `json:"canumber"`
	Amount         json.RawMessage `json:"amount"`
	ReferenceID    string          `json:"referenceid"`
	RegistrationID string          `json:"RegistrationID"`
}

// outcome is what the locked part of a Recharge decided.
type outcome uint8

const (
	outThrottle outcome = iota + 1
	out5xx
	outInvalid
	outDuplicate
	outDown
	outLimits
	outFailed
	outFunds
	outRecorded
)

// postFault is what happens to the answer of a recorded transaction.
type postFault uint8

const (
	pfNone postFault = iota
	pfLost
	pfStall
	pfUnknown
)

func (s *Server) serveRecharge(w http.ResponseWriter, r *http.Request) {
	s.st.recharges.Add(1)
	body, readErr := readBody(w, r)
	var req rechargeWire
	var decodeErr error
	if readErr == nil {
		// A type error leaves the other fields set, so the referenceid
		// is still counted; the request then fails validation.
		decodeErr = json.Unmarshal(body, &req)
	}
	ref := req.ReferenceID

	// The throttle stands before everything, as a gateway's does; the
	// request still counts among ref's (Requests).
	if limited, ra := s.overLimit(); limited {
		if ref != "" {
			s.mu.Lock()
			s.entryFor(ref).requests++
			s.mu.Unlock()
		}
		s.replyLimited(w, r, ra)
		return
	}

	if code, msg := s.authenticate(r); code != 0 {
		if ref != "" {
			s.mu.Lock()
			s.entryFor(ref).requests++
			s.mu.Unlock()
		}
		s.replyAuth(w, r, code, msg)
		return
	}

	var invalid string
	var op, amount int64
	switch {
	case readErr != nil:
		invalid = "Request body too large"
	case decodeErr != nil:
		invalid = "Invalid request body"
	default:
		invalid, op, amount = s.validate(&req)
	}

	s.mu.Lock()
	now := s.cfg.Now().UnixNano()
	s.settle(now)
	var e *entry
	attempt := 0
	if ref != "" {
		e = s.entryFor(ref)
		e.requests++
		attempt = int(e.requests)
		if e.recorded {
			// Whatever it is answered (18, or a fault before that): a
			// client that enquires before it resends never gets here.
			e.resent++
			s.st.resent.Add(1)
		}
	}
	d := decider{seed: s.cfg.Seed, ref: ref, attempt: attempt}
	f := s.faults
	var out outcome
	pf := pfNone
	switch {
	case d.hit(f.ThrottleRate, "throttle"):
		out = outThrottle
	case d.hit(f.Fault5xxRate, "5xx"):
		out = out5xx
	case invalid != "":
		out = outInvalid
	case e.recorded:
		out = outDuplicate
	default:
		e.nonDup++
		// Remembered for a late success (ChargeLate) of a declined one.
		e.canumber, e.operator, e.amount = req.CANumber, op, amount
		switch {
		case s.down[op]:
			out = outDown
		case s.cfg.MinAmountPaise > 0 && amount < s.cfg.MinAmountPaise,
			s.cfg.MaxAmountPaise > 0 && amount > s.cfg.MaxAmountPaise:
			out = outLimits
		case d.hit(s.cfg.FailRate, "fail"):
			out = outFailed
		case !s.unlimited && s.wallet < amount:
			out = outFunds
		default:
			out = outRecorded
			s.record(e, &req, op, amount, now, d)
			switch {
			case d.hit(f.LostRate, "lost"):
				pf = pfLost
			case d.hit(f.StallRate, "stall"):
				pf = pfStall
			case d.hit(f.UnknownCodeRate, "unknown"):
				pf = pfUnknown
			}
		}
	}
	var status byte
	if e != nil {
		status = e.status
	}
	s.mu.Unlock()

	c := &s.canned
	switch out {
	case outThrottle:
		s.st.throttle.Add(1)
		w.Header().Set("Retry-After", s.retryAt)
		s.reply(w, r, http.StatusTooManyRequests, -1, c.throttled)
	case out5xx:
		s.st.fault5xx.Add(1)
		switch int(d.roll("5xx-kind") * 3) {
		case 0:
			s.reply(w, r, http.StatusInternalServerError, -1, c.internal)
		case 1:
			s.replyHTML(w, r, http.StatusBadGateway, c.badGateway)
		default:
			s.replyHTML(w, r, http.StatusServiceUnavailable, c.unavailable)
		}
	case outInvalid:
		if readErr != nil {
			s.reply(w, r, http.StatusRequestEntityTooLarge, 8, c.tooLarge)
			return
		}
		s.replyValue(w, r, http.StatusOK, 8, answer{ResponseCode: 8, Message: invalid})
	case outDuplicate:
		s.reply(w, r, http.StatusOK, 18, c.duplicate)
	case outDown:
		s.reply(w, r, http.StatusOK, 13, c.down)
	case outLimits:
		s.reply(w, r, http.StatusOK, 17, c.limits)
	case outFailed:
		s.reply(w, r, http.StatusOK, 14, c.failed)
	case outFunds:
		// The upstream table lists 402 among the statuses; the code, not
		// the status, is what a client must decide on.
		s.reply(w, r, http.StatusPaymentRequired, 16, c.funds)
	case outRecorded:
		s.st.recorded.Add(1)
		s.answerRecorded(w, r, ref, amount, status, pf)
	}
}

// entryFor returns ref's entry, creating it. The caller holds s.mu.
func (s *Server) entryFor(ref string) *entry {
	e := s.refs[ref]
	if e == nil {
		e = &entry{ref: ref}
		s.refs[ref] = e
	}
	return e
}

// record charges the wallet and remembers the transaction, deciding now how
// it ends. The caller holds s.mu.
func (s *Server) record(e *entry, req *rechargeWire, op, amount, now int64, d decider) {
	e.recorded = true
	e.charged++
	e.canumber = req.CANumber
	e.operator = op
	e.amount = amount
	e.created = now
	if !s.unlimited {
		s.wallet -= amount
	}
	e.refundLater = d.hit(s.cfg.RefundRate, "refund")
	if d.hit(s.cfg.PendingRate, "pending") {
		e.status = statusPending
		e.pendingFail = d.hit(s.cfg.PendingFailRate, "pending-fail")
		heap.Push(&s.events, event{due: now + int64(s.cfg.PendingDelay), kind: evPendingFinal, e: e})
		return
	}
	e.status = statusSuccess
	if e.refundLater {
		heap.Push(&s.events, event{due: now + int64(s.cfg.RefundDelay), kind: evRefund, e: e})
	}
}

// answerRecorded answers a Recharge whose transaction was just recorded,
// unless a fault withholds or replaces the answer.
func (s *Server) answerRecorded(w http.ResponseWriter, r *http.Request, ref string, amount int64, status byte, pf postFault) {
	switch pf {
	case pfLost:
		s.st.lost.Add(1)
		if s.delay(r) {
			s.dropConnection(w, r)
		}
		return
	case pfStall:
		s.st.stall.Add(1)
		t := time.NewTimer(s.cfg.StallFor)
		defer t.Stop()
		select {
		case <-t.C:
		case <-s.quit:
		case <-r.Context().Done():
			return
		}
	case pfUnknown:
		s.st.unknownCode.Add(1)
		s.reply(w, r, http.StatusPreconditionFailed, 9, s.canned.unknown)
		return
	}
	// Built by hand: this is the hot path of every benchmark.
	code := 1
	b := make([]byte, 0, 192+len(ref))
	if status == statusPending {
		code = 0
		b = append(b, `{"status":true,"response_code":0,"message":"Transaction accepted","data":{"txnid":"`...)
	} else {
		b = append(b, `{"status":true,"response_code":1,"message":"Recharge successful","data":{"txnid":"`...)
	}
	b = append(b, s.txnID(ref)...)
	b = append(b, `","refid":`...)
	b = appendJSONString(b, ref)
	b = append(b, `,"operatorid":"`...)
	if status != statusPending {
		b = append(b, s.operatorRef(ref)...)
	}
	b = append(b, `","amount":"`...)
	b = append(b, ledger.FormatRupees(amount)...)
	b = append(b, `","status":"`...)
	b = append(b, status)
	b = append(b, `"}}`...)
	s.reply(w, r, http.StatusOK, code, b)
}

// appendJSONString appends s as a JSON string. s came out of a JSON decoder,
// so it is valid UTF-8; only quotes, backslashes and control characters need
// escaping (and U+2028/U+2029, which break some JavaScript readers).
func appendJSONString(b []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c != 0xe2 {
			i++
			continue
		}
		if c == 0xe2 { // possibly U+2028 or U+2029
			if i+2 < len(s) && s[i+1] == 0x80 && (s[i+2] == 0xa8 || s[i+2] == 0xa9) {
				b = append(b, s[start:i]...)
				b = append(b, `\u202`...)
				b = append(b, hexDigits[s[i+2]&0xf])
				i += 3
				start = i
				continue
			}
			i++
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		i++
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// dropConnection closes the client's connection without a response: the
// request was received and acted on, the answer is lost.
func (s *Server) dropConnection(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor >= 2 {
		panic(http.ErrAbortHandler) // resets the stream, no response
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		return // e.g. httptest.ResponseRecorder: write nothing
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	_ = conn.Close()
}

func (s *Server) replyHTML(w http.ResponseWriter, r *http.Request, status int, body []byte) {
	if s.delay(r) {
		s.write(w, status, -1, ctypeHTML, body)
	}
}

// validate checks a decoded Recharge body, returning the reason it is
// invalid (empty when valid), the operator and the amount in paise.
func (s *Server) validate(req *rechargeWire) (invalid string, op, amount int64) {
	op, ok := parseOperator(req.Operator)
	if !ok {
		return "Operator is blank or invalid", 0, 0
	}
	if strings.TrimSpace(req.CANumber) == "" {
		return "canumber is required", 0, 0
	}
	amount, err := parseAmount(req.Amount)
	if err != nil {
		return "Invalid amount: " + err.Error(), 0, 0
	}
	if req.ReferenceID == "" {
		return "referenceid is required", 0, 0
	}
	if s.cfg.RegistrationID != "" && req.RegistrationID != s.cfg.RegistrationID {
		return "Invalid RegistrationID", 0, 0
	}
	return "", op, amount
}

// parseOperator accepts a positive integer as a JSON number or a string of
// digits: the provider's document shows both.
func parseOperator(raw json.RawMessage) (int64, bool) {
	raw = bytes.TrimSpace(raw)
	var text string
	if len(raw) > 0 && raw[0] == '"' {
		if err := json.Unmarshal(raw, &text); err != nil {
			return 0, false
		}
		text = strings.TrimSpace(text)
	} else {
		text = string(raw)
	}
	if text == "" || len(text) > 18 {
		return 0, false
	}
	for i := 0; i < len(text); i++ {
		if !isDigit(text[i]) {
			return 0, false
		}
	}
	op, err := strconv.ParseInt(text, 10, 64)
	return op, err == nil && op > 0
}

var errAmountNotNumber = errors.New("not a JSON number")

// parseAmount reads a positive JSON number of rupees as paise.
func parseAmount(raw json.RawMessage) (int64, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || (raw[0] != '-' && !isDigit(raw[0])) {
		return 0, errAmountNotNumber
	}
	p, err := parsePaise(string(raw))
	if err != nil {
		return 0, err
	}
	if p <= 0 {
		return 0, errAmountRange
	}
	return p, nil
}
