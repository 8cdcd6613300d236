package ledgertest

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/aopbatch/aopbatch/ledger"
)

func (s suite) testAcquire(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	nb := ledger.NewBatch{ID: "b1", ContentHash: "h1", Source: "pay.csv", Header: []string{"operator", "canumber", "amount"}}
	me := ledger.NewOwner("run-a")
	other := ledger.NewOwner("run-b") // this very process: alive

	setup := func(t *testing.T) (ledger.Store, *clock) {
		t.Helper()
		c := newClock()
		return s.open(t, Options{Now: c.now}), c
	}
	// The batches below are being recorded (never made ready): one
	// process holds such a batch alone, on every store. A ready batch is
	// one process's at a time on a store that is not shared.
	locked := func(l ledger.Store) error {
		if l.Shared() {
			return ledger.ErrBatchIngesting
		}
		return ledger.ErrBatchLocked
	}

	t.Run("new batch is created not ready", func(t *testing.T) {
		l, c := setup(t)
		b := acquire(t, l, nb, me)
		if b.ID != nb.ID || b.ContentHash != nb.ContentHash || b.Source != nb.Source ||
			strings.Join(b.Header, ",") != strings.Join(nb.Header, ",") {
			t.Errorf("Acquire = %+v, want fields of %+v", b, nb)
		}
		if b.Ready || b.RowsTotal != 0 {
			t.Errorf("new batch Ready=%v RowsTotal=%d, want false 0", b.Ready, b.RowsTotal)
		}
		if !b.Created.Equal(c.now()) {
			t.Errorf("Created = %v, want %v", b.Created, c.now())
		}
		if b.Seq == 0 {
			t.Error("Seq = 0")
		}
		got, err := l.Batch(ctx, nb.ID)
		if err != nil {
			t.Fatalf("Batch: %v", err)
		}
		if got.Seq != b.Seq || got.Ready {
			t.Errorf("Batch = %+v, want seq %d not ready", got, b.Seq)
		}
	})

	t.Run("runners are the live leases of other processes", func(t *testing.T) {
		l, c := setup(t)
		elsewhere := ledger.Owner{ID: "run-elsewhere", Host: "another-host", PID: 4242}
		b := acquire(t, l, nb, elsewhere)
		runners := func() []ledger.Runner {
			t.Helper()
			rs, err := l.Runners(ctx, b.Seq)
			if err != nil {
				t.Fatalf("Runners: %v", err)
			}
			return rs
		}
		want := []ledger.Runner{{Host: "another-host", PID: 4242, Until: c.now().Add(testTTL)}}
		if got := runners(); !reflect.DeepEqual(got, want) {
			t.Errorf("Runners while another host holds the batch = %+v, want %+v", got, want)
		}
		c.advance(testTTL + time.Second)
		if got := runners(); len(got) != 0 {
			t.Errorf("Runners after its lease ran out = %+v, want none", got)
		}
		// This process's own lease is not another run's.
		acquire(t, l, nb, me)
		if got := runners(); len(got) != 0 {
			t.Errorf("Runners while this process holds the batch = %+v, want none", got)
		}
		if err := l.Release(ctx, nb.ID, me); err != nil {
			t.Fatal(err)
		}
		if got := runners(); len(got) != 0 {
			t.Errorf("Runners after Release = %+v, want none", got)
		}
	})

	t.Run("same id different content", func(t *testing.T) {
		l, _ := setup(t)
		acquire(t, l, nb, me)
		l.Release(ctx, nb.ID, me)
		changed := nb
		changed.ContentHash = "h2"
		_, err := l.Acquire(ctx, changed, me, testTTL)
		if !errors.Is(err, ledger.ErrBatchMismatch) {
			t.Errorf("Acquire with other hash: %v, want ErrBatchMismatch", err)
		}
	})

	t.Run("live owner with unexpired lease", func(t *testing.T) {
		l, c := setup(t)
		acquire(t, l, nb, me)
		c.advance(testTTL - time.Second)
		_, err := l.Acquire(ctx, nb, other, testTTL)
		if !errors.Is(err, locked(l)) {
			t.Fatalf("Acquire by other: %v, want %v", err, locked(l))
		}
		if err := l.Renew(ctx, nb.ID, me, testTTL); err != nil {
			t.Errorf("Renew by holder after refused Acquire: %v", err)
		}
	})

	t.Run("holder on another host locks until expiry", func(t *testing.T) {
		l, c := setup(t)
		remote := ledger.Owner{ID: "remote", Host: "elsewhere.invalid", PID: 1}
		acquire(t, l, nb, remote)
		c.advance(testTTL - time.Millisecond)
		if _, err := l.Acquire(ctx, nb, me, testTTL); !errors.Is(err, locked(l)) {
			t.Fatalf("Acquire before expiry: %v, want %v", err, locked(l))
		}
		c.advance(2 * time.Millisecond)
		acquire(t, l, nb, me)
	})

	t.Run("expired lease is taken over", func(t *testing.T) {
		l, c := setup(t)
		acquire(t, l, nb, me)
		c.advance(testTTL + time.Millisecond)
		acquire(t, l, nb, other)
		if err := l.Renew(ctx, nb.ID, me, testTTL); !errors.Is(err, ledger.ErrLeaseLost) {
			t.Errorf("Renew by stale owner: %v, want ErrLeaseLost", err)
		}
		if err := l.Renew(ctx, nb.ID, other, testTTL); err != nil {
			t.Errorf("Renew by new owner: %v", err)
		}
	})

	t.Run("renew keeps the lease alive", func(t *testing.T) {
		l, c := setup(t)
		acquire(t, l, nb, me)
		for i := 0; i < 3; i++ {
			c.advance(testTTL / 2)
			if err := l.Renew(ctx, nb.ID, me, testTTL); err != nil {
				t.Fatalf("Renew: %v", err)
			}
		}
		c.advance(testTTL / 2)
		if _, err := l.Acquire(ctx, nb, other, testTTL); !errors.Is(err, locked(l)) {
			t.Errorf("Acquire after renewals: %v, want %v", err, locked(l))
		}
	})

	t.Run("renew of unknown batch", func(t *testing.T) {
		l, _ := setup(t)
		if err := l.Renew(ctx, "nope", me, testTTL); !errors.Is(err, ledger.ErrLeaseLost) {
			t.Errorf("Renew: %v, want ErrLeaseLost", err)
		}
	})

	t.Run("release then acquire by another", func(t *testing.T) {
		l, _ := setup(t)
		acquire(t, l, nb, me)
		// A stale owner's Release must not free someone else's lease.
		if err := l.Release(ctx, nb.ID, other); err != nil {
			t.Fatalf("Release by non-holder: %v", err)
		}
		if _, err := l.Acquire(ctx, nb, other, testTTL); !errors.Is(err, locked(l)) {
			t.Fatalf("Acquire after non-holder Release: %v, want %v", err, locked(l))
		}
		if err := l.Release(ctx, nb.ID, me); err != nil {
			t.Fatalf("Release: %v", err)
		}
		acquire(t, l, nb, other)
		if err := l.Renew(ctx, nb.ID, me, testTTL); !errors.Is(err, ledger.ErrLeaseLost) {
			t.Errorf("Renew by released owner: %v, want ErrLeaseLost", err)
		}
	})

	t.Run("same owner acquires again", func(t *testing.T) {
		l, _ := setup(t)
		b1 := acquire(t, l, nb, me)
		b2 := acquire(t, l, nb, me)
		if b1.Seq != b2.Seq {
			t.Errorf("seq %d then %d, want the same batch", b1.Seq, b2.Seq)
		}
	})

	t.Run("two handles on one ledger", func(t *testing.T) {
		db := s.newDB(t)
		l1, l2 := db.Open(t, Options{}), db.Open(t, Options{})
		acquire(t, l1, nb, me)
		if _, err := l2.Acquire(ctx, nb, other, testTTL); !errors.Is(err, locked(l2)) {
			t.Errorf("Acquire through second handle: %v, want %v", err, locked(l2))
		}
	})

	t.Run("a ready batch", func(t *testing.T) {
		db := s.newDB(t)
		c := newClock()
		l1, l2 := db.Open(t, Options{Now: c.now}), db.Open(t, Options{Now: c.now})
		b := seedRows(t, l1, "ready", 4)
		acquire(t, l1, ledger.NewBatch{ID: b.ID}, me)
		_, err := l2.Acquire(ctx, ledger.NewBatch{ID: b.ID}, other, testTTL)
		if !l1.Shared() {
			if !errors.Is(err, ledger.ErrBatchLocked) {
				t.Errorf("second run of a ready batch: %v, want ErrBatchLocked", err)
			}
			return
		}
		// Shared: the second process joins, each with a lease of its own,
		// and each claims rows no other has.
		if err != nil {
			t.Fatalf("second process joining: %v", err)
		}
		for _, o := range []ledger.Owner{me, other} {
			if err := l1.Renew(ctx, b.ID, o, testTTL); err != nil {
				t.Errorf("Renew(%s): %v", o.ID, err)
			}
		}
		w1, w2 := writerOf(t, l1, b.Seq, me), writerOf(t, l2, b.Seq, other)
		got1, got2 := dispatch(t, w1, 2, 3, 4), dispatch(t, w2, 3, 4, 5)
		if !reflect.DeepEqual(got1, []int{2, 3, 4}) || !reflect.DeepEqual(got2, []int{5}) {
			t.Errorf("claims: %v and %v, want [2 3 4] and [5]", got1, got2)
		}
		// A row in flight moves only for the process that claimed it.
		record(t, w2, ledger.Update{Line: 3, To: ledger.StateSuccess, Code: 1})
		flush(t, w2)
		if err := w2.Refused(); !errors.Is(err, ledger.ErrTransition) {
			t.Errorf("another's claimed row: Refused = %v, want ErrTransition", err)
		}
		// One process's recovery leaves the live other's rows alone, and
		// takes over the dead one's once its lease expires.
		if rec, err := l1.RecoverInflight(ctx, b.Seq, me); err != nil || rec.Rows != 0 || len(rec.From) != 0 {
			t.Errorf("RecoverInflight with both alive = %+v, %v; want nothing", rec, err)
		}
		c.advance(testTTL / 2)
		if err := l1.Renew(ctx, b.ID, me, testTTL); err != nil {
			t.Fatal(err)
		}
		c.advance(testTTL/2 + time.Second)
		rec, err := l1.RecoverInflight(ctx, b.Seq, me)
		if err != nil || rec.Rows != 1 {
			t.Errorf("RecoverInflight after the other's lease expired = %d, %v; want 1 (line 5)", rec.Rows, err)
		}
		// The log names whose lease was ended, and when it ran out.
		if len(rec.From) != 1 || rec.From[0].Host != other.Host || rec.From[0].PID != other.PID ||
			!rec.From[0].Until.Before(c.now()) || rec.From[0].Until.Before(c.now().Add(-testTTL)) {
			t.Errorf("RecoverInflight ended %+v at %v; want pid %d on %s, its lease run out in the last %v",
				rec.From, c.now(), other.PID, other.Host, testTTL)
		}
		if st := getRow(t, l1, b.Seq, 5).State; st != ledger.StateUnknown {
			t.Errorf("the dead process's line 5: %s, want unknown", st)
		}
		if err := l2.Renew(ctx, b.ID, other, testTTL); !errors.Is(err, ledger.ErrLeaseLost) {
			t.Errorf("the taken-over process's Renew: %v, want ErrLeaseLost", err)
		}
		for _, line := range []int{2, 3, 4} {
			if st := getRow(t, l1, b.Seq, line).State; st != ledger.StateInflight {
				t.Errorf("the live process's line %d: %s, want inflight", line, st)
			}
		}
	})
}
