package ledger

import (
	"context"
	"time"
)

// Reader is what the reports and the read-only commands need of a ledger.
// Rows a run has recorded in flight (dispatched, or marked) read as
// StateInflight everywhere, never as queued: "queued" tells a person a row
// was never sent.
type Reader interface {
	// Location names where the ledger lives, for messages: a file path, or
	// a URL without its password.
	Location() string

	// Batch returns the batch with the given id; "" picks the only batch
	// (ErrAmbiguousBatch when there are several) and "latest" the newest.
	Batch(ctx context.Context, id string) (Batch, error)
	// Batches lists every batch, oldest first.
	Batches(ctx context.Context) ([]Batch, error)
	// BatchesWithContent lists the batches read from files of content
	// hash hash, oldest first.
	BatchesWithContent(ctx context.Context, hash string) ([]Batch, error)
	// HasRefsStartingWith reports whether a sendable row of batch seq has
	// a referenceid whose first 12 characters are one of prefixes.
	HasRefsStartingWith(ctx context.Context, seq int64, prefixes ...string) (bool, error)
	// RefHolders returns, for each of refs that a sendable row holds,
	// that row: a referenceid belongs to at most one sendable row of the
	// whole ledger. It reads the referenceid index, not every batch.
	RefHolders(ctx context.Context, refs []string) (map[string]RefHolder, error)

	// Runners returns the processes other than this one whose lease on
	// batch seq is live: while there are any, its rows may be changing.
	Runners(ctx context.Context, seq int64) ([]Runner, error)

	// Page returns up to limit rows of batch seq in state s with line >
	// after, in line order: callers page with the last line they saw, so a
	// million-row batch never sits in memory.
	Page(ctx context.Context, seq int64, s State, after, limit int) ([]Row, error)
	// Queued is Page for the rows free to send, with only what sending
	// needs: Batch, Line, ReferenceID, Operator, CANumber, AmountPaise,
	// Request and State.
	Queued(ctx context.Context, seq int64, after, limit int) ([]Row, error)
	// Row returns one row of batch seq.
	Row(ctx context.Context, seq int64, line int) (Row, error)
	// EachRow calls fn for every row of batch seq in line order; the Row
	// passed is reused between calls.
	EachRow(ctx context.Context, seq int64, fn func(*Row) error) error
	// EachAttempt calls fn for every logged attempt of batch seq, oldest
	// first.
	EachAttempt(ctx context.Context, seq int64, fn func(*AttemptRow) error) error
	// Counts tallies batch seq by state.
	Counts(ctx context.Context, seq int64) (Counts, error)
	// CountState counts batch seq's rows in state s.
	CountState(ctx context.Context, seq int64, s State) (int64, error)
	// Any reports whether batch seq has a row in state s.
	Any(ctx context.Context, seq int64, s State) (bool, error)

	// Close releases the store's connections.
	Close() error
}

// Store is a ledger: every batch, every row and an append-only log of
// every request. Each write of a run names its Owner and is refused with
// ErrLeaseLost unless that owner holds the batch's lease, checked in the
// same transaction as the write: a run paused past its lease and taken over
// must not write over the run that took its batch.
type Store interface {
	Reader

	// Shared reports whether several processes may run one batch at once
	// (a store shared by hosts): each claims its own rows, and a process's
	// lease covers the rows it has in flight. A store that is not shared
	// gives a batch's lease to one process at a time, and refuses a second
	// with ErrBatchLocked.
	Shared() bool

	// Now is the clock the store dates rows by (Row.Updated, FirstSent):
	// on a store shared by hosts, the database's, from which this host's
	// may differ. A row's time is compared with Now, not with the host's.
	Now() time.Time

	// Acquire takes the lease on batch nb.ID for o, creating the batch
	// (not yet ready) when it is new. It fails with ErrBatchMismatch when
	// the id is known with other content (nb.ContentHash "" matches any),
	// and with ErrBatchLocked while another live process holds the lease.
	// A lease whose holder died is taken over once it expires (sooner
	// where the store can tell the holder died).
	Acquire(ctx context.Context, nb NewBatch, o Owner, ttl time.Duration) (Batch, error)
	// Renew extends o's lease; ErrLeaseLost when another owner took it.
	Renew(ctx context.Context, batchID string, o Owner, ttl time.Duration) error
	// Release gives up o's lease so the next run need not wait for it.
	Release(ctx context.Context, batchID string, o Owner) error

	// BeginIngest starts adding rows to batch b, whose lease o holds.
	// Until Ingest.Finish the batch is not ready to send.
	BeginIngest(ctx context.Context, b Batch, o Owner, ttl time.Duration) (Ingest, error)
	// ClearRows deletes the rows and attempts of a batch that is not
	// ready (an ingest abandoned part way), keeping the batch.
	ClearRows(ctx context.Context, seq int64, o Owner) error
	// DropUnsent deletes batch seq, rows and all, while o holds its lease,
	// when nothing of it was ever sent: no attempt logged, no row in flight
	// or settled by the provider, none ever dispatched (a dry run, say).
	// Otherwise it fails with ErrBatchSent (ErrBatchArchived for an
	// archived batch) and deletes nothing: those rows are the record of
	// what was paid.
	DropUnsent(ctx context.Context, seq int64, o Owner) error

	// RecoverInflight turns the rows a dead run left in flight into
	// unknown: their request may have reached the provider, so only a
	// status enquiry may settle them. It says how many rows moved, and
	// whose lease it ended.
	RecoverInflight(ctx context.Context, seq int64, o Owner) (Recovered, error)
	// Move changes every row of batch seq in state from to state to (only
	// operator's rows when operator > 0), as the transition table allows.
	Move(ctx context.Context, seq int64, o Owner, from, to State, operator int64, message string) (int64, error)
	// NewWriter starts the single writer of o's run on batch seq.
	NewWriter(ctx context.Context, seq int64, o Owner) (Writer, error)

	// Correct applies c to a row of batch seq while o holds the batch's
	// lease, in one transaction with its evidence logged in the attempts
	// log: a move the provider confirmed (aopbatch reconcile). The row
	// must still be in c.From (ErrTransition otherwise); a move neither
	// table allows is ErrNotCorrectable.
	Correct(ctx context.Context, seq int64, o Owner, c Correction) error

	// Archive empties batch seq after it was written to the archive named
	// archive: its attempts, request bodies and cells go, its rows' states,
	// amounts and referenceids stay (a file that reuses a referenceid is
	// still a conflict), and the batch names the archive. o must hold the
	// batch's lease, and no other process may be at the batch
	// (ErrBatchLocked); a batch with a row not final is refused
	// (ErrNotFinal), and so is one whose counts and sums by state are no
	// longer want, what the archive holds (ErrChanged). Acquire and
	// Correct then refuse the batch with ErrBatchArchived.
	Archive(ctx context.Context, seq int64, o Owner, archive string, want Counts) error

	// ImportBatch starts copying batch b, read from another ledger, into
	// this one: every row and attempt as it was there. An id this ledger
	// already holds is refused with ErrBatchExists, unless the batch there
	// was never made ready (a copy cut short), is of the same content, and
	// no live lease holds it: that one is taken over, and each line Rows
	// brings replaces the one there in one transaction (its referenceid
	// stays held); an Abort then leaves it as it is. Until Finish the
	// batch is not ready, so nothing sends it.
	ImportBatch(ctx context.Context, b Batch) (BatchImport, error)
}

