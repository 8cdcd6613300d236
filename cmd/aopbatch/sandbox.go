package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/aopbatch/aopbatch/batch/aop/aoptest"
)

const sandboxUsage = `Usage: aopbatch sandbox [--addr 127.0.0.1:8080] [flags]

Serve a local AOP-compatible API: Recharge, RechargeStatus,
FetchConsumerDetails, GET /api/AOP/Statement?from=RFC3339&to=RFC3339 (CSV)
and POST /sandbox/token. It de-duplicates referenceids (18), keeps a wallet
(16), has operators down (13) and limits (17), pending transactions that turn
final later, injects faults and, with --limit-rps, throttles as a real
provider does (429 with Retry-After); every decision is reproducible under
--seed.
Secrets come from the environment only: AOP_SANDBOX_TOKEN (a static bearer
token for --auth bearer) and AOP_JWT_SECRET (for --auth jwt).

Example:
  aopbatch sandbox --addr 127.0.0.1:8080 --seed 7 --wallet 5000 --down 12 \
    --pending-rate 0.1 --pending-delay 5s --fault-lost 0.01 --fault-429 0.02 \
    --latency 200ms --latency-jitter 200ms --limit-rps 150

Flags:
`

// runSandbox serves the sandbox until ctx is done, then shuts it down.
func runSandbox(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sandbox", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, sandboxUsage)
		fs.PrintDefaults()
	}
	addr := fs.String("addr", "127.0.0.1:8080", "listen address")
	public := fs.Bool("public", false, "allow an --addr that is not loopback")
	build := aoptest.FlagConfig(fs, os.Getenv)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("sandbox: unexpected argument %q", fs.Arg(0))
	}
	cfg, err := build()
	if err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	if !*public && !aoptest.IsLoopbackAddr(*addr) {
		return fmt.Errorf("sandbox: --addr %s is not a loopback address (add --public to serve on it)", *addr)
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("sandbox: listen: %w", err)
	}
	sb := aoptest.New(cfg)
	srv := &http.Server{Handler: sb, ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(stdout, "sandbox listening on http://%s\n", ln.Addr())

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("sandbox: serve: %w", err)
	case <-ctx.Done():
	}
	sb.ReleaseStalls()
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("sandbox: shut down: %w", err)
	}
	return nil
}
