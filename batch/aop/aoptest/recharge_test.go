package aoptest

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestRechargeAnswers(t *testing.T) {
	cfg := DefaultConfig()
	cfg.DownOperators = []int64{13}
	cfg.MinAmountPaise = 1000
	cfg.MaxAmountPaise = 500000
	cfg.RegistrationID = "AOP-554"
	ts := start(t, cfg)
	c := testClient(t, 5*time.Second)

	tests := []struct {
		name        string
		body        string
		wantHTTP    int
		wantCode    int
		wantStatus  bool
		wantCharged int
	}{
		{"success", string(recharge("ok-1", 311, "10")), 200, 1, true, 1},
		{"success with paise", string(recharge("ok-2", 311, "10.50")), 200, 1, true, 1},
		{"operator as string", `{"operator":"311","canumber":"X1","amount":12.5,"referenceid":"ok-3","RegistrationID":"AOP-554"}`, 200, 1, true, 1},
		{"operator down", string(recharge("down-1", 13, "10")), 200, 13, false, 0},
		{"below minimum", string(recharge("lim-1", 311, "9.99")), 200, 17, false, 0},
		{"above maximum", string(recharge("lim-2", 311, "5000.01")), 200, 17, false, 0},
		{"operator blank", `{"operator":"","canumber":"X1","amount":10,"referenceid":"v-1","RegistrationID":"AOP-554"}`, 200, 8, false, 0},
		{"operator zero", string(recharge("v-2", 0, "10")), 200, 8, false, 0},
		{"operator missing", `{"canumber":"X1","amount":10,"referenceid":"v-3","RegistrationID":"AOP-554"}`, 200, 8, false, 0},
		{"canumber empty", `{"operator":311,"canumber":"","amount":10,"referenceid":"v-4","RegistrationID":"AOP-554"}`, 200, 8, false, 0},
		{"amount zero", string(recharge("v-5", 311, "0")), 200, 8, false, 0},
		{"amount negative", string(recharge("v-6", 311, "-10")), 200, 8, false, 0},
		{"amount as string", string(recharge("v-7", 311, `"10"`)), 200, 8, false, 0},
		{"amount below a paisa", string(recharge("v-8", 311, "10.005")), 200, 8, false, 0},
		{"amount missing", `{"operator":311,"canumber":"X1","referenceid":"v-9","RegistrationID":"AOP-554"}`, 200, 8, false, 0},
		{"referenceid empty", string(recharge("", 311, "10")), 200, 8, false, 0},
		{"not JSON", `operator=311`, 200, 8, false, 0},
		{"other RegistrationID", `{"operator":311,"canumber":"X1","amount":10,"referenceid":"v-10","RegistrationID":"AOP-1"}`, 200, 8, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mustPost(t, c, ts.URL+"/api/AOP/Recharge", []byte(tt.body), nil)
			if got.HTTP != tt.wantHTTP || got.Code != tt.wantCode || got.Status != tt.wantStatus {
				t.Errorf("got HTTP %d code %d status %v (%s), want HTTP %d code %d status %v",
					got.HTTP, got.Code, got.Status, got.Body, tt.wantHTTP, tt.wantCode, tt.wantStatus)
			}
			var req struct {
				Ref string `json:"referenceid"`
			}
			_ = json.Unmarshal([]byte(tt.body), &req)
			if got := ts.Charged(req.Ref); req.Ref != "" && got != tt.wantCharged {
				t.Errorf("Charged(%q) = %d, want %d", req.Ref, got, tt.wantCharged)
			}
		})
	}

	t.Run("success carries txnid", func(t *testing.T) {
		got := mustPost(t, c, ts.URL+"/api/AOP/Recharge", recharge("ok-4", 311, "10"), nil)
		var data struct {
			TxnID string `json:"txnid"`
		}
		if err := json.Unmarshal(got.Data, &data); err != nil || data.TxnID == "" {
			t.Fatalf("data = %s, want a txnid", got.Data)
		}
		txn, ok := ts.Txn("ok-4")
		if !ok || txn.TxnID != data.TxnID || txn.AmountPaise != 1000 || txn.Status != "1" || txn.Operator != 311 {
			t.Errorf("Txn = %+v, %v; want txnid %s, 1000 paise, status 1", txn, ok, data.TxnID)
		}
	})
}

