package aoptest

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestStatement(t *testing.T) {
	const seed = 7
	clock := newClock()
	cfg := DefaultConfig()
	cfg.Seed = seed
	cfg.Now = clock.Now
	cfg.WalletPaise = 10000
	cfg.PendingRate = 0.5
	cfg.PendingFailRate = 1
	cfg.PendingDelay = 10 * time.Second
	cfg.RefundRate = 0.5
	cfg.RefundDelay = 20 * time.Second
	cfg.DownOperators = []int64{99}
	ts := start(t, cfg)
	c := testClient(t, 5*time.Second)

	pending := func(d decider) bool { return d.hit(cfg.PendingRate, "pending") }
	refund := func(d decider) bool { return d.hit(cfg.RefundRate, "refund") }
	success := findRef(t, seed, "a", func(d decider) bool { return !pending(d) && !refund(d) })
	refunded := findRef(t, seed, "b", func(d decider) bool { return !pending(d) && refund(d) })
	failed := findRef(t, seed, "c", pending)
	stillPending := findRef(t, seed, "e", pending)

	recharge1 := func(ref string, op int64, amount string, wantCode int) {
		t.Helper()
		if got := mustPost(t, c, ts.URL+"/api/AOP/Recharge", recharge(ref, op, amount), nil); got.Code != wantCode {
			t.Fatalf("%s: code %d (%s), want %d", ref, got.Code, got.Body, wantCode)
		}
	}
	recharge1(refunded, 311, "20.50", 1)
	recharge1(success, 311, "10", 1)
	recharge1("d-declined", 99, "10", 13)
	clock.Advance(time.Second)
	recharge1(failed, 311, "5", 0)
	clock.Advance(24 * time.Second)
	recharge1(stillPending, 311, "7", 0)
	clock.Advance(5 * time.Second)

	row := func(ref, amount, status, refunded, added string) string {
		txn, _ := ts.Txn(ref)
		opid := ""
		if status == "1" {
			opid = ts.operatorRef(ref)
		}
		return strings.Join([]string{ref, txn.TxnID, amount, status, refunded, opid, added}, ",")
	}
	tests := []struct {
		name  string
		query string
		want  []string
	}{
		{"everything", "", []string{
			row(success, "10.00", "1", "0", "2025-03-01T10:00:00Z"),
			row(refunded, "20.50", "1", "1", "2025-03-01T10:00:00Z"),
			row(failed, "5.00", "0", "0", "2025-03-01T10:00:01Z"),
			row(stillPending, "7.00", "2", "0", "2025-03-01T10:00:25Z"),
		}},
		{"from inclusive, to exclusive", "?from=2025-03-01T10:00:01Z&to=2025-03-01T10:00:25Z", []string{
			row(failed, "5.00", "0", "0", "2025-03-01T10:00:01Z"),
		}},
		{"other time zone", "?from=2025-03-01T15:30:25%2B05:30", []string{
			row(stillPending, "7.00", "2", "0", "2025-03-01T10:00:25Z"),
		}},
		{"empty range", "?to=2025-03-01T09:00:00Z", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := sendGet(c, ts.URL+"/api/AOP/Statement"+tt.query)
			if err != nil {
				t.Fatal(err)
			}
			if res.HTTP != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/csv") {
				t.Fatalf("HTTP %d %s", res.HTTP, res.Header.Get("Content-Type"))
			}
			want := strings.Join(append([]string{"refid,txnid,amount,status,refunded,operatorid,dateadded"}, tt.want...), "\n") + "\n"
			if got := string(res.Body); got != want {
				t.Errorf("statement:\n%s\nwant:\n%s", got, want)
			}
		})
	}
	t.Run("bad time", func(t *testing.T) {
		res, err := sendGet(c, ts.URL+"/api/AOP/Statement?from=yesterday")
		if err != nil {
			t.Fatal(err)
		}
		if res.HTTP != http.StatusBadRequest || res.Code != 8 {
			t.Errorf("HTTP %d code %d, want 400 code 8", res.HTTP, res.Code)
		}
	})

	if got := len(ts.Txns()); got != 4 {
		t.Errorf("Txns holds %d, want 4", got)
	}
	if n, paise := ts.Totals(); n != 1 || paise != 1000 {
		t.Errorf("Totals = %d, %d; want 1, 1000", n, paise)
	}
	if got := ts.PendingCount(); got != 1 {
		t.Errorf("PendingCount = %d, want 1", got)
	}
	if got, want := ts.Balance(), int64(10000-1000-700); got != want {
		t.Errorf("Balance = %d, want %d", got, want)
	}
}

func sendGet(c *http.Client, url string) (result, error) {
	return send(c, http.MethodGet, url, nil, nil)
}
