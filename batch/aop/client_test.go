package aop

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aopbatch/aopbatch/batch/aop/aoptest"
)

// rechargeBody is a request as the engine stores it in the ledger.
func rechargeBody(t *testing.T, ref string) []byte {
	t.Helper()
	b, err := json.Marshal(RechargeRequest{
		Operator: 311, CANumber: "DL12CB4685", AmountPaise: 1050, ReferenceID: ref,
		Latitude: "99", Longitude: "98", RegistrationID: "AOP-554",
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// newServer starts a loopback server closed at the end of the test.
func newServer(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// newClient returns a client for srv with opts applied over the defaults.
func newClient(t *testing.T, base string, opts ...func(*Options)) *Client {
	t.Helper()
	o := Options{BaseURL: base, RegistrationID: "AOP-554"}
	for _, f := range opts {
		f(&o)
	}
	c, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// answer serves one fixed answer.
func answer(status int, header http.Header, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		for k, v := range header {
			w.Header()[k] = v
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

func TestRechargeClassification(t *testing.T) {
	tests := []struct {
		name       string
		status     int
		header     http.Header
		body       string
		want       Class
		wantCode   int
		wantStatus bool
		wantMsg    string
		wantRetry  time.Duration
	}{
		{name: "code 1", status: 200, body: `{"status":true,"response_code":1,"message":"Recharge Successful"}`, want: ClassSuccess, wantCode: 1, wantStatus: true, wantMsg: "Recharge Successful"},
		{name: "code 0", status: 200, body: `{"status":true,"response_code":0,"message":"Accepted"}`, want: ClassPending, wantCode: 0, wantStatus: true},
		{name: "code 18 with status true", status: 200, body: `{"status":true,"response_code":18,"message":"Duplicate Transaction"}`, want: ClassDuplicate, wantCode: 18, wantStatus: true, wantMsg: "Duplicate Transaction"},
		{name: "code 9 on 412", status: 412, body: `{"status":false,"response_code":9}`, want: ClassUnknown, wantCode: 9},
		{name: "code 16", status: 402, body: `{"status":false,"response_code":16,"message":"Insufficient fund"}`, want: ClassAccountStop, wantCode: 16},
		{name: "code 6", status: 200, body: `{"status":false,"response_code":6}`, want: ClassAccountStop, wantCode: 6},
		{name: "code 12", status: 200, body: `{"status":false,"response_code":12}`, want: ClassAccountStop, wantCode: 12},
		{name: "code 13", status: 200, body: `{"status":false,"response_code":13}`, want: ClassOperatorDown, wantCode: 13},
		{name: "code 14", status: 200, body: `{"status":false,"response_code":14}`, want: ClassFailed, wantCode: 14},
		{name: "code 17", status: 200, body: `{"status":false,"response_code":17}`, want: ClassFailed, wantCode: 17},
		{name: "code 8", status: 200, body: `{"status":false,"response_code":8}`, want: ClassFailed, wantCode: 8},
		{name: "unknown code 77", status: 200, body: `{"status":true,"response_code":77}`, want: ClassUnknown, wantCode: 77, wantStatus: true},
		{name: "codes as strings", status: 200, body: `{"status":"true","response_code":"1","extra":{"x":[1,2]}}`, want: ClassSuccess, wantCode: 1, wantStatus: true},
		{name: "non-JSON 200", status: 200, body: `Recharge Successful`, want: ClassUnknown, wantCode: -1},
		{name: "empty body", status: 200, body: ``, want: ClassUnknown, wantCode: -1},
		{name: "JSON without code", status: 200, body: `{"status":true,"message":"done"}`, want: ClassUnknown, wantCode: -1, wantStatus: true},
		{name: "502 HTML", status: 502, body: `<html><body>Bad Gateway</body></html>`, want: ClassUnknown, wantCode: -1},
		{name: "429 Retry-After 3", status: 429, header: http.Header{"Retry-After": {"3"}}, body: `slow down`, want: ClassThrottled, wantCode: -1, wantRetry: 3 * time.Second},
		{name: "429 without Retry-After", status: 429, want: ClassThrottled, wantCode: -1, wantRetry: time.Second},
		{name: "body of 2 MiB", status: 200, body: `{"response_code":1,"pad":"` + strings.Repeat("x", 2<<20) + `"}`, want: ClassUnknown, wantCode: -1, wantMsg: "response body over 1 MiB"},
		{name: "body of exactly 1 MiB", status: 200, body: `{"response_code":1,"pad":"` + strings.Repeat("x", 1<<20-len(`{"response_code":1,"pad":""}`)) + `"}`, want: ClassSuccess, wantCode: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t, answer(tt.status, tt.header, tt.body))
			c := newClient(t, srv.URL)
			got, err := c.Recharge(context.Background(), rechargeBody(t, "REF1"))
			if err != nil {
				t.Fatalf("Recharge: %v", err)
			}
			if got.Class != tt.want || got.Code != tt.wantCode || got.Status != tt.wantStatus {
				t.Errorf("class, code, status = %q, %d, %v, want %q, %d, %v (message %q)",
					got.Class, got.Code, got.Status, tt.want, tt.wantCode, tt.wantStatus, got.Message)
			}
			if got.HTTPStatus != tt.status {
				t.Errorf("HTTPStatus = %d, want %d", got.HTTPStatus, tt.status)
			}
			if got.Attempts != 1 {
				t.Errorf("Attempts = %d, want 1", got.Attempts)
			}
			if got.RetryAfter != tt.wantRetry {
				t.Errorf("RetryAfter = %v, want %v", got.RetryAfter, tt.wantRetry)
			}
			if tt.wantMsg != "" && got.Message != tt.wantMsg {
				t.Errorf("Message = %q, want %q", got.Message, tt.wantMsg)
			}
		})
	}
}

// TestRechargeAuthStatus covers the answers that mean "credential rejected";
// each is retried once after a refresh, so both attempts see the same answer.
func TestRechargeAuthStatus(t *testing.T) {
	tests := []struct {
		name     string
		status   int
		body     string
		wantCode int
	}{
		{"responsecode key on 401", 401, `{"status":false,"responsecode":10,"message":"Signature verification failed"}`, 10},
		{"code 11 on 200", 200, `{"status":false,"response_code":11}`, 11},
		{"401 without body", 401, ``, -1},
		{"403 HTML", 403, `<h1>Forbidden</h1>`, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t, answer(tt.status, nil, tt.body))
			auth := &fakeAuth{}
			c := newClient(t, srv.URL, func(o *Options) { o.Auth = auth })
			got, err := c.Recharge(context.Background(), rechargeBody(t, "REF1"))
			if err != nil {
				t.Fatalf("Recharge: %v", err)
			}
			if got.Class != ClassAuth || got.Code != tt.wantCode || got.Attempts != 2 {
				t.Errorf("class, code, attempts = %q, %d, %d, want auth, %d, 2", got.Class, got.Code, got.Attempts, tt.wantCode)
			}
			if got, want := auth.refreshes.Load(), int32(1); got != want {
				t.Errorf("refreshes = %d, want %d", got, want)
			}
		})
	}
}

func TestRechargeWireFormat(t *testing.T) {
	type captured struct {
		method, path string
		header       http.Header
		body         []byte
	}
	got := make(chan captured, 1)
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- captured{r.Method, r.URL.Path, r.Header.Clone(), b}
		_, _ = io.WriteString(w, `{"status":true,"response_code":1}`)
	})
	c := newClient(t, srv.URL+"/", func(o *Options) { o.UserAgent = "aopbatch-test/1" })
	body := rechargeBody(t, "1234435687678")
	if _, err := c.Recharge(context.Background(), body); err != nil {
		t.Fatalf("Recharge: %v", err)
	}
	r := <-got
	if r.method != http.MethodPost || r.path != "/api/AOP/Recharge" {
		t.Errorf("request = %s %s, want POST /api/AOP/Recharge", r.method, r.path)
	}
	if !bytes.Equal(r.body, body) {
		t.Errorf("body sent = %s, want the exact bytes %s", r.body, body)
	}
	for k, want := range map[string]string{
		"Content-Type":  "application/json",
		"Accept":        "application/json",
		"User-Agent":    "aopbatch-test/1",
		"Authorization": "",
	} {
		if got := r.header.Get(k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
	const wantJSON = `{"operator":311,"canumber":"DL12CB4685","amount":10.50,"referenceid":"1234435687678","latitude":"99","longitude":"98","RegistrationID":"AOP-554"}`
	if string(r.body) != wantJSON {
		t.Errorf("body = %s, want %s", r.body, wantJSON)
	}
}

func TestRechargeMisuse(t *testing.T) {
	c := newClient(t, "http://127.0.0.1:1")
	for _, body := range [][]byte{nil, []byte(`{"operator":`), []byte("not json")} {
		got, err := c.Recharge(context.Background(), body)
		if err == nil {
			t.Errorf("Recharge(%q): no error", body)
		}
		if got.Class == ClassSuccess {
			t.Errorf("Recharge(%q) class = success", body)
		}
	}
	var nilClient *Client
	if _, err := nilClient.Recharge(context.Background(), []byte(`{}`)); err == nil {
		t.Error("nil client: no error")
	}
}

// closedPort returns the address of a loopback port nobody listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

func TestRechargeTransport(t *testing.T) {
	tests := []struct {
		name      string
		base      func(t *testing.T) string
		timeout   time.Duration
		cancelled bool
		want      Class
		wantMsg   string
		wantHTTP  int
	}{
		{
			name:    "closed port",
			base:    closedPort,
			timeout: 5 * time.Second,
			want:    ClassNotSent,
			wantMsg: "not sent: connection refused",
		},
		{
			name:      "context cancelled before sending",
			base:      func(t *testing.T) string { return newServer(t, answer(200, nil, `{"response_code":1}`)).URL },
			cancelled: true,
			want:      ClassNotSent,
			wantMsg:   "not sent: canceled",
		},
		{
			name: "connection closed after the request was read",
			base: func(t *testing.T) string {
				return newServer(t, func(w http.ResponseWriter, r *http.Request) {
					_, _ = io.Copy(io.Discard, r.Body)
					conn, _, err := http.NewResponseController(w).Hijack()
					if err != nil {
						t.Error(err)
						return
					}
					conn.Close()
				}).URL
			},
			timeout: 5 * time.Second,
			want:    ClassUnknown,
			wantMsg: "no response: connection closed after the request was sent",
		},
		{
			name: "server slower than the timeout",
			base: func(t *testing.T) string {
				return newServer(t, func(w http.ResponseWriter, r *http.Request) {
					_, _ = io.Copy(io.Discard, r.Body)
					select {
					case <-r.Context().Done():
					case <-time.After(10 * time.Second):
					}
				}).URL
			},
			timeout: time.Second,
			want:    ClassUnknown,
			wantMsg: "no response: timeout after the request was sent",
		},
		{
			name: "body that never ends",
			base: func(t *testing.T) string {
				return newServer(t, func(w http.ResponseWriter, r *http.Request) {
					_, _ = io.Copy(io.Discard, r.Body)
					rc := http.NewResponseController(w)
					_, _ = io.WriteString(w, `{"response_code":1,"pad":"`)
					for {
						if _, err := io.WriteString(w, "x"); err != nil {
							return
						}
						_ = rc.Flush()
						select {
						case <-r.Context().Done():
							return
						case <-time.After(5 * time.Millisecond):
						}
					}
				}).URL
			},
			timeout:  time.Second,
			want:     ClassUnknown,
			wantMsg:  "incomplete response: HTTP 200, timeout while reading the body",
			wantHTTP: 200,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(t, tt.base(t))
			ctx, cancel := context.WithCancel(context.Background())
			if tt.timeout > 0 {
				ctx, cancel = context.WithTimeout(context.Background(), tt.timeout)
			}
			defer cancel()
			if tt.cancelled {
				cancel()
			}
			start := time.Now()
			got, err := c.Recharge(ctx, rechargeBody(t, "REF1"))
			if err != nil {
				t.Fatalf("Recharge: %v", err)
			}
			if elapsed := time.Since(start); elapsed > tt.timeout+2*time.Second {
				t.Errorf("Recharge took %v, want it cut at the %v timeout", elapsed, tt.timeout)
			}
			if got.Class != tt.want || got.Message != tt.wantMsg {
				t.Errorf("class, message = %q, %q, want %q, %q", got.Class, got.Message, tt.want, tt.wantMsg)
			}
			if got.Code != -1 || got.HTTPStatus != tt.wantHTTP {
				t.Errorf("code, HTTP status = %d, %d, want -1, %d", got.Code, got.HTTPStatus, tt.wantHTTP)
			}
		})
	}
}

// TestRechargeTLSVerified checks the default transport refuses a
// certificate it cannot verify, and that such a failure is not-sent.
func TestRechargeTLSVerified(t *testing.T) {
	srv := httptest.NewUnstartedServer(answer(200, nil, `{"response_code":1}`))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake is expected
	srv.StartTLS()
	t.Cleanup(srv.Close)
	c := newClient(t, srv.URL)
	got, err := c.Recharge(context.Background(), rechargeBody(t, "REF1"))
	if err != nil {
		t.Fatalf("Recharge: %v", err)
	}
	if got.Class != ClassNotSent || got.Message != "not sent: TLS certificate not trusted" {
		t.Errorf("class, message = %q, %q, want not-sent, certificate not trusted", got.Class, got.Message)
	}
}

func TestDefaultTransport(t *testing.T) {
	c := newClient(t, "https://aop.example", func(o *Options) { o.MaxConns = 7 })
	tr, ok := c.hc.Transport.(*http.Transport)
	if !ok {
		t.Fatalf("transport is %T, want *http.Transport", c.hc.Transport)
	}
	if tr.MaxIdleConns != 7 || tr.MaxIdleConnsPerHost != 7 || tr.MaxConnsPerHost != 0 {
		t.Errorf("idle, per host, max per host = %d, %d, %d, want 7, 7, 0", tr.MaxIdleConns, tr.MaxIdleConnsPerHost, tr.MaxConnsPerHost)
	}
	if tr.IdleConnTimeout != 90*time.Second || !tr.ForceAttemptHTTP2 || tr.DisableCompression {
		t.Errorf("idle timeout, http2, no compression = %v, %v, %v", tr.IdleConnTimeout, tr.ForceAttemptHTTP2, tr.DisableCompression)
	}
	if tr.TLSClientConfig == nil || tr.TLSClientConfig.InsecureSkipVerify {
		t.Error("TLS verification is off")
	}
	if c.hc.CheckRedirect == nil {
		t.Error("redirects are followed")
	}
	if d := newClient(t, "https://aop.example"); d.hc.Transport.(*http.Transport).MaxIdleConnsPerHost != 64 {
		t.Error("MaxConns default is not 64")
	}
}

// TestRechargeNoRedirect checks a redirect is classified, not followed.
func TestRechargeNoRedirect(t *testing.T) {
	var hits atomic.Int32
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Redirect(w, r, "/elsewhere", http.StatusTemporaryRedirect)
	})
	c := newClient(t, srv.URL)
	got, _ := c.Recharge(context.Background(), rechargeBody(t, "REF1"))
	if got.Class != ClassUnknown || got.HTTPStatus != 307 || hits.Load() != 1 {
		t.Errorf("class, status, hits = %q, %d, %d, want unknown, 307, 1", got.Class, got.HTTPStatus, hits.Load())
	}
}

