// Command aopbench measures aopbatch against its sandbox on loopback (issue
// 6, "the engine is never the bottleneck") and prints one Markdown table:
// the ceiling a bare HTTP client reaches, the rows per second of a real
// "aopbatch run", its peak memory on a small and a large file, how closely it
// keeps to --rate, how long a finished batch takes to resume, and the
// ledger's size per row. Then issue 13's runs against a provider as it
// really answers (slow, slowing down, throttling, or capped), with
// aopbatch's default flags; -providers runs only those.
//
// The sandbox runs in this process, with no latency, no faults and an
// unlimited wallet; aopbatch runs as a subprocess of a binary built first
// (or given with -bin), exactly as an operator would run it. Input files are
// generated into a temporary directory. Run it with "make bench", or
//
//	go run ./cmd/aopbench -scale 0.01 -only ceiling,engine
//
// for a quick look. The machine's load average is printed with the table:
// the numbers mean little on a loaded machine.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aopbatch/aopbatch/batch/aop"
	"github.com/aopbatch/aopbatch/batch/aop/aoptest"
	"github.com/aopbatch/aopbatch/ledger/postgres/pgtest"
)

// Sections, in the order they run and print.
const (
	secCeiling = "ceiling"
	secEngine  = "engine"
	secRSS     = "rss"
	secResume  = "resume"
	secLedger  = "ledger"
	secRate    = "rate"
	// Against a provider as it really answers (issue 13), default flags.
	secSlow      = "slow"      // 300 ms ± 100 ms at --rate 500
	secStep      = "step"      // latency 100 ms -> 1 s halfway, --rate 200
	secThrottle  = "throttle"  // the provider's own limit at 150/s, --rate 200
	secRandom429 = "random429" // 2% of requests answered 429, --rate 200
	secCap       = "cap"       // --max-in-flight 8 against 300 ms, --rate 100
)

var allSections = []string{secCeiling, secEngine, secRSS, secResume, secLedger, secRate,
	secSlow, secStep, secThrottle, secRandom429, secCap, secPostgres, secShared, secScaling}

// providerSections are the sections against a realistic provider; -providers
// runs only them.
var providerSections = []string{secSlow, secStep, secThrottle, secRandom429, secCap}

// Targets from issues 6 and 13 (a 2-core machine).
const (
	targetEngineRatio = 0.75      // engine rows/s over bare-client requests/s, whole process (issue 13)
	targetSendRatio   = 0.85      // the same, send phase only (issue 13)
	targetLargeRSS    = 100e6     // bytes, peak RSS of the large run
	targetRSSRatio    = 1.3       // large-run RSS over small-run RSS
	targetRateError   = 0.01      // achieved rate within 1% of --rate
	targetResume      = 3.0       // seconds to rerun a finished large batch
	burst             = 1         // passed to aopbatch --burst explicitly
	registrationID    = "AOP-554" // sent with every row
	aopbatchPkg       = "github.com/aopbatch/aopbatch/cmd/aopbatch"
	resolveTimeout    = "1s"     // nothing is pending: resolution ends at once
	maxStderrKept     = 16 << 10 // tail of a failed run's stderr shown
	sandboxShutdown   = 10 * time.Second
)

// config is what one harness run measures.
type config struct {
	Bin        string        // aopbatch binary; "" builds one into Dir
	Dir        string        // working directory; "" makes and removes a temporary one
	Workers    int           // --workers of every run, and the bare client's goroutines
	Scale      float64       // multiplies RowsRun, RowsSmall and RowsLarge
	RowsRun    int           // rows of the throughput run (and requests of the bare client)
	RowsSmall  int           // rows of the small peak-RSS run
	RowsLarge  int           // rows of the large run: peak RSS, resume, ledger size
	Rates      []float64     // --rate settings of the adherence runs
	RateWindow time.Duration // each adherence run sends rate × RateWindow rows
	Only       []string      // sections to run; empty means all
	Providers  bool          // only the provider sections
	CPUProfile string        // AOPBATCH_CPUPROFILE for the throughput run
	Rounds     int           // throughput runs, each between two bare-client runs
	Strict     bool          // return an error when a target is missed
	Progress   io.Writer     // what the harness is doing; nil discards it
}

func defaultConfig() config {
	return config{
		Workers:    64,
		Scale:      1,
		RowsRun:    200_000,
		RowsSmall:  100_000,
		RowsLarge:  1_000_000,
		Rates:      []float64{50, 500, 2000},
		RateWindow: 10 * time.Second,
		Rounds:     3,
	}
}

func main() {
	if report := os.Getenv(launchEnv); report != "" {
		os.Exit(launch(report, os.Args[1:]))
	}
	if os.Getenv(bareEnv) != "" {
		os.Exit(bareMain(os.Args[1:]))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, err := parseArgs(os.Args[1:], os.Stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "aopbench:", err)
		os.Exit(2)
	}
	cfg.Progress = os.Stderr
	if err := run(ctx, cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "aopbench:", err)
		os.Exit(1)
	}
}

