// Package ledger is the vocabulary of aopbatch's ledger and the interfaces
// of its stores: batches, one row per data row of each file, the row
// states and the moves between them, an append-only log of every request,
// and money in integer paise. It holds no driver: each store is a package
// below it (ledger/sqlite, the embedded default; ledger/postgres, shared by
// processes on many hosts) and proves itself against one conformance suite
// (ledger/ledgertest).
//
// # Why a row is never paid twice
//
// A referenceid is the provider's idempotency key, and a store holds each
// one for at most one sendable row across all batches; a reuse is recorded
// as conflict and never sent. A row's states and the moves between them
// are one table (allowedFrom in state.go), enforced by every store's
// writes, so no code path can send a row twice or turn a success back into
// queued. Before a row's request can leave, the row is recorded in flight,
// and that committed (Writer.Dispatch for a chunk, Writer.MarkInflight for
// one row). A crash leaves the record, and the next run turns the row into
// unknown (Store.RecoverInflight), to be settled by a status enquiry and
// re-sent only under the same referenceid if the provider has no record.
//
// Every write of a run names its Owner and is fenced by the batch's lease
// in the same transaction: a run paused past its lease and taken over
// writes nothing more.
package ledger