// TestKeepAlive checks answers of every kind leave the connection reusable.
func TestKeepAlive(t *testing.T) {
	answers := []struct {
		status int
		body   string
	}{
		{200, `{"status":true,"response_code":1}`},
		{200, `not json`},
		{502, `<html>Bad Gateway</html>`},
		{200, ``},
		{429, `{}`},
		{200, `{"response_code":18,"status":true}`},
	}
	var n atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a := answers[int(n.Add(1)-1)%len(answers)]
		w.WriteHeader(a.status)
		_, _ = io.WriteString(w, a.body)
	}))
	var conns atomic.Int32
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	c := newClient(t, srv.URL)
	for i := 0; i < 3*len(answers); i++ {
		if _, err := c.Recharge(context.Background(), rechargeBody(t, "REF1")); err != nil {
			t.Fatal(err)
		}
	}
	if got := conns.Load(); got != 1 {
		t.Errorf("connections opened = %d, want 1", got)
	}
}

// fakeAuth stamps each request with its generation and counts refreshes.
type fakeAuth struct {
	refreshes  atomic.Int32
	applyErr   error
	refreshErr error
}

func (a *fakeAuth) Apply(req *http.Request) error {
	if a.applyErr != nil {
		return a.applyErr
	}
	req.Header.Set("Authorization", "Bearer gen-"+string(rune('0'+a.refreshes.Load())))
	return nil
}

