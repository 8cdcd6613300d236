package aop

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

var fixedNow = time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)

func TestClassifyRechargePure(t *testing.T) {
	tests := []struct {
		name     string
		status   int
		body     string
		tooBig   bool
		want     Class
		wantCode int
	}{
		{"code as string", 200, `{"status":true,"response_code":"1","message":"ok"}`, false, ClassSuccess, 1},
		{"code as padded string", 200, `{"response_code":" 18 "}`, false, ClassDuplicate, 18},
		{"camel case key", 200, `{"ResponseCode":17}`, false, ClassFailed, 17},
		{"BOM before object", 200, "\xef\xbb\xbf{\"response_code\":1}", false, ClassSuccess, 1},
		{"both spellings agree", 200, `{"response_code":1,"responsecode":"1"}`, false, ClassSuccess, 1},
		{"both spellings disagree", 200, `{"response_code":1,"responsecode":9}`, false, ClassUnknown, -1},
		{"duplicate key disagrees", 200, `{"response_code":1,"response_code":14}`, false, ClassUnknown, -1},
		{"unreadable beside readable", 200, `{"response_code":"x","responsecode":1}`, false, ClassUnknown, -1},
		{"null code on 401", 401, `{"response_code":null}`, false, ClassAuth, -1},
		{"float code", 200, `{"response_code":1.0}`, false, ClassUnknown, -1},
		{"exponent code", 200, `{"response_code":1e0}`, false, ClassUnknown, -1},
		{"negative code", 200, `{"response_code":-1}`, false, ClassUnknown, -1},
		{"bool code", 200, `{"response_code":true}`, false, ClassUnknown, -1},
		{"nested code only", 200, `{"data":{"response_code":1}}`, false, ClassUnknown, -1},
		{"array body", 200, `[{"response_code":1}]`, false, ClassUnknown, -1},
		{"trailing garbage", 200, `{"response_code":1} x`, false, ClassUnknown, -1},
		{"two objects", 200, `{"response_code":1}{"response_code":1}`, false, ClassUnknown, -1},
		{"code 1 on HTTP 500", 500, `{"response_code":1}`, false, ClassUnknown, 1},
		{"code 1 on 302", 302, `{"response_code":1}`, false, ClassUnknown, 1},
		{"code 18 on 401", 401, `{"responsecode":18}`, false, ClassDuplicate, 18},
		{"code 9 on 412", 412, `{"status":false,"response_code":9}`, false, ClassUnknown, 9},
		{"403 non-JSON", 403, `Forbidden`, false, ClassAuth, -1},
		{"too big even with code 1", 200, `{"response_code":1}`, true, ClassUnknown, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := classifyRecharge(tt.status, http.Header{}, []byte(tt.body), tt.tooBig, fixedNow)
			if got.Class != tt.want || got.Code != tt.wantCode {
				t.Errorf("class, code = %q, %d, want %q, %d (message %q)", got.Class, got.Code, tt.want, tt.wantCode, got.Message)
			}
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	tests := []struct {
		name, value string
		want        time.Duration
	}{
		{"missing", "", time.Second},
		{"seconds", "3", 3 * time.Second},
		{"zero", "0", 0},
		{"negative", "-5", time.Second},
		{"garbage", "soon", time.Second},
		{"over the cap", "86400", 5 * time.Minute},
		{"huge", "99999999999999999999", time.Second},
		{"http date", fixedNow.Add(42 * time.Second).Format(http.TimeFormat), 42 * time.Second},
		{"http date in the past", fixedNow.Add(-time.Hour).Format(http.TimeFormat), 0},
		{"http date far ahead", fixedNow.Add(time.Hour).Format(http.TimeFormat), 5 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := parseRetryAfter(tt.value, fixedNow); got != tt.want {
				t.Errorf("parseRetryAfter(%q) = %v, want %v", tt.value, got, tt.want)
			}
		})
	}
}

func TestClip(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"trims", "  Duplicate Transaction \n", "Duplicate Transaction"},
		{"control characters", "a\nb\tc\x00d", "a b c d"},
		{"invalid UTF-8", "ok\xff", "ok\uFFFD"},
		{"long", strings.Repeat("é", 300), strings.Repeat("é", 200)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := clip(tt.in)
			if got != tt.want {
				t.Errorf("clip(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if n := utf8.RuneCountInString(got); n > maxMessage {
				t.Errorf("clip gave %d characters, want at most %d", n, maxMessage)
			}
		})
	}
}

