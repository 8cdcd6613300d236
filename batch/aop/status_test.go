package aop

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

const statusRef = "1234435687678"

func statusBody(data string) string {
	return `{"response_code":1,"status":true,"message":"Transaction Fetched","data":` + data + `}`
}

func TestStatus(t *testing.T) {
	tests := []struct {
		name      string
		status    int
		header    http.Header
		body      string
		notFound  []int
		want      Verdict
		wantCode  int
		wantData  StatusData
		wantRetry time.Duration
	}{
		{
			name:     "success",
			status:   200,
			body:     statusBody(`{"txnid":"T1","operatorname":"Airtel","canumber":"DL12CB4685","amount":"10.50","comm":"0.10","tds":"0.01","status":"1","refid":"` + statusRef + `","operatorid":"OP9","dateadded":"2025-03-01 10:00:00","refunded":"0","refundtxnid":"","daterefunded":""}`),
			want:     VerdictSuccess,
			wantCode: 1,
			wantData: StatusData{TxnID: "T1", OperatorName: "Airtel", CANumber: "DL12CB4685", Amount: "10.50", Comm: "0.10", TDS: "0.01", Status: "1", RefID: statusRef, OperatorID: "OP9", DateAdded: "2025-03-01 10:00:00", Refunded: "0"},
		},
		{
			name:     "numbers instead of strings",
			status:   200,
			body:     statusBody(`{"txnid":98765,"amount":10.50,"status":1,"refid":` + statusRef + `,"refunded":0,"comm":null,"extra":{"a":1}}`),
			want:     VerdictSuccess,
			wantCode: 1,
			wantData: StatusData{TxnID: "98765", Amount: "10.50", Status: "1", RefID: statusRef, Refunded: "0"},
		},
		{
			name:     "refunded",
			status:   200,
			body:     statusBody(`{"status":"1","refid":"` + statusRef + `","refunded":"1","refundtxnid":"RT1","daterefunded":"2025-03-03"}`),
			want:     VerdictRefunded,
			wantCode: 1,
			wantData: StatusData{Status: "1", RefID: statusRef, Refunded: "1", RefundTxnID: "RT1", DateRefunded: "2025-03-03"},
		},
		{
			name:     "failed",
			status:   200,
			body:     statusBody(`{"status":"0","refid":"` + statusRef + `"}`),
			want:     VerdictFailed,
			wantCode: 1,
			wantData: StatusData{Status: "0", RefID: statusRef},
		},
		{
			name:     "pending",
			status:   200,
			body:     statusBody(`{"status":"2","refid":"` + statusRef + `"}`),
			want:     VerdictPending,
			wantCode: 1,
			wantData: StatusData{Status: "2", RefID: statusRef},
		},
		{
			name:     "success without refid",
			status:   200,
			body:     statusBody(`{"status":"1"}`),
			want:     VerdictSuccess,
			wantCode: 1,
			wantData: StatusData{Status: "1"},
		},
		{
			name:     "refid of another transaction",
			status:   200,
			body:     statusBody(`{"status":"1","refid":"OTHER-REF"}`),
			want:     VerdictUnknown,
			wantCode: 1,
			wantData: StatusData{Status: "1", RefID: "OTHER-REF"},
		},
		{
			name:     "status not documented",
			status:   200,
			body:     statusBody(`{"status":"3","refid":"` + statusRef + `"}`),
			want:     VerdictUnknown,
			wantCode: 1,
			wantData: StatusData{Status: "3", RefID: statusRef},
		},
		{
			name:     "status as float",
			status:   200,
			body:     statusBody(`{"status":1.0}`),
			want:     VerdictUnknown,
			wantCode: 1,
			wantData: StatusData{Status: "1.0"},
		},
		{
			name:     "refunded not documented",
			status:   200,
			body:     statusBody(`{"status":"1","refunded":"maybe"}`),
			want:     VerdictUnknown,
			wantCode: 1,
			wantData: StatusData{Status: "1", Refunded: "maybe"},
		},
		{
			name:     "data with an object field",
			status:   200,
			body:     statusBody(`{"status":{"v":"1"}}`),
			want:     VerdictUnknown,
			wantCode: 1,
		},
		{
			name:     "data is an array of answers",
			status:   200,
			body:     statusBody(`[{"status":"1"}]`),
			want:     VerdictUnknown,
			wantCode: 1,
		},
		{
			name:     "data with HTTP 500",
			status:   500,
			body:     statusBody(`{"status":"1","refid":"` + statusRef + `"}`),
			want:     VerdictUnknown,
			wantCode: 1,
		},
		{
			name:     "not found",
			status:   200,
			body:     `{"status":false,"response_code":2,"message":"Transaction not found"}`,
			want:     VerdictNotFound,
			wantCode: 2,
		},
		{
			name:     "not found with empty data",
			status:   200,
			body:     `{"status":false,"response_code":"2","data":[]}`,
			want:     VerdictNotFound,
			wantCode: 2,
		},
		{
			name:     "not found from a failing server",
			status:   503,
			body:     `{"status":false,"response_code":2,"message":"Transaction not found"}`,
			want:     VerdictUnknown,
			wantCode: 2,
		},
		{
			name:     "configured not-found code",
			status:   200,
			body:     `{"status":false,"response_code":404}`,
			notFound: []int{404, 405},
			want:     VerdictNotFound,
			wantCode: 404,
		},
		{
			name:     "code 2 when not configured",
			status:   200,
			body:     `{"status":false,"response_code":2}`,
			notFound: []int{404},
			want:     VerdictUnknown,
			wantCode: 2,
		},
		{
			name:     "no data, other code",
			status:   200,
			body:     `{"status":false,"response_code":9}`,
			want:     VerdictUnknown,
			wantCode: 9,
		},
		{
			name:     "non-JSON",
			status:   200,
			body:     `OK`,
			want:     VerdictUnknown,
			wantCode: -1,
		},
		{
			name:     "502 HTML",
			status:   502,
			body:     `<html>Bad Gateway</html>`,
			want:     VerdictUnknown,
			wantCode: -1,
		},
		{
			name:     "body of 2 MiB",
			status:   200,
			body:     statusBody(`{"status":"1","pad":"` + strings.Repeat("x", 2<<20) + `"}`),
			want:     VerdictUnknown,
			wantCode: -1,
		},
		{
			name:      "throttled",
			status:    429,
			header:    http.Header{"Retry-After": {"7"}},
			want:      VerdictThrottled,
			wantCode:  -1,
			wantRetry: 7 * time.Second,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
				var req map[string]string
				if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
					t.Errorf("request body: %v", err)
				}
				if r.URL.Path != "/api/AOP/RechargeStatus" || req["referenceid"] != statusRef || req["RegistrationID"] != "AOP-554" || len(req) != 2 {
					t.Errorf("request = %s %v", r.URL.Path, req)
				}
				answer(tt.status, tt.header, tt.body)(w, r)
			})
			c := newClient(t, srv.URL, func(o *Options) { o.NotFoundCodes = tt.notFound })
			got, err := c.Status(context.Background(), statusRef)
			if err != nil {
				t.Fatalf("Status: %v", err)
			}
			if got.Verdict != tt.want || got.Code != tt.wantCode || got.HTTPStatus != tt.status || got.Attempts != 1 {
				t.Errorf("verdict, code, HTTP, attempts = %q, %d, %d, %d, want %q, %d, %d, 1 (message %q)",
					got.Verdict, got.Code, got.HTTPStatus, got.Attempts, tt.want, tt.wantCode, tt.status, got.Message)
			}
			if got.Data != tt.wantData {
				t.Errorf("Data = %+v, want %+v", got.Data, tt.wantData)
			}
			if got.RetryAfter != tt.wantRetry {
				t.Errorf("RetryAfter = %v, want %v", got.RetryAfter, tt.wantRetry)
			}
		})
	}
}