func (a *fakeAuth) Refresh(context.Context) error {
	a.refreshes.Add(1)
	return a.refreshErr
}

func (a *fakeAuth) Mode() string { return "fake" }

func TestRechargeAuthRetry(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get("Authorization"))
		first := len(seen) == 1
		mu.Unlock()
		if first {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"status":false,"responsecode":10,"message":"Signature verification failed"}`)
			return
		}
		_, _ = io.WriteString(w, `{"status":true,"response_code":1,"message":"ok"}`)
	})
	auth := &fakeAuth{}
	c := newClient(t, srv.URL, func(o *Options) { o.Auth = auth })
	got, err := c.Recharge(context.Background(), rechargeBody(t, "REF1"))
	if err != nil {
		t.Fatal(err)
	}
	if got.Class != ClassSuccess || got.Attempts != 2 || got.HTTPStatus != 200 {
		t.Errorf("class, attempts, status = %q, %d, %d, want success, 2, 200", got.Class, got.Attempts, got.HTTPStatus)
	}
	if got := auth.refreshes.Load(); got != 1 {
		t.Errorf("refreshes = %d, want 1", got)
	}
	if want := []string{"Bearer gen-0", "Bearer gen-1"}; strings.Join(seen, ",") != strings.Join(want, ",") {
		t.Errorf("credentials sent = %q, want %q", seen, want)
	}
}

func TestRechargeCredentialFailures(t *testing.T) {
	var hits atomic.Int32
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusUnauthorized)
	})
	t.Run("refresh fails", func(t *testing.T) {
		hits.Store(0)
		auth := &fakeAuth{refreshErr: errors.New("token service down")}
		c := newClient(t, srv.URL, func(o *Options) { o.Auth = auth })
		got, _ := c.Recharge(context.Background(), rechargeBody(t, "REF1"))
		if got.Class != ClassAuth || got.Attempts != 1 || hits.Load() != 1 {
			t.Errorf("class, attempts, hits = %q, %d, %d, want auth, 1, 1", got.Class, got.Attempts, hits.Load())
		}
		// A request went, and was refused: it counts as made.
		if got.NoCredential || !got.RenewFailed {
			t.Errorf("NoCredential, RenewFailed = %v, %v, want false, true", got.NoCredential, got.RenewFailed)
		}
		if want := "credential refresh failed: token service down"; got.Message != want {
			t.Errorf("Message = %q, want %q", got.Message, want)
		}
	})
	t.Run("apply fails", func(t *testing.T) {
		hits.Store(0)
		auth := &fakeAuth{applyErr: errors.New("jwt secret is empty")}
		c := newClient(t, srv.URL, func(o *Options) { o.Auth = auth })
		got, _ := c.Recharge(context.Background(), rechargeBody(t, "REF1"))
		if got.Class != ClassAuth || got.Attempts != 0 || hits.Load() != 0 {
			t.Errorf("class, attempts, hits = %q, %d, %d, want auth, 0, 0", got.Class, got.Attempts, hits.Load())
		}
		if !got.NoCredential || got.RenewFailed {
			t.Errorf("NoCredential, RenewFailed = %v, %v, want true, false: no request was made", got.NoCredential, got.RenewFailed)
		}
		if want := "no credential: jwt secret is empty"; got.Message != want {
			t.Errorf("Message = %q, want %q", got.Message, want)
		}
	})
}

// TestNoCredentialMakesNoRequest: a token command that cannot be started
// gives no credential, and then the client asks for no connection: the
// server sees nothing, Attempts is 0 and NoCredential says so, for a
// Recharge and a status enquiry alike, naming the command.
func TestNoCredentialMakesNoRequest(t *testing.T) {
	var hits atomic.Int32
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	missing := t.TempDir() + "/nonexist"
	c := newClient(t, srv.URL, func(o *Options) { o.Auth = Command([]string{missing}, 0, nil) })
	if got := c.AuthMode(); got != "command" {
		t.Errorf("AuthMode = %q, want command", got)
	}
	r, _ := c.Recharge(context.Background(), rechargeBody(t, "REF1"))
	st, _ := c.Status(context.Background(), "REF1")
	for _, got := range []struct {
		what         string
		noCredential bool
		renewFailed  bool
		attempts     int
		msg          string
	}{
		{"recharge", r.NoCredential, r.RenewFailed, r.Attempts, r.Message},
		{"status", st.NoCredential, st.RenewFailed, st.Attempts, st.Message},
	} {
		if !got.noCredential || got.renewFailed || got.attempts != 0 {
			t.Errorf("%s: NoCredential, RenewFailed, Attempts = %v, %v, %d, want true, false, 0", got.what, got.noCredential, got.renewFailed, got.attempts)
		}
		if !strings.HasPrefix(got.msg, "no credential: ") || !strings.Contains(got.msg, missing) {
			t.Errorf("%s: Message %q does not name the command", got.what, got.msg)
		}
	}
	if r.Class != ClassAuth || st.Verdict != VerdictAuth {
		t.Errorf("class %q, verdict %q, want auth: every row would meet the same", r.Class, st.Verdict)
	}
	if hits.Load() != 0 || conns.Load() != 0 {
		t.Errorf("server saw %d requests on %d connections, want none", hits.Load(), conns.Load())
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		wantURL string
		wantErr string
	}{
		{name: "loopback", opts: Options{BaseURL: "http://127.0.0.1:8080"}, wantURL: "http://127.0.0.1:8080/api/AOP/Recharge"},
		{name: "prefix and slash", opts: Options{BaseURL: " HTTPS://aop.example/v1/ "}, wantURL: "https://aop.example/v1/api/AOP/Recharge"},
		{name: "empty", opts: Options{}, wantErr: "base url is empty"},
		{name: "relative", opts: Options{BaseURL: "/api"}, wantErr: "must be an absolute http or https URL"},
		{name: "no scheme", opts: Options{BaseURL: "aop.example:8080"}, wantErr: "must be an absolute http or https URL"},
		{name: "ftp", opts: Options{BaseURL: "ftp://aop.example"}, wantErr: "must be an absolute http or https URL"},
		{name: "query", opts: Options{BaseURL: "http://aop.example/?x=1"}, wantErr: "must not have a query"},
		{name: "credentials", opts: Options{BaseURL: "http://user:hunter2@aop.example"}, wantErr: "credentials belong in the auth settings"},
		{name: "bad escape", opts: Options{BaseURL: "http://aop.example/%zz"}, wantErr: "not a valid URL"},
		{name: "negative conns", opts: Options{BaseURL: "http://aop.example", MaxConns: -1}, wantErr: "must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New(tt.opts)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("New error = %v, want %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "hunter2") {
					t.Errorf("error %q shows the password", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if c.rechargeURL != tt.wantURL {
				t.Errorf("recharge URL = %q, want %q", c.rechargeURL, tt.wantURL)
			}
		})
	}
}

// benchBody returns a stored Recharge body with a unique referenceid, built
// without json.Marshal so the benchmark measures the client, not the setup.
func benchBody(buf []byte, n int64) []byte {
	buf = append(buf[:0], `{"operator":311,"canumber":"DL12CB4685","amount":10.50,"referenceid":"bench-`...)
	buf = strconv.AppendInt(buf, n, 10)
	return append(buf, `","latitude":"99","longitude":"98","RegistrationID":"AOP-554"}`...)
}

