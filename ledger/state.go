package ledger

// State is where a row stands. The set is mirrored by each store's CHECK
// constraint on rows.state (ledger/sqlite/migrations/0002_rows_cheaper_writes.sql,
// ledger/postgres/migrations/0001_init.sql); they must change together,
// and each store's TestSchemaStates holds it to the set.
type State string

const (
	// StateQueued rows are valid and waiting to be sent.
	StateQueued State = "queued"
	// StateInflight rows were durably marked before their request left; a
	// crash leaves them here and the next run turns them into StateUnknown.
	StateInflight State = "inflight"
	// StateSuccess rows were charged by the provider.
	StateSuccess State = "success"
	// StateFailed rows were not charged (or were charged and returned).
	StateFailed State = "failed"
	// StatePending rows were accepted by the provider without a final status.
	StatePending State = "pending"
	// StateDuplicate rows were answered "already received" (code 18); the
	// status enquiry decides what really happened.
	StateDuplicate State = "duplicate"
	// StateUnknown rows may or may not have been charged: they are resolved by
	// a status enquiry, never re-sent on a guess.
	StateUnknown State = "unknown"
	// StateHeld rows were not sent because their operator was down; a rerun
	// queues them again.
	StateHeld State = "held"
	// StateRefunded rows were charged and the money later returned.
	StateRefunded State = "refunded"
	// StateRejected rows failed validation and were never sent.
	StateRejected State = "rejected"
	// StateConflict rows reuse a referenceid another batch already holds and
	// were never sent.
	StateConflict State = "conflict"
)

// States lists every state in report order.
var States = []State{
	StateSuccess, StateFailed, StateRefunded, StateRejected, StateConflict,
	StatePending, StateDuplicate, StateUnknown, StateHeld, StateQueued, StateInflight,
}

// Final reports whether nothing more will happen to a row in state s.
func (s State) Final() bool {
	switch s {
	case StateSuccess, StateFailed, StateRefunded, StateRejected, StateConflict:
		return true
	}
	return false
}

// HoldsReferenceID reports whether a row in state s holds its referenceid,
// so that a later row reusing it is a conflict: every row but those never
// sent because of a problem of their own (rejected) or because another
// row holds their referenceid (conflict). Each store's referenceid index
// covers the rows stored with a request body, and its CHECK on rows
// requires one of a row in any other state.
func (s State) HoldsReferenceID() bool {
	return s != StateRejected && s != StateConflict
}

// Sent reports whether only a request could have put a row in state s:
// every state but those of a row recorded and not sent (queued, held,
// rejected, conflict).
func (s State) Sent() bool {
	switch s {
	case StateQueued, StateHeld, StateRejected, StateConflict:
		return false
	}
	return true
}

// Valid reports whether s is one of the defined states.
func (s State) Valid() bool {
	for _, v := range States {
		if v == s {
			return true
		}
	}
	return false
}

// allowedFrom is the one table of row transitions: for each target state,
// the states a row may move to it from. The ledger refuses anything else,
// so no code path can, say, turn a success back into queued.
var allowedFrom = map[State][]State{
	// A row goes out when queued, or again under the same referenceid when
	// an enquiry found no record of it.
	StateInflight: {StateQueued, StateUnknown},
	// Back to queued only when the request provably never reached the
	// provider (not written, throttled, declined before recording).
	StateQueued: {StateInflight, StateHeld},
	// inflight: marked ahead, never sent; unknown: an enquiry found no
	// record, and its operator is down (held rather than sent to fail).
	StateHeld:      {StateQueued, StateInflight, StateUnknown},
	StateSuccess:   {StateInflight, StatePending, StateDuplicate, StateUnknown},
	StateFailed:    {StateInflight, StatePending, StateDuplicate, StateUnknown},
	StatePending:   {StateInflight, StatePending, StateDuplicate, StateUnknown},
	StateDuplicate: {StateInflight, StateDuplicate},
	StateUnknown:   {StateInflight, StateUnknown},
	StateRefunded:  {StateSuccess, StatePending, StateDuplicate, StateUnknown},
}

// CanMove reports whether a row in state from may move to state to.
func CanMove(from, to State) bool {
	for _, s := range allowedFrom[to] {
		if s == from {
			return true
		}
	}
	return false
}

// From returns the states a row may move to state to from, per the
// transition table; nil when no move leads there.
func From(to State) []State { return append([]State(nil), allowedFrom[to]...) }

// Targets lists the states some move leads to, in report order.
func Targets() []State {
	var out []State
	for _, s := range States {
		if _, ok := allowedFrom[s]; ok {
			out = append(out, s)
		}
	}
	return out
}
