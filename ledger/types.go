package ledger

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// Sentinel errors callers branch on; every store returns them (wrapped).
var (
	// ErrNoBatch means the ledger holds no batch by that id.
	ErrNoBatch = errors.New("no such batch")
	// ErrNoRow means the batch holds no row on that line.
	ErrNoRow = errors.New("no such row")
	// ErrBatchMismatch means a batch id is reused for different content.
	ErrBatchMismatch = errors.New("batch id already used for a different file")
	// ErrBatchLocked means another live process holds the batch's lease.
	ErrBatchLocked = errors.New("batch is being run by another process")
	// ErrBatchIngesting means another live process is still recording the
	// batch's file: on a shared store, wait for it and join.
	ErrBatchIngesting = errors.New("batch is being recorded by another process")
	// ErrLeaseLost means this process no longer holds the batch's lease.
	ErrLeaseLost = errors.New("batch lease lost")
	// ErrAmbiguousBatch means a batch id is needed because the ledger holds several.
	ErrAmbiguousBatch = errors.New("ledger holds several batches")
	// ErrTransition means a row was not in a state that allows the change.
	ErrTransition = errors.New("row state does not allow this change")
	// ErrBatchArchived means the batch was moved to an archive: it is
	// read there, and nothing of it is sent again.
	ErrBatchArchived = errors.New("batch was archived")
	// ErrChanged means a batch changed while it was being copied or
	// archived: what was written elsewhere is not what the ledger holds.
	ErrChanged = errors.New("batch changed while it was copied")
	// ErrBatchSent means something of a batch was sent, or may have been:
	// its record is kept.
	ErrBatchSent = errors.New("something of this batch was sent")
	// ErrNotFinal means a batch still has rows that are not final.
	ErrNotFinal = errors.New("batch has rows that are not final")
	// ErrBatchExists means a batch id is already in the ledger.
	ErrBatchExists = errors.New("batch already in the ledger")
	// ErrNotLedger means the file is not an aopbatch ledger: not SQLite at
	// all (a CSV given as --ledger, say), or another program's database.
	// Nothing is written to it: no schema is created over it.
	ErrNotLedger = errors.New("not an aopbatch ledger")
	// ErrCorrupt means the ledger is damaged: cut short, or a page
	// overwritten inside. Nothing is "repaired".
	ErrCorrupt = errors.New("the ledger is damaged")
)

// RecoveredMessage is the message of a row RecoverInflight turned into
// unknown: its request may have left when the run that sent it ended.
const RecoveredMessage = "interrupted while in flight: to be checked with the provider"

// Batch is one input file's worth of rows.
type Batch struct {
	Seq         int64
	ID          string
	ContentHash string
	Source      string
	Header      []string
	Ready       bool // every row of the file is in the ledger
	RowsTotal   int64
	Created     time.Time
	// Archived names the archive the batch was moved to (aopbatch ledger
	// archive); "" while it is whole here. An archived batch keeps only
	// its rows' states, amounts and referenceids, which stay held.
	Archived string
	// TookOver, set by Acquire only, says whose recording of the file it
	// took over (a process whose lease ran out), for the log; "" when none.
	TookOver string
}

// NewBatch describes a batch about to be ingested.
type NewBatch struct {
	ID          string
	ContentHash string
	Source      string
	Header      []string
}

// Owner identifies the process holding a batch's lease. ID is unique per
// run and is what every store fences writes with; Host and PID only help a
// store on one host see that a holder died (a shared store ignores them).
type Owner struct {
	ID   string // unique per run
	Host string
	PID  int
}

// NewOwner describes the current process.
func NewOwner(id string) Owner {
	h, _ := os.Hostname()
	return Owner{ID: id, Host: h, PID: os.Getpid()}
}

// Process returns the process o names: what the attempts log records of
// each request o's run makes.
func (o Owner) Process() Process { return Process{Host: o.Host, PID: o.PID} }

// Process is the process that made a request, as its run's Owner names it:
// on a shared ledger, which host sent or enquired a row. The zero value is
// a process not known: an attempt logged before the ledger recorded who
// made it.
type Process struct {
	Host string
	PID  int
}

// String names p for messages: "pid 41 on hostA", "" when not known.
func (p Process) String() string {
	if p == (Process{}) {
		return ""
	}
	return fmt.Sprintf("pid %d on %s", p.PID, p.Host)
}

// Runner is a process holding a live lease on a batch: one that may be
// changing its rows while they are read.
type Runner struct {
	Host  string
	PID   int
	Until time.Time // when its lease runs out, unless it renews it
}