func TestStatusAuth(t *testing.T) {
	tests := []struct {
		name        string
		answers     []string // status:body per request
		want        Verdict
		wantAttempt int
	}{
		{"401 then found", []string{"401:", `200:` + statusBody(`{"status":"0","refid":"`+statusRef+`"}`)}, VerdictFailed, 2},
		{"code 10 twice", []string{`401:{"status":false,"responsecode":10}`, `200:{"response_code":10}`}, VerdictAuth, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var n atomic.Int32
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
				a := tt.answers[n.Add(1)-1]
				status, body, _ := strings.Cut(a, ":")
				code := map[string]int{"200": 200, "401": 401}[status]
				answer(code, nil, body)(w, r)
			})
			auth := &fakeAuth{}
			c := newClient(t, srv.URL, func(o *Options) { o.Auth = auth })
			got, err := c.Status(context.Background(), statusRef)
			if err != nil {
				t.Fatal(err)
			}
			if got.Verdict != tt.want || got.Attempts != tt.wantAttempt || auth.refreshes.Load() != 1 {
				t.Errorf("verdict, attempts, refreshes = %q, %d, %d, want %q, %d, 1", got.Verdict, got.Attempts, auth.refreshes.Load(), tt.want, tt.wantAttempt)
			}
		})
	}
}