func parseArgs(args []string, stderr io.Writer) (config, error) {
	cfg := defaultConfig()
	fs := flag.NewFlagSet("aopbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: aopbench [flags]\n\nexample:\n  go run ./cmd/aopbench -scale 0.01 -only ceiling,engine\n\nflags:\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&cfg.Bin, "bin", "", "aopbatch binary to measure (default: go build one into the work directory)")
	fs.StringVar(&cfg.Dir, "dir", "", "work directory for files, ledgers and each run's Recharge arrival times (NAME-arrivals.txt, ms), kept afterwards (default: a temporary one, removed)")
	fs.IntVar(&cfg.Workers, "workers", cfg.Workers, "aopbatch --workers, and the bare client's concurrency")
	fs.Float64Var(&cfg.Scale, "scale", cfg.Scale, "multiply every row count by this (0.001 for a smoke run)")
	fs.IntVar(&cfg.RowsRun, "rows-run", cfg.RowsRun, "rows of the throughput run and requests of the bare client, before -scale")
	fs.IntVar(&cfg.RowsSmall, "rows-small", cfg.RowsSmall, "rows of the small peak-RSS run, before -scale")
	fs.IntVar(&cfg.RowsLarge, "rows-large", cfg.RowsLarge, "rows of the large run (peak RSS, resume, ledger size), before -scale")
	rates := fs.String("rates", "50,500,2000", "comma-separated --rate settings of the adherence runs")
	fs.DurationVar(&cfg.RateWindow, "rate-window", cfg.RateWindow, "how long each adherence run sends (it gets rate × this many rows)")
	only := fs.String("only", "", "comma-separated sections to run: "+strings.Join(allSections, ","))
	fs.BoolVar(&cfg.Providers, "providers", false, "run only the sections against a realistic provider ("+strings.Join(providerSections, ",")+"), about 4 minutes; with -scale 0.2 about 1")
	fs.IntVar(&cfg.Rounds, "rounds", cfg.Rounds, "throughput runs of aopbatch, each between two runs of the bare client; the ratios are their medians")
	fs.StringVar(&cfg.CPUProfile, "cpuprofile-run", "", "write a CPU profile of the throughput run's aopbatch to this file")
	fs.BoolVar(&cfg.Strict, "strict", false, "exit 1 when a target is missed")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	cfg.Rates = nil
	for f := range strings.SplitSeq(*rates, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		r, err := strconv.ParseFloat(f, 64)
		if err != nil || r <= 0 {
			return cfg, fmt.Errorf("-rates: %q is not a positive number", f)
		}
		cfg.Rates = append(cfg.Rates, r)
	}
	if *only != "" {
		cfg.Only = strings.Split(*only, ",")
	}
	if cfg.Providers {
		if *only != "" {
			return cfg, errors.New("-providers and -only: use one")
		}
		cfg.Only = providerSections
	}
	return cfg, nil
}

// result is one line of the table.
type result struct {
	measure, value, target string
	ok                     *bool // nil: informational
}

// bench holds one harness run's state.
type bench struct {
	cfg     config
	dir     string
	bin     string
	logw    io.Writer
	results []result

	sqliteWhole float64        // the engine run's rows/s, for the PostgreSQL run's ratio
	pg          *pgtest.Server // the PostgreSQL sections' server, started on first use
	pgErr       error
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.logw, "aopbench: "+format+"\n", args...)
}

func (b *bench) add(measure, value string) {
	b.results = append(b.results, result{measure: measure, value: value})
}

func (b *bench) check(measure, value, target string, ok bool) {
	b.results = append(b.results, result{measure: measure, value: value, target: target, ok: &ok})
}

func (c config) rows(n int) int {
	return max(1, int(math.Round(float64(n)*c.Scale)))
}

