package batch

import (
	"sync"
	"time"

	"github.com/aopbatch/aopbatch/ledger"
)

// job is one row for a worker: to send, or to ask the provider about.
type job struct {
	row     ledger.Row
	enquire bool
	asked   *sync.WaitGroup // when not nil, Done once the enquiry is answered
}

// pool is the run's workers. It starts one only when a job finds none
// idle and fewer than want() are at work, up to max: it grows with the
// in-flight limit (and a few more, whose waiting for a slot tells the
// controller the limit holds the run back), never to one per row. Idle
// workers wait on the channel. Rows are handed out only as workers can
// take them, so few sit dispatched and unsent, and the feeders of a pool
// (queued rows, rows to ask about) take turns.
type pool struct {
	jobs chan job // unbuffered: a send succeeds only into an idle worker
	work func(job)
	max  int
	want func() int

	mu   sync.Mutex
	size int
	wg   sync.WaitGroup
}

func newPool(max int, want func() int, work func(job)) *pool {
	return &pool{jobs: make(chan job), work: work, max: max, want: want}
}

// wantEvery is how often a job waiting for a worker asks want() again:
// the in-flight limit grows while every worker waits for an answer (a
// provider slower than the first guess), and its new workers must start
// then, not once a request comes back (a reviewer saw a 1 s gap in the
// first 2 s against a 2 s provider).
const wantEvery = 25 * time.Millisecond

// submit hands j to a worker, starting one if none is idle and the pool
// is not full, and waits until one takes it. Workers always drain the
// channel, so it returns.
func (p *pool) submit(j job) {
	var tick *time.Timer
	for {
		select {
		case p.jobs <- j:
			return
		default:
		}
		p.mu.Lock()
		full := p.size >= p.max
		if !full && p.size < p.want() {
			// Another feeder may take the new worker first: this job then
			// waits like any other, asking want() again.
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
		if full {
			// No limit can grow the pool (--workers N keeps every worker
			// started): wait for one, with no timer per row.
			p.jobs <- j
			return
		}
		if tick == nil {
			tick = time.NewTimer(wantEvery)
			defer tick.Stop()
		} else {
			tick.Reset(wantEvery)
		}
		select {
		case p.jobs <- j:
			return
		case <-tick.C:
		}
	}
}

// close waits for the jobs handed out to be done. Call it once every
// submit has returned.
func (p *pool) close() {
	close(p.jobs)
	p.wg.Wait()
}
