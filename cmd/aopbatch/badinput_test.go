package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/csv"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aopbatch/aopbatch/ledger"
	"github.com/aopbatch/aopbatch/ledger/sqlite"
)

// tenMBLine writes a file whose line is 10 MB long: the whole file (header
// included) when header is false, or the second line after a good header.
func tenMBLine(afterHeader bool) func(t *testing.T, dir string) string {
	return func(t *testing.T, dir string) string {
		t.Helper()
		var b bytes.Buffer
		if afterHeader {
			b.WriteString("operator,canumber,amount,referenceid\n311,")
		} else {
			b.WriteString("operator,canumber,amount,referenceid,")
		}
		b.Write(bytes.Repeat([]byte("x"), 10<<20))
		if afterHeader {
			b.WriteString(",10,R1\n311,CA2,10,R2\n")
		}
		path := filepath.Join(dir, "10mb.csv")
		if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
}

// fifo makes a named pipe that nobody writes to: opening it would block.
func fifo(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "in.csv")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	return path
}

// TestBadInputFiles runs the real "aopbatch run" on every hostile file of
// testdata/bad against a sandbox. A file-level problem exits 1, names the
// problem, sends nothing and leaves no batch in the ledger; a row-level
// problem rejects that row by line and sends exactly the valid rows.
func TestBadInputFiles(t *testing.T) {
	const rejectAll = "--max-reject-rate"
	cases := []struct {
		name     string
		file     string                                // in testdata/bad
		gen      func(t *testing.T, dir string) string // instead of file
		args     []string
		code     int
		errText  string         // in stderr
		rejected map[int]string // line -> in the reason
		sent     int            // valid rows, each sent once
		check    func(t *testing.T, all []ledger.Row)
	}{
		{name: "empty", file: "empty.csv", code: 1, errText: "empty file: no header row"},
		{name: "header only", file: "header-only.csv", code: 1, errText: "line 1: the file has a header but no data rows"},
		{name: "binary", file: "binary.csv", code: 1, errText: "not a UTF-8 text CSV"},
		{name: "utf16 with bom", file: "utf16-bom.csv", code: 1, errText: "not a UTF-8 text CSV (UTF-16 byte order mark)"},
		{name: "utf16 without bom", file: "utf16-nobom.csv", code: 1, errText: "not a UTF-8 text CSV (NUL byte)"},
		{name: "10MB header line", gen: tenMBLine(false), code: 1, errText: "line 1: line longer than 65536 bytes"},
		{name: "10MB data line", gen: tenMBLine(true), code: 1, errText: "line 2: line longer than 65536 bytes"},
		{name: "endless device", gen: func(*testing.T, string) string { return "/dev/zero" }, code: 1,
			errText: "not a regular file (a device)"},
		{name: "fifo without writer", gen: fifo, code: 1, errText: "not a regular file (a pipe)"},
		{name: "unbalanced quote", file: "unbalanced-quote.csv", code: 1, errText: "line 3: a quoted cell is not closed properly"},
		{name: "bare quote", file: "bare-quote.csv", code: 1, errText: `line 3: a " in a cell that is not quoted`},
		{name: "duplicate header", file: "duplicate-header.csv", code: 1, errText: `duplicate column "referenceid" (columns 4 and 5)`},
		{name: "duplicate header exact", file: "duplicate-header-exact.csv", code: 1, errText: `duplicate column "amount" (columns 2 and 4)`},
		{name: "semicolons", file: "semicolon.csv", code: 1, errText: `columns must be separated by commas, not ";"`},
		{name: "ragged rows", file: "ragged-rows.csv", args: []string{rejectAll, "1"}, code: 2, sent: 3,
			rejected: map[int]string{3: "wrong number of cells: the header has 4", 5: "wrong number of cells", 7: "wrong number of cells"}},
		{name: "latin1 cell", file: "latin1-cell.csv", args: []string{rejectAll, "1"}, code: 2, sent: 1,
			rejected: map[int]string{3: `column "username": not valid UTF-8`}},
		{name: "amount 1e3", file: "amount-exponent.csv", args: []string{rejectAll, "1"}, code: 2, sent: 2,
			rejected: map[int]string{3: `value "1e3": exponent not allowed`}},
		{name: "amount devanagari", file: "amount-devanagari.csv", args: []string{rejectAll, "1"}, code: 2, sent: 2,
			rejected: map[int]string{3: `value "१००": non-ASCII digits`}},
		{name: "amount decimal comma", file: "amount-decimal-comma.csv", args: []string{rejectAll, "1"}, code: 2, sent: 2,
			rejected: map[int]string{3: `value "10,00": separator not allowed`}},
		{name: "amount zero", file: "amount-zero.csv", args: []string{rejectAll, "1"}, code: 2, sent: 2,
			rejected: map[int]string{3: `value "0": must be greater than zero`}},
		{name: "amount huge", file: "amount-huge.csv", args: []string{rejectAll, "1"}, code: 2, sent: 2,
			rejected: map[int]string{3: `value "99999999999999": too large`}},
		{name: "amount padded", file: "amount-spaces.csv", code: 0, sent: 3,
			check: func(t *testing.T, all []ledger.Row) {
				for _, r := range all {
					if r.Line == 3 && r.AmountPaise != 1000 {
						t.Errorf("line 3 amount %q: %d paise, want 1000 (cells are trimmed)", r.Raw[2], r.AmountPaise)
					}
				}
			}},
		{name: "default reject rate refuses", file: "mostly-bad.csv", code: 1,
			errText: "3 of 4 rows are invalid, more than --max-reject-rate 0.2 allows: is this the right file? (line 3"},
		{name: "mostly bad allowed", file: "mostly-bad.csv", args: []string{rejectAll, "1"}, code: 2, sent: 1,
			rejected: map[int]string{3: "exponent", 4: "greater than zero", 5: "not a number"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sb := sandbox(t, nil)
			dir := t.TempDir()
			db := filepath.Join(dir, "l.db")
			path := filepath.Join("..", "..", "testdata", "bad", tc.file)
			if tc.gen != nil {
				path = tc.gen(t, dir)
			}
			p := aopbatch(t, nil, runArgs(path, db, sb.URL, tc.args...)...)
			if p.code != tc.code {
				t.Fatalf("exit %d, want %d\nstderr:\n%s", p.code, tc.code, p.stderr)
			}
			if tc.errText != "" && !strings.Contains(p.stderr, tc.errText) {
				t.Errorf("stderr does not say %q:\n%s", tc.errText, p.stderr)
			}
			if got := sb.Stats().Recharges; got != int64(tc.sent) {
				t.Errorf("sandbox got %d recharges, want %d (the valid rows)", got, tc.sent)
			}
			if tc.code == 1 {
				if !strings.Contains(p.stderr, "nothing was sent") {
					t.Errorf("stderr does not say nothing was sent:\n%s", p.stderr)
				}
				if n := sb.Stats().Requests; n != 0 {
					t.Errorf("sandbox got %d requests, want 0", n)
				}
				assertNoBatch(t, db)
				return
			}
			_, byRef, all := ledgerRows(t, db)
			if got, want := len(all), tc.sent+len(tc.rejected); got != want {
				t.Errorf("ledger rows = %d, want %d: %v", got, want, countStates(all))
			}
			checkRejected(t, all, tc.rejected)
			for ref, r := range byRef {
				if n := sb.Requests(ref); n != 1 {
					t.Errorf("ref %s (line %d) sent %d times, want 1", ref, r.Line, n)
				}
			}
			if tc.check != nil {
				tc.check(t, all)
			}
		})
	}
}

