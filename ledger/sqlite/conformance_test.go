package sqlite

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/aopbatch/aopbatch/ledger"
	"github.com/aopbatch/aopbatch/ledger/ledgertest"
)

// TestConformance runs the ledger suite against the SQLite store.
func TestConformance(t *testing.T) {
	t.Parallel()
	ledgertest.Exercise(t, func(t *testing.T) ledgertest.DB {
		return testDB{path: filepath.Join(t.TempDir(), "ledger.db")}
	})
}

// testDB is one ledger file.
type testDB struct{ path string }

func (d testDB) Open(t *testing.T, o ledgertest.Options) ledger.Store {
	t.Helper()
	l, err := Open(context.Background(), d.path, Options{Now: o.Now, Synchronous: "NORMAL"})
	if err != nil {
		t.Fatalf("Open(%s): %v", d.path, err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func (d testDB) Check(t *testing.T) { integrityCheck(t, d.path) }
