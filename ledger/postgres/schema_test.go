package postgres

import (
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/aopbatch/aopbatch/ledger"
	"github.com/aopbatch/aopbatch/ledger/ledgertest"
	"github.com/aopbatch/aopbatch/ledger/postgres/pgtest"
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

// Attempts logged before migration 0003 read back with no process (not
// known), and the ledger's next writer names its own.
func TestMigrateAttemptsWithoutProcess(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := pgtest.Start(t)
	url := srv.URL(srv.NewDB(t))
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	qs := schemaV2(t)
	qs = append(qs, `INSERT INTO batches (seq, id, content_hash, status, created_ms) VALUES (1, 'old', 'h', 'ready', 0)`,
		`INSERT INTO rows (batch, line, referenceid, amount_paise, request, state, updated_ms)
			VALUES (1, 2, 'R2', 500, '{"referenceid":"R2"}', 'pending', 7)`,
		`INSERT INTO attempts (batch, line, kind, at_ms, class, state) VALUES (1, 2, 'recharge', 5, 'pending', 'pending')`)
	for _, q := range qs {
		if _, err := c.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	c.Close(ctx)

	ledgertest.MigratedAttemptsName(t, openStore(t, url, Options{}), ledger.Owner{ID: "next", Host: "host-b.invalid", PID: 7})
}

// A role that only uses the ledger, granted what the README lists when
// the ledger was made (before migration 0003), still writes it once an
// aopbatch upgraded it as the tables' owner: the new processes table,
// which every writer now records its process in, gets the grants that
// attempts has. Otherwise every run on a host using that role failed to
// start after the first host was upgraded.
func TestMigrateKeepsTheGrantsOfARoleThatUsesTheLedger(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := pgtest.Start(t)
	db := srv.NewDB(t)
	c, err := pgx.Connect(ctx, srv.URL(db))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	user := db + "_user"
	qs := schemaV2(t)
	qs = append(qs, fmt.Sprintf(`CREATE ROLE %s LOGIN PASSWORD 'pw'`, user),
		fmt.Sprintf(`GRANT USAGE ON SCHEMA public TO %s`, user),
		fmt.Sprintf(`GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO %s`, user),
		fmt.Sprintf(`GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO %s`, user))
	for _, q := range qs {
		if _, err := c.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(ctx, srv.URL(db))
		if err != nil {
			return
		}
		defer c.Close(ctx)
		c.Exec(ctx, `DROP OWNED BY `+user)
		c.Exec(ctx, `DROP ROLE `+user)
	})
	openStore(t, srv.URL(db), Options{}) // the upgrade, as the tables' owner

	u, err := url.Parse(srv.URL(db))
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(user, "pw")
	s := openStore(t, u.String(), Options{})
	o := ledger.Owner{ID: "host-b", Host: "host-b.invalid", PID: 7}
	b, err := s.Acquire(ctx, ledger.NewBatch{ID: "b", ContentHash: "h"}, o, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	w, err := s.NewWriter(ctx, b.Seq, o)
	if err != nil {
		t.Fatalf("NewWriter as a role that only uses the ledger, after the upgrade: %v", err)
	}
	w.Close()
}

// schemaV2 are the statements that make a ledger as version 2 of the
// schema left it, before processes were recorded.
func schemaV2(t *testing.T) []string {
	t.Helper()
	qs := []string{`CREATE TABLE aopbatch_schema (version INTEGER NOT NULL)`, `INSERT INTO aopbatch_schema (version) VALUES (2)`}
	for _, name := range []string{"0001_init.sql", "0002_archived_batches.sql"} {
		body, err := migrations.ReadFile("migrations/" + name)
		if err != nil {
			t.Fatal(err)
		}
		qs = append(qs, string(body))
	}
	return qs
}
