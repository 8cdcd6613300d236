package postgres

import (
	"os"
	"testing"

	"github.com/aopbatch/aopbatch/ledger"
	"github.com/aopbatch/aopbatch/ledger/ledgertest"
	"github.com/aopbatch/aopbatch/ledger/postgres/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// TestConformance runs the ledger suite against the PostgreSQL store.
func TestConformance(t *testing.T) {
	t.Parallel()
	srv := pgtest.Start(t)
	ledgertest.Exercise(t, func(t *testing.T) ledgertest.DB {
		return testDB{url: srv.URL(srv.NewDB(t))}
	})
}

// testDB is one database of the test server.
type testDB struct{ url string }

func (d testDB) Open(t *testing.T, o ledgertest.Options) ledger.Store {
	t.Helper()
	return openStore(t, d.url, Options{Now: o.Now})
}

// Check has nothing to add: PostgreSQL checks its own pages.
func (d testDB) Check(t *testing.T) {}

// newStore opens a store on a fresh database of the test server, closed
// when the test ends.
func newStore(t *testing.T) *Store {
	t.Helper()
	srv := pgtest.Start(t)
	return testDB{url: srv.URL(srv.NewDB(t))}.Open(t, ledgertest.Options{}).(*Store)
}
