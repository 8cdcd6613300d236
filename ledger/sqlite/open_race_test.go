package sqlite

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// openEnv, when set, names the ledger TestOpenHelperProcess opens; openAtEnv
// is the Unix millisecond at which it does, so every child opens at once.
const (
	openEnv   = "AOPBATCH_LEDGER_OPEN_HELPER"
	openAtEnv = "AOPBATCH_LEDGER_OPEN_AT"
)

// TestOpenHelperProcess is not a test on its own: TestOpenRace runs the
// test binary again with openEnv set, and then this is the child.
func TestOpenHelperProcess(t *testing.T) {
	path := os.Getenv(openEnv)
	if path == "" {
		t.Skip("helper process for TestOpenRace")
	}
	at, _ := strconv.ParseInt(os.Getenv(openAtEnv), 10, 64)
	time.Sleep(time.Until(time.UnixMilli(at)))
	l, err := Open(context.Background(), path, Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(2)
	}
	if _, err := l.Batches(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "read:", err)
		os.Exit(2)
	}
	l.Close()
	os.Exit(0)
}

// Processes that open a new ledger at the same moment all work: creating
// the schema is safe to race (SPEC section 4).
func TestOpenRace(t *testing.T) {
	t.Parallel()
	const rounds, procs = 5, 4
	for round := range rounds {
		path := filepath.Join(t.TempDir(), "new.db")
		at := time.Now().Add(500 * time.Millisecond).UnixMilli()
		var wg sync.WaitGroup
		errs := make([]string, procs)
		for i := range procs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cmd := exec.Command(os.Args[0], "-test.run=^TestOpenHelperProcess$")
				cmd.Env = append(os.Environ(), openEnv+"="+path, openAtEnv+"="+strconv.FormatInt(at, 10))
				if out, err := cmd.CombinedOutput(); err != nil {
					errs[i] = fmt.Sprintf("%v: %s", err, out)
				}
			}()
		}
		wg.Wait()
		for i, e := range errs {
			if e != "" {
				t.Errorf("round %d, process %d: %s", round, i, e)
			}
		}
		if got, want := userVersion(t, path), migrationCount(t); got != want {
			t.Errorf("round %d: user_version = %d, want %d", round, got, want)
		}
	}
}