// BenchmarkRechargeLoopback sends unique Recharge requests to the sandbox
// over loopback HTTP with keep-alive, as the engine's workers do. The
// server runs in the same process, so its CPU is part of every op; the
// sandbox's own BenchmarkRechargeLoopback (package aoptest) is a bare
// net/http client doing the same, the floor for this one:
// go test -bench Loopback ./batch/aop/...
func BenchmarkRechargeLoopback(b *testing.B) {
	ts := aoptest.NewServer(aoptest.DefaultConfig())
	defer ts.Close()
	c, err := New(Options{BaseURL: ts.URL, RegistrationID: "AOP-554", MaxConns: 16})
	if err != nil {
		b.Fatal(err)
	}
	defer c.CloseIdleConnections()
	var n atomic.Int64
	b.SetParallelism(8)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var buf []byte
		for pb.Next() {
			buf = benchBody(buf, n.Add(1))
			r, err := c.Recharge(context.Background(), buf)
			if err != nil || r.Class != ClassSuccess {
				b.Fatalf("Recharge = %+v, %v", r, err)
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}

// cannedTransport answers every request with the sandbox's success answer,
// without a network, so a benchmark sees the client's own cost alone.
type cannedTransport struct{ body string }

func (t cannedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		_, _ = io.Copy(io.Discard, req.Body)
		req.Body.Close()
	}
	return &http.Response{
		StatusCode: http.StatusOK, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        http.Header{"Content-Type": {"application/json"}},
		Body:          io.NopCloser(strings.NewReader(t.body)),
		ContentLength: int64(len(t.body)),
		Request:       req,
	}, nil
}

// BenchmarkRechargeCanned measures one Recharge call's client-side cost:
// request, credential, http.Client, reading and classifying the answer.
func BenchmarkRechargeCanned(b *testing.B) {
	hc := &http.Client{Transport: cannedTransport{body: benchAnswers[0].body}}
	c, err := New(Options{BaseURL: "http://127.0.0.1:1", RegistrationID: "AOP-554", HTTPClient: hc})
	if err != nil {
		b.Fatal(err)
	}
	body := benchBody(nil, 1)
	b.ReportAllocs()
	for b.Loop() {
		r, err := c.Recharge(context.Background(), body)
		if err != nil || r.Class != ClassSuccess {
			b.Fatalf("Recharge = %+v, %v", r, err)
		}
	}
}

// Result.Wrote says when the request went out: the rate limiter counts a
// request from it. Zero when it never went.
func TestRechargeWrote(t *testing.T) {
	t.Parallel()
	arrived := make(chan time.Time, 1)
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		arrived <- time.Now()
		time.Sleep(20 * time.Millisecond) // a slow answer
		_, _ = io.WriteString(w, `{"status":true,"response_code":1,"message":"ok"}`)
	})
	before := time.Now()
	r, err := newClient(t, srv.URL).Recharge(context.Background(), []byte(`{"referenceid":"W1"}`))
	after := time.Now()
	if err != nil || r.Class != ClassSuccess {
		t.Fatalf("Recharge = %+v, %v", r, err)
	}
	at := <-arrived
	if r.Wrote.Before(before) || r.Wrote.After(at.Add(10*time.Millisecond)) || !after.After(r.Wrote.Add(10*time.Millisecond)) {
		t.Errorf("Wrote %v, want from the call %v to about the arrival %v, well before the answer %v", r.Wrote, before, at, after)
	}

	dead := newServer(t, answer(200, nil, "{}"))
	dead.Close() // nothing listens: never written
	r, _ = newClient(t, dead.URL).Recharge(context.Background(), []byte(`{"referenceid":"W2"}`))
	if r.Class != ClassNotSent || !r.Wrote.IsZero() {
		t.Errorf("to a closed port: %s, Wrote %v; want not sent and zero", r.Class, r.Wrote)
	}
}

