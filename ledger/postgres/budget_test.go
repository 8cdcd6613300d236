package postgres

import (
	"context"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/aopbatch/aopbatch/ledger"
	"github.com/aopbatch/aopbatch/ledger/postgres/pgtest"
)

var _ ledger.RateBudget = (*Store)(nil)

// Processes reserving from one account's budget at once get slots that,
// all together, keep to the rate: no two closer than 1/rate with burst 1,
// and after a pause no more than burst at once.
func TestReserveSharesOneSchedule(t *testing.T) {
	t.Parallel()
	srv := pgtest.Start(t)
	url := srv.URL(srv.NewDB(t))
	const rate, procs, blocks, n = 200.0, 3, 10, 7
	var (
		mu    sync.Mutex
		slots []time.Time
		wg    sync.WaitGroup
	)
	for range procs {
		s, err := Open(context.Background(), url, Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		// One host, one clock: each handle's reading of the skew is noise
		// of up to half a round trip (milliseconds under -race and load),
		// and what is tested here is the schedule, so all map it alike: an
		// exact reading, which no later one replaces.
		s.noteClock(time.Now(), 0, time.Now().UnixMicro())
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range blocks {
				first, every, err := s.Reserve(context.Background(), "AOP-554", n, rate, 1)
				if err != nil {
					t.Error(err)
					return
				}
				if every != 5*time.Millisecond {
					t.Errorf("every = %v, want 5ms at 200/s", every)
				}
				mu.Lock()
				for i := range n {
					slots = append(slots, first.Add(time.Duration(i)*every))
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(slots) != procs*blocks*n {
		t.Fatalf("%d slots, want %d", len(slots), procs*blocks*n)
	}
	sort.Slice(slots, func(i, j int) bool { return slots[i].Before(slots[j]) })
	// The slots are on one schedule by the database's clock.
	const slack = time.Millisecond
	for i := 1; i < len(slots); i++ {
		if d := slots[i].Sub(slots[i-1]); d < 5*time.Millisecond-slack {
			t.Fatalf("slots %d and %d are %v apart, want about 5ms: two processes got the same slot", i-1, i, d)
		}
	}
	// Another account has its own budget.
	s, err := Open(context.Background(), url, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	first, _, err := s.Reserve(context.Background(), "AOP-999", 1, rate, 1)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Until(first); d > 50*time.Millisecond {
		t.Errorf("a fresh account's first slot is %v away, want now", d)
	}
	// After a pause, a burst of 5 comes at once, and no more.
	time.Sleep(100 * time.Millisecond) // longer than the 40 ms of credit a burst of 5 at 100/s gives
	// The database's "now" falls between before and after, however long
	// the call takes on a loaded machine.
	before := time.Now()
	first, every, err := s.Reserve(context.Background(), "AOP-999", 8, 100, 5)
	after := time.Now()
	if err != nil {
		t.Fatal(err)
	}
	const tol = 5 * time.Millisecond
	if lo, hi := before.Add(-4*every-tol), after.Add(-4*every+tol); first.Before(lo) || first.After(hi) {
		t.Errorf("after a pause the first of 8 slots is %v before the call (which took %v), want 4 intervals (%v): a burst of 5",
			before.Sub(first), after.Sub(before), 4*every)
	}
}

// TestClockReadingsKeepTheTightest: the skew slots are mapped by comes from
// the reading of the database's clock with the tightest error bound (half
// its round trip), so a loaded moment does not move it; an old reading
// gives way as clocks drift, and at once to one it cannot agree with.
func TestClockReadingsKeepTheTightest(t *testing.T) {
	s := &Store{}
	t0 := time.Date(2026, 12, 4, 22, 0, 0, 0, time.UTC)
	read := func(at time.Time, rtt, skew time.Duration) {
		s.noteClock(at, rtt, at.Add(rtt/2+skew).UnixMicro())
	}
	want := func(skew time.Duration, why string) {
		t.Helper()
		if got := time.Duration(s.skew.Load()) * time.Microsecond; got != skew {
			t.Errorf("%s: skew %v, want %v", why, got, skew)
		}
	}
	ms := time.Millisecond
	read(t0, 10*ms, 3*ms)
	want(3*ms, "the first reading")
	read(t0.Add(time.Second), 48*ms, 27*ms)
	want(3*ms, "a reading with a longer round trip")
	read(t0.Add(2*time.Second), 2*ms, ms)
	want(ms, "a reading with a shorter round trip")
	read(t0.Add(3*time.Second), 2*ms, -ms)
	want(-ms, "an as tight reading, later")
	// Ten minutes on, the last reading's bound (1 ms) has grown by 10 ms.
	ten := t0.Add(3*time.Second + 10*time.Minute)
	read(ten, 24*ms, 5*ms)
	want(-ms, "a looser reading ten minutes on")
	read(ten.Add(time.Second), 22*ms, 4*ms)
	want(4*ms, "a reading within the last one's grown bound")
	// The clock steps by 50 ms: a reading that cannot agree is taken.
	read(ten.Add(2*time.Second), 30*ms, 60*ms)
	want(60*ms, "a looser reading the last one cannot agree with")
}