func TestStatusTransport(t *testing.T) {
	t.Run("closed port", func(t *testing.T) {
		c := newClient(t, closedPort(t))
		got, err := c.Status(context.Background(), statusRef)
		if err != nil || got.Verdict != VerdictNotSent {
			t.Errorf("verdict = %q, err %v, want not-sent", got.Verdict, err)
		}
	})
	t.Run("timeout after sending", func(t *testing.T) {
		srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			<-r.Context().Done()
		})
		c := newClient(t, srv.URL)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		got, err := c.Status(ctx, statusRef)
		if err != nil || got.Verdict != VerdictUnknown || !strings.HasPrefix(got.Message, "no response: timeout") {
			t.Errorf("verdict, message = %q, %q, err %v, want unknown after a timeout", got.Verdict, got.Message, err)
		}
	})
	t.Run("empty referenceid", func(t *testing.T) {
		c := newClient(t, closedPort(t))
		if _, err := c.Status(context.Background(), " "); err == nil {
			t.Error("no error")
		}
	})
}

func BenchmarkDecodeStatus(b *testing.B) {
	body := []byte(statusBody(`{"txnid":"T1","operatorname":"Airtel","canumber":"DL12CB4685","amount":"10.50","comm":"0.10","tds":"0.01","status":"1","refid":"` + statusRef + `","operatorid":"OP9","dateadded":"2025-03-01 10:00:00","refunded":"0","refundtxnid":"","daterefunded":""}`))
	notFound := []int{2}
	b.ReportAllocs()
	for b.Loop() {
		decodeStatus(statusRef, notFound, 200, http.Header{}, body, false, fixedNow)
	}
}

// TestStatusDataFields keeps the fast reader's names in step with
// wireStatusData, which the general reader uses.
func TestStatusDataFields(t *testing.T) {
	wt, dt := reflect.TypeFor[wireStatusData](), reflect.TypeFor[StatusData]()
	if wt.NumField() != len(statusDataFields) || dt.NumField() != len(statusDataFields) {
		t.Fatalf("fields: wire %d, data %d, names %d", wt.NumField(), dt.NumField(), len(statusDataFields))
	}
	for i, name := range statusDataFields {
		if got := wt.Field(i).Tag.Get("json"); got != name {
			t.Errorf("field %d: tag %q, name %q", i, got, name)
		}
		if wt.Field(i).Name != dt.Field(i).Name {
			t.Errorf("field %d: wire %s, data %s", i, wt.Field(i).Name, dt.Field(i).Name)
		}
	}
}
