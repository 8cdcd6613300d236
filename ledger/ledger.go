package ledger

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the pure-Go "sqlite" driver
)

// Sentinel errors callers branch on.
var (
	// ErrNoBatch means the ledger holds no batch by that id.
	ErrNoBatch = errors.New("no such batch")
	// ErrBatchMismatch means a batch id is reused for different content.
	ErrBatchMismatch = errors.New("batch id already used for a different file")
	// ErrBatchLocked means another live process holds the batch's lease.
	ErrBatchLocked = errors.New("batch is being run by another process")
	// ErrLeaseLost means this process no longer holds the batch's lease.
	ErrLeaseLost = errors.New("batch lease lost")
	// ErrAmbiguousBatch means a batch id is needed because the ledger holds several.
	ErrAmbiguousBatch = errors.New("ledger holds several batches")
	// ErrTransition means a row was not in a state that allows the change.
	ErrTransition = errors.New("row state does not allow this change")
)

//go:embed migrations/*.sql
var migrations embed.FS

// Ledger is the SQLite store of batches, rows and attempts. It has one
// writer connection (SQLite allows one writer at a time; serialising in
// database/sql beats lock retries) and a small pool of readers.
type Ledger struct {
	path string
	w    *sql.DB
	r    *sql.DB
	now  func() time.Time
}

// Options tune Open. The zero value is the safe default.
type Options struct {
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Synchronous is SQLite's synchronous pragma: "FULL" (default: a
	// commit survives power loss) or "NORMAL" (survives a process crash).
	Synchronous string
}

// Open opens (creating if needed, with mode 0600) the ledger at path and
// applies pending migrations.
func Open(ctx context.Context, path string, o Options) (*Ledger, error) {
	if path == "" {
		return nil, errors.New("open ledger: empty path")
	}
	// Create the file ourselves so it is private from the first byte; SQLite
	// gives the -wal and -shm files the same mode.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open ledger %s: %w", path, err)
	}
	f.Close()
	sync := strings.ToUpper(o.Synchronous)
	if sync == "" {
		sync = "FULL"
	}
	if sync != "FULL" && sync != "NORMAL" {
		return nil, fmt.Errorf("open ledger %s: synchronous must be FULL or NORMAL, not %q", path, o.Synchronous)
	}
	base := "file:" + (&url.URL{Path: path}).EscapedPath()
	if err := checkFile(ctx, path, base); err != nil {
		return nil, fmt.Errorf("open ledger %s: %w", path, err)
	}
	common := "_pragma=busy_timeout(5000)&_pragma=foreign_keys(1)&_pragma=synchronous(" + sync + ")"
	w, err := sql.Open("sqlite", base+"?"+common+"&_pragma=journal_mode(WAL)&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("open ledger %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	l := &Ledger{path: path, w: w, now: o.Now}
	if l.now == nil {
		l.now = time.Now
	}
	if err := l.migrate(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("open ledger %s: %w", path, err)
	}
	r, err := sql.Open("sqlite", base+"?"+common+"&_pragma=query_only(1)")
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open ledger %s: %w", path, err)
	}
	r.SetMaxOpenConns(4)
	l.r = r
	return l, nil
}

// Path is the file the ledger lives in.
func (l *Ledger) Path() string { return l.path }

// Close closes the ledger's connections.
func (l *Ledger) Close() error {
	err := l.r.Close()
	if e := l.w.Close(); err == nil {
		err = e
	}
	return err
}

func (l *Ledger) nowMS() int64 { return l.now().UnixMilli() }

// migrate applies the embedded migrations newer than user_version, each in
// its own transaction, so a ledger written by an older build upgrades in
// place and a newer one is refused rather than misread.
func (l *Ledger) migrate(ctx context.Context) error {
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	var version int
	if err := l.w.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if version > len(names) {
		return fmt.Errorf("schema version %d is newer than this aopbatch understands (%d): upgrade aopbatch", version, len(names))
	}
	for i := version; i < len(names); i++ {
		body, err := migrations.ReadFile(names[i])
		if err != nil {
			return err
		}
		tx, err := l.w.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("migrate %s: %w", names[i], err)
		}
		if _, err := tx.ExecContext(ctx, string(body)); err != nil {
			tx.Rollback()
			return fmt.Errorf("migrate %s: %w", names[i], err)
		}
		if _, err := tx.ExecContext(ctx, "PRAGMA user_version = "+strconv.Itoa(i+1)); err != nil {
			tx.Rollback()
			return fmt.Errorf("migrate %s: %w", names[i], err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("migrate %s: %w", names[i], err)
		}
	}
	return nil
}