// TestProviderEchoOfTheCredentialIsBlanked: a provider that echoes the
// credential it refused, or any credential header, in its message must not
// put it in the answer's Message, which the ledger, the reports and the log
// keep; not even a part of it where the message is cut to length.
func TestProviderEchoOfTheCredentialIsBlanked(t *testing.T) {
	const tok = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0LXRva2Vu.c2lnbmF0dXJl"
	echo := func(status int, pad int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.WriteHeader(status)
			msg := strings.Repeat("x", pad) + " invalid: " + r.Header.Get("Authorization") + " / " + r.Header.Get("Token")
			_ = json.NewEncoder(w).Encode(map[string]any{"status": false, "response_code": 12, "message": msg})
		}
	}
	for _, tc := range []struct {
		name string
		auth Authenticator
		h    http.HandlerFunc
	}{
		{"bearer, 401", Bearer(tok), echo(http.StatusUnauthorized, 0)},
		{"bearer, 200 cut to length", Bearer(tok), echo(http.StatusOK, 170)},
		{"jwt header", JWT([]byte("jwt-secret-4712"), "PS001", "", nil), echo(http.StatusOK, 0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var sent atomic.Value
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
				sent.Store(r.Header.Get("Authorization") + r.Header.Get("Token"))
				tc.h(w, r)
			})
			c := newClient(t, srv.URL, func(o *Options) { o.Auth = tc.auth })
			r, s := rechargeAndStatus(t, c, "REF1")
			cred := strings.TrimPrefix(sent.Load().(string), "Bearer ")
			if len(cred) < 20 {
				t.Fatalf("credential sent %q: the test did not test", cred)
			}
			for _, msg := range []string{r.Message, s.Message} {
				if !strings.Contains(msg, "[redacted]") {
					t.Errorf("message %q: the echo was not blanked", msg)
				}
				for i := 0; i+12 <= len(cred); i++ {
					if strings.Contains(msg, cred[i:i+12]) {
						t.Fatalf("message %q shows part of the credential %q", msg, cred[i:i+12])
					}
				}
			}
		})
	}
}

