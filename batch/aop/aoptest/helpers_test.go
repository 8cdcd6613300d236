package aoptest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"
)

// fakeClock is an injectable clock that only moves when told to.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock {
	return &fakeClock{t: time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// start runs a sandbox for the test's duration.
func start(t *testing.T, cfg Config) *TestServer {
	t.Helper()
	ts := NewServer(cfg)
	t.Cleanup(ts.Close)
	return ts
}

// testClient is a plain net/http client, written here rather than taken
// from package aop, so that the sandbox is tested on its own terms.
func testClient(t *testing.T, timeout time.Duration) *http.Client {
	t.Helper()
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: timeout}
}

// result is one decoded answer.
type result struct {
	HTTP    int
	Header  http.Header
	Body    []byte
	Status  bool
	Code    int  // response_code or responsecode; -1 when absent
	AuthKey bool // the code came as "responsecode"
	Message string
	Data    json.RawMessage
}

func send(c *http.Client, method, url string, body []byte, hdr map[string]string) (result, error) {
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		return result{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		return result{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return result{}, err
	}
	res := result{HTTP: resp.StatusCode, Header: resp.Header, Body: b, Code: -1}
	var env struct {
		Status       bool            `json:"status"`
		ResponseCode *int            `json:"response_code"`
		AuthCode     *int            `json:"responsecode"`
		Message      string          `json:"message"`
		Data         json.RawMessage `json:"data"`
	}
	if json.Unmarshal(b, &env) == nil {
		res.Status, res.Message, res.Data = env.Status, env.Message, env.Data
		switch {
		case env.ResponseCode != nil:
			res.Code = *env.ResponseCode
		case env.AuthCode != nil:
			res.Code, res.AuthKey = *env.AuthCode, true
		}
	}
	return res, nil
}

func mustPost(t *testing.T, c *http.Client, url string, body []byte, hdr map[string]string) result {
	t.Helper()
	res, err := send(c, http.MethodPost, url, body, hdr)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	return res
}

// recharge builds a Recharge body; amount is raw JSON text.
func recharge(ref string, op int64, amount string) []byte {
	return fmt.Appendf(nil, `{"operator":%d,"canumber":"DL12CB4685","amount":%s,"referenceid":%q,`+
		`"latitude":"99","longitude":"98","bill_fetch":{"billAmount":"1000.0","minBillAmount":1000},"RegistrationID":"AOP-554"}`,
		op, amount, ref)
}

func statusBody(ref string) []byte {
	return fmt.Appendf(nil, `{"referenceid":%q,"RegistrationID":"AOP-554"}`, ref)
}

// enquire asks for ref's status and returns the answer and its data.
func enquire(t *testing.T, c *http.Client, ts *TestServer, ref string) (result, map[string]string) {
	t.Helper()
	res := mustPost(t, c, ts.URL+"/api/AOP/RechargeStatus", statusBody(ref), nil)
	var data map[string]string
	if len(res.Data) > 0 {
		if err := json.Unmarshal(res.Data, &data); err != nil {
			t.Fatalf("status data %s: every field should be a string: %v", res.Data, err)
		}
	}
	return res, data
}

// findRef returns a referenceid whose first-attempt decisions satisfy ok,
// so one server can hold a deliberate mix of outcomes.
func findRef(t *testing.T, seed int64, prefix string, ok func(d decider) bool) string {
	t.Helper()
	for i := range 100000 {
		ref := fmt.Sprintf("%s-%d", prefix, i)
		if ok(decider{seed: seed, ref: ref, attempt: 1}) {
			return ref
		}
	}
	t.Fatalf("no referenceid with prefix %s fits", prefix)
	return ""
}
