package ledger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

const testTTL = time.Minute

// clock is a settable clock for Options.Now, safe for concurrent use.
type clock struct{ ms atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ms.Store(time.Date(2025, 3, 14, 9, 26, 53, 0, time.UTC).UnixMilli())
	return c
}

func (c *clock) now() time.Time          { return time.UnixMilli(c.ms.Load()) }
func (c *clock) advance(d time.Duration) { c.ms.Add(d.Milliseconds()) }

// openLedger opens a fresh ledger in a temporary directory.
func openLedger(t *testing.T, o Options) *Ledger {
	t.Helper()
	return openAt(t, filepath.Join(t.TempDir(), "ledger.db"), o)
}

// openAt opens the ledger at path and closes it when the test ends.
func openAt(t *testing.T, path string, o Options) *Ledger {
	t.Helper()
	l, err := Open(context.Background(), path, o)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// rawDB opens the ledger file directly, bypassing package ledger.
func rawDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatalf("sql.Open(%s): %v", path, err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func userVersion(t *testing.T, path string) int {
	t.Helper()
	var v int
	if err := rawDB(t, path).QueryRow("PRAGMA user_version").Scan(&v); err != nil {
		t.Fatalf("read user_version: %v", err)
	}
	return v
}

func integrityCheck(t *testing.T, path string) {
	t.Helper()
	var got string
	if err := rawDB(t, path).QueryRow("PRAGMA integrity_check").Scan(&got); err != nil {
		t.Fatalf("integrity_check: %v", err)
	}
	if got != "ok" {
		t.Fatalf("integrity_check = %q, want ok", got)
	}
}

func fileMode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("stat: %v", err)
	}
	return fi.Mode().Perm()
}

func migrationCount(t *testing.T) int {
	t.Helper()
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil || len(names) == 0 {
		t.Fatalf("no migrations embedded: %v", err)
	}
	return len(names)
}

// acquire takes the lease on a new or existing batch, failing the test on error.
func acquire(t *testing.T, l *Ledger, nb NewBatch, o Owner) Batch {
	t.Helper()
	b, err := l.Acquire(context.Background(), nb, o, testTTL)
	if err != nil {
		t.Fatalf("Acquire(%s, %s): %v", nb.ID, o.ID, err)
	}
	return b
}

// okRow is a valid row; its amount and account are derived from the line
// unless the caller overrides them.
func okRow(line int, ref string) IngestRow {
	return IngestRow{
		Line:        line,
		ReferenceID: ref,
		Operator:    int64(1 + line%3),
		CANumber:    fmt.Sprintf("CA%06d", line),
		AmountPaise: int64(100 * line),
		Request:     []byte(fmt.Sprintf(`{"referenceid":%q,"amount":%d}`, ref, line)),
	}
}

// rowsFor builds n valid rows, lines 2..n+1 (line 1 is the header), with
// referenceids prefixed by prefix.
func rowsFor(prefix string, n int) []IngestRow {
	rs := make([]IngestRow, n)
	for i := range rs {
		rs[i] = okRow(i+2, fmt.Sprintf("%s-%d", prefix, i+2))
	}
	return rs
}

// beginIngest creates batch id under a fresh owner's lease and starts
// ingesting it.
func beginIngest(t *testing.T, l *Ledger, id string) (*Ingest, Batch, Owner) {
	t.Helper()
	o := NewOwner("ingest-" + id)
	b := acquire(t, l, NewBatch{ID: id, ContentHash: "hash-" + id}, o)
	in, err := l.BeginIngest(context.Background(), b, o, testTTL)
	if err != nil {
		t.Fatalf("BeginIngest(%s): %v", id, err)
	}
	return in, b, o
}