// BatchImport writes one batch copied from another ledger.
type BatchImport interface {
	// Rows adds rows as they were, in line order. A referenceid this
	// ledger holds for another sendable row is an error.
	Rows(ctx context.Context, rows []Row) error
	// Attempts adds logged attempts, oldest first.
	Attempts(ctx context.Context, as []AttemptRow) error
	// Finish makes the batch ready, as it was.
	Finish(ctx context.Context) error
	// Abort removes what the import wrote.
	Abort(ctx context.Context) error
}

// Ingest adds a file's rows to a batch. An interrupted ingest is cleared
// and redone, so a half-read file is never sent.
type Ingest interface {
	// AddMany records rows, in file order, and returns what each became.
	AddMany(ctx context.Context, rows []IngestRow) ([]Added, error)
	// Rows is how many rows were added so far.
	Rows() int64
	// Finish commits the rows and marks the batch ready to send.
	Finish(ctx context.Context) error
	// Abort removes what the ingest wrote, so a refused file leaves
	// nothing to send and holds no referenceid. After Finish it does
	// nothing.
	Abort(ctx context.Context) error
}

// Writer applies a run's row changes in group commits. Its errors are
// sticky: once a write fails, every later call fails.
type Writer interface {
	// Dispatch durably records that queued rows are about to be sent and
	// returns, once that is committed, the lines it recorded: those still
	// queued and free. A crash after it leaves them for RecoverInflight.
	// A row dispatched but never sent is recorded back to queued (or held)
	// with an Update.
	Dispatch(ctx context.Context, lines []int) ([]int, error)
	// MarkInflight durably records that one row (queued, or unknown and
	// not found by the provider) is about to be sent; ErrTransition when
	// its state does not allow it, or when it was sent since the caller
	// read it: sends is the row's Attempts as read. A status enquiry's "not
	// found" says nothing of a send made after it (by another process of a
	// shared ledger, say), and a second send would reach the provider with
	// a referenceid it may hold.
	MarkInflight(ctx context.Context, line, sends int) error
	// Record queues an update for the next group commit; errors surface
	// from Flush and Close. An update the transition table refuses is kept
	// for Refused, not applied.
	Record(u Update) error
	// Flush returns once everything recorded before it is committed.
	Flush(ctx context.Context) error
	// Close commits what is queued, releases the writer's dispatches whose
	// rows all moved, and stops. It returns the first error met; calling
	// it again returns the same.
	Close() error
	// Refused returns the first update the transition table refused, or
	// nil: a bug the run reports rather than let an outcome go unrecorded
	// in silence.
	Refused() error
}

// RateBudget is a send rate shared by every process of a provider
// account, on a store shared by hosts: the rate belongs to the account,
// not to a process. A store that has one implements it.
type RateBudget interface {
	// Reserve takes the account's next n request slots at rate requests
	// per second, and says when the first may go: the others follow at
	// 1/rate intervals. After a pause, up to burst slots may come at once.
	// However many processes reserve, the slots of all of them together
	// keep to rate, with burst.
	Reserve(ctx context.Context, account string, n int, rate float64, burst int) (first time.Time, every time.Duration, err error)
}

// Claimer is a Writer that picks the rows it sends itself: on a store
// shared by processes, the next queued rows no other process holds, so
// processes never wait on each other's claims.
type Claimer interface {
	// Claim records up to n queued rows as in flight for the writer's
	// owner, durably, and returns them in line order with what sending
	// needs (as Reader.Queued). None means no queued row is left free.
	Claim(ctx context.Context, n int) ([]Row, error)
}