func TestDuplicate(t *testing.T) {
	ts := start(t, DefaultConfig())
	c := testClient(t, 5*time.Second)
	first := mustPost(t, c, ts.URL+"/api/AOP/Recharge", recharge("dup-1", 311, "10"), nil)
	second := mustPost(t, c, ts.URL+"/api/AOP/Recharge", recharge("dup-1", 311, "99"), nil)
	if first.Code != 1 {
		t.Fatalf("first answer code %d (%s), want 1", first.Code, first.Body)
	}
	if got, want := string(second.Body), `{"status":true,"response_code":18,"message":"Duplicate Transaction"}`; got != want {
		t.Errorf("second answer %s, want %s", got, want)
	}
	if second.HTTP != 200 {
		t.Errorf("second answer HTTP %d, want 200", second.HTTP)
	}
	if got := ts.Charged("dup-1"); got != 1 {
		t.Errorf("Charged = %d, want 1", got)
	}
	if got := ts.Requests("dup-1"); got != 2 {
		t.Errorf("Requests = %d, want 2", got)
	}
	if got := ts.NonDuplicateAnswers("dup-1"); got != 1 {
		t.Errorf("NonDuplicateAnswers = %d, want 1", got)
	}
	if txn, _ := ts.Txn("dup-1"); txn.AmountPaise != 1000 {
		t.Errorf("amount after duplicate = %d paise, want the first 1000", txn.AmountPaise)
	}
}

func TestWallet(t *testing.T) {
	cfg := DefaultConfig()
	cfg.WalletPaise = 1500
	ts := start(t, cfg)
	c := testClient(t, 5*time.Second)
	url := ts.URL + "/api/AOP/Recharge"

	if got := mustPost(t, c, url, recharge("w-1", 311, "10"), nil); got.Code != 1 {
		t.Fatalf("first recharge code %d (%s), want 1", got.Code, got.Body)
	}
	got := mustPost(t, c, url, recharge("w-2", 311, "10"), nil)
	if got.Code != 16 || got.Status || got.Message != "Insufficient funds in the wallet" {
		t.Fatalf("second recharge: code %d status %v %q, want 16 false", got.Code, got.Status, got.Message)
	}
	if got.HTTP != http.StatusPaymentRequired {
		t.Errorf("16 came with HTTP %d, want 402", got.HTTP)
	}
	if got, want := ts.Balance(), int64(500); got != want {
		t.Errorf("Balance = %d, want %d", got, want)
	}
	if got := ts.Charged("w-2"); got != 0 {
		t.Errorf("declined ref charged %d times", got)
	}
	ts.TopUp(1000)
	if got := mustPost(t, c, url, recharge("w-2", 311, "10"), nil); got.Code != 1 {
		t.Fatalf("same ref after top-up: code %d (%s), want 1 (a decline must not record the ref)", got.Code, got.Body)
	}
	if got, want := ts.Balance(), int64(500); got != want {
		t.Errorf("Balance = %d, want %d", got, want)
	}
	if got := ts.NonDuplicateAnswers("w-2"); got != 2 {
		t.Errorf("NonDuplicateAnswers = %d, want 2 (16, then 1)", got)
	}
	if n, paise := ts.Totals(); n != 2 || paise != 2000 {
		t.Errorf("Totals = %d, %d; want 2, 2000", n, paise)
	}
}

func TestDeclinesDoNotRecord(t *testing.T) {
	cfg := DefaultConfig()
	cfg.FailRate = 1
	ts := start(t, cfg)
	c := testClient(t, 5*time.Second)
	url := ts.URL + "/api/AOP/Recharge"

	ts.SetOperatorDown(311, true)
	if got := mustPost(t, c, url, recharge("d-1", 311, "10"), nil); got.Code != 13 {
		t.Fatalf("down: code %d, want 13", got.Code)
	}
	ts.SetOperatorDown(311, false)
	if got := mustPost(t, c, url, recharge("d-1", 311, "10"), nil); got.Code != 14 {
		t.Fatalf("fail rate 1: code %d, want 14", got.Code)
	}
	if _, ok := ts.Txn("d-1"); ok {
		t.Errorf("a declined ref was recorded")
	}
	if got := ts.Requests("d-1"); got != 2 {
		t.Errorf("Requests = %d, want 2", got)
	}
}

