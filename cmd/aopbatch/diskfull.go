package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/aopbatch/aopbatch/batch"
	"github.com/aopbatch/aopbatch/ledger"
	"github.com/aopbatch/aopbatch/ledger/postgres"
)

// explainLedgerStop makes a run stopped by a failed ledger write name the
// ledger and, when it can be found, why it could not be written: SQLite
// says only "disk I/O error" or "database or disk is full". A PostgreSQL
// ledger (named by its URL) has no file to look at: the server is named.
// Other errors pass unchanged.
func explainLedgerStop(name string, err error) error {
	var stop *batch.StopError
	if !errors.As(err, &stop) || stop.Reason != batch.StopLedger {
		return err
	}
	if postgres.IsURL(name) {
		return &batch.StopError{Reason: stop.Reason, Before: stop.Before,
			Detail: fmt.Sprintf("the ledger %s could not be written (%s)", postgres.Redact(name), stop.Detail),
			Hint:   "check the database server and the connection to it, then run the same command again to resume: rows in flight are checked with the provider first"}
	}
	abs := absPath(name)
	why := ledgerWriteCause(abs)
	if why == "" {
		why = "see the error below"
	}
	return &batch.StopError{Reason: stop.Reason, Before: stop.Before,
		Detail: fmt.Sprintf("the ledger %s could not be written: %s (%s)", abs, why, stop.Detail),
		Hint:   "make room, then run the same command again to resume: rows in flight are checked with the provider first"}
}

// explainKnownRefs names the ledger in a stop for a file sent before
// (batch.StopKnownRefs): which ledger is the wrong one is what a person
// must find out, and the batch this run recorded in it can be dropped.
func explainKnownRefs(name string, b ledger.Batch, err error) error {
	var stop *batch.StopError
	if !errors.As(err, &stop) || stop.Reason != batch.StopKnownRefs {
		return err
	}
	if postgres.IsURL(name) {
		name = postgres.Redact(name)
	}
	s := *stop
	s.Hint = fmt.Sprintf("this run's ledger is %s; %s. "+
		"While nothing of the batch was sent from it, aopbatch ledger drop --ledger %s --batch %s removes it", name, stop.Hint, name, b.ID)
	return &s
}

// ledgerWriteCause looks for why the ledger at path cannot be written: a
// file size limit reached, a full disk, a file or directory not writable.
// "" when none is found.
func ledgerWriteCause(path string) string {
	if limit, ok := fileSizeLimit(); ok {
		// SQLite writes a page at a time: a file within a page or so of
		// the limit could not take the next one.
		var sizes []string
		at := false
		for _, p := range []string{path, path + "-wal", path + "-journal"} {
			if fi, err := os.Stat(p); err == nil {
				sizes = append(sizes, filepath.Base(p)+" "+humanBytes(fi.Size()))
				at = at || fi.Size() >= int64(limit)-64<<10
			}
		}
		if at {
			return fmt.Sprintf("its files cannot grow past the file size limit (ulimit -f) of %s (%s): file too large",
				humanBytes(int64(limit)), strings.Join(sizes, ", "))
		}
	}
	if free, ok := freeBytes(filepath.Dir(path)); ok && free < 1<<20 {
		return fmt.Sprintf("the disk holding it is full (%s free)", humanBytes(free))
	}
	for _, p := range []string{path, path + "-wal", filepath.Dir(path)} {
		if err := writable(p); err != nil {
			return fmt.Sprintf("%s is not writable: %v", p, err)
		}
	}
	return ""
}
