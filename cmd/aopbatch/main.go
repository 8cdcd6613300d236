// Command aopbatch sends CSV files of recharges and bill payments to the AOP
// Recharge API, records every row in a ledger (a SQLite file, or PostgreSQL
// shared by hosts) so a rerun resumes without paying twice, and reports the
// outcome. Run "aopbatch help".
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"sync/atomic"
	"syscall"
)

// Exit codes (SPEC section 4).
const (
	exitOK         = 0 // every row success
	exitStart      = 1 // nothing could start: usage, configuration, bad file, ledger error
	exitFinishedNo = 2 // every row final, some not success
	exitIncomplete = 3 // stopped, interrupted, or rows still unsettled: run again
)

// exitError carries the exit code a command wants; any other error is a
// start failure (exit 1).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return ""
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	// A reader that goes away (aopbatch run ... | head) must not kill a
	// run mid-way, as SIGPIPE does by default: writes to the pipe fail
	// instead, the run finishes, and its exit code says how. Notify, not
	// Ignore: an ignored signal stays ignored in the token command.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	go func() {
		s := <-sigs
		notice("finishing the requests in flight, then stopping (send the signal again to exit at once)", "signal", s.String())
		cancel()
		<-sigs
		// The ledger stays consistent: its commits are atomic, and rows
		// left inflight are checked with the provider on the next run.
		notice("second signal: exiting now; run again to resume")
		code := exitIncomplete
		if f := lastWords.Load(); f != nil {
			code = (*f)()
		}
		os.Exit(code)
	}()
	if os.Getenv("GOGC") == "" {
		// A run's live heap is a few MB whatever the file's size, so letting
		// it grow 4x instead of 2x between collections costs ~10 MB and
		// saves about a tenth of the CPU (make bench). A GOGC set by the
		// user wins.
		debug.SetGCPercent(400)
		if os.Getenv("GOMEMLIMIT") == "" {
			// But not 4x of an unusual live heap (64 workers each reading a
			// 1 MiB answer, say): past this soft limit the collector works
			// harder instead.
			debug.SetMemoryLimit(128 << 20)
		}
	}
	stopProfile := startProfile(os.Getenv("AOPBATCH_CPUPROFILE"))
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stopProfile()
	os.Exit(exitCode(err, os.Stderr))
}

// startProfile writes a CPU profile to path when it is set: how the
// benchmarks find where a run spends its time.
func startProfile(path string) func() {
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "aopbatch: cpu profile:", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		fmt.Fprintln(os.Stderr, "aopbatch: cpu profile:", err)
		f.Close()
		return func() {}
	}
	return func() { pprof.StopCPUProfile(); f.Close() }
}

// codeOf is the exit code err calls for, printing nothing.
func codeOf(err error) int {
	var ee *exitError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &ee):
		return ee.code
	}
	return exitStart
}

// notices, when set, gets the signal handler's messages instead of a text
// line on stderr: a command with JSON logs keeps stderr JSON.
var notices atomic.Pointer[slog.Logger]

// lastWords, when set, is called before a second signal ends the process
// at once, and gives its exit code: a run with JSON logs writes its
// summary line there, or keeps the code of the one it wrote.
var lastWords atomic.Pointer[func() int]

// notice tells the person at the terminal (or the log) what a signal does.
func notice(msg string, args ...any) {
	if l := notices.Load(); l != nil {
		l.Warn(msg, args...)
		return
	}
	fmt.Fprint(os.Stderr, "aopbatch: "+msg)
	for i := 0; i+1 < len(args); i += 2 {
		fmt.Fprintf(os.Stderr, " %v=%v", args[i], args[i+1])
	}
	fmt.Fprintln(os.Stderr)
}

// exitCode maps a command's error to the process exit code, printing it once.
func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return exitOK
	}
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil && ee.Error() != "" {
			fmt.Fprintln(stderr, "aopbatch:", ee.Error())
		}
		return ee.code
	}
	fmt.Fprintln(stderr, "aopbatch:", err)
	return exitStart
}

type command struct {
	name, summary string
	run           func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"run", "send a CSV file (rerunning the same file resumes it)", runRun},
		{"resolve", "ask the provider about pending, duplicate and unknown rows", runResolve},
		{"status", "list batches, or one batch's counts by state", runStatus},
		{"report", "write reports and reconcile against a provider statement", runReport},
		{"reconcile", "confirm a provider statement's disagreements with the provider and record them", runReconcile},
		{"export", "write the rows in one state as an input CSV", runExport},
		{"ledger", "copy batches between ledgers (SQLite, PostgreSQL); archive finished ones", runLedger},
		{"sandbox", "serve a local AOP-compatible API for trying things out", runSandbox},
		{"demo", "sandbox + sample file + run + report, nothing to set up", runDemo},
		{"version", "print the version, VCS revision and Go version (also --version)", runVersion},
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stdout)
		if len(args) == 0 {
			return &exitError{code: exitStart}
		}
		return nil
	}
	if args[0] == "--version" || args[0] == "-version" {
		return runVersion(ctx, args[1:], stdout, stderr)
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, args[1:], stdout, stderr)
		}
	}
	usage(stderr)
	return fmt.Errorf("unknown command %q", args[0])
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: aopbatch COMMAND [flags]")
	fmt.Fprintln(w)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run 'aopbatch COMMAND -h' for a command's flags. Try 'aopbatch demo'.")
	fmt.Fprintln(w, "Exit codes: 0 all rows succeeded; 1 nothing could start; 2 finished, some rows")
	fmt.Fprintln(w, "failed/refunded/rejected/conflict; 3 incomplete: run again to resume.")
}
