package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/aopbatch/aopbatch/batch/aop/aoptest"
	"github.com/aopbatch/aopbatch/ledger/sqlite"
)

// recordingSandbox is a sandbox behind a handler that keeps every Recharge
// body by referenceid: what the provider really received.
type recordingSandbox struct {
	*aoptest.Server
	URL      string
	mu       sync.Mutex
	bodies   map[string][]map[string]any
	enquired []string // referenceids of the status enquiries, in order
}

func newRecordingSandbox(t *testing.T, mutate func(*aoptest.Config)) *recordingSandbox {
	t.Helper()
	cfg := aoptest.DefaultConfig()
	cfg.Seed = 1
	if mutate != nil {
		mutate(&cfg)
	}
	rs := &recordingSandbox{Server: aoptest.New(cfg), bodies: map[string][]map[string]any{}}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/AOP/RechargeStatus" {
			body, _ := io.ReadAll(r.Body)
			var m struct {
				Ref string `json:"referenceid"`
			}
			_ = json.Unmarshal(body, &m)
			rs.mu.Lock()
			rs.enquired = append(rs.enquired, m.Ref)
			rs.mu.Unlock()
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		if r.URL.Path == "/api/AOP/Recharge" {
			body, _ := io.ReadAll(r.Body)
			var m map[string]any
			if json.Unmarshal(body, &m) == nil {
				ref, _ := m["referenceid"].(string)
				rs.mu.Lock()
				rs.bodies[ref] = append(rs.bodies[ref], m)
				rs.mu.Unlock()
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		rs.Server.ServeHTTP(w, r)
	}))
	t.Cleanup(func() { rs.Server.ReleaseStalls(); hs.Close() })
	rs.URL = hs.URL
	return rs
}

// enquiries returns the referenceids enquired about since the last call.
func (rs *recordingSandbox) enquiries() []string {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	out := rs.enquired
	rs.enquired = nil
	return out
}

// received returns the canumber and cellNumber of the one request for ref.
func (rs *recordingSandbox) received(t *testing.T, ref string) (canumber, cell string) {
	t.Helper()
	rs.mu.Lock()
	defer rs.mu.Unlock()
	got := rs.bodies[ref]
	if len(got) != 1 {
		t.Fatalf("ref %s: %d requests reached the provider, want 1", ref, len(got))
	}
	canumber, _ = got[0]["canumber"].(string)
	if bf, ok := got[0]["bill_fetch"].(map[string]any); ok {
		cell, _ = bf["cellNumber"].(string)
	}
	return canumber, cell
}

// rewriteCSV reads path, lets edit change each data record (with the
// header's column index), and writes it back.
func rewriteCSV(t *testing.T, path string, edit func(col map[string]int, rec []string)) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	col := map[string]int{}
	for i, h := range recs[0] {
		col[h] = i
	}
	for _, rec := range recs[1:] {
		edit(col, rec)
	}
	var out bytes.Buffer
	w := csv.NewWriter(&out)
	_ = w.WriteAll(recs)
	if err := os.WriteFile(path, out.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

// Issue 15, defect 2: files written to be fed back (rejects.csv, export)
// carry the formula escape, and aopbatch's own reader takes it off again,
// so the provider receives exactly the values of the original file.
func TestFedBackFilesKeepTheOriginalValues(t *testing.T) {
	sb := newRecordingSandbox(t, func(c *aoptest.Config) { c.DownOperators = []int64{27} })
	dir := t.TempDir()
	db, in, rep := filepath.Join(dir, "l.db"), filepath.Join(dir, "in.csv"), filepath.Join(dir, "rep")
	const ca, cell = "=1+1", "+919800000014"
	body := "operator,canumber,amount,referenceid,cellNumber,userName\n" +
		"311,CA000001,10.00,OK1,9800000001,ASHA\n" +
		"311,\"=1+1\",10.005,BAD1,+919800000014,ASHA\n" + // rejected: amount
		"27,\"=1+1\",12.00,DOWN1,+919800000014,ASHA\n" + // failed: operator down
		"311,CA000004,11.00,OK2,9800000004,ASHA\n"
	if err := os.WriteFile(in, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	if p := aopbatch(t, nil, runArgs(in, db, sb.URL, "--max-reject-rate", "1", "--report", rep)...); p.code != 2 {
		t.Fatalf("run: exit %d, want 2\n%s", p.code, p.stderr)
	}
	if got, want := sb.received(t, "DOWN1"); got != ca || want != cell {
		t.Fatalf("the first run sent canumber %q cellNumber %q", got, want)
	}

	// rejects.csv, its amount corrected, goes back in as it is.
	fixed := filepath.Join(dir, "fixed.csv")
	b, err := os.ReadFile(filepath.Join(rep, "rejects.csv"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(fixed, b, 0o600); err != nil {
		t.Fatal(err)
	}
	rewriteCSV(t, fixed, func(col map[string]int, rec []string) {
		rec[col["amount"]] = "10.00"
		rec[col["referenceid"]] = "BAD1-FIXED"
	})
	if p := aopbatch(t, nil, runArgs(fixed, db, sb.URL)...); p.code != 0 {
		t.Fatalf("corrected rejects.csv: exit %d\n%s", p.code, p.stderr)
	}
	if gotCA, gotCell := sb.received(t, "BAD1-FIXED"); gotCA != ca || gotCell != cell {
		t.Errorf("through rejects.csv the provider received canumber %q cellNumber %q, want %q %q", gotCA, gotCell, ca, cell)
	}

	// export --state failed, a new referenceid given, the operator up again.
	sb.SetOperatorDown(27, false)
	exported := filepath.Join(dir, "retry.csv")
	// The first batch, by its id: latest is now the corrected rejects.
	first := firstBatchID(t, db)
	if p := aopbatch(t, nil, "export", "--ledger", db, "--batch", first, "--state", "failed", "--out", exported); p.code != 0 {
		t.Fatalf("export: exit %d\n%s", p.code, p.stderr)
	}
	raw, _ := os.ReadFile(exported)
	if !strings.Contains(string(raw), "'=1+1") || !strings.Contains(string(raw), "'+919800000014") {
		t.Errorf("export does not escape formula cells:\n%s", raw)
	}
	rewriteCSV(t, exported, func(col map[string]int, rec []string) { rec[col["referenceid"]] = "DOWN1-RETRY" })
	if p := aopbatch(t, nil, runArgs(exported, db, sb.URL)...); p.code != 0 {
		t.Fatalf("exported file: exit %d\n%s", p.code, p.stderr)
	}
	if gotCA, gotCell := sb.received(t, "DOWN1-RETRY"); gotCA != ca || gotCell != cell {
		t.Errorf("through export the provider received canumber %q cellNumber %q, want %q %q", gotCA, gotCell, ca, cell)
	}
}

// firstBatchID is the id of the oldest batch of the ledger at path.
func firstBatchID(t *testing.T, path string) string {
	t.Helper()
	l, err := sqlite.Open(context.Background(), path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	bs, err := l.Batches(context.Background())
	if err != nil || len(bs) == 0 {
		t.Fatalf("batches: %v %v", bs, err)
	}
	first := bs[0]
	for _, b := range bs {
		if b.Seq < first.Seq {
			first = b
		}
	}
	return first.ID
}