func TestPending(t *testing.T) {
	tests := []struct {
		name        string
		failRate    float64
		wantStatus  string
		wantBalance int64
	}{
		{"ends successful", 0, "1", 9000},
		{"ends failed and re-credited", 1, "0", 10000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newClock()
			cfg := DefaultConfig()
			cfg.Now = clock.Now
			cfg.WalletPaise = 10000
			cfg.PendingRate = 1
			cfg.PendingDelay = 10 * time.Second
			cfg.PendingFailRate = tt.failRate
			ts := start(t, cfg)
			c := testClient(t, 5*time.Second)

			got := mustPost(t, c, ts.URL+"/api/AOP/Recharge", recharge("p-1", 311, "10"), nil)
			if got.Code != 0 || !got.Status || got.Message != "Transaction accepted" {
				t.Fatalf("answer code %d status %v %q, want 0 true", got.Code, got.Status, got.Message)
			}
			if _, data := enquire(t, c, ts, "p-1"); data["status"] != "2" {
				t.Errorf("status before the delay = %q, want 2", data["status"])
			}
			if got := ts.Balance(); got != 9000 {
				t.Errorf("a pending transaction should be charged: Balance = %d, want 9000", got)
			}
			if got := ts.PendingCount(); got != 1 {
				t.Errorf("PendingCount = %d, want 1", got)
			}
			clock.Advance(10 * time.Second)
			if _, data := enquire(t, c, ts, "p-1"); data["status"] != tt.wantStatus {
				t.Errorf("status after the delay = %q, want %s", data["status"], tt.wantStatus)
			}
			if got := ts.Balance(); got != tt.wantBalance {
				t.Errorf("Balance = %d, want %d", got, tt.wantBalance)
			}
			if got := ts.PendingCount(); got != 0 {
				t.Errorf("PendingCount = %d, want 0", got)
			}
			if got := ts.Charged("p-1"); got != 1 {
				t.Errorf("Charged = %d, want 1 (a re-credit does not undo the count)", got)
			}
		})
	}
}

func TestRefund(t *testing.T) {
	clock := newClock()
	cfg := DefaultConfig()
	cfg.Now = clock.Now
	cfg.WalletPaise = 10000
	cfg.RefundRate = 1
	cfg.RefundDelay = time.Hour
	ts := start(t, cfg)
	c := testClient(t, 5*time.Second)

	if got := mustPost(t, c, ts.URL+"/api/AOP/Recharge", recharge("r-1", 311, "25"), nil); got.Code != 1 {
		t.Fatalf("answer code %d, want 1", got.Code)
	}
	_, before := enquire(t, c, ts, "r-1")
	if before["status"] != "1" || before["refunded"] != "0" || before["refundtxnid"] != "" {
		t.Errorf("before the refund: %v", before)
	}
	clock.Advance(time.Hour)
	_, after := enquire(t, c, ts, "r-1")
	if after["status"] != "1" || after["refunded"] != "1" || after["refundtxnid"] == "" ||
		after["daterefunded"] != "2025-03-01T11:00:00Z" {
		t.Errorf("after the refund: %v", after)
	}
	if got := ts.Balance(); got != 10000 {
		t.Errorf("Balance = %d, want 10000 (refund re-credits)", got)
	}
	if n, _ := ts.Totals(); n != 0 {
		t.Errorf("Totals counts a refunded transaction")
	}
}

func TestStatusEnquiry(t *testing.T) {
	t.Run("found", func(t *testing.T) {
		clock := newClock()
		cfg := DefaultConfig()
		cfg.Now = clock.Now
		ts := start(t, cfg)
		c := testClient(t, 5*time.Second)
		mustPost(t, c, ts.URL+"/api/AOP/Recharge", recharge("s-1", 311, "10.5"), nil)
		res, data := enquire(t, c, ts, "s-1")
		if res.HTTP != 200 || !res.Status || res.Code != 1 {
			t.Fatalf("answer %s", res.Body)
		}
		txn, _ := ts.Txn("s-1")
		want := map[string]string{
			"txnid": txn.TxnID, "canumber": "DL12CB4685", "amount": "10.50", "status": "1",
			"refid": "s-1", "dateadded": "2025-03-01T10:00:00Z", "refunded": "0",
			"refundtxnid": "", "daterefunded": "",
		}
		for k, v := range want {
			if data[k] != v {
				t.Errorf("data[%s] = %q, want %q", k, data[k], v)
			}
		}
		for _, k := range []string{"operatorname", "comm", "tds", "operatorid"} {
			if _, ok := data[k]; !ok {
				t.Errorf("data lacks %s", k)
			}
		}
	})
	t.Run("not found", func(t *testing.T) {
		ts := start(t, DefaultConfig())
		c := testClient(t, 5*time.Second)
		res, _ := enquire(t, c, ts, "nobody")
		if got, want := string(res.Body), `{"status":false,"response_code":2,"message":"Transaction not found"}`; got != want || res.HTTP != 200 {
			t.Errorf("got HTTP %d %s, want 200 %s", res.HTTP, got, want)
		}
	})
	t.Run("not found code configured", func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.NotFoundCode = 5
		ts := start(t, cfg)
		c := testClient(t, 5*time.Second)
		if res, _ := enquire(t, c, ts, "nobody"); res.Code != 5 {
			t.Errorf("code %d, want 5", res.Code)
		}
	})
	t.Run("declined ref is not found", func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.WalletPaise = 0
		ts := start(t, cfg)
		c := testClient(t, 5*time.Second)
		mustPost(t, c, ts.URL+"/api/AOP/Recharge", recharge("s-2", 311, "10"), nil)
		if res, _ := enquire(t, c, ts, "s-2"); res.Code != 2 {
			t.Errorf("code %d, want 2", res.Code)
		}
	})
}