// Recovered is what RecoverInflight did: the rows it turned into unknown,
// and the processes whose expired lease it ended, for the log (a store
// with one lease a batch ends it in Acquire, and names none here).
type Recovered struct {
	Rows int64
	From []Runner // Until: when the lease ran out
}

// RunnersText names processes running a batch, for messages: "pid 41 on
// hostA, pid 7 on hostB".
func RunnersText(rs []Runner) string {
	who := make([]string, len(rs))
	for i, r := range rs {
		who[i] = fmt.Sprintf("pid %d on %s", r.PID, r.Host)
	}
	return strings.Join(who, ", ")
}

// Row is one data row as the ledger holds it.
type Row struct {
	Batch         int64
	Line          int
	ReferenceID   string
	Operator      int64
	CANumber      string
	AmountPaise   int64
	Request       []byte
	Raw           []string
	State         State
	ResponseCode  int // -1 when none
	Message       string
	ErrorCode     string
	ErrorColumn   string
	Attempts      int
	ProviderTxnID string
	FirstSent     time.Time // zero when never sent
	Updated       time.Time
	RetryOf       string // the row it retries, "BATCH:LINE", or ""
	// InFlightSince is when a run last took the row in flight (its
	// dispatch, claim or mark), for a row in StateInflight as EachRow
	// reads it; zero for every other row, and from the other reads. A
	// row dispatched for its first send has no FirstSent yet.
	InFlightSince time.Time
}

// StoredRequest is the request body a store keeps for r: its Request, or
// an empty body when it has none and its state holds its referenceid. An
// archived row keeps an empty body so that its referenceid stays held, and
// a SQLite store reads an empty body back as nil: stored as nil, the row
// would leave the referenceid index (or break the store's CHECK), and a
// file reusing its referenceid would be sent again instead of being a
// conflict.
func (r *Row) StoredRequest() []byte {
	if r.Request == nil && r.State.HoldsReferenceID() {
		return []byte{}
	}
	return r.Request
}

// IngestRow is one data row of a file as the ledger records it. Problem is
// set for a row that failed validation; such a row is stored rejected.
type IngestRow struct {
	Line        int
	ReferenceID string
	Operator    int64
	CANumber    string
	AmountPaise int64
	Request     []byte   // the exact JSON body to send
	Raw         []string // the cells as they were; kept for rows never sent
	// RetryOf is the row this one retries, "BATCH:LINE" (the file's
	// retryof column), or "". Like a referenceid, one sendable row in
	// the ledger may hold it.
	RetryOf string
	Problem *Problem
}

// Problem says why a row is not sent.
type Problem struct {
	Code    string // machine code, e.g. "bad_amount", "duplicate_referenceid"
	Column  string
	Message string
}

// RepeatsLine is the reason of the row on line whose referenceid line
// first of the same file holds: named like a bad cell's (line, column,
// value), with the line it repeats.
func RepeatsLine(line int, referenceID string, first int) string {
	return fmt.Sprintf("line %d, column \"referenceid\", value %q: repeats line %d of this file", line, referenceID, first)
}

// Added is what the ledger made of one row: queued, rejected (invalid, or
// a referenceid repeated inside this file) or conflict (the referenceid
// belongs to another batch). Message explains the last two.
type Added struct {
	State   State
	Message string
}

// Update moves one row to a new state and logs the attempt that caused it.
// An Update with an empty To only logs the attempt.
type Update struct {
	Line    int
	To      State
	Code    int // provider response code; -1 when there was none
	Message string
	TxnID   string   // provider transaction id, when known
	Attempt *Attempt // appended to the attempts log; nil logs nothing
	// IfSends, when not nil, lets the move apply only while the row has
	// been sent that many times (Row.Attempts), as MarkInflight does: a
	// decision taken on an earlier read of the row (an enquiry that found
	// no record) must not apply once another process has sent it since.
	IfSends *int
	// LogAs is the state an attempt-only Update (To "") logs its attempt
	// with: "" is inflight, a try of a row whose send goes on; queued is
	// an enquiry about a row not sent yet.
	LogAs State
}

// KnownTrip is how many of the rows a run asks the provider about before
// its first send must be there already for the file to count as sent
// before (from another ledger): SentBefore.
const KnownTrip = 8

// SentBefore says whether found of the asked rows already at the provider
// make a file sent before: trip of them, or half when fewer were asked (a
// small file's rows that failed without the provider keeping them are
// never found).
func SentBefore(found, asked, trip int) bool {
	return found > 0 && found >= min(trip, (asked+1)/2)
}

