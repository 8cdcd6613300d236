package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

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
	if postgres.IsURL(location) {
		return postgres.Open(ctx, location, postgres.Options{AbandonAfter: abandonAfter(o.leaseTTL)})
	}
	if !o.create {
		if _, err := os.Stat(location); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("no ledger at %s: pass --ledger FILE or set AOPBATCH_LEDGER", location)
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

// abandonAfter is how long a PostgreSQL ledger lets a transaction of a
// process whose lease is leaseTTL sit idle before it ends it.
func abandonAfter(leaseTTL time.Duration) time.Duration {
	return max(postgres.AbandonTx, leaseTTL)
}

// check refuses the options openLedger would refuse, before anything is
// created: a run checks them with its other settings.
func (o ledgerOptions) check(location string) error {
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
