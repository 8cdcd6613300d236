package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/aopbatch/aopbatch/ledger"
	"github.com/aopbatch/aopbatch/ledger/postgres"
	"github.com/aopbatch/aopbatch/ledger/sqlite"
)

// noteLedger logs, as a command's first log line, where its ledger is:
// the absolute path, and whether it is there yet. Run from cron, a
// relative --ledger (or the default aopbatch.db) lands in the job's
// working directory, often $HOME, and a night's batch in a fresh ledger
// there is a puzzle the next morning unless the log says so.
// A PostgreSQL ledger is named by its URL, without the password. Only
// run creates a ledger (creates): any other command refuses a missing
// file, and the error that follows names it; a line calling it new
// would say the opposite first.
func noteLedger(log *slog.Logger, path string, creates bool) {
	if misreadLocation(path) != nil {
		return // refused when it is opened, without what it holds
	}
	if postgres.IsURL(path) {
		log.Info("ledger", "url", postgres.Redact(path))
		// In AOPBATCH_LEDGER the password is the job's own; on the
		// command line every user of the host sees it (ps, /proc).
		if postgres.HasPassword(path) && path != os.Getenv("AOPBATCH_LEDGER") {
			log.Warn("the --ledger URL holds a password, which other users of this host can see in the process list; " +
				"put it in PGPASSWORD or ~/.pgpass instead")
		}
		return
	}
	abs := absPath(path)
	_, err := os.Stat(abs)
	switch {
	case err == nil:
		log.Info("ledger", "path", abs, "bytes", sqlite.FileSize(abs))
	case os.IsNotExist(err):
		if !creates {
			break
		}
		// run makes the file, not its directory: the open that follows
		// fails, and "new" would say the opposite first.
		if _, derr := os.Stat(filepath.Dir(abs)); derr != nil {
			log.Info("ledger", "path", abs, "err", derr)
		} else {
			log.Info("ledger", "path", abs, "new", true)
		}
	default:
		log.Info("ledger", "path", abs, "err", err)
	}
}

// heldLog is a logger whose lines wait until release, then go out in
// order to the logger it was made from, as every later line does.
type heldLog struct {
	mu       sync.Mutex
	released bool
	lines    []heldLine
}

type heldLine struct {
	h slog.Handler
	r slog.Record
}

// holdLog returns a logger writing to log's handler once release is
// called. run builds its provider client, which logs the credential it
// uses, before it names its ledger: a run refused for its settings must
// not call a ledger new that it never makes. The ledger's line stays the
// first all the same.
func holdLog(log *slog.Logger) (held *slog.Logger, release func()) {
	s := &heldLog{}
	return slog.New(heldHandler{log.Handler(), s}), s.release
}

func (s *heldLog) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.lines {
		_ = l.h.Handle(context.Background(), l.r)
	}
	s.lines, s.released = nil, true
}

type heldHandler struct {
	h slog.Handler
	s *heldLog
}

func (x heldHandler) Enabled(ctx context.Context, l slog.Level) bool { return x.h.Enabled(ctx, l) }

func (x heldHandler) Handle(ctx context.Context, r slog.Record) error {
	x.s.mu.Lock()
	if !x.s.released {
		x.s.lines = append(x.s.lines, heldLine{x.h, r.Clone()})
		x.s.mu.Unlock()
		return nil
	}
	x.s.mu.Unlock()
	return x.h.Handle(ctx, r)
}

func (x heldHandler) WithAttrs(a []slog.Attr) slog.Handler {
	return heldHandler{x.h.WithAttrs(a), x.s}
}

func (x heldHandler) WithGroup(name string) slog.Handler {
	return heldHandler{x.h.WithGroup(name), x.s}
}

// ledgerName names an open ledger for a person: a file's absolute path,
// or a URL without its password.
func ledgerName(l ledger.Reader) string {
	if postgres.IsURL(l.Location()) {
		return l.Location()
	}
	return absPath(l.Location())
}

// absPath is path made absolute, or path itself when that fails.
func absPath(path string) string {
	if abs, err := filepath.Abs(path); err == nil {
		return abs
	}
	return path
}

// textLog is the logger of a command without --log-format: text on stderr.
func textLog(stderr io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(stderr, nil))
}

// ledgerTrouble adds to an error from opening the ledger what a person
// can do about it.
func ledgerTrouble(err error) error {
	switch {
	case errors.Is(err, ledger.ErrCorrupt):
		return fmt.Errorf("%w; nothing was sent and the file is as it was: restore the ledger from a backup, "+
			"or move it aside (keep it: its rows say what was paid) and check the provider's statement before sending those files again", err)
	case errors.Is(err, ledger.ErrNotLedger):
		return fmt.Errorf("%w; nothing was sent and the file is as it was: check --ledger (or AOPBATCH_LEDGER)", err)
	case strings.Contains(err.Error(), "readonly database"):
		// SQLite's words for a directory it may not create its log in.
		return fmt.Errorf("%w: SQLite keeps a write-ahead log beside the ledger, so this user must be able to write in its "+
			"directory and the file, even to read it; nothing was sent", err)
	}
	return err
}
