package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/aopbatch/aopbatch/batch/aop/aoptest"
	"github.com/aopbatch/aopbatch/ledger"
	"github.com/aopbatch/aopbatch/ledger/postgres/pgtest"
)

// TestPostgresEndToEnd runs the whole job on a PostgreSQL ledger: run,
// status, report, export and resolve, with the password in the URL and
// then from PGPASSWORD. The password appears in no output, report file or
// ledger row.
func TestPostgresEndToEnd(t *testing.T) {
	srv := pgtest.Start(t)
	db := srv.NewDB(t)
	sb := sandbox(t, func(c *aoptest.Config) {
		c.PendingRate = 0.1
		c.PendingDelay = 200 * time.Millisecond
		c.FailRate = 0.05
	})
	dir := t.TempDir()
	csvPath, rep := filepath.Join(dir, "in.csv"), filepath.Join(dir, "rep")
	rows := goodRows(300, "P")
	writeCSV(t, csvPath, rows)

	var seen strings.Builder
	check := func(p proc, wantCodes ...int) {
		t.Helper()
		seen.WriteString(p.stdout + p.stderr)
		for _, c := range wantCodes {
			if p.code == c {
				return
			}
		}
		t.Fatalf("exit %d, want one of %v\n%s%s", p.code, wantCodes, p.stdout, p.stderr)
	}
	withPW := srv.URL(db)
	p := aopbatch(t, nil, runArgs(csvPath, withPW, sb.URL, "--report", rep)...)
	check(p, 0, 2)
	ledgerAgreesWithSandbox(t, sb, withPW, rows)

	// The rest with the password from the environment, as the README says.
	env := []string{"PGPASSWORD=" + srv.Password()}
	noPW := srv.URLNoPassword(db)
	for _, args := range [][]string{
		{"status", "--ledger", noPW},
		{"status", "--ledger", noPW, "--batch", "latest"},
		{"report", "--ledger", noPW, "--batch", "latest", "--out", filepath.Join(dir, "rep2")},
		{"export", "--ledger", noPW, "--batch", "latest", "--state", "failed", "--out", filepath.Join(dir, "failed.csv")},
		{"resolve", "--ledger", noPW, "--batch", "latest", "--base-url", sb.URL, "--registration-id", "AOP-554", "--progress", "never"},
	} {
		check(aopbatch(t, env, args...), 0, 2)
	}
	// A wrong password is one clear line, without the password.
	p = aopbatch(t, nil, "status", "--ledger", strings.Replace(withPW, srv.Password(), "not-"+srv.Password()+"-x", 1))
	if p.code != 1 || !strings.Contains(p.stderr, "password authentication failed") {
		t.Errorf("wrong password: exit %d, want 1 with a clear reason\n%s", p.code, p.stderr)
	}
	seen.WriteString(p.stdout + p.stderr)

	if strings.Contains(seen.String(), srv.Password()) {
		t.Error("the PostgreSQL password appears in aopbatch's output")
	}
	if !strings.Contains(seen.String(), "127.0.0.1") {
		t.Error("no output names the ledger's host: the check above saw nothing")
	}
	for _, d := range []string{rep, filepath.Join(dir, "rep2")} {
		filepath.WalkDir(d, func(path string, e os.DirEntry, err error) error {
			if err != nil || e.IsDir() {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(b), srv.Password()) {
				t.Errorf("%s holds the PostgreSQL password", path)
			}
			return nil
		})
	}
	l, err := openLedgerFile(context.Background(), withPW)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	b, err := l.Batch(context.Background(), "latest")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.EachRow(context.Background(), b.Seq, func(r *ledger.Row) error {
		if strings.Contains(r.Message+string(r.Request), srv.Password()) {
			t.Errorf("line %d holds the password", r.Line)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(l.Location(), srv.Password()) {
		t.Errorf("Location() = %q holds the password", l.Location())
	}
}

// TestLedgerCopyRoundTrip copies a SQLite ledger to PostgreSQL and back:
// the counts, the sums and report.json are the same in all three.
func TestLedgerCopyRoundTrip(t *testing.T) {
	srv := pgtest.Start(t)
	pg := srv.URL(srv.NewDB(t))
	sb := sandbox(t, func(c *aoptest.Config) {
		c.PendingRate = 0.2
		c.PendingDelay = time.Hour // some stay pending: not every row is final
		c.FailRate = 0.1
	})
	dir := t.TempDir()
	csvPath, src, back := filepath.Join(dir, "in.csv"), filepath.Join(dir, "src.db"), filepath.Join(dir, "back.db")
	rows := goodRows(200, "R")
	rows[5].amount = "abc" // one rejected
	writeCSV(t, csvPath, rows)
	if p := aopbatch(t, nil, runArgs(csvPath, src, sb.URL, "--resolve-timeout", "1s")...); p.code != 3 {
		t.Fatalf("run: exit %d, want 3 (rows left pending)\n%s", p.code, p.stderr)
	}
	for _, hop := range [][2]string{{src, pg}, {pg, back}} {
		p := aopbatch(t, nil, "ledger", "copy", "--from", hop[0], "--to", hop[1])
		if p.code != 0 || !strings.Contains(p.stdout, "counts and sums by state agree") {
			t.Fatalf("ledger copy %s: exit %d\n%s%s", hop[1], p.code, p.stdout, p.stderr)
		}
		if strings.Contains(p.stdout+p.stderr, srv.Password()) {
			t.Error("ledger copy printed the PostgreSQL password")
		}
	}
	reportOf := func(loc string) map[string]any {
		t.Helper()
		out := filepath.Join(t.TempDir(), "rep")
		if p := aopbatch(t, nil, "report", "--ledger", loc, "--batch", "latest", "--format", "json", "--out", out); p.code != 0 {
			t.Fatalf("report on %s: exit %d\n%s", loc, p.code, p.stderr)
		}
		b, err := os.ReadFile(filepath.Join(out, "report.json"))
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		// When the report was written, and ages counted from then.
		delete(m, "generated_at")
		scrubAges(m)
		return m
	}
	want := reportOf(src)
	if c, _ := want["counts"].(map[string]any); c == nil || c["pending"] == float64(0) || c["rejected"] != float64(1) {
		t.Fatalf("source report counts %v: want pending and one rejected row, or the copy tests little", want["counts"])
	}
	for _, loc := range []string{pg, back} {
		if got := reportOf(loc); !reflect.DeepEqual(got, want) {
			gj, _ := json.MarshalIndent(got, "", " ")
			wj, _ := json.MarshalIndent(want, "", " ")
			t.Errorf("report.json from the copy differs:\n%s\nwant\n%s", gj, wj)
		}
	}
	// Copying again is refused: the batch is there.
	if p := aopbatch(t, nil, "ledger", "copy", "--from", src, "--to", back); p.code != 1 || !strings.Contains(p.stderr, "already in the ledger") {
		t.Errorf("second copy: exit %d\n%s", p.code, p.stderr)
	}
}

// scrubAges removes the report's ages in seconds, which depend on when it
// was written, at any depth.
func scrubAges(v any) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if strings.HasSuffix(k, "unresolved_seconds") {
				delete(v, k)
				continue
			}
			scrubAges(x)
		}
	case []any:
		for _, x := range v {
			scrubAges(x)
		}
	}
}
