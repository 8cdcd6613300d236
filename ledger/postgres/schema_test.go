package postgres

import (
	"context"
	"fmt"
	"testing"

	"github.com/aopbatch/aopbatch/ledger"
)

// TestSchemaStates holds the CHECK on rows.state to ledger.States: a
// state the code knows and the schema refuses would fail a write at run
// time, and one the schema accepts and the code does not would be a row
// nothing settles.
func TestSchemaStates(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	var seq int64
	if err := s.pool.QueryRow(ctx, `INSERT INTO batches (id, content_hash, status, created_ms) VALUES ('b', 'h', 'ready', 0) RETURNING seq`).Scan(&seq); err != nil {
		t.Fatal(err)
	}
	insert := func(line int, state string) error {
		var owner, claim any
		if state == string(ledger.StateInflight) {
			owner, claim = "o", "dispatch"
		}
		_, err := s.pool.Exec(ctx, `INSERT INTO rows (batch, line, referenceid, request, state, updated_ms, claimed_by, claim)
			VALUES ($1, $2, $3, '{}', $4, 0, $5, $6)`, seq, line, fmt.Sprint("r", line), state, owner, claim)
		return err
	}
	for i, st := range ledger.States {
		if err := insert(i+2, string(st)); err != nil {
			t.Errorf("the schema refuses state %s: %v", st, err)
		}
	}
	for i, st := range []string{"bogus", "Queued", "", "queued "} {
		if err := insert(100+i, st); err == nil {
			t.Errorf("the schema accepts state %q", st)
		}
	}
	if _, err := s.pool.Exec(ctx, `INSERT INTO rows (batch, line, referenceid, state, updated_ms) VALUES ($1, 99, 'nobody', 'queued', 0)`, seq); err == nil {
		t.Error("the schema accepts a queued row without a request body")
	}
}