// ingest creates batch id, adds rows, finishes it and returns it ready,
// with the state Add gave each row.
func ingest(t *testing.T, l *Ledger, id string, rows []IngestRow) (Batch, []State) {
	t.Helper()
	ctx := context.Background()
	in, _, o := beginIngest(t, l, id)
	states := make([]State, len(rows))
	for i, r := range rows {
		s, _, err := in.Add(ctx, r)
		if err != nil {
			t.Fatalf("Add(line %d): %v", r.Line, err)
		}
		states[i] = s
	}
	if err := in.Finish(ctx); err != nil {
		t.Fatalf("Finish(%s): %v", id, err)
	}
	if err := l.Release(ctx, id, o); err != nil {
		t.Fatalf("Release(%s): %v", id, err)
	}
	b, err := l.Batch(ctx, id)
	if err != nil {
		t.Fatalf("Batch(%s): %v", id, err)
	}
	return b, states
}

func getRow(t *testing.T, l *Ledger, seq int64, line int) Row {
	t.Helper()
	r, err := l.Row(context.Background(), seq, line)
	if err != nil {
		t.Fatalf("Row(%d): %v", line, err)
	}
	return r
}

func counts(t *testing.T, l *Ledger, seq int64) Counts {
	t.Helper()
	c, err := l.Counts(context.Background(), seq)
	if err != nil {
		t.Fatalf("Counts: %v", err)
	}
	return c
}

// deadPID returns the pid of a child process that has exited and been
// reaped, so no process has it (barring an unlikely reuse).
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("sleep", "0")
	if err := cmd.Run(); err != nil {
		t.Skipf("cannot run sleep: %v", err)
	}
	pid := cmd.Process.Pid
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Skipf("pid %d of exited child is in use again (kill: %v)", pid, err)
	}
	return pid
}

func TestOpen(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("creates private files", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "ledger.db")
		l := openAt(t, path, Options{})
		if got, want := fileMode(t, path), os.FileMode(0o600); got != want {
			t.Errorf("ledger mode = %v, want %v", got, want)
		}
		acquire(t, l, NewBatch{ID: "b1", ContentHash: "h"}, NewOwner("run"))
		for _, suffix := range []string{"-wal", "-shm"} {
			if got, want := fileMode(t, path+suffix), os.FileMode(0o600); got != want {
				t.Errorf("%s mode = %v, want %v", suffix, got, want)
			}
		}
		if got, want := l.Path(), path; got != want {
			t.Errorf("Path() = %q, want %q", got, want)
		}
		if err := l.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})

	t.Run("reopen applies no migration twice", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "ledger.db")
		l := openAt(t, path, Options{})
		acquire(t, l, NewBatch{ID: "b1", ContentHash: "h"}, NewOwner("run"))
		if err := l.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		for i := 0; i < 2; i++ {
			l := openAt(t, path, Options{Synchronous: "normal"})
			bs, err := l.Batches(ctx)
			if err != nil {
				t.Fatalf("Batches: %v", err)
			}
			if len(bs) != 1 || bs[0].ID != "b1" {
				t.Errorf("reopen %d: Batches = %+v, want just b1", i, bs)
			}
			if err := l.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
		}
		if got, want := userVersion(t, path), migrationCount(t); got != want {
			t.Errorf("user_version = %d, want %d", got, want)
		}
	})

	t.Run("newer schema refused", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "ledger.db")
		l := openAt(t, path, Options{})
		l.Close()
		newer := migrationCount(t) + 1
		if _, err := rawDB(t, path).Exec(fmt.Sprintf("PRAGMA user_version = %d", newer)); err != nil {
			t.Fatalf("set user_version: %v", err)
		}
		l, err := Open(ctx, path, Options{})
		if err == nil {
			l.Close()
			t.Fatal("Open of a newer ledger succeeded, want an error")
		}
		for _, want := range []string{path, fmt.Sprintf("schema version %d", newer), "upgrade aopbatch"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not mention %q", err, want)
			}
		}
		if got := userVersion(t, path); got != newer {
			t.Errorf("user_version after refused Open = %d, want %d (untouched)", got, newer)
		}
	})

	t.Run("bad options", func(t *testing.T) {
		dir := t.TempDir()
		for _, tc := range []struct {
			name string
			path string
			o    Options
		}{
			{"empty path", "", Options{}},
			{"synchronous OFF", filepath.Join(dir, "a.db"), Options{Synchronous: "OFF"}},
			{"missing directory", filepath.Join(dir, "nope", "a.db"), Options{}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				l, err := Open(ctx, tc.path, tc.o)
				if err == nil {
					l.Close()
					t.Fatal("Open succeeded, want an error")
				}
			})
		}
	})

	t.Run("path with URI characters", func(t *testing.T) {
		dir := t.TempDir()
		name := "my ledger #1?x=y%20z.db"
		l := openAt(t, filepath.Join(dir, name), Options{})
		acquire(t, l, NewBatch{ID: "b1", ContentHash: "h"}, NewOwner("run"))
		if err := l.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if !strings.HasPrefix(e.Name(), name) {
				t.Errorf("stray file %q: the DSN did not name the ledger file", e.Name())
			}
		}
		l = openAt(t, filepath.Join(dir, name), Options{})
		if _, err := l.Batch(ctx, "b1"); err != nil {
			t.Errorf("reopen: Batch(b1): %v", err)
		}
	})
}

