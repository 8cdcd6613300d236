package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"time"

	"github.com/aopbatch/aopbatch/batch"
	"github.com/aopbatch/aopbatch/ledger"
)

// resolveFlags are the resolve command's settings.
type resolveFlags struct {
	ledger, batchID string
	conn            connFlags
	logs            logFlags
	rep             endReports
	progress        string
	leaseTTL        time.Duration
}

func runResolve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f resolveFlags
	fs := newFlagSet("resolve", "resolve [--ledger FILE] [--batch ID] [flags]",
		"AOP_TOKEN=... aopbatch resolve --batch latest --base-url https://api.example.in --auth bearer", stderr)
	ledgerPath := ledgerFlag(fs)
	fs.StringVar(&f.batchID, "batch", "", "batch id, or latest (may be omitted when the ledger holds one batch)")
	f.conn.register(fs)
	f.logs.register(fs)
	f.rep.register(fs)
	fs.StringVar(&f.progress, "progress", "auto", "progress display: auto, always, never")
	fs.DurationVar(&f.leaseTTL, "lease-ttl", 30*time.Second, "how long the batch lock outlives a run that died on another host")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	f.ledger = *ledgerPath
	return f.logs.run(stderr, func(log *slog.Logger) error { return f.run(ctx, log, stdout, stderr) })
}

func (f *resolveFlags) run(ctx context.Context, log *slog.Logger, stdout, stderr io.Writer) error {
	noteLedger(log, f.ledger, false)
	f.conn.log = log
	if err := checkSession(f.progress, f.leaseTTL); err != nil {
		return start(err)
	}
	if err := f.rep.check(); err != nil {
		return start(err)
	}
	// The ledger and the batch first: without them there is nothing to
	// ask the provider about.
	l, err := openLedgerFile(ctx, f.ledger)
	if err != nil {
		return start(err)
	}
	defer l.Close()
	opened := ledgerFileInfo(f.ledger)
	b, err := l.Batch(ctx, f.batchID)
	if err != nil {
		return start(err)
	}
	if !b.Ready {
		return start(errors.New("batch " + b.ID + " was never fully recorded: run the file again with aopbatch run"))
	}
	if err := f.conn.check(); err != nil {
		return start(err)
	}
	cfg, err := f.conn.engineConfig(log)
	if err != nil {
		return start(err)
	}
	client, err := f.conn.client()
	if err != nil {
		return start(err)
	}
	sess, err := batch.Join(ctx, l, b, ledger.NewOwner(newRunID()), f.leaseTTL, log)
	if err != nil {
		return start(describeStartError("", err))
	}
	defer sess.Close(ctx)
	cfg.Owner = sess.Owner()
	eng := batch.New(l, client, cfg)
	sess.Start(ctx, eng)
	if _, err := sess.Recover(ctx); err != nil {
		return prepareError(err)
	}
	stopProgress := showProgress(ctx, f.logs.progressMode(f.progress), stderr, eng, log)
	rerr := eng.Resolve(ctx, b)
	rerr = eng.EnquireAfterStop(ctx, b, rerr) // a resend met the wallet's stop: the rest are still asked about
	stopProgress()
	st := eng.Stats()
	return ledgerKept(f.ledger, opened, finish(ctx, l, b, rerr, f.rep, f.logs, log, &st, stdout, stderr))
}