// benchAnswers are the answers a run sees most, in the sandbox's shapes.
var benchAnswers = []struct {
	name   string
	status int
	body   string
}{
	{"success", 200, `{"status":true,"response_code":1,"message":"Recharge successful","data":{"txnid":"TXN0000123456","refid":"bench-000001","operatorid":"OP0000123456","amount":"10.50","status":"1"}}`},
	{"duplicate", 200, `{"status":true,"response_code":18,"message":"Duplicate Transaction"}`},
	{"auth-401", 401, `{"status":false,"responsecode":10,"message":"Signature verification failed"}`},
	{"html-502", 502, `<html><body>Bad Gateway</body></html>`},
}

func BenchmarkClassifyRecharge(b *testing.B) {
	h := http.Header{}
	for _, a := range benchAnswers {
		body := []byte(a.body)
		b.Run(a.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				classifyRecharge(a.status, h, body, false, fixedNow)
			}
		})
	}
}

// TestFastPathsTakeUsualAnswers checks the answers and requests a run sees
// most are read without encoding/json; FuzzEnvelopeFastPath checks that
// they are read the same either way.
func TestFastPathsTakeUsualAnswers(t *testing.T) {
	for _, a := range benchAnswers {
		if _, ok := scanEnvelope([]byte(a.body)); !ok && a.name != "html-502" {
			t.Errorf("%s: scanEnvelope declined %s", a.name, a.body)
		}
	}
	env, ok := scanEnvelope([]byte(benchAnswers[0].body))
	var txn [1]string
	if !ok || !scanFields(env.data, txnIDField[:], txn[:]) || txn[0] != "TXN0000123456" {
		t.Errorf("txnid = %q, want TXN0000123456 without encoding/json", txn[0])
	}
	data := `{"txnid":"T1","operatorname":"Airtel","canumber":"DL12CB4685","amount":"10.50","comm":"0.10","tds":"0.01","status":"1","refid":"R1","operatorid":"OP9","dateadded":"2025-03-01 10:00:00","refunded":"0","refundtxnid":"","daterefunded":""}`
	var v [len(statusDataFields)]string
	if !scanFields([]byte(data), statusDataFields[:], v[:]) {
		t.Errorf("scanFields declined %s", data)
	}
	req, err := json.Marshal(RechargeRequest{
		Operator: 311, CANumber: "DL12CB4685", AmountPaise: 1050, ReferenceID: "R<&>1",
		BillFetch:      &BillFetch{BillAmount: "1000.0", MinBillAmount: "1000", AcceptPayment: new(bool), UserName: "NITESH \u2028 KUMAR"},
		RegistrationID: "AOP-554",
	})
	if err != nil {
		t.Fatal(err)
	}
	if !scanValid(req) {
		t.Errorf("scanner declined the request %s", req)
	}
}

func TestValidJSON(t *testing.T) {
	for _, b := range []string{
		``, ` `, `{`, `{"operator":`, `not json`, `{"a":1}`, ` [1, -2.5e+3, "x\u00e9", true, false, null, {}] `,
		`{"a":01}`, `{"a":1.}`, `{"a":"\q"}`, `{"a":"` + "\x01" + `"}`, "\"\xff\"", `{"a":1}{}`, `{"a":1,}`,
		strings.Repeat("[", 100) + strings.Repeat("]", 100),
	} {
		if got, want := validJSON([]byte(b)), json.Valid([]byte(b)); got != want {
			t.Errorf("validJSON(%q) = %v, want %v", b, got, want)
		}
	}
}
