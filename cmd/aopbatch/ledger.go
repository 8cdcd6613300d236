package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
	"unicode"

	"github.com/aopbatch/aopbatch/ledger"
	"github.com/aopbatch/aopbatch/ledger/postgres"
	"github.com/aopbatch/aopbatch/ledger/sqlite"
)

// ledgerOptions tune how a command opens its ledger.
type ledgerOptions struct {
	// create lets the ledger be made when it does not exist: only run
	// creates one, and no other command may leave an empty ledger behind
	// a typo.
	create bool
	// synchronous is SQLite's durability setting.
	synchronous string
	// leaseTTL is the run's --lease-ttl: a transaction of a process
	// paused for less than its lease is not ended for being idle.
	leaseTTL time.Duration
}

// openLedger opens the ledger at location: a postgres:// URL (a ledger
// shared by hosts), or a SQLite file path, the embedded default.
func openLedger(ctx context.Context, location string, o ledgerOptions) (ledger.Store, error) {
	if err := misreadLocation(location); err != nil {
		return nil, err
	}
	if postgres.IsURL(location) {
		return postgres.Open(ctx, location, postgres.Options{AbandonAfter: abandonAfter(o.leaseTTL)})
	}
	if !o.create {
		if _, err := os.Stat(location); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				// The path as the command resolved it: a relative --ledger
				// (or the default) is read from the working directory, which
				// is not the one meant when a job starts elsewhere.
				where := location
				if abs, err := filepath.Abs(location); err == nil {
					where = abs
				}
				return nil, fmt.Errorf("no ledger at %s: check --ledger or AOPBATCH_LEDGER (default aopbatch.db in the working directory); only aopbatch run creates a ledger", where)
			}
			return nil, fmt.Errorf("open ledger: %w", err)
		}
	}
	if isArchive(location) {
		if o.create {
			return nil, fmt.Errorf("%s is an archive made by aopbatch ledger archive: it is read, never written; name a ledger (a new SQLite file, or a postgres:// URL)", location)
		}
		return openArchive(ctx, location)
	}
	l, err := sqlite.Open(ctx, location, sqlite.Options{Synchronous: o.synchronous})
	if err != nil {
		return nil, ledgerTrouble(err)
	}
	return l, nil
}

// misreadLocation refuses a ledger location meant as a database that is
// not a postgres:// URL: another scheme, the scheme in capitals, a
// key=value connection string. Taken as a SQLite file name it would be
// created, and printed back with whatever password it holds. A file that
// is there already is a SQLite ledger whatever its name: were it refused,
// its batches could be neither resumed nor resolved nor copied out. A
// connection string starts with one of libpq's keywords; a path merely
// holding "dbname=" (a directory per database) is a path.
func misreadLocation(location string) error {
	if postgres.IsURL(location) {
		return nil
	}
	if fi, err := os.Stat(location); err == nil && fi.Mode().IsRegular() {
		return nil
	}
	switch {
	case strings.Contains(location, "://"):
		scheme, _, _ := strings.Cut(location, "://")
		if strings.ContainsFunc(scheme, func(r rune) bool { return !unicode.IsLetter(r) }) {
			scheme = "a" // not a scheme: what it holds is not repeated
		}
		return fmt.Errorf("ledger is a %s:// URL: a shared ledger's URL starts postgres:// or postgresql:// (in lower case); "+
			"a SQLite ledger is a file path", scheme)
	case conninfo.MatchString(location):
		return errors.New("ledger is a key=value connection string: name a shared ledger by a postgres:// URL " +
			"(its password in PGPASSWORD or ~/.pgpass), a new SQLite ledger by a file path (./ before a name that starts key=)")
	}
	return nil
}

// conninfo matches the start of a libpq key=value connection string.
var conninfo = regexp.MustCompile(`^\s*(?i:host|hostaddr|port|dbname|user|password|passfile|service|sslmode|options|application_name|connect_timeout|target_session_attrs)\s*=`)

// abandonAfter is how long a PostgreSQL ledger lets a transaction of a
// process whose lease is leaseTTL sit idle before it ends it.
func abandonAfter(leaseTTL time.Duration) time.Duration {
	return max(postgres.AbandonTx, leaseTTL)
}

// check refuses the options openLedger would refuse, before anything is
// created: a run checks them with its other settings.
func (o ledgerOptions) check(location string) error {
	if err := misreadLocation(location); err != nil {
		return err
	}
	if postgres.IsURL(location) {
		return nil
	}
	if _, err := sqlite.Synchronous(o.synchronous); err != nil {
		return fmt.Errorf("open ledger %s: %w", location, err)
	}
	return nil
}

// openLedgerFile opens a ledger that must already exist.
func openLedgerFile(ctx context.Context, location string) (ledger.Store, error) {
	return openLedger(ctx, location, ledgerOptions{})
}