// assertNoBatch checks that a refused file left nothing in the ledger that a
// later run could send.
func assertNoBatch(t *testing.T, db string) {
	t.Helper()
	l, err := sqlite.Open(context.Background(), db, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	bs, err := l.Batches(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(bs) != 0 {
		t.Errorf("ledger holds %d batch(es) after a refused file, want 0", len(bs))
	}
}

// TestBadFlagValuesRefused: a flag value that would crash the run, or
// quietly switch a safety limit off, exits 1 naming the flag, and sends
// nothing.
func TestBadFlagValuesRefused(t *testing.T) {
	sb := sandbox(t, nil)
	db, csvPath := batchFiles(t)
	writeCSV(t, csvPath, goodRows(3, "F"))
	for _, tc := range []struct{ flag, value string }{
		{"--lease-ttl", "0"},
		{"--lease-ttl", "-1s"},
		{"--rate", "NaN"},
		{"--rate", "-1"},
		{"--burst", "0"},
		{"--max-attempts", "0"},
		{"--hold-after", "0"},
		{"--resolve-timeout", "-1s"},
		{"--token-ttl", "0"},
		{"--progress", "bogus"},
		{"--max-reject-rate", "-1"},
		{"--max-reject-rate", "NaN"},
		{"--max-reject-rate", "1.5"},
		{"--expect-rows", "-2"},
	} {
		t.Run(tc.flag+"="+tc.value, func(t *testing.T) {
			p := aopbatch(t, nil, runArgs(csvPath, db, sb.URL, tc.flag, tc.value)...)
			if p.code != 1 || !strings.Contains(p.stderr, tc.flag) {
				t.Errorf("exit %d, want 1 naming %s:\n%s", p.code, tc.flag, p.stderr)
			}
		})
	}
	for _, v := range []string{"0", "500ms"} {
		p := aopbatch(t, nil, "resolve", "--ledger", db, "--base-url", sb.URL, "--lease-ttl", v)
		if p.code != 1 || !strings.Contains(p.stderr, "--lease-ttl") {
			t.Errorf("resolve --lease-ttl %s: exit %d, want 1 naming the flag:\n%s", v, p.code, p.stderr)
		}
	}
	// A value the flag package cannot parse: one line, not the usage.
	p := aopbatch(t, nil, runArgs(csvPath, db, sb.URL, "--rate", "abc")...)
	if p.code != 1 || !strings.Contains(p.stderr, `invalid value "abc" for flag -rate`) ||
		strings.Count(strings.TrimSpace(p.stderr), "\n") != 0 {
		t.Errorf("--rate abc: exit %d, want 1 and one line naming the flag:\n%s", p.code, p.stderr)
	}
	// A duration the flag package cannot parse: what a duration looks like.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{runArgs(csvPath, db, sb.URL, "--timeout", "5"), `run: --timeout "5": a duration needs a unit, e.g. 5s or 500ms`},
		{runArgs(csvPath, db, sb.URL, "--lease-ttl=1d"), `run: --lease-ttl "1d": not a duration: a number and a unit (h, m, s, ms), e.g. 5s, 500ms or 1m30s`},
		{[]string{"resolve", "--ledger", db, "--resolve-timeout", "30"}, `resolve: --resolve-timeout "30": a duration needs a unit`},
		{[]string{"reconcile", "--ledger", db, "--lease-ttl", "1.5"}, `reconcile: --lease-ttl "1.5": a duration needs a unit`},
	} {
		p := aopbatch(t, nil, tc.args...)
		if p.code != 1 || !strings.Contains(p.stderr, tc.want) || strings.Count(strings.TrimSpace(p.stderr), "\n") != 0 {
			t.Errorf("%v: exit %d, want 1 and one line saying %q:\n%s", tc.args[1:], p.code, tc.want, p.stderr)
		}
	}
	// An empty --ledger (an empty variable in a cron script): one line,
	// before any ledger is named (a walkthrough: the working directory was).
	for _, args := range [][]string{runArgs(csvPath, "", sb.URL), {"status", "--ledger", ""}, {"report", "--ledger", " ", "--out", t.TempDir()}} {
		p := aopbatch(t, nil, args...)
		if p.code != 1 || !strings.Contains(p.stderr, args[0]+": --ledger is empty") || strings.Contains(p.stderr, "msg=ledger") ||
			strings.Count(strings.TrimSpace(p.stderr), "\n") != 0 {
			t.Errorf("%s --ledger empty: exit %d, want 1 and one line saying so:\n%s", args[0], p.code, p.stderr)
		}
	}
	// The usage still calls them durations.
	if p := aopbatch(t, nil, "run", "-h"); !strings.Contains(p.stderr+p.stdout, "-timeout duration") {
		t.Errorf("run -h does not show --timeout as a duration:\n%s%s", p.stdout, p.stderr)
	}
	if n := sb.Stats().Recharges; n != 0 {
		t.Errorf("%d requests sent, want none", n)
	}
}

// TestDemoKeepsToItsOwnDirectory: the demo replaces only what an earlier
// demo left; a directory it did not make is refused, not emptied.
func TestDemoKeepsToItsOwnDirectory(t *testing.T) {
	foreign := t.TempDir()
	precious := filepath.Join(foreign, "aopbatch.db")
	if err := os.WriteFile(precious, []byte("a real ledger"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := aopbatch(t, nil, "demo", "--dir", foreign, "--rows", "10")
	if p.code != 1 || !strings.Contains(p.stderr, "not empty") {
		t.Errorf("demo in a foreign directory: exit %d, want 1 saying why\n%s", p.code, p.stderr)
	}
	if b, err := os.ReadFile(precious); err != nil || string(b) != "a real ledger" {
		t.Errorf("the foreign ledger was touched: %q, %v", b, err)
	}

	dir := filepath.Join(t.TempDir(), "demo")
	for i := range 2 { // the second replaces the first's files
		p := aopbatch(t, nil, "demo", "--dir", dir, "--rows", "10")
		if p.code != 0 || !strings.Contains(p.stdout, "report.html") {
			t.Fatalf("demo %d: exit %d\n%s\n%s", i+1, p.code, p.stdout, p.stderr)
		}
	}
}

// TestRunReportsNotWrittenIsNotSuccess: a run whose --report cannot be
// written at its end (report.json is a directory there: nothing a check
// at the start can see) does not exit 0, so cron notices; the rerun sends
// nothing and writes them.
func TestRunReportsNotWrittenIsNotSuccess(t *testing.T) {
	sb := sandbox(t, nil)
	db, csvPath := batchFiles(t)
	rows := goodRows(5, "W")
	writeCSV(t, csvPath, rows)
	out := filepath.Join(t.TempDir(), "out")
	blocker := filepath.Join(out, "report.json", "x")
	if err := os.MkdirAll(blocker, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, dry := range [][]string{{"--dry-run"}, nil} {
		p := aopbatch(t, nil, runArgs(csvPath, db, sb.URL, append(dry, "--report", out)...)...)
		if p.code != 3 || !strings.Contains(p.stderr, "reports") {
			t.Errorf("--report with report.json a directory %v: exit %d, want 3 saying the reports were not written\n%s", dry, p.code, p.stderr)
		}
	}
	// The metrics file is written all the same, saying the run did not
	// finish: the one a run before left, exit code 0, would stay else.
	metrics := filepath.Join(t.TempDir(), "aopbatch.prom")
	if err := os.WriteFile(metrics, []byte("aopbatch_run_exit_code{batch=\"old\"} 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := aopbatch(t, nil, runArgs(csvPath, db, sb.URL, "--report", out, "--metrics-file", metrics)...)
	m, err := os.ReadFile(metrics)
	if err != nil {
		t.Fatal(err)
	}
	if p.code != 3 || !regexp.MustCompile(`aopbatch_run_exit_code\{[^}]*\} 3\n`).Match(m) {
		t.Errorf("reports not written, --metrics-file: exit %d, metrics file:\n%s", p.code, m)
	}
	if err := os.RemoveAll(filepath.Join(out, "report.json")); err != nil {
		t.Fatal(err)
	}
	p = aopbatch(t, nil, runArgs(csvPath, db, sb.URL, "--report", out)...)
	if p.code != 0 {
		t.Fatalf("rerun: exit %d\n%s", p.code, p.stderr)
	}
	if _, err := os.Stat(filepath.Join(out, "report.json")); err != nil {
		t.Errorf("rerun wrote no report: %v", err)
	}
	wantOnce(t, rows, "sent", sb.Requests)
}

// TestReportOutputsCheckedBeforeSending: a --report, --metrics-file or
// --tz that could only fail at the end is refused before anything is
// sent (exit 1), not found out once the file is paid, on run and
// resolve alike, and nothing is created for it.
func TestReportOutputsCheckedBeforeSending(t *testing.T) {
	sb := sandbox(t, nil)
	db, csvPath := batchFiles(t)
	writeCSV(t, csvPath, goodRows(3, "K"))
	dir := t.TempDir()
	blocker := filepath.Join(dir, "afile")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct{ flag, value string }{
		{"--tz", "Asia/Kolkatta"},
		{"--report", filepath.Join(blocker, "out")},
		{"--metrics-file", filepath.Join(dir, "missing", "aopbatch.prom")},
		{"--metrics-file", dir},
	}
	if os.Geteuid() != 0 { // root writes anywhere
		ro := filepath.Join(dir, "ro")
		if err := os.Mkdir(ro, 0o500); err != nil {
			t.Fatal(err)
		}
		cases = append(cases, struct{ flag, value string }{"--report", filepath.Join(ro, "out")},
			struct{ flag, value string }{"--metrics-file", filepath.Join(ro, "aopbatch.prom")})
	}
	for _, tc := range cases {
		for _, dry := range [][]string{nil, {"--dry-run"}} {
			p := aopbatch(t, nil, runArgs(csvPath, db, sb.URL, append(dry, tc.flag, tc.value)...)...)
			if p.code != 1 || !strings.Contains(p.stderr, tc.flag) {
				t.Errorf("run %v %s %s: exit %d, want 1 naming %s\n%s", dry, tc.flag, tc.value, p.code, tc.flag, p.stderr)
			}
		}
	}
	if n := sb.Stats().Recharges; n != 0 {
		t.Errorf("%d recharges sent, want none before the outputs are known to be writable", n)
	}
	if _, err := os.Stat(db); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused run left a ledger: %v", err)
	}
	// resolve checks them before it asks or sends anything too.
	if p := aopbatch(t, nil, runArgs(csvPath, db, sb.URL)...); p.code != 0 {
		t.Fatalf("run: exit %d\n%s", p.code, p.stderr)
	}
	for _, tc := range cases {
		p := aopbatch(t, nil, "resolve", "--ledger", db, "--base-url", sb.URL, "--progress", "never", tc.flag, tc.value)
		if p.code != 1 || !strings.Contains(p.stderr, tc.flag) {
			t.Errorf("resolve %s %s: exit %d, want 1 naming %s\n%s", tc.flag, tc.value, p.code, tc.flag, p.stderr)
		}
	}
	// A --report that does not exist yet is fine, and is not created
	// before the run gets as far as writing it.
	out := filepath.Join(dir, "new", "reports")
	if p := aopbatch(t, nil, "status", "--ledger", db); p.code != 0 {
		t.Fatalf("status: exit %d\n%s", p.code, p.stderr)
	}
	if p := aopbatch(t, nil, runArgs(csvPath, db, sb.URL, "--report", out)...); p.code != 0 {
		t.Fatalf("run --report %s: exit %d\n%s", out, p.code, p.stderr)
	}
	if _, err := os.Stat(filepath.Join(out, "report.json")); err != nil {
		t.Errorf("no report written: %v", err)
	}
}

// TestMistypedLedgerOrBatch: only run creates a ledger, so a mistyped
// --ledger is named, not silently created empty; and run refuses
// "latest", which elsewhere names the newest batch.
func TestMistypedLedgerOrBatch(t *testing.T) {
	sb := sandbox(t, nil)
	db, csvPath := batchFiles(t)
	writeCSV(t, csvPath, goodRows(2, "M"))
	for _, args := range [][]string{
		{"status", "--ledger", db},
		{"resolve", "--ledger", db, "--base-url", sb.URL},
		{"report", "--ledger", db, "--batch", "latest"},
	} {
		p := aopbatch(t, nil, args...)
		if p.code != 1 || !strings.Contains(p.stderr, "no ledger at") {
			t.Errorf("%s: exit %d, want 1 naming the missing ledger\n%s", args[0], p.code, p.stderr)
		}
		// Only run makes a ledger: no other command's log calls it new.
		if strings.Contains(p.stderr, "new=true") {
			t.Errorf("%s: logged the missing ledger as new\n%s", args[0], p.stderr)
		}
		if _, err := os.Stat(db); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s created %s", args[0], db)
		}
	}
	p := aopbatch(t, nil, runArgs(csvPath, db, sb.URL, "--batch", "latest")...)
	if p.code != 1 || !strings.Contains(p.stderr, "reserved") {
		t.Errorf("run --batch latest: exit %d, want 1\n%s", p.code, p.stderr)
	}
	if n := sb.Stats().Recharges; n != 0 {
		t.Errorf("%d requests sent, want none", n)
	}
	if p := aopbatch(t, nil, runArgs(csvPath, db, sb.URL)...); p.code != 0 || !strings.Contains(p.stderr, "new=true") {
		t.Errorf("run creating the ledger: exit %d, want 0 and a log line calling it new\n%s", p.code, p.stderr)
	}
}

// TestRefusedRunLeavesNoLedger: a run refused for its settings, before
// it records anything, creates no ledger file (nor a directory for it) and
// does not log the ledger as new; the first run that starts does both.
func TestRefusedRunLeavesNoLedger(t *testing.T) {
	sb := sandbox(t, nil)
	dir := t.TempDir()
	csvPath, noRegID := filepath.Join(dir, "in.csv"), filepath.Join(dir, "noreg.csv")
	writeCSV(t, csvPath, goodRows(2, "NL"))
	if err := os.WriteFile(noRegID, []byte("operator,canumber,amount,referenceid,latitude,longitude\n311,CA1,10,R1,28.61,77.20\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, csv, ledger string
		noURL             bool
		env, args         []string
		errText           string
	}{
		{name: "no provider", noURL: true, errText: "no provider: set --base-url or AOP_BASE_URL"},
		{name: "no token", env: []string{"AOP_TOKEN="}, args: []string{"--auth", "bearer"}, errText: "no secret: set AOP_TOKEN"},
		{name: "bad synchronous", args: []string{"--synchronous", "SOMETIMES"}, errText: `synchronous must be FULL or NORMAL, not "SOMETIMES"`},
		{name: "bad latitude", args: []string{"--latitude", "north"}, errText: `latitude default "north"`},
		{name: "no registration id", csv: noRegID, args: []string{"--registration-id", ""}, errText: "RegistrationID missing"},
		{name: "bad progress", args: []string{"--progress", "bogus"}, errText: "--progress must be auto, always or never"},
		{name: "bad lease", args: []string{"--lease-ttl", "1ms"}, errText: "--lease-ttl must be at least 1s"},
		{name: "ledger directory missing", ledger: filepath.Join("nodir", "l.db"), errText: "no such file or directory"},
		{name: "generated refs, no batch", args: []string{"--generate-refs"}, errText: "--generate-refs needs --batch ID"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := filepath.Join(t.TempDir(), "l.db")
			if tc.ledger != "" {
				db = filepath.Join(filepath.Dir(db), tc.ledger)
			}
			url := sb.URL
			if tc.noURL {
				url = ""
			}
			in := csvPath
			if tc.csv != "" {
				in = tc.csv
			}
			p := aopbatch(t, tc.env, runArgs(in, db, url, tc.args...)...)
			if p.code != 1 || !strings.Contains(p.stderr, tc.errText) {
				t.Errorf("exit %d, want 1 saying %q\n%s", p.code, tc.errText, p.stderr)
			}
			if strings.Contains(p.stderr, "new=true") {
				t.Errorf("a refused run logged its ledger as new:\n%s", p.stderr)
			}
			entries, _ := os.ReadDir(filepath.Dir(db))
			for _, e := range entries {
				t.Errorf("a refused run left %s behind", e.Name())
			}
		})
	}
	if n := sb.Stats().Requests; n != 0 {
		t.Errorf("%d requests sent, want none", n)
	}
	db := filepath.Join(t.TempDir(), "l.db")
	p := aopbatch(t, nil, runArgs(csvPath, db, sb.URL)...)
	first, _, _ := strings.Cut(p.stderr, "\n")
	if p.code != 0 || !strings.Contains(first, "msg=ledger path="+db+" new=true") {
		t.Errorf("run creating the ledger: exit %d, want 0 and a first log line calling it new\n%s", p.code, p.stderr)
	}
}

// A row with the wrong number of cells has its cells in rejects.csv's
// reason, none under the columns, marked for review: which column each
// belongs to takes a person. Placed under the header as they came, an
// unquoted "1,250.00" made amount 1 and referenceid "250.00", a valid row
// that the file run as it is paid (a walkthrough); now run as it is, the
// file has them rejected again, and export leaves them out.
func TestRaggedRowsInRejectsKeepTheirCells(t *testing.T) {
	sb := sandbox(t, nil)
	dir := t.TempDir()
	db := filepath.Join(dir, "l.db")
	path := filepath.Join("..", "..", "testdata", "bad", "ragged-rows.csv")
	if p := aopbatch(t, nil, runArgs(path, db, sb.URL, "--max-reject-rate", "1")...); p.code != 2 {
		t.Fatalf("run: exit %d, want 2\n%s", p.code, p.stderr)
	}
	out := filepath.Join(dir, "rep")
	if p := aopbatch(t, nil, "report", "--ledger", db, "--out", out); p.code != 0 && p.code != 2 {
		t.Fatalf("report: exit %d\n%s", p.code, p.stderr)
	}
	f, err := os.Open(filepath.Join(out, "rejects.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"3": `this row 3; its 3 cells as they came (the header has 4), left out of the columns: put each under its own: "311", "CA2", "20"`,
		"5": `this row 5; its 5 cells as they came (the header has 4), left out of the columns: put each under its own: "311", "CA4", "40", "G4", "extra"`,
	}
	seen := 0
	for _, rec := range recs[1:] {
		line, reason, fixable := rec[len(rec)-4], rec[len(rec)-2], rec[len(rec)-1]
		cells := strings.Join(rec[:4], ",")
		if line == "7" {
			// A trailing comma shifts nothing: its cells stay under their columns.
			seen++
			if cells != "311,CA6,60,G6" || fixable != "review" {
				t.Errorf("rejects.csv line 7 (a trailing comma): cells %q, fixable %q; want them as they came, review", cells, fixable)
			}
			continue
		}
		w, ok := want[line]
		if !ok {
			continue
		}
		seen++
		if cells != ",,," || fixable != "review" || !strings.Contains(reason, w) {
			t.Errorf("rejects.csv line %s: cells %q, fixable %q, reason %q; want none, review, %q", line, cells, fixable, reason, w)
		}
	}
	if seen != 3 {
		t.Errorf("rejects.csv has %d of the three ragged rows:\n%v", seen, recs)
	}
	// --out naming a directory is refused up front, with a file to name.
	if ex := aopbatch(t, nil, "export", "--ledger", db, "--state", "rejected", "--out", out); ex.code != 1 ||
		!strings.Contains(ex.stderr, "is a directory: name a file, e.g. "+filepath.Join(out, "retry.csv")) {
		t.Errorf("export --out DIR: exit %d, want 1 and a file to name\n%s", ex.code, ex.stderr)
	}
	ex := aopbatch(t, nil, "export", "--ledger", db, "--state", "rejected")
	if strings.Contains(ex.stdout, "CA2") || strings.Contains(ex.stdout, "CA4") || !strings.Contains(ex.stdout, "CA6") ||
		!strings.Contains(ex.stderr, "left out 2 rejected rows whose cells do not fit the header") {
		t.Errorf("export --state rejected: exit %d, want the ragged rows left out and named\n%s%s", ex.code, ex.stdout, ex.stderr)
	}
	// Run as it is, under a batch of its own: the ragged rows are rejected
	// again, nothing of them sent.
	before := sb.Stats().Recharges
	p := aopbatch(t, nil, runArgs(filepath.Join(out, "rejects.csv"), db, sb.URL, "--batch", "rejects-again", "--max-reject-rate", "1")...)
	if p.code != 1 && p.code != 2 {
		t.Errorf("rejects.csv run as it is: exit %d, want its rows rejected again\n%s", p.code, p.stderr)
	}
	if n := sb.Stats().Recharges - before; n != 1 {
		t.Errorf("rejects.csv run as it is sent %d Recharges, want 1 (line 7's, whose cells were where they belong)\n%s", n, p.stderr)
	}
	_, byRef, _ := ledgerRows(t, db)
	if r, ok := byRef["G6"]; !ok || r.State != ledger.StateSuccess {
		t.Errorf("line 7's row, run again: %+v, want success", r)
	}
}

// A dry run of a file already recorded answers as the first did: its
// rejected rows listed and exit 2, not 0 with none (a walkthrough: a
// "validate first" script passed a bad file on its second check).
func TestDryRunAgainStillReportsRejectedRows(t *testing.T) {
	sb := sandbox(t, nil)
	db, csvPath := batchFiles(t)
	rows := goodRows(20, "DRY")
	rows[4].amount = "abc"
	writeCSV(t, csvPath, rows)
	for i := 1; i <= 2; i++ {
		p := aopbatch(t, nil, runArgs(csvPath, db, sb.URL, "--dry-run")...)
		if p.code != 2 || !strings.Contains(p.stderr, `line 6, column "amount", value "abc"`) {
			t.Errorf("dry run %d: exit %d, want 2 naming line 6's amount\n%s", i, p.code, p.stderr)
		}
	}
	if n := sb.Stats().Recharges; n != 0 {
		t.Errorf("dry runs sent %d requests", n)
	}
}

// A batch whose recording was cut short (a run killed while recording the
// file) says so wherever its counts are read: they are of part of the
// file. (A walkthrough: status showed 73,728 rows of a 200,000-row file
// and no sign that recording had stopped.)
func TestPartlyRecordedBatchSaysSo(t *testing.T) {
	db := filepath.Join(t.TempDir(), "l.db")
	ctx := context.Background()
	l, err := sqlite.Open(ctx, db, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Taken and never finished: what a run killed while recording leaves.
	if _, err := l.Acquire(ctx, ledger.NewBatch{ID: "cut-short", ContentHash: "h", Source: "big.csv",
		Header: []string{"operator", "canumber", "amount", "referenceid"}}, ledger.NewOwner("dead"), time.Second); err != nil {
		t.Fatal(err)
	}
	l.Close()
	if p := aopbatch(t, nil, "status", "--ledger", db); p.code != 0 || !strings.Contains(p.stdout, "cut-short (recording incomplete)") {
		t.Errorf("status: exit %d, want 0 and the batch marked as recording incomplete\n%s%s", p.code, p.stdout, p.stderr)
	}
	out := filepath.Join(t.TempDir(), "r")
	for _, args := range [][]string{
		{"status", "--ledger", db, "--batch", "cut-short"},
		{"report", "--ledger", db, "--batch", "cut-short", "--out", out},
		{"export", "--ledger", db, "--batch", "cut-short", "--state", "failed"},
	} {
		if p := aopbatch(t, nil, args...); !strings.Contains(p.stderr, "was not wholly recorded") || !strings.Contains(p.stderr, "aopbatch run") {
			t.Errorf("%s: exit %d, no word that the batch was not wholly recorded and how to finish it\n%s", args[0], p.code, p.stderr)
		}
	}
	// The files are read the next morning, without that warning.
	for _, name := range []string{"summary.md", "report.html"} {
		if b, err := os.ReadFile(filepath.Join(out, name)); err != nil || !strings.Contains(string(b), "Only part of the file was recorded") {
			t.Errorf("%s does not say its figures are of part of the file (%v)", name, err)
		}
	}
}

// An edited copy of a file whose recording was killed part way is not
// blocked by it: the dead recording sent nothing, and its rows held their
// referenceids against the copy's, whose rows were all conflicts, never
// paid, while the run ended as if finished (a review: 24,576 of 40,000).
func TestRecordingKilledPartWayDoesNotBlockTheNextFile(t *testing.T) {
	sb := sandbox(t, nil)
	dir := t.TempDir()
	db, first, edited := filepath.Join(dir, "l.db"), filepath.Join(dir, "big.csv"), filepath.Join(dir, "big-edited.csv")
	rows := goodRows(50_000, "KP")
	writeCSV(t, first, rows)
	cmd, errb := startRunOut(t, runArgs(first, db, sb.URL, "--dry-run"), false)
	// Killed once part of the file is recorded (a chunk commits every
	// 8,192 rows; the whole file takes a quarter second or more).
	ctx := context.Background()
	recorded := func() int64 {
		rdb, err := sql.Open("sqlite", "file:"+db+"?mode=ro&_pragma=busy_timeout(1000)")
		if err != nil {
			t.Fatal(err)
		}
		defer rdb.Close()
		var n int64
		if err := rdb.QueryRowContext(ctx, `SELECT count(*) FROM rows`).Scan(&n); err != nil {
			return 0 // the ledger is not made yet
		}
		return n
	}
	for end := time.Now().Add(30 * time.Second); recorded() == 0 && time.Now().Before(end); {
		time.Sleep(5 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	n := recorded()
	l, err := openLedgerFile(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	b, err := l.Batch(ctx, "latest")
	l.Close()
	if err != nil || b.Ready || n == 0 {
		t.Fatalf("setup: after the kill %d rows recorded, batch %+v (%v), want part of the file, not ready\n%s", n, b, err, errb)
	}

	rows[len(rows)-1].amount = "99.00"
	writeCSV(t, edited, rows)
	p := aopbatch(t, nil, runArgs(edited, db, sb.URL, "--dry-run")...)
	if p.code != 0 || !strings.Contains(p.stderr, "dropped a batch whose recording stopped part way") {
		t.Errorf("the edited file: exit %d, want 0 saying the cut recording was cleared\n%s", p.code, p.stderr)
	}
	l, err = openLedgerFile(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	b, err = l.Batch(ctx, "latest")
	if err != nil {
		t.Fatal(err)
	}
	c, err := l.Counts(ctx, b.Seq)
	if err != nil {
		t.Fatal(err)
	}
	if c[ledger.StateQueued].Rows != int64(len(rows)) || c[ledger.StateConflict].Rows != 0 {
		t.Errorf("the edited file's batch: %v, want all %d rows queued and none in conflict", c, len(rows))
	}
	if n := sb.Stats().Recharges; n != 0 {
		t.Errorf("dry runs sent %d Recharges", n)
	}
}

// TestInputFileFlagGivenTwice: "--csv a.csv --csv b.csv" is refused
// before anything is sent, rather than sending b.csv alone and exiting 0
// with a.csv silently dropped; so is a second --statement. The same
// value twice is harmless, and other flags keep "the last wins".
func TestInputFileFlagGivenTwice(t *testing.T) {
	sb := sandbox(t, nil)
	db, first := batchFiles(t)
	second := filepath.Join(filepath.Dir(first), "second.csv")
	writeCSV(t, first, goodRows(3, "T1-"))
	writeCSV(t, second, goodRows(3, "T2-"))
	p := aopbatch(t, nil, runArgs(first, db, sb.URL, "--csv", second)...)
	if p.code != 1 || !strings.Contains(p.stderr, "--csv given twice") {
		t.Errorf("--csv given twice: exit %d, want 1 saying so\n%s", p.code, p.stderr)
	}
	if n := sb.Stats().Recharges; n != 0 {
		t.Errorf("%d recharges sent, want none", n)
	}
	p = aopbatch(t, nil, "report", "--ledger", db, "--statement", first, "--statement", second, "--out", t.TempDir())
	if p.code != 1 || !strings.Contains(p.stderr, "--statement given twice") {
		t.Errorf("--statement given twice: exit %d, want 1 saying so\n%s", p.code, p.stderr)
	}
	p = aopbatch(t, nil, runArgs(first, db, sb.URL, "--csv", first, "--rate", "50")...)
	if p.code != 0 {
		t.Errorf("the same --csv twice, --rate overridden: exit %d, want 0\n%s", p.code, p.stderr)
	}
}

// TestReadOnlyLedgerDirectorySaysWhy: SQLite refuses to open a ledger in
// a directory the user may not write in with only "attempt to write a
// readonly database (1544)", even to read it. The message says why and
// what to change. (Root writes anywhere, so the words SQLite gives a
// non-root user, measured, stand in for opening one here.)
func TestReadOnlyLedgerDirectorySaysWhy(t *testing.T) {
	err := ledgerTrouble(errors.New("open ledger /srv/l.db: attempt to write a readonly database (1544)"))
	if !strings.Contains(err.Error(), "this user must be able to write in its directory and the file, even to read it") {
		t.Errorf("ledgerTrouble = %v, want why and what to change", err)
	}
}

// TestStatusOfACopyCutShortSaysRunTheCopyAgain: status on a batch a
// ledger copy left not ready says to run the copy again, not the file (a
// run of the file is refused: it would record over rows that were paid).
func TestStatusOfACopyCutShortSaysRunTheCopyAgain(t *testing.T) {
	ctx := context.Background()
	db := filepath.Join(t.TempDir(), "l.db")
	l, err := sqlite.Open(ctx, db, sqlite.Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	im, err := l.ImportBatch(ctx, ledger.Batch{ID: "copied", ContentHash: "h", Source: "c.csv", Ready: true, Created: now, RowsTotal: 2})
	if err != nil {
		t.Fatal(err)
	}
	if err := im.Rows(ctx, []ledger.Row{{Line: 2, ReferenceID: "C2", Operator: 311, CANumber: "CA2", AmountPaise: 500,
		Request: []byte(`{}`), State: ledger.StateSuccess, ResponseCode: 1, Attempts: 1, FirstSent: now, Updated: now}}); err != nil {
		t.Fatal(err)
	}
	l.Close()
	p := aopbatch(t, nil, "status", "--ledger", db, "--batch", "copied")
	if !strings.Contains(p.stderr, "a ledger copy stopped part way") || !strings.Contains(p.stderr, "run the same aopbatch ledger copy again") ||
		strings.Contains(p.stderr, "run the file again") {
		t.Errorf("status of a copy cut short: exit %d, want it to say to run the copy again\n%s", p.code, p.stderr)
	}
}
