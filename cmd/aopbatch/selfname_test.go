package main

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/aopbatch/aopbatch/ledger/postgres/pgtest"
)

// TestPostgresLogNamesItsOwnProcess: a survivor that takes over a dead
// process's rows names it "pid N on HOST"; the dead process's own log must
// carry the same words, or the operator cannot tell which of the hosts'
// log files belongs to the run that died (the process that recorded the
// file never named itself at all).
func TestPostgresLogNamesItsOwnProcess(t *testing.T) {
	srv := pgtest.Start(t)
	db := srv.URL(srv.NewDB(t))
	sb := sandbox(t, nil)
	_, csvPath := batchFiles(t)
	writeCSV(t, csvPath, goodRows(30, "N"))
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	args := runArgs(csvPath, db, sb.URL, "--batch", "names-1")
	for i, want := range []string{`msg="file recorded"`, `msg="resuming batch"`} {
		c, stderr := startRun(t, args)
		_ = c.Wait()
		if code := c.ProcessState.ExitCode(); code != 0 {
			t.Fatalf("run %d: exit %d\n%s", i, code, stderr)
		}
		self := fmt.Sprintf(`process="pid %d on %s"`, c.Process.Pid, host)
		found := false
		for _, line := range strings.Split(stderr.String(), "\n") {
			found = found || strings.Contains(line, want) && strings.Contains(line, self)
		}
		if !found {
			t.Errorf("run %d: no %s line names this process (%s):\n%s", i, want, self, stderr)
		}
	}
}
