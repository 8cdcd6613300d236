package aoptest

import (
	"net/http"
	"time"
)

// What a provider does after a run: it reverses a success days later, or
// turns a transaction it declined into a charge (its answer was wrong).
// aopbatch reconcile must find both; these make them happen on demand, in
// tests (the methods) and against `aopbatch sandbox` (POST
// /sandbox/refund?ref=R and /sandbox/charge?ref=R).

// RefundNow refunds ref's successful transaction at once and credits the
// wallet. It reports false when ref has no successful, unrefunded
// transaction.
func (s *Server) RefundNow(ref string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now().UnixNano()
	s.settle(now)
	e := s.refs[ref]
	if e == nil || !e.recorded || e.status != statusSuccess || e.refunded {
		return false
	}
	e.refunded, e.refundedAt, e.refundLater = true, now, false
	s.credit(e.amount)
	return true
}

// ChargeLate records ref, whose request reached the provider and was
// declined (operator down, limits, failure), as a successful transaction
// now, debiting the wallet: the provider's late success. It reports false
// when ref never got past de-duplication or is already recorded.
func (s *Server) ChargeLate(ref string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.refs[ref]
	if e == nil || e.recorded || e.nonDup == 0 {
		return false
	}
	e.recorded = true
	e.charged++
	e.created = s.cfg.Now().UnixNano()
	e.status = statusSuccess
	if !s.unlimited {
		s.wallet -= e.amount
	}
	s.st.recorded.Add(1)
	return true
}

// serveAfter answers POST /sandbox/refund and /sandbox/charge.
func (s *Server) serveAfter(w http.ResponseWriter, r *http.Request, refund bool) {
	ref := r.URL.Query().Get("ref")
	ok := false
	if refund {
		ok = s.RefundNow(ref)
	} else {
		ok = s.ChargeLate(ref)
	}
	if !ok {
		s.replyValue(w, r, http.StatusConflict, 8, answer{ResponseCode: 8, Message: "no such transaction in a state that allows it"})
		return
	}
	s.replyValue(w, r, http.StatusOK, 1, answer{Status: true, ResponseCode: 1, Message: "done at " + s.cfg.Now().UTC().Format(time.RFC3339)})
}
