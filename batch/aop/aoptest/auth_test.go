package aoptest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"testing"
	"time"
)

func TestBearer(t *testing.T) {
	clock := newClock()
	cfg := DefaultConfig()
	cfg.Auth = AuthBearer
	cfg.Tokens = []string{"static-token"}
	cfg.TokenTTL = 600 * time.Second
	cfg.Now = clock.Now
	ts := start(t, cfg)
	c := testClient(t, 5*time.Second)

	res := mustPost(t, c, ts.URL+"/sandbox/token", nil, nil)
	var minted struct {
		Token     string `json:"token"`
		ExpiresIn int64  `json:"expires_in"`
	}
	if err := json.Unmarshal(res.Body, &minted); err != nil || minted.Token == "" || minted.ExpiresIn != 600 {
		t.Fatalf("POST /sandbox/token = %s", res.Body)
	}

	n := 0
	try := func(header string) result {
		t.Helper()
		n++
		hdr := map[string]string{}
		if header != "" {
			hdr["Authorization"] = header
		}
		return mustPost(t, c, ts.URL+"/api/AOP/Recharge", recharge("b-"+string(rune('a'+n)), 311, "10"), hdr)
	}
	tests := []struct {
		name     string
		header   string
		advance  time.Duration
		wantHTTP int
		wantCode int
		wantMsg  string
	}{
		{"static token", "Bearer static-token", 0, 200, 1, ""},
		{"scheme is case-insensitive", "bearer static-token", 0, 200, 1, ""},
		{"minted token", "Bearer " + minted.Token, 0, 200, 1, ""},
		{"missing", "", 0, 401, 11, "Authentication failed"},
		{"not bearer", "Basic dXNlcjpwYXNz", 0, 401, 11, "Authentication failed"},
		{"unknown token", "Bearer forged", 0, 401, 10, "Signature verification failed"},
		{"minted token just before expiry", "Bearer " + minted.Token, 599 * time.Second, 200, 1, ""},
		{"minted token expired", "Bearer " + minted.Token, time.Second, 401, 10, "Token expired"},
		{"static token never expires", "Bearer static-token", 24 * time.Hour, 200, 1, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock.Advance(tt.advance)
			got := try(tt.header)
			if got.HTTP != tt.wantHTTP || got.Code != tt.wantCode || (tt.wantMsg != "" && got.Message != tt.wantMsg) {
				t.Errorf("got HTTP %d %s, want HTTP %d code %d %q", got.HTTP, got.Body, tt.wantHTTP, tt.wantCode, tt.wantMsg)
			}
			if got.HTTP == 401 && (!got.AuthKey || got.Status) {
				t.Errorf("a 401 must carry status false and \"responsecode\": %s", got.Body)
			}
		})
	}
	if got := ts.Stats().AuthFailures; got != 4 {
		t.Errorf("Stats().AuthFailures = %d, want 4", got)
	}

	t.Run("status enquiry and statement need auth too", func(t *testing.T) {
		if got := mustPost(t, c, ts.URL+"/api/AOP/RechargeStatus", statusBody("x"), nil); got.HTTP != 401 {
			t.Errorf("status enquiry without a token: HTTP %d", got.HTTP)
		}
		got, err := send(c, http.MethodGet, ts.URL+"/api/AOP/Statement", nil, nil)
		if err != nil || got.HTTP != 401 {
			t.Errorf("statement without a token: HTTP %d, %v", got.HTTP, err)
		}
	})
}

// signJWT builds a JWT by hand, so the test does not trust the sandbox's
// own parsing.
func signJWT(secret []byte, alg string, claims map[string]any) string {
	enc := base64.RawURLEncoding
	h, _ := json.Marshal(map[string]string{"alg": alg, "typ": "JWT"})
	p, _ := json.Marshal(claims)
	unsigned := enc.EncodeToString(h) + "." + enc.EncodeToString(p)
	if alg == "none" {
		return unsigned + "."
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(unsigned))
	return unsigned + "." + enc.EncodeToString(mac.Sum(nil))
}

