package aoptest

import (
	"container/heap"
	"time"
)

// Transaction statuses as the provider writes them in data.status.
const (
	statusSuccess byte = '1'
	statusFailed  byte = '0'
	statusPending byte = '2'
)

// entry is everything the sandbox remembers about one referenceid. Entries
// exist for every referenceid ever received, recorded or not, so request
// counts survive declines. It is kept small: a benchmark records millions.
type entry struct {
	ref         string
	canumber    string
	operator    int64
	amount      int64 // paise
	created     int64 // unix nanoseconds
	refundedAt  int64 // unix nanoseconds, 0 while not refunded
	requests    int32
	charged     int32
	nonDup      int32
	resent      int32 // Recharge requests received after it was recorded
	recorded    bool
	status      byte
	refunded    bool
	pendingFail bool // decided when recorded: the pending ends failed
	refundLater bool // decided when recorded: a success is refunded later
}

func statusText(b byte) string {
	switch b {
	case statusSuccess:
		return "1"
	case statusFailed:
		return "0"
	case statusPending:
		return "2"
	}
	return ""
}

type eventKind uint8

const (
	evPendingFinal eventKind = iota + 1
	evRefund
)

// event is a timer that turns a transaction final or refunds it. Timers are
// applied lazily by settle, on the configured clock, so tests pin time
// instead of sleeping and no goroutine is spent per transaction.
type event struct {
	due  int64
	kind eventKind
	e    *entry
}

type eventHeap []event

func (h eventHeap) Len() int           { return len(h) }
func (h eventHeap) Less(i, j int) bool { return h[i].due < h[j].due }
func (h eventHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *eventHeap) Push(x any)        { *h = append(*h, x.(event)) }
func (h *eventHeap) Pop() any {
	old := *h
	n := len(old) - 1
	ev := old[n]
	*h = old[:n]
	return ev
}

// settle applies every timer due at now. The caller holds s.mu.
func (s *Server) settle(now int64) {
	for len(s.events) > 0 && s.events[0].due <= now {
		ev := heap.Pop(&s.events).(event)
		e := ev.e
		switch ev.kind {
		case evPendingFinal:
			if e.pendingFail {
				e.status = statusFailed
				s.credit(e.amount)
				continue
			}
			e.status = statusSuccess
			if e.refundLater {
				heap.Push(&s.events, event{due: ev.due + int64(s.cfg.RefundDelay), kind: evRefund, e: e})
			}
		case evRefund:
			e.refunded = true
			e.refundedAt = ev.due
			s.credit(e.amount)
		}
	}
}

func (s *Server) credit(paise int64) {
	if !s.unlimited {
		s.wallet += paise
	}
}

// Txn is the sandbox's view of one recorded transaction.
type Txn struct {
	Ref         string
	TxnID       string
	Operator    int64
	CANumber    string
	AmountPaise int64
	Status      string // "1" success, "0" failed (money returned), "2" pending
	Refunded    bool
	Created     time.Time
}

func (s *Server) txnOf(e *entry) Txn {
	return Txn{
		Ref:         e.ref,
		TxnID:       s.txnID(e.ref),
		Operator:    e.operator,
		CANumber:    e.canumber,
		AmountPaise: e.amount,
		Status:      statusText(e.status),
		Refunded:    e.refunded,
		Created:     time.Unix(0, e.created).UTC(),
	}
}