func TestFetchConsumerDetails(t *testing.T) {
	ts := start(t, DefaultConfig())
	c := testClient(t, 5*time.Second)
	body := []byte(`{"operator":311,"canumber":"DL12CB4685","RegistrationID":"AOP-554"}`)
	first := mustPost(t, c, ts.URL+"/api/AOP/FetchConsumerDetails", body, nil)
	second := mustPost(t, c, ts.URL+"/api/AOP/FetchConsumerDetails", body, nil)
	if string(first.Body) != string(second.Body) {
		t.Errorf("not deterministic:\n%s\n%s", first.Body, second.Body)
	}
	var got struct {
		Amount    string `json:"amount"`
		Name      string `json:"name"`
		DueDate   string `json:"duedate"`
		BillFetch struct {
			BillAmount string      `json:"billAmount"`
			MaxBill    json.Number `json:"maxBillAmount"`
			CellNumber string      `json:"cellNumber"`
			UserName   string      `json:"userName"`
		} `json:"bill_fetch"`
	}
	if err := json.Unmarshal(first.Body, &got); err != nil {
		t.Fatal(err)
	}
	if first.Code != 1 || got.Amount == "" || got.Name == "" || got.DueDate == "" ||
		got.BillFetch.BillAmount != got.Amount || got.BillFetch.CellNumber != "DL12CB4685" {
		t.Errorf("bill = %s", first.Body)
	}
	if _, err := parsePaise(got.Amount); err != nil {
		t.Errorf("amount %q: %v", got.Amount, err)
	}
	bad := mustPost(t, c, ts.URL+"/api/AOP/FetchConsumerDetails", []byte(`{"operator":311,"canumber":""}`), nil)
	if bad.Code != 8 {
		t.Errorf("empty canumber: code %d, want 8", bad.Code)
	}
}

func TestRouting(t *testing.T) {
	ts := start(t, DefaultConfig())
	c := testClient(t, 5*time.Second)
	tests := []struct {
		name, method, path string
		want               int
	}{
		{"unknown path", http.MethodPost, "/api/AOP/Nope", 404},
		{"GET on Recharge", http.MethodGet, "/api/AOP/Recharge", 405},
		{"POST on Statement", http.MethodPost, "/api/AOP/Statement", 405},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := send(c, tt.method, ts.URL+tt.path, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if res.HTTP != tt.want || !json.Valid(res.Body) {
				t.Errorf("got %d %s, want %d with a JSON body", res.HTTP, res.Body, tt.want)
			}
		})
	}
	t.Run("body over 1 MiB", func(t *testing.T) {
		big := `{"operator":311,"canumber":"X","amount":10,"referenceid":"big","pad":"` + strings.Repeat("x", 2<<20) + `"}`
		res, err := send(c, http.MethodPost, ts.URL+"/api/AOP/Recharge", []byte(big), nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.HTTP != http.StatusRequestEntityTooLarge || res.Code != 8 {
			t.Errorf("got %d code %d, want 413 code 8", res.HTTP, res.Code)
		}
		if ts.Charged("big") != 0 {
			t.Errorf("an oversized request was charged")
		}
	})
}

func TestLatency(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Latency = 50 * time.Millisecond
	ts := start(t, cfg)
	c := testClient(t, 5*time.Second)
	began := time.Now()
	mustPost(t, c, ts.URL+"/api/AOP/Recharge", recharge("lat-1", 311, "10"), nil)
	if got := time.Since(began); got < 50*time.Millisecond {
		t.Errorf("answered in %v, want at least 50ms", got)
	}
}
