package batch

import (
	"sync"

	"github.com/aopbatch/aopbatch/ledger"
)

// job is one row for a worker: to send, or to ask the provider about.
type job struct {
	row     ledger.Row
	enquire bool
}

// pool is the run's workers. It starts one only when a job finds none
// idle, up to max, so it grows to what the in-flight limit uses (workers
// beyond it wait for a slot at the gate) and never to one per row. Idle
// workers wait on the channel.
type pool struct {
	jobs chan job // unbuffered: a send succeeds only into an idle worker
	work func(job)
	max  int

	mu   sync.Mutex
	size int
	wg   sync.WaitGroup
}

func newPool(max int, work func(job)) *pool {
	return &pool{jobs: make(chan job), work: work, max: max}
}

// submit hands j to a worker, starting one if none is idle and the pool
// is not full, and waits until one takes it. Workers always drain the
// channel, so it returns.
func (p *pool) submit(j job) {
	select {
	case p.jobs <- j:
		return
	default:
	}
	p.mu.Lock()
	if p.size < p.max {
		p.size++
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for j := range p.jobs {
				p.work(j)
			}
		}()
	}
	p.mu.Unlock()
	p.jobs <- j
}

// close waits for the jobs handed out to be done. Call it once every
// submit has returned.
func (p *pool) close() {
	close(p.jobs)
	p.wg.Wait()
}
