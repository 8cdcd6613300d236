package main

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
)

// noteLedger logs, as a command's first log line, where its ledger is:
// the absolute path, and whether it is there yet. Run from cron, a
// relative --ledger (or the default aopbatch.db) lands in the job's
// working directory, often $HOME, and a night's batch in a fresh ledger
// there is a puzzle the next morning unless the log says so.
func noteLedger(log *slog.Logger, path string) {
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	fi, err := os.Stat(abs)
	switch {
	case err == nil:
		log.Info("ledger", "path", abs, "bytes", fi.Size())
	case os.IsNotExist(err):
		log.Info("ledger", "path", abs, "new", true)
	default:
		log.Info("ledger", "path", abs, "err", err)
	}
}

// textLog is the logger of a command without --log-format: text on stderr.
func textLog(stderr io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(stderr, nil))
}
