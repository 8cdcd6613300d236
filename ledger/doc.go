// Package ledger is aopbatch's SQLite store: batches, one row per data row
// of each file, and an append-only log of every request made.
//
// # Why a row is never paid twice
//
// A referenceid is the provider's idempotency key, and the ledger holds each
// one for at most one sendable row across all batches (a partial unique
// index); a reuse is recorded as conflict and never sent. A row's states and
// the moves between them are one table (allowedFrom in state.go), enforced
// in SQL by every update, so no code path can send a row twice or turn a
// success back into queued. Before a row's request can leave, the row is
// recorded in flight, and that committed: a chunk of rows as one dispatch
// (Writer.Dispatch, the send path), or one row marked inflight
// (Writer.MarkInflight). A crash leaves the record, and the next run turns
// the row into unknown, to be settled by a status enquiry and re-sent only
// under the same referenceid if the provider has no record.
//
// # Writing
//
// One Writer per run applies every row change from the workers in group
// commits: each group is one transaction, so durability costs one commit
// per group, not per row. Synchronous FULL (the default) makes
// each commit survive power loss; NORMAL survives a crash of the process,
// and losing a few commits to power loss is still safe, since a row that
// looks unsent is sent again under its referenceid and the provider answers
// 18. A batch has a lease with a heartbeat, so two runs never send one
// batch at once; a holder that died on this host is taken over at once.
//
// Money is integer paise and times are Unix milliseconds. The schema is in
// embedded, numbered migrations applied by Open; files are created 0600.
package ledger