// run measures every selected section and writes the table to stdout.
func run(ctx context.Context, cfg config, stdout io.Writer) error {
	sel, err := sections(cfg.Only)
	if err != nil {
		return err
	}
	if cfg.Workers < 1 {
		return fmt.Errorf("-workers %d: must be at least 1", cfg.Workers)
	}
	if cfg.Scale <= 0 {
		return fmt.Errorf("-scale %v: must be positive", cfg.Scale)
	}
	if sel[secRate] && (len(cfg.Rates) == 0 || cfg.RateWindow <= 0) {
		return errors.New("the rate section needs -rates and a positive -rate-window")
	}
	b := &bench{cfg: cfg, logw: cfg.Progress}
	if b.logw == nil {
		b.logw = io.Discard
	}
	if b.dir = cfg.Dir; b.dir == "" {
		if b.dir, err = os.MkdirTemp("", "aopbench-"); err != nil {
			return err
		}
		defer os.RemoveAll(b.dir)
	} else if err := os.MkdirAll(b.dir, 0o755); err != nil {
		return err
	}
	if b.bin, err = b.binary(ctx); err != nil {
		return err
	}
	loadBefore := loadAverage()
	began := time.Now()

	if sel[secEngine] {
		if err := b.engine(ctx, sel[secCeiling]); err != nil {
			return fmt.Errorf("engine: %w", err)
		}
	} else if sel[secCeiling] {
		c, err := b.ceiling(ctx)
		if err != nil {
			return fmt.Errorf("ceiling: %w", err)
		}
		b.addCeilings([]ceilingRun{c})
	}
	if sel[secRSS] || sel[secResume] || sel[secLedger] {
		if err := b.large(ctx, sel); err != nil {
			return fmt.Errorf("large run: %w", err)
		}
	}
	if sel[secRate] {
		for _, r := range cfg.Rates {
			if err := b.rate(ctx, r); err != nil {
				return fmt.Errorf("rate %v: %w", r, err)
			}
		}
	}
	for _, sc := range scenarios() {
		if !sel[sc.name] {
			continue
		}
		if err := b.scenario(ctx, sc); err != nil {
			return fmt.Errorf("%s: %w", sc.name, err)
		}
	}
	defer func() {
		if b.pg != nil {
			b.pg.Stop()
		}
	}()
	for _, sec := range []struct {
		name string
		run  func(context.Context) error
	}{{secPostgres, b.postgresRun}, {secShared, b.sharedRun}, {secScaling, b.scalingRun}} {
		if sel[sec.name] {
			if err := sec.run(ctx); err != nil {
				return fmt.Errorf("%s: %w", sec.name, err)
			}
		}
	}

	fmt.Fprintf(stdout, "aopbench: %s/%s, %d CPUs, GOMAXPROCS %d, %s; workers %d (provider sections: automatic), scale %g; took %s\n",
		runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version(),
		cfg.Workers, cfg.Scale, time.Since(began).Round(time.Second))
	fmt.Fprintf(stdout, "load average (1, 5, 15 min): before %s, after %s\n\n", loadBefore, loadAverage())
	writeTable(stdout, b.results)

	var missed []string
	for _, r := range b.results {
		if r.ok != nil && !*r.ok {
			missed = append(missed, r.measure)
		}
	}
	if cfg.Strict && len(missed) > 0 {
		return fmt.Errorf("targets missed: %s", strings.Join(missed, "; "))
	}
	return nil
}

func sections(only []string) (map[string]bool, error) {
	sel := map[string]bool{}
	if len(only) == 0 {
		for _, s := range allSections {
			sel[s] = true
		}
		return sel, nil
	}
	for _, s := range only {
		s = strings.TrimSpace(s)
		if !slices.Contains(allSections, s) {
			return nil, fmt.Errorf("-only: unknown section %q (have %s)", s, strings.Join(allSections, ", "))
		}
		sel[s] = true
	}
	return sel, nil
}

// binary returns the aopbatch binary to measure, building it when needed.
func (b *bench) binary(ctx context.Context) (string, error) {
	if b.cfg.Bin != "" {
		return filepath.Abs(b.cfg.Bin)
	}
	bin := filepath.Join(b.dir, "aopbatch")
	b.logf("building %s", aopbatchPkg)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, aopbatchPkg)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", aopbatchPkg, err, out)
	}
	return bin, nil
}

// ceilingRun is one run of the bare client.
type ceilingRun struct {
	perSec    float64
	cpuPerReq time.Duration // this process's CPU (client and sandbox) per request
}