// TestProviderEscapedEchoOfTheCredentialIsBlanked: a provider's JSON
// encoder may escape characters of the credential it echoes (PHP writes
// "/" as "\/", .NET "+" as "\u002B", Go "&" as "\u0026"); the message
// decoded from it holds the credential all the same, and must not.
func TestProviderEscapedEchoOfTheCredentialIsBlanked(t *testing.T) {
	const tok = "k9/Zq+Lm7&Xw/Pp3Rt8Vb+Yc2=="
	for _, tc := range []struct {
		name string
		echo string
	}{
		{"slash escaped", strings.ReplaceAll(tok, "/", `\/`)},
		{"plus as \\u002B", strings.ReplaceAll(tok, "+", `\u002B`)},
		{"ampersand as \\u0026", strings.ReplaceAll(tok, "&", `\u0026`)},
		{"all escaped", strings.NewReplacer("/", `\/`, "+", `\u002b`, "&", `\u0026`, "=", `\u003D`).Replace(tok)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				w.WriteHeader(http.StatusUnauthorized)
				_, _ = io.WriteString(w, `{"status":false,"response_code":10,"message":"invalid token `+tc.echo+`"}`)
			})
			c := newClient(t, srv.URL, func(o *Options) { o.Auth = Bearer(tok) })
			r, s := rechargeAndStatus(t, c, "REF1")
			for _, msg := range []string{r.Message, s.Message} {
				if strings.Contains(msg, tok) || !strings.Contains(msg, "[redacted]") {
					t.Errorf("message %q: the escaped echo of the credential was not blanked", msg)
				}
			}
		})
	}
}