func TestJWT(t *testing.T) {
	clock := newClock()
	secret := []byte("s3cret-raw-bytes")
	cfg := DefaultConfig()
	cfg.Auth = AuthJWT
	cfg.JWTSecret = secret
	cfg.PartnerID = "PS001"
	cfg.Now = clock.Now
	ts := start(t, cfg)
	c := testClient(t, 5*time.Second)
	now := clock.Now().Unix()
	claims := func(ts int64, partner, reqid string) map[string]any {
		return map[string]any{"timestamp": ts, "partnerId": partner, "reqid": reqid}
	}
	replayed := signJWT(secret, "HS256", claims(now, "PS001", "r-replay"))

	tests := []struct {
		name     string
		header   string
		token    string
		wantCode int
		wantMsg  string
	}{
		{"good", "Token", signJWT(secret, "HS256", claims(now, "PS001", "r-1")), 1, ""},
		{"numeric reqid", "Token", signJWT(secret, "HS256", map[string]any{"timestamp": now, "partnerId": "PS001", "reqid": 99}), 1, ""},
		{"timestamp 59s old", "Token", signJWT(secret, "HS256", claims(now-59, "PS001", "r-2")), 1, ""},
		{"first use of a reqid", "Token", replayed, 1, ""},
		{"replayed reqid", "Token", replayed, 10, "Duplicate reqid"},
		{"bad signature", "Token", signJWT([]byte("other"), "HS256", claims(now, "PS001", "r-3")), 10, "Signature verification failed"},
		{"alg none", "Token", signJWT(nil, "none", claims(now, "PS001", "r-4")), 10, "Unsupported signing algorithm"},
		{"alg HS512", "Token", signJWT(secret, "HS512", claims(now, "PS001", "r-5")), 10, "Unsupported signing algorithm"},
		{"stale timestamp", "Token", signJWT(secret, "HS256", claims(now-61, "PS001", "r-6")), 10, "Token expired"},
		{"future timestamp", "Token", signJWT(secret, "HS256", claims(now+61, "PS001", "r-7")), 10, "Token expired"},
		{"timestamp as string", "Token", signJWT(secret, "HS256", map[string]any{"timestamp": "1740823200", "partnerId": "PS001", "reqid": "r-8"}), 10, "Invalid timestamp"},
		{"wrong partner", "Token", signJWT(secret, "HS256", claims(now, "PS999", "r-9")), 10, "Invalid partnerId"},
		{"missing reqid", "Token", signJWT(secret, "HS256", map[string]any{"timestamp": now, "partnerId": "PS001"}), 10, "Missing reqid"},
		{"malformed", "Token", "not-a-jwt", 10, "Malformed token"},
		{"missing header", "Token", "", 11, "Authentication failed"},
		{"wrong header", "Authorization", signJWT(secret, "HS256", claims(now, "PS001", "r-10")), 11, "Authentication failed"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hdr := map[string]string{}
			if tt.token != "" {
				hdr[tt.header] = tt.token
			}
			ref := "j-" + string(rune('a'+i))
			got := mustPost(t, c, ts.URL+"/api/AOP/Recharge", recharge(ref, 311, "10"), hdr)
			if got.Code != tt.wantCode || (tt.wantMsg != "" && got.Message != tt.wantMsg) {
				t.Errorf("got HTTP %d %s, want code %d %q", got.HTTP, got.Body, tt.wantCode, tt.wantMsg)
			}
			if tt.wantCode != 1 && (got.HTTP != 401 || !got.AuthKey) {
				t.Errorf("a rejected token must answer 401 with \"responsecode\": HTTP %d %s", got.HTTP, got.Body)
			}
			if want := 0; tt.wantCode != 1 && ts.Charged(ref) != want {
				t.Errorf("charged despite the auth failure")
			}
		})
	}

	t.Run("reqid forgotten after twice the skew", func(t *testing.T) {
		tok := signJWT(secret, "HS256", claims(now, "PS001", "r-old"))
		if got := mustPost(t, c, ts.URL+"/api/AOP/RechargeStatus", statusBody("x"), map[string]string{"Token": tok}); got.HTTP != 200 {
			t.Fatalf("first use: %s", got.Body)
		}
		clock.Advance(2*time.Minute + time.Second)
		fresh := signJWT(secret, "HS256", claims(clock.Now().Unix(), "PS001", "r-new"))
		mustPost(t, c, ts.URL+"/api/AOP/RechargeStatus", statusBody("x"), map[string]string{"Token": fresh})
		if _, ok := ts.seen[0]; ok {
			t.Skip("hash collision with 0, vanishingly unlikely")
		}
		ts.jwtMu.Lock()
		n := len(ts.seen)
		ts.jwtMu.Unlock()
		if n != 1 {
			t.Errorf("%d reqids remembered, want 1 (the old ones pruned)", n)
		}
	})
}

func TestCustomJWTHeader(t *testing.T) {
	secret := []byte("k")
	cfg := DefaultConfig()
	cfg.Auth = AuthJWT
	cfg.JWTSecret = secret
	cfg.JWTHeader = "X-Partner-Token"
	ts := start(t, cfg)
	c := testClient(t, 5*time.Second)
	tok := signJWT(secret, "HS256", map[string]any{"timestamp": time.Now().Unix(), "partnerId": "any", "reqid": "1"})
	if got := mustPost(t, c, ts.URL+"/api/AOP/Recharge", recharge("h-1", 311, "10"), map[string]string{"X-Partner-Token": tok}); got.Code != 1 {
		t.Errorf("got %s, want code 1", got.Body)
	}
}