// ceiling posts RowsRun Recharge bodies with a bare net/http client, the
// way aopbatch would but with nothing else to do. The client runs in a
// process of its own, as aopbatch does: in the sandbox's process its
// goroutines and the server's shared one scheduler and handed requests to
// each other without waking another thread, and it swung between 24,000
// and 36,000 req/s from one run to the next (77 and 53 µs of CPU a
// request), a speed aopbatch, another process, can never have.
func (b *bench) ceiling(ctx context.Context) (ceilingRun, error) {
	n := b.cfg.rows(b.cfg.RowsRun)
	sb, err := startSandbox(n)
	if err != nil {
		return ceilingRun{}, err
	}
	defer sb.close()
	b.logf("ceiling: bare client, %d requests, %d workers", n, b.cfg.Workers)
	self, err := os.Executable()
	if err != nil {
		return ceilingRun{}, fmt.Errorf("find the bare client: %w", err)
	}
	cmd := exec.CommandContext(ctx, self, sb.url, strconv.Itoa(n), strconv.Itoa(b.cfg.Workers))
	cmd.Env = append(os.Environ(), bareEnv+"=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cpu0 := selfCPU()
	if err := cmd.Run(); err != nil {
		return ceilingRun{}, fmt.Errorf("bare client: %w\n%s", err, stderr.String())
	}
	sandboxCPU := selfCPU() - cpu0
	var elapsedNS, cpuNS int64
	if _, err := fmt.Sscan(stdout.String(), &elapsedNS, &cpuNS); err != nil {
		return ceilingRun{}, fmt.Errorf("bare client: read %q: %w", stdout.String(), err)
	}
	if got := sb.count(); got != n {
		return ceilingRun{}, fmt.Errorf("bare client: the sandbox saw %d Recharge requests for %d", got, n)
	}
	perSec := float64(n) / time.Duration(elapsedNS).Seconds()
	cpu := (time.Duration(cpuNS) + sandboxCPU) / time.Duration(n)
	b.logf("ceiling: %s req/s, CPU %s per request with the sandbox's", thousands(perSec), micros(cpu))
	return ceilingRun{perSec: perSec, cpuPerReq: cpu}, nil
}

// bareEnv, when set, makes this binary the bare client: "URL N WORKERS"
// posts N Recharge bodies to URL from WORKERS goroutines and prints the
// nanoseconds it took and the CPU it used.
const bareEnv = "AOPBENCH_BARE_CLIENT"

func bareMain(args []string) int {
	if len(args) != 3 {
		fmt.Fprintln(os.Stderr, "aopbench bare client: want URL N WORKERS")
		return 2
	}
	n, err1 := strconv.Atoi(args[1])
	w, err2 := strconv.Atoi(args[2])
	if err := errors.Join(err1, err2); err != nil || n < 1 || w < 1 {
		fmt.Fprintln(os.Stderr, "aopbench bare client: bad N or WORKERS:", args[1:])
		return 2
	}
	cpu0 := selfCPU()
	start := time.Now()
	if err := bareClient(context.Background(), args[0]+aop.PathRecharge, n, w); err != nil {
		fmt.Fprintln(os.Stderr, "aopbench bare client:", err)
		return 1
	}
	fmt.Println(time.Since(start).Nanoseconds(), (selfCPU() - cpu0).Nanoseconds())
	return 0
}

// bareClient posts n Recharge bodies to url from w goroutines over
// keep-alive connections.
func bareClient(ctx context.Context, url string, n, w int) error {
	tr := &http.Transport{MaxIdleConns: w, MaxIdleConnsPerHost: w, IdleConnTimeout: 90 * time.Second}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	var next atomic.Int64
	errc := make(chan error, w)
	var wg sync.WaitGroup
	for range w {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				body, err := rowRequest("C", i).MarshalJSON()
				if err == nil {
					err = post(ctx, hc, url, body)
				}
				if err != nil {
					errc <- err
					next.Store(int64(n)) // stop the others
					return
				}
			}
		})
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return err
	}
	return ctx.Err()
}

func post(ctx context.Context, hc *http.Client, url string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "aopbench")
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST %s: HTTP %d", url, resp.StatusCode)
	}
	return nil
}

