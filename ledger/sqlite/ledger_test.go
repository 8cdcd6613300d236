package sqlite

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
	"syscall"
	"testing"
	"time"

	"github.com/aopbatch/aopbatch/ledger"
	"github.com/aopbatch/aopbatch/ledger/ledgertest"
)

const testTTL = time.Minute

// openLedger opens a fresh ledger in a temporary directory.
func openLedger(t *testing.T, o Options) *Store {
	t.Helper()
	return openAt(t, filepath.Join(t.TempDir(), "ledger.db"), o)
}

// openAt opens the ledger at path and closes it when the test ends.
func openAt(t *testing.T, path string, o Options) *Store {
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
func acquire(t *testing.T, l *Store, nb ledger.NewBatch, o ledger.Owner) ledger.Batch {
	t.Helper()
	b, err := l.Acquire(context.Background(), nb, o, testTTL)
	if err != nil {
		t.Fatalf("Acquire(%s, %s): %v", nb.ID, o.ID, err)
	}
	return b
}

// okRow is a valid row; its amount and account are derived from the line
// unless the caller overrides them.
func okRow(line int, ref string) ledger.IngestRow {
	return ledger.IngestRow{
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
func rowsFor(prefix string, n int) []ledger.IngestRow {
	rs := make([]ledger.IngestRow, n)
	for i := range rs {
		rs[i] = okRow(i+2, fmt.Sprintf("%s-%d", prefix, i+2))
	}
	return rs
}

// beginIngest creates batch id under a fresh owner's lease and starts
// ingesting it.
func beginIngest(t *testing.T, l *Store, id string) (ledger.Ingest, ledger.Batch, ledger.Owner) {
	t.Helper()
	o := ledger.NewOwner("ingest-" + id)
	b := acquire(t, l, ledger.NewBatch{ID: id, ContentHash: "hash-" + id}, o)
	in, err := l.BeginIngest(context.Background(), b, o, testTTL)
	if err != nil {
		t.Fatalf("BeginIngest(%s): %v", id, err)
	}
	return in, b, o
}

// ingest creates batch id, adds rows, finishes it and returns it ready,
// with the state Add gave each row.
func ingest(t *testing.T, l *Store, id string, rows []ledger.IngestRow) (ledger.Batch, []ledger.State) {
	t.Helper()
	ctx := context.Background()
	in, _, o := beginIngest(t, l, id)
	states := make([]ledger.State, len(rows))
	for i, r := range rows {
		a, err := in.AddMany(ctx, []ledger.IngestRow{r})
		if err != nil {
			t.Fatalf("Add(line %d): %v", r.Line, err)
		}
		states[i] = a[0].State
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

func getRow(t *testing.T, l *Store, seq int64, line int) ledger.Row {
	t.Helper()
	r, err := l.Row(context.Background(), seq, line)
	if err != nil {
		t.Fatalf("Row(%d): %v", line, err)
	}
	return r
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
		acquire(t, l, ledger.NewBatch{ID: "b1", ContentHash: "h"}, ledger.NewOwner("run"))
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
		acquire(t, l, ledger.NewBatch{ID: "b1", ContentHash: "h"}, ledger.NewOwner("run"))
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
				// Refused, it leaves no empty ledger behind.
				if _, err := os.Lstat(tc.path); tc.path != "" && !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s left behind (%v)", tc.path, err)
				}
			})
		}
	})

	t.Run("path with URI characters", func(t *testing.T) {
		dir := t.TempDir()
		name := "my ledger #1?x=y%20z.db"
		l := openAt(t, filepath.Join(dir, name), Options{})
		acquire(t, l, ledger.NewBatch{ID: "b1", ContentHash: "h"}, ledger.NewOwner("run"))
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
	for i, s := range ledger.States {
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
	if ledger.State("bogus").Valid() {
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
	if r := getRow(t, l, 1, 2); r.State != ledger.StateSuccess || r.AmountPaise != 500 || r.Message != "done" ||
		string(r.Request) != `{"referenceid":"R2"}` {
		t.Errorf("line 2 after the migration: %+v", r)
	}
	if r := getRow(t, l, 1, 3); r.State != ledger.StateRejected || r.ErrorCode != "duplicate_referenceid" || r.Raw[0] != "x" {
		t.Errorf("line 3 after the migration: %+v", r)
	}
	// R2 is still held: a new batch's row with it is a conflict.
	_, states := ingest(t, l, "new", []ledger.IngestRow{okRow(2, "R2"), okRow(3, "R3")})
	if states[0] != ledger.StateConflict || states[1] != ledger.StateQueued {
		t.Errorf("states after the migration: %v, want [conflict queued]", states)
	}
	integrityCheck(t, path)
}

// The SQLite store knows its holders' host and pid: a holder that died on
// this host is taken over at once, and a refusal names the holder.
func TestAcquireOnThisHost(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	nb := ledger.NewBatch{ID: "b1", ContentHash: "h1"}
	me := ledger.NewOwner("run-a")
	other := ledger.NewOwner("run-b") // this very process: alive

	t.Run("a refusal names the live holder's pid", func(t *testing.T) {
		l := openLedger(t, Options{})
		acquire(t, l, nb, me)
		_, err := l.Acquire(ctx, nb, other, testTTL)
		if !errors.Is(err, ledger.ErrBatchLocked) {
			t.Fatalf("Acquire by other: %v, want ErrBatchLocked", err)
		}
		if !strings.Contains(err.Error(), fmt.Sprint(os.Getpid())) {
			t.Errorf("error %q does not name the holder's pid", err)
		}
	})

	t.Run("dead holder on this host is taken over at once", func(t *testing.T) {
		l := openLedger(t, Options{})
		dead := ledger.Owner{ID: "crashed", Host: me.Host, PID: deadPID(t)}
		acquire(t, l, nb, dead)
		acquire(t, l, nb, me)
		if err := l.Renew(ctx, nb.ID, dead, testTTL); !errors.Is(err, ledger.ErrLeaseLost) {
			t.Errorf("Renew by dead owner: %v, want ErrLeaseLost", err)
		}
	})
}

// A new ledger has pageSize pages and is a WAL database; a file made with
// SQLite's default 4 KiB pages (every ledger before this) keeps them, the
// size cannot change under WAL, and opens as before.
func TestPageSize(t *testing.T) {
	t.Parallel()
	pragma := func(path, name string) string {
		t.Helper()
		var v string
		if err := rawDB(t, path).QueryRow("PRAGMA " + name).Scan(&v); err != nil {
			t.Fatalf("PRAGMA %s: %v", name, err)
		}
		return v
	}
	fresh := filepath.Join(t.TempDir(), "new.db")
	l := openAt(t, fresh, Options{})
	ingest(t, l, "b", []ledger.IngestRow{okRow(2, "P2")})
	if got := pragma(fresh, "page_size"); got != "16384" {
		t.Errorf("new ledger: page_size %s, want 16384", got)
	}
	if got := pragma(fresh, "journal_mode"); got != "wal" {
		t.Errorf("new ledger: journal_mode %s, want wal", got)
	}
	old := filepath.Join(t.TempDir(), "old.db")
	db, err := sql.Open("sqlite", "file:"+old)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("PRAGMA page_size = 4096; PRAGMA journal_mode = WAL"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	lo := openAt(t, old, Options{})
	ingest(t, lo, "b", []ledger.IngestRow{okRow(2, "P2")})
	if got := pragma(old, "page_size"); got != "4096" {
		t.Errorf("existing ledger: page_size %s, want 4096 kept", got)
	}
	integrityCheck(t, fresh)
	integrityCheck(t, old)
}

// Attempts logged before migration 0005 read back with no process (not
// known), and the ledger's next writer names its own.
func TestMigrateAttemptsWithoutProcess(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "v4.db")
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	var qs []string
	for _, name := range []string{"0001_init.sql", "0002_rows_cheaper_writes.sql", "0003_claims_name_their_owner.sql", "0004_archived_batches.sql"} {
		body, err := migrations.ReadFile("migrations/" + name)
		if err != nil {
			t.Fatal(err)
		}
		qs = append(qs, string(body))
	}
	qs = append(qs, "PRAGMA user_version = 4",
		`INSERT INTO batches (seq, id, content_hash, status, created_ms) VALUES (1, 'old', 'h', 'ready', 0)`,
		`INSERT INTO rows (batch, line, referenceid, amount_paise, request, state, updated_ms)
			VALUES (1, 2, 'R2', 500, '{"referenceid":"R2"}', 'pending', 7)`,
		`INSERT INTO attempts (batch, line, kind, at_ms, class, state) VALUES (1, 2, 'recharge', 5, 'pending', 'pending')`)
	for _, q := range qs {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	db.Close()

	l := openAt(t, path, Options{})
	ledgertest.MigratedAttemptsName(t, l, ledger.Owner{ID: "next", Host: "host-b.invalid", PID: 7})
	integrityCheck(t, path)
}