// TestSchemaStates checks the live schema's state CHECK accepts exactly the
// State constants.
func TestSchemaStates(t *testing.T) {
	t.Parallel()
	l := openLedger(t, Options{})
	db := rawDB(t, l.Path())
	if _, err := db.Exec(`INSERT INTO batches (seq, id, content_hash, status, created_ms) VALUES (1, 'b', 'h', 'ready', 0)`); err != nil {
		t.Fatal(err)
	}
	insert := func(line int, s string) error {
		_, err := db.Exec(`INSERT INTO rows (batch, line, referenceid, request, state, updated_ms) VALUES (1, ?, ?, '{}', ?, 0)`,
			line, fmt.Sprint("r", line), s)
		return err
	}
	// A row that may be sent needs its body, or the referenceid index
	// (which covers the rows with one) would not hold its referenceid.
	if _, err := db.Exec(`INSERT INTO rows (batch, line, referenceid, state, updated_ms) VALUES (1, 99, 'nobody', 'queued', 0)`); err == nil {
		t.Error("the schema accepts a queued row without a request body")
	}
	if _, err := db.Exec(`INSERT INTO rows (batch, line, referenceid, raw, state, updated_ms) VALUES (1, 98, 'r98', '[]', 'rejected', 0)`); err != nil {
		t.Errorf("the schema refuses a rejected row without a body: %v", err)
	}
	for i, s := range States {
		if !s.Valid() {
			t.Errorf("%s.Valid() = false", s)
		}
		if err := insert(i+2, string(s)); err != nil {
			t.Errorf("the schema refuses state %s: %v", s, err)
		}
	}
	for i, s := range []string{"bogus", "Queued", "", "queued "} {
		if err := insert(100+i, s); err == nil {
			t.Errorf("the schema accepts state %q", s)
		}
	}
	if State("bogus").Valid() {
		t.Error(`State("bogus").Valid() = true`)
	}
}

