package aoptest

import (
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestFaults(t *testing.T) {
	t.Run("5xx before recording", func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.Fault5xxRate = 1
		ts := start(t, cfg)
		c := testClient(t, 5*time.Second)
		got := mustPost(t, c, ts.URL+"/api/AOP/Recharge", recharge("f5-1", 311, "10"), nil)
		if got.HTTP != 500 && got.HTTP != 502 && got.HTTP != 503 {
			t.Errorf("HTTP %d, want 500, 502 or 503", got.HTTP)
		}
		if got.Code != -1 {
			t.Errorf("a 5xx carried response_code %d", got.Code)
		}
		if n := ts.Charged("f5-1"); n != 0 {
			t.Errorf("Charged = %d, want 0", n)
		}
		ts.SetFaults(Faults{})
		if got := mustPost(t, c, ts.URL+"/api/AOP/Recharge", recharge("f5-1", 311, "10"), nil); got.Code != 1 {
			t.Errorf("resend after 5xx: code %d, want 1 (nothing was recorded)", got.Code)
		}
	})

	t.Run("lost after recording", func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.LostRate = 1
		ts := start(t, cfg)
		c := testClient(t, 5*time.Second)
		res, err := send(c, http.MethodPost, ts.URL+"/api/AOP/Recharge", recharge("lost-1", 311, "10"), nil)
		if err == nil {
			t.Fatalf("got an answer (HTTP %d %s), want the connection closed", res.HTTP, res.Body)
		}
		if n := ts.Charged("lost-1"); n != 1 {
			t.Errorf("Charged = %d, want 1", n)
		}
		ts.SetFaults(Faults{})
		if got := mustPost(t, c, ts.URL+"/api/AOP/Recharge", recharge("lost-1", 311, "10"), nil); got.Code != 18 {
			t.Errorf("resend after a lost answer: code %d, want 18", got.Code)
		}
		if got := ts.Stats().Faults.Lost; got != 1 {
			t.Errorf("Stats().Faults.Lost = %d, want 1", got)
		}
	})

	t.Run("stall past the client timeout", func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.StallRate = 1
		ts := start(t, cfg)
		c := testClient(t, 200*time.Millisecond)
		enquire(t, c, ts, "warm-up") // connect first: the timeout should hit the stall, not the dial
		began := time.Now()
		_, err := send(c, http.MethodPost, ts.URL+"/api/AOP/Recharge", recharge("stall-1", 311, "10"), nil)
		var ne interface{ Timeout() bool }
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("err = %v, want a client timeout", err)
		}
		if d := time.Since(began); d > 5*time.Second {
			t.Errorf("timed out after %v", d)
		}
		// The handler may still be on its way to recording when a loaded
		// machine lets the client give up first.
		for deadline := time.Now().Add(5 * time.Second); ts.Charged("stall-1") == 0 && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
		}
		if n := ts.Charged("stall-1"); n != 1 {
			t.Errorf("Charged = %d, want 1", n)
		}
	})

	t.Run("stall ends after StallFor", func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.StallRate = 1
		cfg.StallFor = 100 * time.Millisecond
		ts := start(t, cfg)
		c := testClient(t, 5*time.Second)
		if got := mustPost(t, c, ts.URL+"/api/AOP/Recharge", recharge("stall-2", 311, "10"), nil); got.Code != 1 {
			t.Errorf("code %d after the stall, want 1", got.Code)
		}
	})

	t.Run("throttle", func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.ThrottleRate = 1
		cfg.RetryAfter = 1500 * time.Millisecond
		ts := start(t, cfg)
		c := testClient(t, 5*time.Second)
		got := mustPost(t, c, ts.URL+"/api/AOP/Recharge", recharge("thr-1", 311, "10"), nil)
		if got.HTTP != http.StatusTooManyRequests || got.Header.Get("Retry-After") != "2" {
			t.Errorf("HTTP %d Retry-After %q, want 429 and 2", got.HTTP, got.Header.Get("Retry-After"))
		}
		if ts.Charged("thr-1") != 0 || ts.Requests("thr-1") != 1 || ts.NonDuplicateAnswers("thr-1") != 0 {
			t.Errorf("throttled request: charged %d, requests %d, non-duplicate %d; want 0, 1, 0",
				ts.Charged("thr-1"), ts.Requests("thr-1"), ts.NonDuplicateAnswers("thr-1"))
		}
	})

	t.Run("unknown code after recording", func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.UnknownCodeRate = 1
		ts := start(t, cfg)
		c := testClient(t, 5*time.Second)
		got := mustPost(t, c, ts.URL+"/api/AOP/Recharge", recharge("unk-1", 311, "10"), nil)
		if got.HTTP != http.StatusPreconditionFailed || got.Code != 9 || got.Status {
			t.Errorf("HTTP %d code %d status %v, want 412 9 false", got.HTTP, got.Code, got.Status)
		}
		if n := ts.Charged("unk-1"); n != 1 {
			t.Errorf("Charged = %d, want 1", n)
		}
		if _, data := enquire(t, c, ts, "unk-1"); data["status"] != "1" {
			t.Errorf("status enquiry after code 9: %v, want status 1", data)
		}
	})

	t.Run("close releases stalls", func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.StallRate = 1
		cfg.StallFor = time.Hour
		ts := NewServer(cfg)
		c := testClient(t, 0)
		done := make(chan error, 1)
		go func() {
			_, err := send(c, http.MethodPost, ts.URL+"/api/AOP/Recharge", recharge("stall-3", 311, "10"), nil)
			done <- err
		}()
		for ts.Charged("stall-3") == 0 {
			time.Sleep(time.Millisecond)
		}
		began := time.Now()
		ts.Close()
		if d := time.Since(began); d > 5*time.Second {
			t.Errorf("Close took %v", d)
		}
		<-done
	})
}

