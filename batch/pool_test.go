package batch

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A pool whose want grows while every worker is busy starts the new
// workers then: jobs do not wait for a busy worker to come back.
func TestPoolGrowsWhileItsWorkersAreBusy(t *testing.T) {
	var want atomic.Int64
	want.Store(1)
	release := make(chan struct{})
	var started sync.WaitGroup
	started.Add(3)
	p := newPool(10, func() int { return int(want.Load()) }, func(job) {
		started.Done()
		<-release
	})
	go func() {
		for range 3 {
			p.submit(job{})
		}
	}()
	time.Sleep(100 * time.Millisecond) // one worker busy, the second job waiting
	want.Store(3)
	done := make(chan struct{})
	go func() { started.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("3 jobs not started 5 s after want grew to 3, with every worker busy")
	}
	close(release)
	p.close()
}
