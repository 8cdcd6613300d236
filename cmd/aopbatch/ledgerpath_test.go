package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/aopbatch/aopbatch/batch/aop/aoptest"
)

// TestLedgerPathWithKeyValueNameResumes: a SQLite ledger whose path holds
// "dbname=" or begins "host=" (a directory per database or per host, as
// data lakes name them) is a file path, not a connection string. One
// such ledger, made before the refusal of key=value strings, holds a batch
// interrupted with its rows unsettled: the rerun must resume it, resolve
// its rows and charge each once, and ledger copy must move it out. Refused,
// the batch could be neither resumed nor resolved nor copied, and its
// unknown rows stayed money at risk.
func TestLedgerPathWithKeyValueNameResumes(t *testing.T) {
	for _, name := range []string{filepath.Join("dbname=prod", "aopbatch.db"), filepath.Join("host=web1", "aopbatch.db")} {
		t.Run(name, func(t *testing.T) {
			sb := sandbox(t, func(c *aoptest.Config) { c.Fault5xxRate = 1 })
			dir := t.TempDir()
			csvPath := filepath.Join(dir, "in.csv")
			rows := goodRows(5, "KV")
			writeCSV(t, csvPath, rows)
			// The interrupted run, on a ledger then named plainly.
			plain := filepath.Join(dir, "plain.db")
			if p := aopbatch(t, nil, runArgs(csvPath, plain, sb.URL, "--resolve-timeout", "1s")...); p.code != 3 {
				t.Fatalf("first run: exit %d, want 3\n%s", p.code, p.stderr)
			}
			loc := filepath.Join(dir, name)
			if err := os.MkdirAll(filepath.Dir(loc), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(plain, loc); err != nil {
				t.Fatal(err)
			}
			sb.SetFaults(aoptest.Faults{})
			// The path as the job gives it: relative to its directory.
			args := runArgs(csvPath, name, sb.URL)
			cmd := aopbatchCmd(context.Background(), nil, args...)
			cmd.Dir = dir
			out, err := cmd.CombinedOutput()
			p := finished(t, args, err, "", string(out))
			if p.code != 0 {
				t.Fatalf("rerun on --ledger %s: exit %d, want 0\n%s", name, p.code, out)
			}
			wantOnce(t, rows, "charged", sb.Charged)
			if p := aopbatch(t, nil, "ledger", "copy", "--from", loc, "--to", filepath.Join(dir, "moved.db")); p.code != 0 {
				t.Errorf("ledger copy --from %s: exit %d\n%s%s", loc, p.code, p.stdout, p.stderr)
			}
		})
	}
}