// A ledger written before migration 0002 keeps its rows, and its
// referenceids stay held, through the rebuild of the rows table.
func TestMigrateRowsV1(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "v1.db")
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	v1, err := migrations.ReadFile("migrations/0001_init.sql")
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{string(v1), "PRAGMA user_version = 1",
		`INSERT INTO batches (seq, id, content_hash, status, created_ms) VALUES (1, 'old', 'h', 'ready', 0)`,
		`INSERT INTO rows (batch, line, referenceid, amount_paise, request, state, message, updated_ms)
			VALUES (1, 2, 'R2', 500, '{"referenceid":"R2"}', 'success', 'done', 7)`,
		`INSERT INTO rows (batch, line, referenceid, raw, state, error_code, updated_ms)
			VALUES (1, 3, 'R2', '["x"]', 'rejected', 'duplicate_referenceid', 8)`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	db.Close()

	l := openAt(t, path, Options{})
	if got, want := userVersion(t, path), migrationCount(t); got != want {
		t.Fatalf("user_version = %d, want %d", got, want)
	}
	if r := getRow(t, l, 1, 2); r.State != StateSuccess || r.AmountPaise != 500 || r.Message != "done" ||
		string(r.Request) != `{"referenceid":"R2"}` {
		t.Errorf("line 2 after the migration: %+v", r)
	}
	if r := getRow(t, l, 1, 3); r.State != StateRejected || r.ErrorCode != "duplicate_referenceid" || r.Raw[0] != "x" {
		t.Errorf("line 3 after the migration: %+v", r)
	}
	// R2 is still held: a new batch's row with it is a conflict.
	_, states := ingest(t, l, "new", []IngestRow{okRow(2, "R2"), okRow(3, "R3")})
	if states[0] != StateConflict || states[1] != StateQueued {
		t.Errorf("states after the migration: %v, want [conflict queued]", states)
	}
	integrityCheck(t, path)
}

