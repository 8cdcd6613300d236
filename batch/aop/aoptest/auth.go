package aoptest

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"hash/maphash"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Authentication failures, as code and message of a 401.
const (
	codeSignature = 10 // JWT or token error
	codeAuth      = 11 // no credential at all
)

// authenticate checks the request's credential for the configured mode and
// returns 0 when it is good, or the code and message of the 401 to send.
func (s *Server) authenticate(r *http.Request) (code int, msg string) {
	switch s.cfg.Auth {
	case AuthBearer:
		return s.checkBearer(r.Header.Get("Authorization"))
	case AuthJWT:
		tok := strings.TrimSpace(r.Header.Get(s.cfg.JWTHeader))
		if tok == "" {
			return codeAuth, "Authentication failed"
		}
		return s.checkJWT(tok, s.cfg.Now())
	}
	return 0, ""
}

func (s *Server) replyAuth(w http.ResponseWriter, r *http.Request, code int, msg string) {
	s.st.authFailures.Add(1)
	s.replyValue(w, r, http.StatusUnauthorized, code, authAnswer{ResponseCode: code, Message: msg})
}

func (s *Server) checkBearer(header string) (int, string) {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(header), " ")
	tok = strings.TrimSpace(tok)
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return codeAuth, "Authentication failed"
	}
	if s.static[tok] {
		return 0, ""
	}
	s.tokMu.Lock()
	exp, ok := s.minted[tok]
	s.tokMu.Unlock()
	switch {
	case !ok:
		return codeSignature, "Signature verification failed"
	case s.cfg.Now().UnixNano() >= exp:
		return codeSignature, "Token expired"
	}
	return 0, ""
}

// MintToken returns a new bearer token valid for TokenTTL from now.
func (s *Server) MintToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	tok := "sbx_" + hex.EncodeToString(b[:])
	now := s.cfg.Now().UnixNano()
	s.tokMu.Lock()
	defer s.tokMu.Unlock()
	if len(s.minted) >= 64 {
		// Expired tokens are kept one more TTL so that they are reported
		// as expired rather than unknown, then forgotten.
		for t, exp := range s.minted {
			if now >= exp+int64(s.cfg.TokenTTL) {
				delete(s.minted, t)
			}
		}
	}
	s.minted[tok] = now + int64(s.cfg.TokenTTL)
	return tok
}

type tokenAnswer struct {
	Token     string `json:"token"`
	ExpiresIn int64  `json:"expires_in"`
}

func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	_, _ = readBody(w, r)
	s.replyValue(w, r, http.StatusOK, -1, tokenAnswer{
		Token:     s.MintToken(),
		ExpiresIn: int64(s.cfg.TokenTTL / time.Second),
	})
}

type jwtHeader struct {
	Alg string `json:"alg"`
}

type jwtClaims struct {
	Timestamp json.RawMessage `json:"timestamp"`
	PartnerID *string         `json:"partnerId"`
	ReqID     json.RawMessage `json:"reqid"`
}

// checkJWT verifies a bare HS256 JWT: algorithm, signature, timestamp within
// the allowed skew, partnerId, and a reqid never seen before.
func (s *Server) checkJWT(tok string, now time.Time) (int, string) {
	h64, rest, ok1 := strings.Cut(tok, ".")
	p64, s64, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.Contains(s64, ".") {
		return codeSignature, "Malformed token"
	}
	var hdr jwtHeader
	if err := decodeSegment(h64, &hdr); err != nil {
		return codeSignature, "Malformed token"
	}
	if hdr.Alg != "HS256" {
		return codeSignature, "Unsupported signing algorithm"
	}
	sig, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s64, "="))
	if err != nil {
		return codeSignature, "Signature verification failed"
	}
	mac := hmac.New(sha256.New, s.cfg.JWTSecret)
	mac.Write([]byte(tok[:len(h64)+1+len(p64)]))
	if !hmac.Equal(sig, mac.Sum(nil)) {
		return codeSignature, "Signature verification failed"
	}
	var c jwtClaims
	if err := decodeSegment(p64, &c); err != nil {
		return codeSignature, "Malformed token"
	}
	ts, err := strconv.ParseInt(string(bytes.TrimSpace(c.Timestamp)), 10, 64)
	if err != nil {
		return codeSignature, "Invalid timestamp"
	}
	skew := now.Sub(time.Unix(ts, 0))
	if skew > s.cfg.JWTMaxSkew || skew < -s.cfg.JWTMaxSkew {
		return codeSignature, "Token expired"
	}
	if c.PartnerID == nil || *c.PartnerID == "" ||
		(s.cfg.PartnerID != "" && *c.PartnerID != s.cfg.PartnerID) {
		return codeSignature, "Invalid partnerId"
	}
	reqid := reqIDText(c.ReqID)
	if reqid == "" {
		return codeSignature, "Missing reqid"
	}
	if !s.firstUse(reqid, now.UnixNano()) {
		return codeSignature, "Duplicate reqid"
	}
	return 0, ""
}

func decodeSegment(seg string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(seg, "="))
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// reqIDText returns a reqid claim given as a string or a number, or "".
func reqIDText(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	if raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return ""
		}
		return s
	}
	if raw[0] == '-' || isDigit(raw[0]) {
		return string(raw)
	}
	return ""
}

// firstUse records reqid as seen at now and reports whether it was new.
// A reqid is remembered for twice the allowed skew: a replay later than
// that carries a timestamp that fails the skew check anyway.
func (s *Server) firstUse(reqid string, now int64) bool {
	h := maphash.String(s.hseed, reqid)
	horizon := now - 2*int64(s.cfg.JWTMaxSkew)
	s.jwtMu.Lock()
	defer s.jwtMu.Unlock()
	for s.seenOff < len(s.seenQ) && s.seenQ[s.seenOff].t < horizon {
		old := s.seenQ[s.seenOff]
		if s.seen[old.h] == old.t {
			delete(s.seen, old.h)
		}
		s.seenOff++
	}
	if s.seenOff > 1024 && s.seenOff > len(s.seenQ)/2 {
		n := copy(s.seenQ, s.seenQ[s.seenOff:])
		s.seenQ = s.seenQ[:n]
		s.seenOff = 0
	}
	if _, dup := s.seen[h]; dup {
		return false
	}
	s.seen[h] = now
	s.seenQ = append(s.seenQ, seenReq{h: h, t: now})
	return true
}
