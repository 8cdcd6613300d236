package aoptest

import (
	"net/http"
	"strings"
	"testing"
)

func TestRefundNowAndChargeLate(t *testing.T) {
	cfg := DefaultConfig()
	cfg.DownOperators = []int64{27}
	ts := NewServer(cfg)
	t.Cleanup(ts.Close)
	post := func(body string) {
		t.Helper()
		resp, err := ts.Client().Post(ts.URL+"/api/AOP/Recharge", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	post(`{"operator":311,"canumber":"CA1","amount":10,"referenceid":"OK1","RegistrationID":"R"}`)
	post(`{"operator":27,"canumber":"CA2","amount":12.5,"referenceid":"DOWN1","RegistrationID":"R"}`)
	if _, ok := ts.Txn("DOWN1"); ok {
		t.Fatal("a declined request was recorded")
	}
	if ts.RefundNow("DOWN1") || ts.ChargeLate("OK1") || ts.ChargeLate("NEVER") {
		t.Error("a hook acted on a transaction in the wrong state")
	}
	if !ts.RefundNow("OK1") || ts.RefundNow("OK1") {
		t.Error("RefundNow: want true once")
	}
	if tx, _ := ts.Txn("OK1"); !tx.Refunded {
		t.Errorf("OK1 after refund: %+v", tx)
	}
	resp, err := ts.Client().Post(ts.URL+"/sandbox/charge?ref=DOWN1", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /sandbox/charge: %s", resp.Status)
	}
	tx, ok := ts.Txn("DOWN1")
	if !ok || tx.Status != "1" || tx.AmountPaise != 1250 || tx.CANumber != "CA2" || ts.Charged("DOWN1") != 1 {
		t.Errorf("DOWN1 after a late charge: %+v %v", tx, ok)
	}
}
