package main

import (
	"context"
	"os"
	"path/filepath"
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
