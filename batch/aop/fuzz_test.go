package aop

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// fuzzStatus maps any int onto an HTTP status 100..599.
func fuzzStatus(s int) int {
	if s >= 100 && s <= 599 {
		return s
	}
	s %= 500
	if s < 0 {
		s = -s
	}
	return 100 + s
}

// oracleTop decodes body with the standard decoder, independently of
// parseEnvelope, as a top-level object; ok is false otherwise.
func oracleTop(body []byte) (map[string]any, bool) {
	var top map[string]any
	dec := json.NewDecoder(bytes.NewReader(bytes.TrimPrefix(body, []byte("\xef\xbb\xbf"))))
	dec.UseNumber()
	if err := dec.Decode(&top); err != nil || top == nil {
		return nil, false
	}
	return top, true
}

// oracleIsOne reports a JSON value that reads as the number 1.
func oracleIsOne(v any) bool {
	var s string
	switch v := v.(type) {
	case json.Number:
		s = v.String()
	case string:
		s = strings.TrimSpace(v)
	default:
		return false
	}
	n, err := strconv.Atoi(s)
	return err == nil && n == 1
}

// oracleHasCodeOne reports whether some key spelling response_code holds 1.
func oracleHasCodeOne(body []byte) bool {
	top, ok := oracleTop(body)
	if !ok {
		return false
	}
	fold := strings.NewReplacer("_", "", "-", "", " ", "")
	for k, v := range top {
		if fold.Replace(strings.ToLower(k)) == "responsecode" && oracleIsOne(v) {
			return true
		}
	}
	return false
}

var knownClasses = map[Class]bool{
	ClassSuccess: true, ClassPending: true, ClassDuplicate: true, ClassUnknown: true,
	ClassAuth: true, ClassAccountStop: true, ClassOperatorDown: true, ClassFailed: true,
	ClassThrottled: true,
}

func FuzzDecodeRecharge(f *testing.F) {
	f.Add(200, "", []byte(`{"status":true,"response_code":1,"message":"ok"}`))
	f.Add(200, "", []byte(`{"status":true,"response_code":18,"message":"Duplicate Transaction"}`))
	f.Add(401, "", []byte(`{"status":false,"responsecode":10,"message":"Signature verification failed"}`))
	f.Add(200, "", []byte(`{"response_code":"1"}`))
	f.Add(200, "", []byte(`{"response_code":1,"responsecode":9}`))
	f.Add(429, "3", []byte(``))
	f.Add(429, "Wed, 21 Oct 2015 07:28:00 GMT", []byte(`{}`))
	f.Add(502, "", []byte(`<html>Bad Gateway</html>`))
	f.Add(200, "", []byte("\xef\xbb\xbf{\"ResponseCode\":\" 01 \"}"))
	f.Fuzz(func(t *testing.T, status int, retryAfter string, body []byte) {
		status = fuzzStatus(status)
		h := http.Header{"Retry-After": {retryAfter}}
		for _, tooBig := range []bool{false, true} {
			r := classifyRecharge(status, h, body, tooBig, fixedNow)
			if !knownClasses[r.Class] {
				t.Fatalf("class %q not in the table", r.Class)
			}
			if r.Class == ClassSuccess {
				if tooBig || r.Code != 1 || status < 200 || status > 299 || !oracleHasCodeOne(body) {
					t.Fatalf("success for HTTP %d, tooBig %v, code %d, body %q", status, tooBig, r.Code, body)
				}
			}
			if r.Code < -1 {
				t.Fatalf("code %d", r.Code)
			}
			if (r.Class == ClassThrottled) != (status == http.StatusTooManyRequests) {
				t.Fatalf("class %q for HTTP %d", r.Class, status)
			}
			if r.RetryAfter < 0 || r.RetryAfter > maxRetryAfter || (r.RetryAfter != 0 && r.Class != ClassThrottled) {
				t.Fatalf("RetryAfter %v for class %q", r.RetryAfter, r.Class)
			}
			if !utf8.ValidString(r.Message) || utf8.RuneCountInString(r.Message) > maxMessage {
				t.Fatalf("message %q", r.Message)
			}
		}
	})
}