// Attempt is one request made for a row.
type Attempt struct {
	Kind       string // "recharge" or "status"
	At         time.Time
	Latency    time.Duration
	HTTPStatus int
	Code       int // -1 when there was none
	Class      string
	Message    string
}

// AttemptRow is one logged request of a batch.
type AttemptRow struct {
	Line int
	Attempt
	State State
	// Process made the request: the owner of the writer that logged it
	// (of the Correct, for evidence); the zero Process when not known.
	// A store keeps it as a reference to a small table of processes, not
	// per attempt.
	Process Process
}

// Tally is a count of rows and their amount.
type Tally struct {
	Rows  int64
	Paise int64
}

// Counts is a batch's tally by state.
type Counts map[State]Tally

// Total is the tally over every state.
func (c Counts) Total() Tally {
	var t Tally
	for _, v := range c {
		t.Rows += v.Rows
		t.Paise += v.Paise
	}
	return t
}

// Unsettled is the tally over the states that are not final: rows that
// a run or an enquiry may still change.
func (c Counts) Unsettled() Tally {
	var t Tally
	for s, v := range c {
		if !s.Final() {
			t.Rows += v.Rows
			t.Paise += v.Paise
		}
	}
	return t
}

// Sent reports whether a row is in a state only a request could have put
// it in (State.Sent): of a batch not ready, that is a copy cut short (no
// run sends a batch before its file is recorded whole).
func (c Counts) Sent() bool {
	for s, v := range c {
		if s.Sent() && v.Rows > 0 {
			return true
		}
	}
	return false
}

// RefHolder is the sendable row that holds a referenceid.
type RefHolder struct {
	Batch int64 // the batch's seq
	Line  int
	// State is the row's state as stored: a SQLite row covered by a
	// dispatch reads queued here, not inflight as Row shows it.
	State State
}

// RetryOfColumn is the input column naming the row a row retries,
// "BATCH:LINE": export writes it, the reader keeps it in RetryOf.
const RetryOfColumn = "retryof"

// The error codes of a row refused for the row it retries (column
// RetryOfColumn): another row retries it already, an earlier line of the
// file (CodeDuplicateRetry) or another batch (CodeConflictRetry), which
// the ledger finds; or the run found it not one to pay again
// (CodeRetryRefused) or not in the ledger (CodeRetryNotInLedger). A
// retryof cell that does not read is bad_retryof, a bad cell like any
// other.
const (
	CodeDuplicateRetry   = "duplicate_retryof"
	CodeConflictRetry    = "conflict_retry"
	CodeRetryRefused     = "retry_refused"
	CodeRetryNotInLedger = "retry_not_in_ledger"
)

// RefusedForRetry reports whether error code code refused a row for the
// row it retries. Such a row holds nothing, and sent again as a retry of
// itself it would pay that row again.
func RefusedForRetry(code string) bool {
	switch code {
	case CodeDuplicateRetry, CodeConflictRetry, CodeRetryRefused, CodeRetryNotInLedger:
		return true
	}
	return false
}

// RetryHolder is the sendable row that holds a retry_of.
type RetryHolder struct {
	BatchID string
	Batch   int64
	Line    int
	State   State
}

// RetryTaken is what becomes of row r of batch seq, which retries the row
// h already retries: rejected when h is an earlier line of the same file,
// a conflict when another batch holds it. Either way it is not sent: the
// row it retries would be paid twice.
func RetryTaken(r IngestRow, seq int64, h RetryHolder) (State, *Problem) {
	if h.Batch == seq {
		return StateRejected, &Problem{Code: CodeDuplicateRetry, Column: RetryOfColumn, Message: fmt.Sprintf(
			"line %d, column \"retryof\", value %q: retries the same row as line %d of this file", r.Line, r.RetryOf, h.Line)}
	}
	return StateConflict, &Problem{Code: CodeConflictRetry, Column: RetryOfColumn, Message: fmt.Sprintf(
		"retryof %s is already retried by batch %s line %d (%s): sent from here too, it would be paid twice", r.RetryOf, h.BatchID, h.Line, h.State)}
}

// PaysAgain reports whether a row in state s may be paid again, under a
// new referenceid: the provider answered that it took nothing, or it was
// never sent.
func PaysAgain(s State) bool {
	return s == StateFailed || s == StateRefunded || s == StateRejected || s == StateConflict
}
