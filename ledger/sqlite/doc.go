// Package sqlite is aopbatch's embedded ledger store: one SQLite file
// (mode 0600) through the pure-Go modernc driver.
//
// One Writer per run applies every row change from the workers in group
// commits: each group is one transaction, so durability costs one commit
// per group, not per row. Synchronous FULL (the default) makes each commit
// survive power loss; NORMAL survives a crash of the process, and losing a
// few commits to power loss is still safe, since a row that looks unsent is
// sent again under its referenceid and the provider answers 18.
//
// A row on its way out stays queued in the table, covered by its chunk's
// dispatch record (the dispatches table), which spares it a state change;
// readers show it as inflight. A batch's lease belongs to one process at a
// time; a holder that died on this host is taken over at once, one on
// another host once its lease expires.
//
// The schema is in embedded, numbered migrations applied by Open in one
// immediate transaction, so processes that open a new ledger at once take
// turns. Money is integer paise and times are Unix milliseconds.
package sqlite
