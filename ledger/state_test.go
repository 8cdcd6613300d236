package ledger

import (
	"fmt"
	"testing"
)

func TestCanMove(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		from, to State
		want     bool
	}{
		{StateQueued, StateInflight, true},
		{StateUnknown, StateInflight, true},
		{StateInflight, StateSuccess, true},
		{StateInflight, StateUnknown, true},
		{StateInflight, StateQueued, true},
		{StateHeld, StateQueued, true},
		{StateQueued, StateHeld, true},
		{StateUnknown, StateHeld, true}, // no record, its operator down
		{StatePending, StateHeld, false},
		{StateDuplicate, StateHeld, false},
		{StatePending, StateSuccess, true},
		{StateDuplicate, StateFailed, true},
		{StateUnknown, StateRefunded, true},
		{StateSuccess, StateRefunded, true},
		{StateQueued, StateSuccess, false},
		{StateSuccess, StateQueued, false},
		{StateSuccess, StateInflight, false},
		{StateSuccess, StateFailed, false},
		{StateFailed, StateQueued, false},
		{StateFailed, StateInflight, false},
		{StateRefunded, StateSuccess, false},
		{StateRejected, StateQueued, false},
		{StateConflict, StateInflight, false},
		{StatePending, StateQueued, false},
		{StateUnknown, StateQueued, false},
		{StateDuplicate, StateQueued, false},
		{StateHeld, StateInflight, false},
	} {
		t.Run(fmt.Sprintf("%s to %s", tc.from, tc.to), func(t *testing.T) {
			if got := CanMove(tc.from, tc.to); got != tc.want {
				t.Errorf("CanMove(%s, %s) = %v, want %v", tc.from, tc.to, got, tc.want)
			}
		})
	}

	t.Run("final states stay final", func(t *testing.T) {
		for _, from := range States {
			if !from.Final() {
				continue
			}
			for _, to := range States {
				want := from == StateSuccess && to == StateRefunded
				if got := CanMove(from, to); got != want {
					t.Errorf("CanMove(%s, %s) = %v, want %v", from, to, got, want)
				}
			}
		}
	})

	t.Run("nothing reached by the provider goes back to queued", func(t *testing.T) {
		for _, from := range States {
			want := from == StateInflight || from == StateHeld
			if got := CanMove(from, StateQueued); got != want {
				t.Errorf("CanMove(%s, queued) = %v, want %v", from, got, want)
			}
		}
	})
}

// TestCountsUnsettled: the rows a run or an enquiry may still change are
// those in every state but the final ones.
func TestCountsUnsettled(t *testing.T) {
	c := Counts{StateSuccess: {Rows: 5, Paise: 500}, StateRejected: {Rows: 1, Paise: 10},
		StateQueued: {Rows: 2, Paise: 20}, StateHeld: {Rows: 1, Paise: 1}, StateUnknown: {Rows: 3, Paise: 300}}
	if got, want := c.Unsettled(), (Tally{Rows: 6, Paise: 321}); got != want {
		t.Errorf("Unsettled = %+v, want %+v", got, want)
	}
	if got := (Counts{StateFailed: {Rows: 2}}).Unsettled(); got != (Tally{}) {
		t.Errorf("Unsettled of final rows only = %+v, want none", got)
	}
}

// A row whose state holds its referenceid is stored with a body, even one
// read back without (an archived row from SQLite); a rejected or conflict
// row never gains one.
func TestRowStoredRequest(t *testing.T) {
	t.Parallel()
	for _, s := range States {
		t.Run(string(s), func(t *testing.T) {
			hold := s != StateRejected && s != StateConflict
			if got := s.HoldsReferenceID(); got != hold {
				t.Errorf("HoldsReferenceID = %v, want %v", got, hold)
			}
			r := Row{State: s}
			if got := r.StoredRequest(); (got != nil) != hold || len(got) != 0 {
				t.Errorf("StoredRequest of no body = %#v, want an empty body: %v", got, hold)
			}
			r.Request = []byte(`{"a":1}`)
			if got := r.StoredRequest(); string(got) != `{"a":1}` {
				t.Errorf("StoredRequest = %q, want the row's body", got)
			}
		})
	}
}