// TestDeterminism sends the same references concurrently to two fresh
// servers with the same seed: every answer must match, whatever the order.
func TestDeterminism(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Seed = 42
	cfg.ThrottleRate = 0.1
	cfg.Fault5xxRate = 0.1
	cfg.UnknownCodeRate = 0.1
	cfg.PendingRate = 0.2
	cfg.FailRate = 0.1
	cfg.RefundRate = 0.3
	cfg.RefundDelay = 0
	cfg.PendingDelay = 0

	run := func(cfg Config) map[string]string {
		ts := start(t, cfg)
		c := testClient(t, 30*time.Second)
		const refs, workers = 400, 16
		out := make(map[string]string, refs)
		var mu sync.Mutex
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for i := w; i < refs; i += workers {
					ref := fmt.Sprintf("det-%d", (i*7919)%refs)
					got, err := send(c, http.MethodPost, ts.URL+"/api/AOP/Recharge", recharge(ref, 311, "10"), nil)
					if err != nil {
						t.Errorf("%s: %v", ref, err)
						continue
					}
					txn, _ := ts.Txn(ref)
					mu.Lock()
					out[ref] = fmt.Sprintf("%d/%d/%s/%v", got.HTTP, got.Code, txn.Status, txn.Refunded)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		return out
	}
	a, b := run(cfg), run(cfg)
	kinds := map[string]bool{}
	for ref, got := range a {
		if b[ref] != got {
			t.Errorf("%s: %s then %s", ref, got, b[ref])
		}
		kinds[got] = true
	}
	if len(kinds) < 6 {
		t.Errorf("only %d distinct outcomes, the rates are not being applied: %v", len(kinds), kinds)
	}
	cfg.Seed = 43
	c := run(cfg)
	same := 0
	for ref := range a {
		if a[ref] == c[ref] {
			same++
		}
	}
	if same == len(a) {
		t.Errorf("another seed gave identical answers")
	}
}

// TestConcurrentDuplicates races two sends of each of 1,000 references
// across 20 goroutines: each must be charged exactly once, one answer 1 and
// one answer 18.
func TestConcurrentDuplicates(t *testing.T) {
	cfg := DefaultConfig()
	cfg.WalletPaise = 1_000_000_00
	ts := start(t, cfg)
	c := testClient(t, 30*time.Second)
	const refs, workers = 1000, 20
	var ones, dups [refs]atomic.Int32
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for j := w; j < 2*refs; j += workers {
				i := (j * 7) % (2 * refs) / 2 // both sends of a ref land close together
				got, err := send(c, http.MethodPost, ts.URL+"/api/AOP/Recharge", recharge(fmt.Sprintf("cc-%d", i), 311, "1.25"), nil)
				if err != nil {
					t.Errorf("cc-%d: %v", i, err)
					continue
				}
				switch got.Code {
				case 1:
					ones[i].Add(1)
				case 18:
					dups[i].Add(1)
				default:
					t.Errorf("cc-%d: code %d", i, got.Code)
				}
			}
		})
	}
	wg.Wait()
	for i := range refs {
		ref := fmt.Sprintf("cc-%d", i)
		if ones[i].Load() != 1 || dups[i].Load() != 1 {
			t.Errorf("%s: answered 1 %d times and 18 %d times, want once each", ref, ones[i].Load(), dups[i].Load())
		}
		if ts.Charged(ref) != 1 || ts.Requests(ref) != 2 || ts.NonDuplicateAnswers(ref) != 1 {
			t.Errorf("%s: charged %d, requests %d, non-duplicate %d; want 1, 2, 1",
				ref, ts.Charged(ref), ts.Requests(ref), ts.NonDuplicateAnswers(ref))
		}
	}
	if n, paise := ts.Totals(); n != refs || paise != refs*125 {
		t.Errorf("Totals = %d, %d; want %d, %d", n, paise, refs, refs*125)
	}
	if got, want := ts.Balance(), int64(1_000_000_00-refs*125); got != want {
		t.Errorf("Balance = %d, want %d", got, want)
	}
	st := ts.Stats()
	if st.ByCode[1] != refs || st.ByCode[18] != refs || st.Recharges != 2*refs {
		t.Errorf("Stats = %+v", st)
	}
}
