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

// The string-based readers that parseCode, parseBool, parseText and
// nonEmpty replaced, kept verbatim as oracles for FuzzEnvelopeFastPath.

func refParseCode(raw json.RawMessage) (code int, present, good bool) {
	s := strings.TrimSpace(string(raw))
	if s == "null" {
		return 0, false, false
	}
	if strings.HasPrefix(s, `"`) {
		var str string
		if json.Unmarshal(raw, &str) != nil {
			return 0, true, false
		}
		s = strings.TrimSpace(str)
	}
	if s == "" || len(s) > 9 {
		return 0, true, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, true, false
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, true, false
	}
	return n, true, true
}

func refParseBool(raw json.RawMessage) bool {
	s := strings.TrimSpace(string(raw))
	s = strings.Trim(s, `"`)
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "true", "1":
		return true
	}
	return false
}

func refParseText(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	if t := strings.TrimSpace(string(raw)); t != "null" {
		return t
	}
	return ""
}

func refNonEmpty(raw json.RawMessage) json.RawMessage {
	s := strings.Join(strings.Fields(string(raw)), "")
	switch s {
	case "null", `""`, "[]", "{}":
		return nil
	}
	return raw
}

// FuzzEnvelopeFastPath holds every reader that skips encoding/json to the
// encoding/json reader it stands in for: on any input it either declines
// or gives the same answer.
func FuzzEnvelopeFastPath(f *testing.F) {
	for _, a := range benchAnswers {
		f.Add([]byte(a.body))
	}
	for _, b := range []string{
		`{"status":true,"response_code":0,"message":"Transaction accepted","data":{"txnid":"T1","refid":"r\"1","operatorid":"","amount":"10.50","status":"2"}}`,
		statusBody(`{"txnid":98765,"amount":10.50,"status":1,"refid":1234435687678,"refunded":0,"comm":null,"extra":{"a":[1,{"b":null}]}}`),
		statusBody(`{"TxnID":"a","txnid":"b","TXNID":null,"Status":"1","status":true}`),
		`{"status":false,"response_code":2,"message":"Transaction not found","data":[]}`,
		"\xef\xbb\xbf { \"Response_Code\" : \" 01 \" , \"STATUS\" : \"TRUE\" , \"message\" : \"d\\u00e9j\\u00e0 vu \\ud83d\\ude00\" } ",
		`{"response_code":1,"response_code":1,"responsecode":"1","data":" \u00a0 "}`,
		`{"response-code":1e3,"status":1,"message":12.5e-3,"data":{"txnid":-0.0E+1}}`,
		`{"respons\u0065_code":1}`,
		"{\"r\xc3\xa9sponse_code\":1,\"message\":\"caf\xc3\xa9\",\"data\":{\"txn\xc3\xaed\":\"x\"}}",
		"{\"message\":\"\xff\xfe\",\"data\":{\"txnid\":\"\xff\"}}",
		`{"data":{"txnid":"x"}} x`,
		`[{"response_code":1}]`,
		`{"a":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]],"response_code":1}`,
		`{"operator":311,"canumber":"DL12CB4685","amount":10.50,"referenceid":"1234435687678","latitude":"99","longitude":"98","bill_fetch":{"billAmount":"1000.0","minBillAmount":1000,"acceptPayment":true,"userName":"A \u0026 B \u003cC\u003e\u2028"},"RegistrationID":"AOP-554"}`,
		`{"response_code":01}`, `{"response_code":-}`, `{"response_code":1.}`, `{"response_code":"1}`, `{"a":tru}`, `{"a":"\x"}`, `{"a":"\u12g4"}`, `{,}`, `{"a":1,}`, `{"a" 1}`, ` `, `"x"`, `-1`, `[1,2,]`, `nul`,
	} {
		f.Add([]byte(b))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if scanValid(body) && !json.Valid(body) {
			t.Fatalf("scanner accepts %q, json.Valid does not", body)
		}
		if got, want := validJSON(body), json.Valid(body); got != want {
			t.Fatalf("validJSON(%q) = %v, json.Valid %v", body, got, want)
		}

		trimmed := bytes.TrimPrefix(body, utf8BOM)
		slow, slowOK := decodeEnvelope(trimmed)
		if fast, ok := scanEnvelope(trimmed); ok {
			if !slowOK || fast.code != slow.code || fast.status != slow.status || fast.message != slow.message ||
				!bytes.Equal(fast.data, slow.data) || (fast.data == nil) != (slow.data == nil) {
				t.Fatalf("body %q:\nfast %+v\nslow %+v (ok %v)", body, fast, slow, slowOK)
			}
		}
		if got, gotOK := parseEnvelope(body); gotOK != slowOK || (slowOK && (got.code != slow.code || got.message != slow.message)) {
			t.Fatalf("parseEnvelope(%q) = %+v, %v, want %+v, %v", body, got, gotOK, slow, slowOK)
		}

		// The value readers the two envelope decoders share, against the
		// ones they replaced, on every top-level value (always valid JSON).
		oracleWalk(trimmed, func(k string, raw json.RawMessage) {
			c, p, g := parseCode(raw)
			if rc, rp, rg := refParseCode(raw); c != rc || p != rp || g != rg {
				t.Fatalf("parseCode(%q) = %d, %v, %v, want %d, %v, %v", raw, c, p, g, rc, rp, rg)
			}
			if got, want := parseBool(raw), refParseBool(raw); got != want {
				t.Fatalf("parseBool(%q) = %v, want %v", raw, got, want)
			}
			if got, want := parseText(raw), refParseText(raw); got != want {
				t.Fatalf("parseText(%q) = %q, want %q", raw, got, want)
			}
			if got, want := nonEmpty(raw), refNonEmpty(raw); !bytes.Equal(got, want) || (got == nil) != (want == nil) {
				t.Fatalf("nonEmpty(%q) = %q, want %q", raw, got, want)
			}
			if got, want := asciiEnvKey([]byte(k)), envKeyOf(normKey(k)); isASCII(k) && got != want {
				t.Fatalf("asciiEnvKey(%q) = %d, want %d", k, got, want)
			}
		})

		// The data readers, on the envelope's data and on the body itself.
		for _, data := range [][]byte{slow.data, body} {
			var txn [1]string
			if scanFields(data, txnIDField[:], txn[:]) {
				if got, want := clip(txn[0]), decodeTxnID(data); got != want {
					t.Fatalf("txnid of %q = %q, want %q", data, got, want)
				}
			}
			var v [len(statusDataFields)]string
			if scanFields(data, statusDataFields[:], v[:]) {
				var w wireStatusData
				if err := json.Unmarshal(data, &w); err != nil {
					t.Fatalf("scanFields reads %q, json.Unmarshal: %v", data, err)
				}
				got, err := decodeStatusData(data)
				if want := w.data(); err != nil || got != want {
					t.Fatalf("status data of %q = %+v, %v, want %+v", data, got, err, want)
				}
			}
		}
	})
}

// scanValid reports whether jsonScan alone accepts b as one JSON value.
func scanValid(b []byte) bool {
	s := jsonScan{b: b}
	s.space()
	return s.value() && s.end()
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}
