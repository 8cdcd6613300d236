package reports

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/aopbatch/aopbatch/ledger"
)

func TestZZScale(t *testing.T) {
	const n = 200000
	ctx := context.Background()
	l, err := ledger.Open(ctx, filepath.Join(t.TempDir(), "l.db"), ledger.Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	o := ledger.NewOwner("x")
	b, _ := l.Acquire(ctx, ledger.NewBatch{ID: "big", ContentHash: "h", Header: fixtureHeader}, o, time.Hour)
	in, _ := l.BeginIngest(ctx, b, o, time.Hour)
	var sb strings.Builder
	sb.WriteString("refid,txnid,amount,status,refunded\n")
	for i := 0; i < n; i++ {
		r := fixtureRow{ref: fmt.Sprintf("R%07d", i), op: int64(300 + i%20), ca: "CA" + fmt.Sprint(i), paise: int64(100 + i%1000)}
		if _, _, err := in.Add(ctx, ledger.IngestRow{Line: i + 2, ReferenceID: r.ref, Operator: r.op, CANumber: r.ca, AmountPaise: r.paise, Request: request(r)}); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&sb, "R%07d,T%d,%s,1,0\n", (i*7919)%n, i, rupees(int64(100+((i*7919)%n)%1000)))
	}
	in.Finish(ctx)
	start := time.Now()
	st, err := ReadStatement(strings.NewReader(sb.String()), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("read statement %v", time.Since(start))
	start = time.Now()
	s, err := Build(ctx, l, b, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("build %v", time.Since(start))
	start = time.Now()
	if err := s.Reconcile(ctx, l, st); err != nil {
		t.Fatal(err)
	}
	t.Logf("reconcile %v: %+v", time.Since(start), s.Reconciliation.NotSent)
	start = time.Now()
	if _, err := Write(ctx, l, t.TempDir(), s, nil); err != nil {
		t.Fatal(err)
	}
	t.Logf("write %v", time.Since(start))
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	t.Logf("heap %d MB, sys %d MB, recon %d %d", m.HeapAlloc>>20, m.Sys>>20, s.Reconciliation.Matched, s.Reconciliation.AmountMismatch)
}
