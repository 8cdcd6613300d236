package sqlite

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aopbatch/aopbatch/ledger"
)

// damagedLedger makes a real ledger of n rows at a new path, closed and
// checkpointed (no WAL left), and returns its path and page size.
func damagedLedger(t *testing.T, n int) (string, int) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ledger.db")
	l, err := Open(context.Background(), path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	seedRows(t, l, "b1", n)
	var pageSize int
	if err := l.w.QueryRow("PRAGMA page_size").Scan(&pageSize); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// seedRows' raw connection closes at cleanup; checkpoint through a
	// connection of our own so the file holds every page now.
	db := rawDB(t, path)
	if _, err := db.Exec("PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		t.Fatal(err)
	}
	return path, pageSize
}

// TestOpenRefusesWhatIsNotALedger: a file that is not a ledger, a ledger
// cut short and one with a page overwritten inside are refused by Open
// with a typed error, and left byte for byte as they were: no schema is
// created over them, nothing is "repaired".
func TestOpenRefusesWhatIsNotALedger(t *testing.T) {
	t.Parallel()
	noise := make([]byte, 64<<10)
	_, _ = rand.Read(noise)
	otherApp := func(t *testing.T) string {
		path := filepath.Join(t.TempDir(), "other.db")
		db := rawDB(t, path)
		if _, err := db.Exec("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT); INSERT INTO notes (body) VALUES ('keep me')"); err != nil {
			t.Fatal(err)
		}
		db.Close()
		return path
	}
	write := func(t *testing.T, name string, b []byte) string {
		path := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	for _, tc := range []struct {
		name string
		make func(t *testing.T) string
		want error
	}{
		{"random bytes", func(t *testing.T) string { return write(t, "noise.db", noise) }, ledger.ErrNotLedger},
		{"one byte", func(t *testing.T) string { return write(t, "x.db", []byte("x")) }, ledger.ErrNotLedger},
		{"a CSV file", func(t *testing.T) string {
			return write(t, "recharges.csv", []byte("operator,canumber,amount,referenceid\n311,CA1,10,R1\n"))
		}, ledger.ErrNotLedger},
		{"another program's SQLite database", otherApp, ledger.ErrNotLedger},
		{"a ledger cut to half", func(t *testing.T) string {
			path, _ := damagedLedger(t, 5000)
			b, _ := os.ReadFile(path)
			return write(t, "half.db", b[:len(b)/2])
		}, ledger.ErrCorrupt},
		{"a ledger with a page overwritten", func(t *testing.T) string {
			path, pageSize := damagedLedger(t, 5000)
			b, _ := os.ReadFile(path)
			pages := len(b) / pageSize
			if pages < 20 {
				t.Fatalf("ledger has %d pages: too small to damage inside", pages)
			}
			// A page in the middle, not the header page: the file still
			// opens as SQLite and its schema reads fine.
			at := (pages / 2) * pageSize
			copy(b[at:at+pageSize], noise[:pageSize])
			return write(t, "overwritten.db", b)
		}, ledger.ErrCorrupt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := tc.make(t)
			before, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			l, err := Open(context.Background(), path, Options{})
			if err == nil {
				l.Close()
				t.Fatalf("Open accepted it")
			}
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("Open error %q, want %v naming the file", err, tc.want)
			}
			after, _ := os.ReadFile(path)
			if !bytes.Equal(before, after) {
				t.Errorf("Open changed the file (%d bytes before, %d after)", len(before), len(after))
			}
		})
	}
	// An empty file is a new ledger, and a sound one opens.
	empty := write(t, "empty.db", nil)
	l, err := Open(context.Background(), empty, Options{})
	if err != nil {
		t.Fatalf("empty file: %v", err)
	}
	l.Close()
	sound, _ := damagedLedger(t, 50)
	if l, err = Open(context.Background(), sound, Options{}); err != nil {
		t.Fatalf("sound ledger: %v", err)
	}
	l.Close()
}