// TestCredentialInTheAnswerByChanceChangesNothing: a credential that
// happens to appear in an answer (a short token inside the referenceid,
// the txnid or a key) must not change what the answer is read as. The
// body was once blanked before it was read: a charged row, its refid read
// as "R[redacted]", was left unknown.
func TestCredentialInTheAnswerByChanceChangesNothing(t *testing.T) {
	const tok = "12345678"
	const ref = "R" + tok
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if strings.HasSuffix(r.URL.Path, PathStatus) {
			_, _ = io.WriteString(w, statusBody(`{"txnid":"T`+tok+`","canumber":"DL12CB4685","amount":"10.50","status":"1","refid":"`+ref+`","refunded":"0"}`))
			return
		}
		_, _ = io.WriteString(w, `{"status":true,"response_code":1,"message":"Recharge `+tok+` done"}`)
	})
	c := newClient(t, srv.URL, func(o *Options) { o.Auth = Bearer(tok) })
	r, s := rechargeAndStatus(t, c, ref)
	if r.Class != ClassSuccess || r.Code != 1 {
		t.Errorf("Recharge: class %s code %d (%s), want success 1", r.Class, r.Code, r.Message)
	}
	if s.Verdict != VerdictSuccess || s.Data.RefID != ref || s.Data.TxnID != "T"+tok {
		t.Errorf("Status: %s, refid %q, txnid %q (%s); want success for %s, txnid T%s", s.Verdict, s.Data.RefID, s.Data.TxnID, s.Message, ref, tok)
	}
	if strings.Contains(r.Message, tok) {
		t.Errorf("Recharge message %q shows the credential", r.Message)
	}
}

// rechargeAndStatus makes a Recharge and a status enquiry for ref with c.
func rechargeAndStatus(t *testing.T, c *Client, ref string) (Result, StatusResult) {
	t.Helper()
	r, err := c.Recharge(context.Background(), rechargeBody(t, ref))
	if err != nil {
		t.Fatalf("Recharge: %v", err)
	}
	s, err := c.Status(context.Background(), ref)
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	return r, s
}
