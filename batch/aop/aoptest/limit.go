package aoptest

import (
	"net/http"
	"strconv"
	"sync"
	"time"
)

// rpsLimit is the sandbox's own throttle, as API gateways keep one: a
// request is let through when fewer than n were let through in the second
// before it (a sliding window), and answered 429 otherwise.
type rpsLimit struct {
	mu     sync.Mutex
	ring   []int64 // unix ns of the last n requests let through
	next   int
	filled int
}

func newRPSLimit(n int) *rpsLimit { return &rpsLimit{ring: make([]int64, n)} }

// allow reports whether a request at now may go; when not, retryAfter is
// how long until a slot frees.
func (l *rpsLimit) allow(now int64) (ok bool, retryAfter time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if oldest := l.ring[l.next]; l.filled == len(l.ring) && now-oldest < int64(time.Second) {
		return false, time.Duration(oldest + int64(time.Second) - now)
	}
	l.filled = min(l.filled+1, len(l.ring))
	l.ring[l.next] = now
	l.next = (l.next + 1) % len(l.ring)
	return true, 0
}

// overLimit reports whether the request goes over Config.LimitRPS, and
// then the Retry-After to send, in whole seconds rounded up.
func (s *Server) overLimit() (bool, string) {
	if s.limit == nil {
		return false, ""
	}
	ok, wait := s.limit.allow(time.Now().UnixNano())
	if ok {
		return false, ""
	}
	secs := max(1, int64((wait+time.Second-1)/time.Second))
	return true, strconv.FormatInt(secs, 10)
}

// replyLimited answers 429 for the provider's own throttle.
func (s *Server) replyLimited(w http.ResponseWriter, r *http.Request, retryAfter string) {
	s.st.limited.Add(1)
	w.Header().Set("Retry-After", retryAfter)
	s.reply(w, r, http.StatusTooManyRequests, -1, s.canned.throttled)
}