// oracleLastStatus returns the value of the last key of the top-level data
// object that folds to "status" (the standard decoder lets the last
// occurrence of a field win), walking the tokens in document order.
func oracleLastStatus(body []byte) any {
	fold := strings.NewReplacer("_", "", "-", "", " ", "")
	var data json.RawMessage
	oracleWalk(bytes.TrimPrefix(body, []byte("\xef\xbb\xbf")), func(k string, v json.RawMessage) {
		if fold.Replace(strings.ToLower(k)) == "data" {
			data = v
		}
	})
	var st json.RawMessage
	oracleWalk(data, func(k string, v json.RawMessage) {
		if strings.EqualFold(k, "status") {
			st = v
		}
	})
	var v any
	dec := json.NewDecoder(bytes.NewReader(st))
	dec.UseNumber()
	if dec.Decode(&v) != nil {
		return nil
	}
	return v
}

// oracleWalk calls fn for each key of a JSON object in document order.
func oracleWalk(obj []byte, fn func(string, json.RawMessage)) {
	dec := json.NewDecoder(bytes.NewReader(obj))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return
		}
		k, _ := tok.(string)
		fn(k, v)
	}
}

var knownVerdicts = map[Verdict]bool{
	VerdictSuccess: true, VerdictRefunded: true, VerdictFailed: true, VerdictPending: true,
	VerdictNotFound: true, VerdictUnknown: true, VerdictAuth: true, VerdictThrottled: true,
}

func FuzzDecodeStatus(f *testing.F) {
	f.Add(200, statusRef, []byte(statusBody(`{"status":"1","refid":"`+statusRef+`","refunded":"0"}`)))
	f.Add(200, statusRef, []byte(statusBody(`{"status":1,"refid":`+statusRef+`,"refunded":1}`)))
	f.Add(200, statusRef, []byte(statusBody(`{"status":"1","refid":"OTHER"}`)))
	f.Add(200, statusRef, []byte(statusBody(`{"status":"2"}`)))
	f.Add(200, statusRef, []byte(`{"status":false,"response_code":2,"message":"Transaction not found","data":[]}`))
	f.Add(401, statusRef, []byte(`{"responsecode":10}`))
	f.Add(500, "", []byte(`{"data":{"status":"1"}}`))
	f.Fuzz(func(t *testing.T, status int, refid string, body []byte) {
		status = fuzzStatus(status)
		r := decodeStatus(refid, []int{2}, status, http.Header{}, body, false, fixedNow)
		if !knownVerdicts[r.Verdict] {
			t.Fatalf("verdict %q", r.Verdict)
		}
		if r.Verdict == VerdictSuccess || r.Verdict == VerdictRefunded {
			if strings.TrimSpace(r.Data.Status) != "1" || status < 200 || status > 299 {
				t.Fatalf("%s for HTTP %d, data.status %q, body %q", r.Verdict, status, r.Data.Status, body)
			}
			if r.Data.RefID != "" && r.Data.RefID != refid {
				t.Fatalf("%s about refid %q, asked %q", r.Verdict, r.Data.RefID, refid)
			}
			// Independently: the body's data object says status 1.
			if _, ok := oracleTop(body); !ok {
				t.Fatalf("%s from a body that is not a JSON object: %q", r.Verdict, body)
			}
			if st := oracleLastStatus(body); !oracleIsOne(st) {
				t.Fatalf("%s but data.status is %v in %q", r.Verdict, st, body)
			}
		}
		if r.Verdict == VerdictNotFound && r.Code != 2 {
			t.Fatalf("not-found with code %d", r.Code)
		}
		if decodeStatus(refid, nil, status, nil, body, true, fixedNow).Verdict == VerdictSuccess {
			t.Fatal("success from a body over the cap")
		}
		if !utf8.ValidString(r.Message) || utf8.RuneCountInString(r.Message) > maxMessage {
			t.Fatalf("message %q", r.Message)
		}
	})
}
