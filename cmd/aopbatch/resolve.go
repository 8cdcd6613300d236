package main

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/aopbatch/aopbatch/batch"
	"github.com/aopbatch/aopbatch/ledger"
)

func runResolve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var (
		conn     connFlags
		logs     logFlags
		batchID  string
		rep      endReports
		progress string
		leaseTTL time.Duration
	)
	fs := newFlagSet("resolve", "resolve [--ledger FILE] [--batch ID] [flags]",
		"AOP_TOKEN=... aopbatch resolve --batch latest --base-url https://api.example.in --auth bearer", stderr)
	ledgerPath := ledgerFlag(fs)
	fs.StringVar(&batchID, "batch", "", "batch id, or latest (may be omitted when the ledger holds one batch)")
	conn.register(fs)
	logs.register(fs)
	rep.register(fs)
	fs.StringVar(&progress, "progress", "auto", "progress display: auto, always, never")
	fs.DurationVar(&leaseTTL, "lease-ttl", 30*time.Second, "how long the batch lock outlives a run that died on another host")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log, err := logs.logger(stderr)
	if err != nil {
		return start(err)
	}
	if err := conn.check(); err != nil {
		return start(err)
	}
	if err := checkSession(progress, leaseTTL); err != nil {
		return start(err)
	}
	cfg, err := conn.engineConfig(log)
	if err != nil {
		return start(err)
	}
	client, err := conn.client()
	if err != nil {
		return start(err)
	}
	l, err := openLedgerFile(ctx, *ledgerPath)
	if err != nil {
		return start(err)
	}
	defer l.Close()
	b, err := l.Batch(ctx, batchID)
	if err != nil {
		return start(err)
	}
	if !b.Ready {
		return start(errors.New("batch " + b.ID + " was never fully recorded: run the file again with aopbatch run"))
	}
	owner := ledger.NewOwner(newRunID())
	if _, err := l.Acquire(ctx, ledger.NewBatch{ID: b.ID}, owner, leaseTTL); err != nil {
		return start(describeStartError("", err))
	}
	defer func() { _ = l.Release(context.WithoutCancel(ctx), b.ID, owner) }()
	cfg.Owner = owner
	eng := batch.New(l, client, cfg)
	hb := heartbeat(ctx, l, b, owner, leaseTTL, eng, log)
	defer hb()
	if n, err := l.RecoverInflight(ctx, b.Seq, owner); err != nil {
		return start(err)
	} else if n > 0 {
		log.Warn("rows were in flight when a previous run ended; checking them with the provider", "rows", n)
	}
	stopProgress := showProgress(ctx, progress, stderr, eng, log)
	rerr := eng.Resolve(ctx, b)
	stopProgress()
	st := eng.Stats()
	return finish(ctx, l, b, rerr, rep, logs.format, &st, stdout, stderr)
}