// engine times "aopbatch run" on RowsRun rows with no rate limit, Rounds
// times, and with ceiling each run between two runs of the bare client,
// comparing it with their mean. A shared machine's speed drifts within one
// make bench (the bare client 21,494-25,719 req/s in one on 2026-12-04):
// the median of the rounds, each against its neighbours, does not hang on
// one slow or fast moment.
func (b *bench) engine(ctx context.Context, ceiling bool) error {
	n := b.cfg.rows(b.cfg.RowsRun)
	rounds := max(b.cfg.Rounds, 1)
	var ceilings []ceilingRun
	measureCeiling := func() error {
		if !ceiling {
			return nil
		}
		c, err := b.ceiling(ctx)
		if err != nil {
			return fmt.Errorf("ceiling: %w", err)
		}
		ceilings = append(ceilings, c)
		return nil
	}
	if err := measureCeiling(); err != nil {
		return err
	}
	var runs []runResult
	for i := range rounds {
		var env []string
		if b.cfg.CPUProfile != "" && i == 0 {
			p, err := filepath.Abs(b.cfg.CPUProfile)
			if err != nil {
				return err
			}
			env = append(env, "AOPBATCH_CPUPROFILE="+p)
		}
		name := "run"
		if i > 0 {
			name = fmt.Sprintf("run%d", i+1)
		}
		r, err := b.runFile(ctx, name, n, 0, env)
		if err != nil {
			return err
		}
		runs = append(runs, r)
		if err := measureCeiling(); err != nil {
			return err
		}
	}
	b.addCeilings(ceilings)

	whole := make([]float64, len(runs))
	send := make([]float64, len(runs))
	var ingest, tail, wall []time.Duration
	var cpus, aopCPU, sbCPU []time.Duration
	var rss int64
	for i, r := range runs {
		whole[i] = float64(n) / r.wall.Seconds()
		send[i] = r.sendRate()
		wall = append(wall, r.wall)
		ingest = append(ingest, r.firstAt)
		tail = append(tail, r.wall-r.lastAt)
		cpus = append(cpus, (r.cpu+r.harnessCPU)/time.Duration(n))
		aopCPU = append(aopCPU, r.cpu/time.Duration(n))
		sbCPU = append(sbCPU, r.harnessCPU/time.Duration(n))
		rss = max(rss, r.maxRSS)
	}
	b.sqliteWhole = median(whole)
	of := ""
	if len(runs) > 1 {
		of = fmt.Sprintf(", median of %d runs", len(runs))
	}
	b.add(fmt.Sprintf("aopbatch run, %d rows, whole process (ingest included)%s", n, of),
		fmt.Sprintf("%s rows/s (%.1f s)%s", thousands(median(whole)), median(wall).Seconds(), each(whole, thousands)))
	b.add("  send phase only (first to last Recharge at the sandbox)",
		fmt.Sprintf("%s rows/s%s", thousands(median(send)), each(send, thousands)))
	b.add("  start to first Recharge (ingest, prepare) / last Recharge to exit",
		fmt.Sprintf("%.2f s / %.2f s", median(ingest).Seconds(), median(tail).Seconds()))
	b.add("  peak RSS", megabytes(rss))
	b.add("  CPU per row, aopbatch's and the sandbox's (whole process)",
		fmt.Sprintf("%s (%s + %s)%s", micros(median(cpus)), micros(median(aopCPU)), micros(median(sbCPU)),
			each(cpus, micros)))
	if len(ceilings) != len(runs)+1 {
		return nil
	}
	wr := make([]float64, len(runs))
	sr := make([]float64, len(runs))
	cr := make([]float64, len(runs))
	for i := range runs {
		c := ceilingRun{perSec: (ceilings[i].perSec + ceilings[i+1].perSec) / 2,
			cpuPerReq: (ceilings[i].cpuPerReq + ceilings[i+1].cpuPerReq) / 2}
		wr[i] = whole[i] / c.perSec
		sr[i] = send[i] / c.perSec
		if cpus[i] > 0 {
			cr[i] = float64(c.cpuPerReq) / float64(cpus[i])
		}
	}
	ratio := func(v float64) string { return fmt.Sprintf("%.2f", v) }
	b.check("engine whole process / bare client (each run against the runs around it)", ratio(median(wr))+each(wr, ratio),
		fmt.Sprintf("≥ %.2f", targetEngineRatio), median(wr) >= targetEngineRatio)
	b.check("engine send phase / bare client", ratio(median(sr))+each(sr, ratio),
		fmt.Sprintf("≥ %.2f", targetSendRatio), median(sr) >= targetSendRatio)
	// On two cores shared by client and sandbox both runs are CPU-bound,
	// so this ratio is what the throughput ratio tends to.
	b.add("bare client CPU per request / engine CPU per row", ratio(median(cr))+each(cr, ratio))
	return nil
}

// addCeilings adds the bare client's line: the median, and every run when
// there were several.
func (b *bench) addCeilings(cs []ceilingRun) {
	if len(cs) == 0 {
		return
	}
	perSec := make([]float64, len(cs))
	cpu := make([]time.Duration, len(cs))
	for i, c := range cs {
		perSec[i], cpu[i] = c.perSec, c.cpuPerReq
	}
	of := ""
	if len(cs) > 1 {
		of = fmt.Sprintf(", median of %d runs", len(cs))
	}
	b.add(fmt.Sprintf("bare client: %d Recharge POSTs, %d workers, keep-alive%s", b.cfg.rows(b.cfg.RowsRun), b.cfg.Workers, of),
		fmt.Sprintf("%s req/s%s, CPU %s per request with the sandbox's%s",
			thousands(median(perSec)), each(perSec, thousands), micros(median(cpu)), each(cpu, micros)))
}

