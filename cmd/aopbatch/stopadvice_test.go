package main

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/aopbatch/aopbatch/batch"
	"github.com/aopbatch/aopbatch/batch/aop/aoptest"
	"github.com/aopbatch/aopbatch/ledger"
)

// TestUnknownLimitStopAdvisesWhatIsLeft: after an --max-unknown-amount
// stop the run asks the provider about the unknown rows before it exits.
// When that settles them all, "run aopbatch resolve" was stale advice
// (resolve sends no queued row) and nothing said to run the file again
// for the rows not sent. The last words, in text and in the JSON
// summary, say why the run stopped and what to do about what is left.
func TestUnknownLimitStopAdvisesWhatIsLeft(t *testing.T) {
	for _, tc := range []struct {
		name        string
		faults      func(*aoptest.Config)
		wantUnknown bool // rows still of unknown outcome at the end
	}{
		// Recorded and charged, the answer lost: the enquiries find them all.
		{"provider has every row", func(c *aoptest.Config) { c.LostRate = 1 }, false},
		// HTTP 5xx, nothing recorded: not found, they stay unknown (nothing
		// is sent after a stop).
		{"provider has no row", func(c *aoptest.Config) { c.Fault5xxRate = 1 }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, format := range []string{"text", "json"} {
				sb := sandbox(t, tc.faults)
				db, csvPath := batchFiles(t)
				writeCSV(t, csvPath, goodRows(100, "U"))
				p := aopbatch(t, nil, runArgs(csvPath, db, sb.URL, "--workers", "1", "--max-unknown-amount", "50",
					"--resolve-timeout", "2s", "--log-format", format)...)
				if p.code != 3 {
					t.Fatalf("%s: exit %d, want 3\n%s", format, p.code, p.stderr)
				}
				_, _, all := ledgerRows(t, db)
				c := countStates(all)
				if got := c[ledger.StateUnknown] > 0; got != tc.wantUnknown || c[ledger.StateQueued] == 0 {
					t.Fatalf("%s: states %v: want unknown rows left %v, and queued rows", format, c, tc.wantUnknown)
				}
				msg := lastLine(p.stderr)
				if format == "json" {
					var sum map[string]any
					if err := json.Unmarshal([]byte(strings.TrimSpace(p.stdout)), &sum); err != nil {
						t.Fatalf("json summary %q: %v", p.stdout, err)
					}
					msg, _ = sum["error"].(string)
				}
				for _, want := range []string{"exceeded --max-unknown-amount 50.00", "run the same aopbatch run command again"} {
					if !strings.Contains(msg, want) {
						t.Errorf("%s: %q does not say %q", format, msg, want)
					}
				}
				if got := strings.Contains(msg, "aopbatch resolve"); got != tc.wantUnknown {
					t.Errorf("%s: %q names aopbatch resolve: %v, want %v (unknown rows left)", format, msg, got, tc.wantUnknown)
				}
			}
		})
	}
}

// TestStopAdviceFollowsWhatIsLeft covers the ends the sandbox does not
// reach in one run: only rows of unknown outcome left, and nothing left.
// Stops whose advice does not depend on the rows left keep it as it was.
func TestStopAdviceFollowsWhatIsLeft(t *testing.T) {
	limit := &batch.StopError{Reason: batch.StopUnknownLimit, Detail: "60.10 in rows whose outcome was unknown exceeded --max-unknown-amount 50.00"}
	for _, tc := range []struct {
		name      string
		stop      *batch.StopError
		counts    ledger.Counts
		want, not []string
	}{
		{"unknown left only", limit, ledger.Counts{ledger.StateSuccess: {Rows: 3}, ledger.StateUnknown: {Rows: 2}},
			[]string{"2 waiting for the provider's final answer (money may have moved): run aopbatch resolve"}, []string{"not sent yet"}},
		{"nothing left", limit, ledger.Counts{ledger.StateSuccess: {Rows: 5}},
			[]string{"none of the batch's rows is of unknown outcome now", "nothing is left to send"}, []string{"aopbatch resolve", "command again"}},
		{"after a stop of the enquiries", &batch.StopError{Reason: batch.StopAuth, Detail: "status enquiry: authentication failed", Before: limit},
			ledger.Counts{ledger.StateQueued: {Rows: 4}, ledger.StateUnknown: {Rows: 1}},
			[]string{"4 not sent yet: run the same aopbatch run command again", "1 waiting for the provider's final answer (money may have moved): run aopbatch resolve"}, nil},
		{"wallet", &batch.StopError{Reason: batch.StopAccount, Detail: `provider answered 16 "Insufficient balance"`, Hint: "top up the wallet, then run again to send the remaining rows"},
			ledger.Counts{ledger.StateQueued: {Rows: 4}}, []string{"top up the wallet"}, []string{"not sent yet"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := stopAdvice(tc.stop, tc.counts)
			if s := new(*batch.StopError); !errors.As(err, s) || *s != tc.stop {
				t.Errorf("%v does not unwrap to the stop", err)
			}
			msg := err.Error()
			for _, want := range tc.want {
				if !strings.Contains(msg, want) {
					t.Errorf("%q does not say %q", msg, want)
				}
			}
			for _, not := range tc.not {
				if strings.Contains(msg, not) {
					t.Errorf("%q says %q", msg, not)
				}
			}
		})
	}
}
