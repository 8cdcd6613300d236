package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary be the launcher the harness starts
// aopbatch through, and the bare client, as the aopbench binary is.
func TestMain(m *testing.M) {
	if report := os.Getenv(launchEnv); report != "" {
		os.Exit(launch(report, os.Args[1:]))
	}
	if os.Getenv(bareEnv) != "" {
		os.Exit(bareMain(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// TestSmoke runs every section on a few hundred rows. It checks that each
// produced a number, never the targets: tiny runs on a shared machine say
// nothing about them.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds aopbatch and runs it several times")
	}
	bin := filepath.Join(t.TempDir(), "aopbatch")
	if out, err := exec.Command("go", "build", "-o", bin, aopbatchPkg).CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cfg := defaultConfig()
	cfg.Bin = bin
	cfg.Dir = t.TempDir()
	cfg.Workers = 8
	cfg.Scale = 0.001 // 200, 100 and 1000 rows
	cfg.Rates = []float64{50, 200}
	cfg.RateWindow = time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, cfg, &out); err != nil {
		t.Fatalf("run: %v\noutput:\n%s", err, out.String())
	}
	t.Log("\n" + out.String())

	values := map[string]string{}
	for line := range strings.Lines(out.String()) {
		cells := strings.Split(strings.TrimSpace(line), "|")
		if len(cells) != 6 || cells[1] == " measure " || strings.HasPrefix(cells[1], "---") {
			continue
		}
		values[strings.TrimSpace(cells[1])] = strings.TrimSpace(cells[2])
	}
	if v := values["rows not charged exactly once"]; v != "0" {
		t.Errorf("rows of the shared run not charged exactly once: %q, want 0", v)
	}
	for _, want := range []string{
		"bare client: 200 Recharge POSTs",
		"aopbatch run, 200 rows, whole process",
		"send phase only",
		"engine whole process / bare client",
		"CPU per row, aopbatch's and the sandbox's",
		"bare client CPU per request / engine CPU per row",
		"peak RSS, aopbatch run 100 rows",
		"peak RSS, aopbatch run 1000 rows",
		"peak RSS ratio 1000 / 100 rows",
		"ledger bytes per row",
		"resume a finished 1000-row batch",
		"--rate 50 --burst 1, 50 rows: achieved rate",
		"aopbatch run, 200 rows, PostgreSQL ledger, whole process (send phase)",
		"PostgreSQL / SQLite, whole process",
		"3 processes, one 600-row batch, 100ms latency, --rate 300: achieved together",
		"largest 1-second window at the sandbox",
		"3 processes over 1",
		"--rate 50 --burst 1, 50 rows: most Recharges in any 1 s",
		"--rate 200 --burst 1, 200 rows: achieved rate",
		"--rate 200 --burst 1, 200 rows: most Recharges in any 1 s",
		"slow, 300 ms ± 100 ms, --rate 500, default flags, 10 rows: achieved rate",
		"throttle, the provider throttles above 150/s (--limit-rps 150), 300 ms ± 100 ms, --rate 200, 6 rows: rows/s",
		"random429, 2% of requests answered 429, 300 ms ± 100 ms, --rate 200, 6 rows: rows/s",
		"cap, --max-in-flight 8 against 300 ms, --rate 100, 1 rows: summary achieved",
	} {
		t.Run(want, func(t *testing.T) {
			for measure, v := range values {
				if strings.HasPrefix(measure, want) {
					if !hasNonZeroDigit(v) || strings.Contains(v, "NaN") || strings.Contains(v, "Inf") {
						t.Errorf("%s = %q, want a number", measure, v)
					}
					return
				}
			}
			t.Errorf("no line %q in the table", want)
		})
	}
}

func hasNonZeroDigit(s string) bool {
	return strings.ContainsAny(s, "123456789")
}

func TestMaxPerSecond(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		d := make([]time.Duration, len(v))
		for i, x := range v {
			d[i] = time.Duration(x) * time.Millisecond
		}
		return d
	}
	tests := []struct {
		name                  string
		ts                    []time.Duration
		sliding, bucketedWant int
	}{
		{"empty", nil, 0, 0},
		{"one", ms(5), 1, 1},
		{"even", ms(0, 250, 500, 750, 1000, 1250), 4, 4},
		{"burst across a bucket edge", ms(0, 900, 950, 1000, 1050), 4, 3},
		{"a full second apart", ms(0, 1000), 1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, b := maxPerSecond(tt.ts)
			if s != tt.sliding || b != tt.bucketedWant {
				t.Errorf("maxPerSecond = %d, %d; want %d, %d", s, b, tt.sliding, tt.bucketedWant)
			}
		})
	}
}

func TestThousands(t *testing.T) {
	for _, tt := range []struct {
		in   float64
		want string
	}{{0, "0"}, {999.4, "999"}, {1000, "1,000"}, {123456.7, "123,457"}, {-1234, "-1,234"}, {1e6, "1,000,000"}} {
		if got := thousands(tt.in); got != tt.want {
			t.Errorf("thousands(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestSections(t *testing.T) {
	if _, err := sections([]string{"engine", "nope"}); err == nil {
		t.Error("sections accepted an unknown name")
	}
	sel, err := sections([]string{" rate", "resume"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(sel), 2; got != want || !sel[secRate] || !sel[secResume] {
		t.Errorf("sections = %v, want rate and resume", sel)
	}
}

func TestRecoveryAfterAStep(t *testing.T) {
	// 100/s until 10 s, 20/s for 3 s, then 100/s again.
	var ts []time.Duration
	for t := time.Duration(0); t < 20*time.Second; {
		ts = append(ts, t)
		if t >= 10*time.Second && t < 13*time.Second {
			t += 50 * time.Millisecond
		} else {
			t += 10 * time.Millisecond
		}
	}
	rec, ok := recovery(ts, 10*time.Second, 95)
	if !ok || rec < 3*time.Second || rec > 4*time.Second {
		t.Errorf("recovery = %v, %v; want between 3 and 4 s", rec, ok)
	}
	if got := rateBetween(ts, 14*time.Second, 20*time.Second); got < 99 || got > 101 {
		t.Errorf("rateBetween = %.1f, want 100", got)
	}
	if _, ok := recovery(ts[:1100], 10*time.Second, 95); ok {
		t.Error("recovered in a run that ends slow")
	}
}