// median of vs (the mean of the middle two for an even count).
func median[T float64 | time.Duration](vs []T) T {
	s := slices.Clone(vs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// each is " (v1, v2, ...)" in run order, or "" for a single run.
func each[T any](vs []T, format func(T) string) string {
	if len(vs) < 2 {
		return ""
	}
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = format(v)
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

// removeLedger removes a SQLite ledger and its side files, so that a run
// on it records a fresh batch, even in a kept -dir.
func removeLedger(db string) error {
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if err := os.Remove(db + suffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// large runs the small and large files for peak RSS, then reruns the
// finished large batch and measures its ledger.
func (b *bench) large(ctx context.Context, sel map[string]bool) error {
	var small runResult
	if sel[secRSS] {
		var err error
		if small, err = b.runFile(ctx, "small", b.cfg.rows(b.cfg.RowsSmall), 0, nil); err != nil {
			return err
		}
	}
	n := b.cfg.rows(b.cfg.RowsLarge)
	csvPath, db := b.files("large")
	if err := writeCSV(csvPath, "L", n); err != nil {
		return err
	}
	sb, err := startSandbox(n)
	if err != nil {
		return err
	}
	defer sb.close()
	b.logf("large: aopbatch run, %d rows", n)
	big, err := b.aopbatch(ctx, sb, csvPath, db, 0, nil)
	if err != nil {
		return err
	}
	if got := sb.count(); got != n {
		return fmt.Errorf("the sandbox saw %d Recharge requests for %d rows", got, n)
	}
	if sel[secRSS] {
		b.add(fmt.Sprintf("peak RSS, aopbatch run %d rows", small.rows), megabytes(small.maxRSS))
		b.check(fmt.Sprintf("peak RSS, aopbatch run %d rows", n), megabytes(big.maxRSS),
			fmt.Sprintf("< %.0f MB", targetLargeRSS/1e6), float64(big.maxRSS)*1024 < targetLargeRSS)
		ratio := float64(big.maxRSS) / float64(small.maxRSS)
		b.check(fmt.Sprintf("peak RSS ratio %d / %d rows", n, small.rows), fmt.Sprintf("%.2f", ratio),
			fmt.Sprintf("≤ %.2f", targetRSSRatio), ratio <= targetRSSRatio)
		b.add(fmt.Sprintf("  (the %d-row run, whole process)", n),
			fmt.Sprintf("%s rows/s (%.1f s)", thousands(float64(n)/big.wall.Seconds()), big.wall.Seconds()))
	}
	if sel[secLedger] {
		var size int64
		for _, suffix := range []string{"", "-wal"} {
			if fi, err := os.Stat(db + suffix); err == nil {
				size += fi.Size()
			} else if suffix == "" {
				return err
			}
		}
		b.add(fmt.Sprintf("ledger bytes per row (db + wal after the %d-row run)", n),
			fmt.Sprintf("%.0f B (%.1f MB)", float64(size)/float64(n), float64(size)/1e6))
	}
	if sel[secResume] {
		b.logf("resume: rerunning the finished %d-row batch", n)
		before := sb.count()
		again, err := b.aopbatch(ctx, sb, csvPath, db, 0, nil)
		if err != nil {
			return err
		}
		if sent := sb.count() - before; sent != 0 {
			return fmt.Errorf("rerunning a finished batch sent %d Recharge requests", sent)
		}
		b.check(fmt.Sprintf("resume a finished %d-row batch: seconds to exit", n),
			fmt.Sprintf("%.2f s", again.wall.Seconds()),
			fmt.Sprintf("< %.0f s", targetResume), again.wall.Seconds() < targetResume)
	}
	return nil
}

// rate runs aopbatch at --rate r for RateWindow and checks the arrivals.
func (b *bench) rate(ctx context.Context, r float64) error {
	n := max(2, int(math.Round(r*b.cfg.RateWindow.Seconds())))
	res, err := b.runFile(ctx, "rate"+strconv.FormatFloat(r, 'f', -1, 64), n, r, nil)
	if err != nil {
		return err
	}
	achieved := res.sendRate()
	name := fmt.Sprintf("--rate %g --burst %d, %d rows", r, burst, n)
	b.check(name+": achieved rate at the sandbox", fmt.Sprintf("%.2f req/s", achieved),
		fmt.Sprintf("%g ± %.0f%%", r, targetRateError*100), math.Abs(achieved-r) <= targetRateError*r)
	limit := int(math.Floor(r)) + burst
	sliding, bucketed := maxPerSecond(res.arrivals)
	b.check(name+": most Recharges in any 1 s (sliding / aligned buckets)",
		fmt.Sprintf("%d / %d", sliding, bucketed), fmt.Sprintf("≤ %d", limit), sliding <= limit)
	return nil
}

// runResult is one finished aopbatch run.
type runResult struct {
	rows       int
	wall       time.Duration   // whole process
	cpu        time.Duration   // aopbatch's user and system CPU
	harnessCPU time.Duration   // this process's meanwhile: the sandbox's, mostly
	maxRSS     int64           // KiB
	arrivals   []time.Duration // Recharge arrivals at the sandbox, from process start, sorted
	firstAt    time.Duration
	lastAt     time.Duration
}

func (r runResult) sendSpan() time.Duration { return r.lastAt - r.firstAt }

// sendRate is requests per second between the first and the last Recharge:
// n requests span n-1 intervals.
func (r runResult) sendRate() float64 {
	if len(r.arrivals) < 2 || r.sendSpan() <= 0 {
		return 0
	}
	return float64(len(r.arrivals)-1) / r.sendSpan().Seconds()
}

func (b *bench) files(name string) (csvPath, db string) {
	return filepath.Join(b.dir, name+".csv"), filepath.Join(b.dir, name+".db")
}

// runFile generates an n-row file and sends it to a fresh sandbox.
func (b *bench) runFile(ctx context.Context, name string, n int, rate float64, env []string) (runResult, error) {
	csvPath, db := b.files(name)
	if err := removeLedger(db); err != nil {
		return runResult{}, err
	}
	if err := writeCSV(csvPath, strings.ToUpper(name[:1])+name[1:]+"-", n); err != nil {
		return runResult{}, err
	}
	sb, err := startSandbox(n)
	if err != nil {
		return runResult{}, err
	}
	defer sb.close()
	b.logf("%s: aopbatch run, %d rows, --rate %g", name, n, rate)
	r, err := b.aopbatch(ctx, sb, csvPath, db, rate, env)
	if err != nil {
		return r, err
	}
	if got := len(r.arrivals); got != n {
		return r, fmt.Errorf("the sandbox saw %d Recharge requests for %d rows", got, n)
	}
	if b.cfg.Dir != "" {
		if err := writeArrivals(filepath.Join(b.dir, name+"-arrivals.txt"), r.arrivals); err != nil {
			return r, err
		}
	}
	return r, nil
}

// writeArrivals saves Recharge arrival times, in milliseconds from the
// process start, one a line: kept with -dir for a closer look.
func writeArrivals(path string, ts []time.Duration) error {
	var buf []byte
	for _, t := range ts {
		buf = strconv.AppendFloat(buf, float64(t)/float64(time.Millisecond), 'f', 3, 64)
		buf = append(buf, '\n')
	}
	return os.WriteFile(path, buf, 0o644)
}

// aopbatch runs "aopbatch run" on csvPath against sb, through a launcher
// (see launchEnv), and waits for it. Any exit code but 0 is an error: every
// row should succeed on this sandbox.
func (b *bench) aopbatch(ctx context.Context, sb *sandbox, csvPath, db string, rate float64, env []string) (runResult, error) {
	args := []string{"run", "--csv", csvPath, "--ledger", db, "--base-url", sb.url,
		"--registration-id", registrationID, "--latitude", "28.61", "--longitude", "77.20", "--rate", strconv.FormatFloat(rate, 'f', -1, 64),
		"--burst", strconv.Itoa(burst), "--workers", strconv.Itoa(b.cfg.Workers),
		"--progress", "never", "--resolve-timeout", resolveTimeout}
	return b.aopbatchArgs(ctx, sb, args, env, nil)
}

// aopbatchArgs runs aopbatch with args against sb, as aopbatch does;
// output, when not nil, receives the whole of aopbatch's stdout and
// stderr (each copied by its own goroutine).
func (b *bench) aopbatchArgs(ctx context.Context, sb *sandbox, args, env []string, output *[2]bytes.Buffer) (runResult, error) {
	self, err := os.Executable()
	if err != nil {
		return runResult{}, fmt.Errorf("find the launcher: %w", err)
	}
	report := filepath.Join(b.dir, "launch-report.txt")
	_ = os.Remove(report)
	cmd := exec.CommandContext(ctx, self, append([]string{b.bin}, args...)...)
	// The bench's files carry no coordinates: every run gets the defaults.
	cmd.Env = append(append(os.Environ(), "AOP_LATITUDE=28.61", "AOP_LONGITUDE=77.20"), env...)
	cmd.Env = append(cmd.Env, launchEnv+"="+report)
	// Interrupted, aopbatch finishes the requests in flight and records them.
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 30 * time.Second
	var stdout bytes.Buffer
	stderr := &tailBuffer{max: maxStderrKept}
	cmd.Stdout, cmd.Stderr = &stdout, stderr
	if output != nil {
		cmd.Stdout, cmd.Stderr = io.MultiWriter(&stdout, &output[0]), io.MultiWriter(stderr, &output[1])
	}
	mark := sb.count()
	cpu0 := selfCPU()
	if err := cmd.Run(); err != nil {
		return runResult{}, fmt.Errorf("aopbatch %s: %w\nstdout:\n%s\nstderr (tail):\n%s",
			strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	lr, err := readLaunchReport(report)
	if err != nil {
		return runResult{}, err
	}
	r := runResult{wall: lr.wall, cpu: lr.cpu, harnessCPU: selfCPU() - cpu0, maxRSS: lr.maxRSS}
	base := lr.start.Sub(sb.start) // wall clock: the launcher is another process
	for _, t := range sb.since(mark) {
		r.arrivals = append(r.arrivals, t-base)
	}
	slices.Sort(r.arrivals)
	r.rows = len(r.arrivals)
	if len(r.arrivals) > 0 {
		r.firstAt, r.lastAt = r.arrivals[0], r.arrivals[len(r.arrivals)-1]
	}
	return r, nil
}

// sandbox is an aoptest.Server on 127.0.0.1 behind a handler that
// timestamps each Recharge request as it arrives.
type sandbox struct {
	sb    *aoptest.Server
	srv   *http.Server
	url   string
	start time.Time
	done  chan error

	mu       sync.Mutex
	arrivals []time.Duration // since start
}

func startSandbox(expect int) (*sandbox, error) {
	return startSandboxWith(aoptest.DefaultConfig(), expect)
}

func startSandboxWith(cfg aoptest.Config, expect int) (*sandbox, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("sandbox: listen: %w", err)
	}
	s := &sandbox{
		sb:       aoptest.New(cfg),
		url:      "http://" + ln.Addr().String(),
		start:    time.Now(),
		done:     make(chan error, 1),
		arrivals: make([]time.Duration, 0, expect),
	}
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go func() { s.done <- s.srv.Serve(ln) }()
	return s, nil
}

func (s *sandbox) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == aop.PathRecharge {
		s.mu.Lock()
		s.arrivals = append(s.arrivals, time.Since(s.start))
		s.mu.Unlock()
	}
	s.sb.ServeHTTP(w, r)
}

func (s *sandbox) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.arrivals)
}

// since returns a copy of the arrivals after the first n.
func (s *sandbox) since(n int) []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.arrivals[n:])
}

func (s *sandbox) close() {
	s.sb.ReleaseStalls()
	ctx, cancel := context.WithTimeout(context.Background(), sandboxShutdown)
	defer cancel()
	_ = s.srv.Shutdown(ctx)
	<-s.done
}

// maxPerSecond returns the most arrivals in any 1-second window [t, t+1s)
// and in any 1-second bucket counted from the first arrival. ts is sorted.
func maxPerSecond(ts []time.Duration) (sliding, bucketed int) {
	lo := 0
	for hi := range ts {
		for ts[hi]-ts[lo] >= time.Second {
			lo++
		}
		sliding = max(sliding, hi-lo+1)
	}
	if len(ts) == 0 {
		return 0, 0
	}
	counts := map[time.Duration]int{}
	for _, t := range ts {
		k := (t - ts[0]) / time.Second
		counts[k]++
		bucketed = max(bucketed, counts[k])
	}
	return sliding, bucketed
}

var operators = [...]int64{311, 12, 27}

// rowRequest is row i of a generated file whose referenceids start with
// prefix; the bare client sends the same requests.
func rowRequest(prefix string, i int) aop.RechargeRequest {
	return aop.RechargeRequest{
		Operator:       operators[i%len(operators)],
		CANumber:       fmt.Sprintf("CA%08d", i),
		AmountPaise:    1000 + int64(i%500)*100 + int64(i%100),
		ReferenceID:    prefix + strconv.Itoa(i),
		RegistrationID: registrationID,
	}
}

// writeCSV streams an n-row input file of unique referenceids.
func writeCSV(path, prefix string, n int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	_, _ = w.WriteString("operator,canumber,amount,referenceid\n")
	var line []byte
	for i := range n {
		r := rowRequest(prefix, i)
		line = strconv.AppendInt(line[:0], r.Operator, 10)
		line = append(line, ',')
		line = append(line, r.CANumber...)
		line = append(line, ',')
		line = append(line, aop.RupeesNumber(r.AmountPaise)...)
		line = append(line, ',')
		line = append(line, r.ReferenceID...)
		line = append(line, '\n')
		if _, err := w.Write(line); err != nil {
			f.Close()
			return fmt.Errorf("write %s: %w", path, err)
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return string(t.b) }

// loadAverage is /proc/loadavg's first three fields, or "unknown".
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "unknown"
}

// megabytes renders KiB as decimal megabytes.
func megabytes(kib int64) string {
	return fmt.Sprintf("%.1f MB", float64(kib)*1024/1e6)
}

// micros renders d in microseconds, one decimal.
func micros(d time.Duration) string {
	return fmt.Sprintf("%.1f µs", float64(d)/float64(time.Microsecond))
}

// thousands renders v rounded, with thin separators every three digits.
func thousands(v float64) string {
	s := strconv.FormatInt(int64(math.Round(v)), 10)
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 && s[i-1] != '-' {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}

func writeTable(w io.Writer, rs []result) {
	fmt.Fprintln(w, "| measure | value | target | ok |")
	fmt.Fprintln(w, "|---|---|---|---|")
	for _, r := range rs {
		ok := ""
		if r.ok != nil {
			ok = "yes"
			if !*r.ok {
				ok = "**NO**"
			}
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", r.measure, r.value, r.target, ok)
	}
}
