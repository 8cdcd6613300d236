package aoptest

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

// BenchmarkRechargeHandler measures the handler alone: unique references,
// no network.
func BenchmarkRechargeHandler(b *testing.B) {
	s := New(DefaultConfig())
	var n atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			body := recharge(fmt.Sprintf("bh-%d", n.Add(1)), 311, "10")
			req := httptest.NewRequest(http.MethodPost, "/api/AOP/Recharge", bytes.NewReader(body))
			w := httptest.NewRecorder()
			s.ServeHTTP(w, req)
			if w.Code != 200 {
				b.Fatalf("HTTP %d %s", w.Code, w.Body)
			}
		}
	})
}

// BenchmarkRechargeLoopback measures requests per second over loopback
// HTTP with keep-alive connections, the way the engine's benchmarks use it.
func BenchmarkRechargeLoopback(b *testing.B) {
	ts := NewServer(DefaultConfig())
	defer ts.Close()
	tr := &http.Transport{MaxIdleConnsPerHost: 256}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	var n atomic.Int64
	b.SetParallelism(8)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			body := recharge(fmt.Sprintf("bl-%d", n.Add(1)), 311, "10")
			resp, err := c.Post(ts.URL+"/api/AOP/Recharge", "application/json", bytes.NewReader(body))
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Fatalf("HTTP %d", resp.StatusCode)
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}