func TestAcquire(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	nb := NewBatch{ID: "b1", ContentHash: "h1", Source: "pay.csv", Header: []string{"operator", "canumber", "amount"}}
	me := NewOwner("run-a")
	other := NewOwner("run-b") // this very process: alive

	setup := func(t *testing.T) (*Ledger, *clock) {
		t.Helper()
		c := newClock()
		return openLedger(t, Options{Now: c.now}), c
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

	t.Run("same id different content", func(t *testing.T) {
		l, _ := setup(t)
		acquire(t, l, nb, me)
		l.Release(ctx, nb.ID, me)
		changed := nb
		changed.ContentHash = "h2"
		_, err := l.Acquire(ctx, changed, me, testTTL)
		if !errors.Is(err, ErrBatchMismatch) {
			t.Errorf("Acquire with other hash: %v, want ErrBatchMismatch", err)
		}
	})

	t.Run("live owner with unexpired lease", func(t *testing.T) {
		l, c := setup(t)
		acquire(t, l, nb, me)
		c.advance(testTTL - time.Second)
		_, err := l.Acquire(ctx, nb, other, testTTL)
		if !errors.Is(err, ErrBatchLocked) {
			t.Fatalf("Acquire by other: %v, want ErrBatchLocked", err)
		}
		if !strings.Contains(err.Error(), fmt.Sprint(os.Getpid())) {
			t.Errorf("error %q does not name the holder's pid", err)
		}
		if err := l.Renew(ctx, nb.ID, me, testTTL); err != nil {
			t.Errorf("Renew by holder after refused Acquire: %v", err)
		}
	})

	t.Run("holder on another host locks until expiry", func(t *testing.T) {
		l, c := setup(t)
		remote := Owner{ID: "remote", Host: "elsewhere.invalid", PID: 1}
		acquire(t, l, nb, remote)
		c.advance(testTTL - time.Millisecond)
		if _, err := l.Acquire(ctx, nb, me, testTTL); !errors.Is(err, ErrBatchLocked) {
			t.Fatalf("Acquire before expiry: %v, want ErrBatchLocked", err)
		}
		c.advance(2 * time.Millisecond)
		acquire(t, l, nb, me)
	})

	t.Run("expired lease is taken over", func(t *testing.T) {
		l, c := setup(t)
		acquire(t, l, nb, me)
		c.advance(testTTL + time.Millisecond)
		acquire(t, l, nb, other)
		if err := l.Renew(ctx, nb.ID, me, testTTL); !errors.Is(err, ErrLeaseLost) {
			t.Errorf("Renew by stale owner: %v, want ErrLeaseLost", err)
		}
		if err := l.Renew(ctx, nb.ID, other, testTTL); err != nil {
			t.Errorf("Renew by new owner: %v", err)
		}
	})

	t.Run("dead holder on this host is taken over at once", func(t *testing.T) {
		l, _ := setup(t)
		dead := Owner{ID: "crashed", Host: me.Host, PID: deadPID(t)}
		acquire(t, l, nb, dead)
		acquire(t, l, nb, me)
		if err := l.Renew(ctx, nb.ID, dead, testTTL); !errors.Is(err, ErrLeaseLost) {
			t.Errorf("Renew by dead owner: %v, want ErrLeaseLost", err)
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
		if _, err := l.Acquire(ctx, nb, other, testTTL); !errors.Is(err, ErrBatchLocked) {
			t.Errorf("Acquire after renewals: %v, want ErrBatchLocked", err)
		}
	})

	t.Run("renew of unknown batch", func(t *testing.T) {
		l, _ := setup(t)
		if err := l.Renew(ctx, "nope", me, testTTL); !errors.Is(err, ErrLeaseLost) {
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
		if _, err := l.Acquire(ctx, nb, other, testTTL); !errors.Is(err, ErrBatchLocked) {
			t.Fatalf("Acquire after non-holder Release: %v, want ErrBatchLocked", err)
		}
		if err := l.Release(ctx, nb.ID, me); err != nil {
			t.Fatalf("Release: %v", err)
		}
		acquire(t, l, nb, other)
		if err := l.Renew(ctx, nb.ID, me, testTTL); !errors.Is(err, ErrLeaseLost) {
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

	t.Run("two ledgers on one file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "ledger.db")
		l1 := openAt(t, path, Options{})
		l2 := openAt(t, path, Options{})
		acquire(t, l1, nb, me)
		if _, err := l2.Acquire(ctx, nb, other, testTTL); !errors.Is(err, ErrBatchLocked) {
			t.Errorf("Acquire through second handle: %v, want ErrBatchLocked", err)
		}
	})
}

func TestCanMove(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		from, to State
		want     bool
	}{
		{StateQueued, StateInflight, true},
		{StateUnknown, StateInflight, true},
		{StateInflight, StateSuccess, true},
		{StateInflight, StateUnknown, true},
		{StateInflight, StateQueued, true},
		{StateHeld, StateQueued, true},
		{StateQueued, StateHeld, true},
		{StatePending, StateSuccess, true},
		{StateDuplicate, StateFailed, true},
		{StateUnknown, StateRefunded, true},
		{StateSuccess, StateRefunded, true},
		{StateQueued, StateSuccess, false},
		{StateSuccess, StateQueued, false},
		{StateSuccess, StateInflight, false},
		{StateSuccess, StateFailed, false},
		{StateFailed, StateQueued, false},
		{StateFailed, StateInflight, false},
		{StateRefunded, StateSuccess, false},
		{StateRejected, StateQueued, false},
		{StateConflict, StateInflight, false},
		{StatePending, StateQueued, false},
		{StateUnknown, StateQueued, false},
		{StateDuplicate, StateQueued, false},
		{StateHeld, StateInflight, false},
	} {
		t.Run(fmt.Sprintf("%s to %s", tc.from, tc.to), func(t *testing.T) {
			if got := CanMove(tc.from, tc.to); got != tc.want {
				t.Errorf("CanMove(%s, %s) = %v, want %v", tc.from, tc.to, got, tc.want)
			}
		})
	}

	t.Run("final states stay final", func(t *testing.T) {
		for _, from := range States {
			if !from.Final() {
				continue
			}
			for _, to := range States {
				want := from == StateSuccess && to == StateRefunded
				if got := CanMove(from, to); got != want {
					t.Errorf("CanMove(%s, %s) = %v, want %v", from, to, got, want)
				}
			}
		}
	})

	t.Run("nothing reached by the provider goes back to queued", func(t *testing.T) {
		for _, from := range States {
			want := from == StateInflight || from == StateHeld
			if got := CanMove(from, StateQueued); got != want {
				t.Errorf("CanMove(%s, queued) = %v, want %v", from, got, want)
			}
		}
	})
}
