package batch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/aopbatch/aopbatch/ledger"
)

// Controls are the control totals a file must meet before anything is sent.
// A negative value means "not checked".
type Controls struct {
	ExpectRows       int64   // data rows in the file, rejected ones included
	ExpectTotalPaise int64   // sum of the rows that will be sent
	MaxTotalPaise    int64   // upper bound on that sum
	MaxAmountPaise   int64   // upper bound on any one row
	MaxRejectRate    float64 // share of rejected rows above which the file is refused; <0 = no limit
}

// NoControls checks nothing.
func NoControls() Controls {
	return Controls{ExpectRows: -1, ExpectTotalPaise: -1, MaxTotalPaise: -1, MaxAmountPaise: -1, MaxRejectRate: -1}
}

// IngestOptions configure Ingest.
type IngestOptions struct {
	Reader   ReaderOptions // BatchID is filled in by Ingest
	BatchID  string        // "" derives it from the file's content
	Controls Controls
	Owner    ledger.Owner
	LeaseTTL time.Duration
	// PayAgain lets a file with generated referenceids whose content is
	// already another batch go as new payments (see RepeatError).
	PayAgain bool
	// Log says when the run waits for another process to record the file;
	// nil logs nothing.
	Log *slog.Logger
}

// IngestResult says what the ledger now holds for the file.
type IngestResult struct {
	Batch     ledger.Batch
	Resumed   bool // the batch was already in the ledger: nothing was re-read
	Rows      int64
	Queued    int64
	Paise     int64 // total of queued rows
	Rejected  int64
	Conflicts int64
	// FirstProblems says why the first few rejected rows were not taken:
	// a refused file is not recorded, so this is all a person gets to see
	// of them.
	FirstProblems []string
	// RetryElsewhere counts the rejected rows that retry a row of a batch
	// this ledger does not hold; RetryElsewhereBatch names the first.
	RetryElsewhere      int64
	RetryElsewhereBatch string
	// BlankRefs counts the rejected rows refused for a blank referenceid:
	// when that is all of them, the file is most likely one written by
	// aopbatch export, to be sent with --generate-refs.
	BlankRefs int64
}

// firstProblems is how many reasons IngestResult keeps.
const firstProblems = 3

// RepeatError refuses a file read with generated referenceids under a new
// batch id when its content is already a batch whose referenceids were
// generated: under the new id every row would get a new referenceid and be
// paid again. It is the interrupted run resumed under another name, or the
// same file sent twice; a file that really repeats each day goes with
// IngestOptions.PayAgain.
type RepeatError struct{ Batch ledger.Batch }

func (e *RepeatError) Error() string {
	return fmt.Sprintf("this file's content is already batch %s (from %s, %s), whose referenceids were generated: "+
		"under another batch id every row would be paid again. To resume that batch, run with --batch %s; "+
		"if these rows are new payments (a file that repeats), add --pay-again",
		e.Batch.ID, e.Batch.Source, e.Batch.Created.Format("2006-01-02 15:04"), e.Batch.ID)
}

// generatedRefsBatch picks the batch id for a file read with generated
// referenceids: the named one, unless the same content is already a batch
// with generated referenceids (RepeatError); without a name, only the batch
// an earlier version made of this content without one, whose referenceids
// it keeps (ErrGenerateRefsNeedsBatch otherwise).
func generatedRefsBatch(ctx context.Context, l ledger.Store, hash, id string, payAgain bool) (string, error) {
	derived := BatchIDFor(hash)
	if id == "" {
		if _, err := l.Batch(ctx, derived); errors.Is(err, ledger.ErrNoBatch) {
			return "", ErrGenerateRefsNeedsBatch
		} else if err != nil {
			return "", err
		}
		return derived, nil
	}
	if payAgain {
		return id, nil
	}
	same, err := l.BatchesWithContent(ctx, hash)
	if err != nil {
		return "", err
	}
	for _, b := range same {
		if b.ID == id {
			continue
		}
		// Generated referenceids start with refPrefix(id); in batches made
		// before that was a hash, with the id's first 12 characters.
		legacy := b.ID[:min(12, len(b.ID))]
		if gen, err := l.HasRefsStartingWith(ctx, b.Seq, refPrefix(b.ID), legacy); err != nil {
			return "", err
		} else if gen {
			return "", &RepeatError{Batch: b}
		}
	}
	return id, nil
}

// ErrGenerateRefsNeedsBatch refuses generated referenceids under a batch
// id derived from the file's bytes.
var ErrGenerateRefsNeedsBatch = errors.New("generated referenceids need a named batch (--batch ID): " +
	"an id derived from the file changes with any edit or re-save, and with it every generated referenceid, " +
	"so a corrected copy of the file would pay again the rows already paid")

// ControlError means the file failed a control total; nothing was recorded
// or sent, or, for a batch already in the ledger (Resumed), nothing more.
type ControlError struct {
	Reason string
	// Resumed names the batch when it was already in the ledger (a dry
	// run's, an interrupted run's): what earlier runs sent stays sent, and
	// this run sends nothing more.
	Resumed string
}

func (e *ControlError) Error() string { return "control totals: " + e.Reason }

// BatchIDFor derives a batch id from a file's content hash, so rerunning the
// same file resumes its batch.
func BatchIDFor(contentHash string) string { return "b" + contentHash[:16] }

// HashFile returns the hex SHA-256 of the file at path.
func HashFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Ingest puts every data row of the CSV at path into the ledger, under the
// batch's lease, and checks the control totals. A batch already ingested
// is resumed as it is, checked against the control totals as recorded. A
// bad file (*FileError, *ControlError) leaves nothing in the ledger, so
// nothing of it can be sent.
func Ingest(ctx context.Context, l ledger.Store, path string, o IngestOptions) (IngestResult, error) {
	if err := regularFile(path); err != nil {
		return IngestResult{}, err
	}
	hash, err := HashFile(path)
	if err != nil {
		return IngestResult{}, err
	}
	id := o.BatchID
	if o.Reader.GenerateRefs {
		if id, err = generatedRefsBatch(ctx, l, hash, id, o.PayAgain); err != nil {
			return IngestResult{}, err
		}
	}
	if id == "" {
		id = BatchIDFor(hash)
	}
	f, err := os.Open(path)
	if err != nil {
		return IngestResult{}, err
	}
	defer f.Close()
	ro := o.Reader
	ro.BatchID = id
	// Read the header before taking a lease, so a bad file fails fast and
	// leaves no batch behind.
	rd, err := NewReader(f, ro)
	if err != nil {
		return IngestResult{}, err
	}
	b, err := acquireOrWait(ctx, l, ledger.NewBatch{ID: id, ContentHash: hash, Source: filepath.Base(path), Header: rd.Header()}, o.Owner, o.LeaseTTL, o.Log)
	if err != nil {
		return IngestResult{}, err
	}
	if b.Ready {
		res, err := resumed(ctx, l, b, o.Controls)
		if err == nil {
			err = newRetried(l, b.ID).recheck(ctx, b)
		}
		if err != nil {
			release(ctx, l, b.ID, o.Owner, o.Log)
			return IngestResult{}, err
		}
		return res, nil
	}
	if b.TookOver != "" && o.Log != nil {
		o.Log.Warn("taking over the recording of this file from another process, which stopped: recording it again", "batch", b.ID, "from", b.TookOver)
	}
	// A previous ingest of this batch died part way: start it over.
	if err := l.ClearRows(ctx, b.Seq, o.Owner); err != nil {
		release(ctx, l, b.ID, o.Owner, o.Log)
		if errors.Is(err, ledger.ErrBatchSent) {
			// Only a copy brings sent rows into a batch not ready.
			return IngestResult{}, fmt.Errorf("batch %s was being copied in from another ledger when the copy stopped, and holds rows "+
				"that were sent: they are kept, and nothing of this file is recorded or sent; run the same aopbatch ledger copy again "+
				"to finish it (once the stopped copy's 10-minute lease is over), then this file: %w", b.ID, err)
		}
		return IngestResult{}, err
	}
	clearAbandoned(ctx, l, b, o)
	// Hash what is parsed too: a file changed between the two reads must not
	// be sent under the first version's batch.
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return IngestResult{}, err
	}
	h := sha256.New()
	rd, err = NewReader(io.TeeReader(f, h), ro)
	if err != nil {
		return IngestResult{}, err
	}
	in, err := l.BeginIngest(ctx, b, o.Owner, o.LeaseTTL)
	if err != nil {
		return IngestResult{}, err
	}
	res, err := ingestRows(ctx, in, rd, o.Controls, newRetried(l, id))
	if err == nil {
		if _, err = io.Copy(h, f); err == nil && hex.EncodeToString(h.Sum(nil)) != hash {
			err = &FileError{Reason: "the file changed while it was being read"}
		}
	}
	if err == nil {
		err = res.check(o.Controls)
	}
	if err != nil {
		actx, cancel := AfterStop(ctx)
		aerr := in.Abort(actx)
		cancel()
		if errors.Is(aerr, ledger.ErrLeaseLost) {
			// Nothing to clear: the rows are the new holder's to record.
			return IngestResult{}, fmt.Errorf("%w; meanwhile another process took the recording over (%w)", err, ledger.ErrLeaseLost)
		}
		if aerr != nil {
			// Harmless: a batch still being recorded is never sent, and
			// the next run to record it clears it first (ClearRows). Not
			// wrapped: what the run says is the recording's error.
			return IngestResult{}, fmt.Errorf("%w; clearing the rows recorded so far failed too, and the next run clears them: %v", err, aerr)
		}
		return IngestResult{}, err
	}
	if err := in.Finish(ctx); err != nil {
		return IngestResult{}, err
	}
	res.Batch, err = l.Batch(ctx, id)
	return res, err
}

// regularFile refuses a pipe, device or directory before it is opened:
// opening a FIFO blocks until a writer appears, and /dev/zero would be
// hashed forever. Ingest's two reads need a file that stays the same.
func regularFile(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return &FileError{Reason: fmt.Sprintf(
			"not a regular file (%s): save the rows to a file and pass that", fileKind(fi.Mode()))}
	}
	return nil
}

// CheckFile reads the header of the CSV at path as Ingest does, with the
// same options, and returns the error Ingest would return for it. It
// needs no ledger: a run checks its file and settings (a RegistrationID
// or coordinates the file lacks) before it opens one, so that a refused
// run creates none.
func CheckFile(path string, o ReaderOptions) error {
	if err := regularFile(path); err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if o.GenerateRefs && o.BatchID == "" {
		// Ingest picks the batch id with the ledger; the header does not
		// depend on it.
		o.BatchID = "check"
	}
	_, err = NewReader(f, o)
	return err
}

// clearAbandoned drops the other batches whose recording stopped part
// way (a process killed while it recorded a file) and of which nothing
// was ever sent: their rows would hold their referenceids against this
// file's, whose rows would then be conflicts, never paid (a review: an
// edited copy of a file killed while it was recorded had 24,576 of its
// 40,000 rows in conflict, and its run ended as if finished). Run again,
// such a file is recorded from the start all the same.
//
// It only ever takes away: a batch whose lease another process holds, an
// archive being copied in, a batch that became ready, or one with rows a
// provider may have seen (a ledger copy cut short holds paid rows:
// DropUnsent refuses it, in the transaction that would drop it) is left
// alone, and whatever fails leaves the batch as it was without failing
// this run. The time it takes is bounded, so this run's own lease, taken
// but not yet renewed, does not lapse meanwhile.
func clearAbandoned(ctx context.Context, l ledger.Store, own ledger.Batch, o IngestOptions) {
	bound := 10 * time.Second
	if o.LeaseTTL > 0 {
		bound = min(bound, o.LeaseTTL/3)
	}
	cctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	// Left as it was, such a batch's rows hold their referenceids: this
	// file's rows reusing one are conflicts, never paid. Said, so a person
	// can drop it.
	kept := func(b ledger.Batch, why error) {
		if o.Log == nil {
			return
		}
		if errors.Is(why, ledger.ErrBatchSent) { // only a copy brings sent rows into a batch not ready
			o.Log.Warn("a batch copied in from another ledger by a copy that stopped part way holds rows that were sent: it is kept, "+
				"its rows hold their referenceids, and this file's rows reusing one are recorded as conflicts; "+
				"run the same aopbatch ledger copy again to finish it", "batch", b.ID, "file", b.Source)
			return
		}
		o.Log.Warn("a batch whose recording stopped part way was left as it is: its rows hold their referenceids, "+
			"and this file's rows reusing one are recorded as conflicts; if nothing of it was sent, aopbatch ledger drop --batch ID takes it away",
			"batch", b.ID, "file", b.Source, "why", why.Error())
	}
	// Quietly, and briefly: another batch's lease, not this run's.
	letGo := func(id string) {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = l.Release(rctx, id, o.Owner)
	}
	bs, err := l.Batches(cctx)
	if err != nil {
		return
	}
	for _, b := range bs {
		if b.Ready || b.Archived != "" || b.Seq == own.Seq {
			continue
		}
		if cctx.Err() != nil {
			break // out of time: the conflicts it leaves name the batch
		}
		got, err := l.Acquire(cctx, ledger.NewBatch{ID: b.ID, ContentHash: b.ContentHash}, o.Owner, o.LeaseTTL)
		switch {
		case err != nil:
			// Being recorded by another process (its lease, or the write
			// lock it holds while it records): not one to drop, nor to
			// warn of every night.
			continue
		case got.Ready:
			letGo(got.ID) // finished meanwhile: its rows are kept
			continue
		}
		c, err := l.Counts(cctx, got.Seq)
		if err == nil {
			// Gone meanwhile, Acquire made it anew (got.Seq differs),
			// empty: dropped all the same.
			err = l.DropUnsent(cctx, got.Seq, o.Owner)
		}
		if err != nil {
			letGo(got.ID)
			kept(b, err)
			continue
		}
		if n := c.Total().Rows; n > 0 && got.Seq == b.Seq && o.Log != nil {
			o.Log.Warn("dropped a batch whose recording stopped part way: nothing of it was sent, and its file run again is recorded from the start",
				"batch", b.ID, "file", b.Source, "rows", n)
		}
	}
}

// ingestPoll is how often a process waits to see the file recorded by
// another process of a shared ledger.
const ingestPoll = 250 * time.Millisecond

// acquireOrWait takes the batch's lease. On a shared ledger, while another
// process records the file (or holds the batch busy), it waits and then
// joins the ready batch (or takes the recording over, if that process
// died).
func acquireOrWait(ctx context.Context, l ledger.Store, nb ledger.NewBatch, o ledger.Owner, ttl time.Duration, log *slog.Logger) (ledger.Batch, error) {
	w := waitSayer{since: time.Now()}
	for {
		b, err := l.Acquire(ctx, nb, o, ttl)
		if !errors.Is(err, ledger.ErrBatchIngesting) {
			return b, err
		}
		if msg, waited, ok := w.say(time.Now(), err.Error()); ok && log != nil {
			log.Info(msg, "batch", nb.ID, "why", err.Error(), "waited", waited.String())
		}
		if err := sleep(ctx, ingestPoll); err != nil {
			return ledger.Batch{}, err
		}
	}
}

// stillWaitingEvery is how often a process waiting to join a batch says
// it still waits when the reason has not changed.
const stillWaitingEvery = time.Minute

// waitSayer decides what a process waiting to join a batch says. Each new
// reason once (at most four: a new one, which this process may not end,
// is what an operator needs to hear), and the same one again each
// stillWaitingEvery: the wait lasts as long as the other process holds
// the batch, which may be long, and silence reads as a hang.
type waitSayer struct {
	since time.Time
	said  map[string]bool
	last  time.Time
}

// say returns what to say at now, if anything, and how long the process
// has waited since its first try.
func (w *waitSayer) say(now time.Time, why string) (msg string, waited time.Duration, ok bool) {
	if w.said == nil {
		w.said = map[string]bool{}
	}
	waited = now.Sub(w.since).Round(time.Second)
	switch {
	case !w.said[why] && len(w.said) < 4:
		w.said[why] = true
		w.last = now
		return "another process holds this batch: waiting to join it", waited, true
	case now.Sub(w.last) >= stillWaitingEvery:
		w.last = now
		return "still waiting to join this batch: another process holds it", waited, true
	}
	return "", waited, false
}

// fileKind names what a non-regular file is, for FileError.
func fileKind(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&os.ModeNamedPipe != 0:
		return "a pipe"
	case m&os.ModeSocket != 0:
		return "a socket"
	case m&os.ModeDevice != 0:
		return "a device"
	}
	return "a special file"
}

type overLimit struct {
	lines []int
	n     int
}

func ingestRows(ctx context.Context, in ledger.Ingest, rd *Reader, c Controls, rt *retried) (IngestResult, error) {
	var (
		res  IngestResult
		over overLimit
	)
	// The file is read and encoded while the ledger stores the rows read
	// before: each takes about half of the time per row. Rows go to the
	// ledger a chunk at a time: one statement for many rows is most of the
	// storing's speed.
	const chunk = 256
	chunks := make(chan []ledger.IngestRow, 2)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		defer close(chunks)
		pending := make([]ledger.IngestRow, 0, chunk)
		send := func() error {
			select {
			case chunks <- pending:
				pending = make([]ledger.IngestRow, 0, chunk)
				return nil
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		for {
			if err := gctx.Err(); err != nil {
				return err
			}
			row, err := rd.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			var ir ledger.IngestRow
			var rerr *RowError
			switch {
			case errors.As(err, &rerr):
				sv := rd.Salvage(rerr.Raw)
				ir = ledger.IngestRow{Line: rerr.Line, Raw: rerr.Raw, ReferenceID: sv.ReferenceID, Operator: sv.Operator,
					CANumber: sv.CANumber, AmountPaise: sv.AmountPaise, RetryOf: sv.RetryOf,
					Problem: &ledger.Problem{Code: rerr.Code, Column: rerr.Column, Message: rerr.Error()}}
			case err != nil:
				return err
			default:
				req := row.Request
				if c.MaxAmountPaise >= 0 && req.AmountPaise > c.MaxAmountPaise {
					over.n++
					if len(over.lines) < 5 {
						over.lines = append(over.lines, row.Line)
					}
				}
				body, err := json.Marshal(req)
				if err != nil {
					return fmt.Errorf("line %d: encode request: %w", row.Line, err)
				}
				ir = ledger.IngestRow{Line: row.Line, ReferenceID: req.ReferenceID, Operator: req.Operator,
					CANumber: req.CANumber, AmountPaise: req.AmountPaise, Request: body, Raw: row.Raw, RetryOf: row.RetryOf}
			}
			if pending = append(pending, ir); len(pending) == chunk {
				if err := send(); err != nil {
					return err
				}
			}
		}
		if len(pending) == 0 {
			return nil
		}
		return send()
	})
	g.Go(func() error {
		for rows := range chunks {
			if gctx.Err() != nil {
				continue // the reader failed: drain, store nothing more
			}
			// ctx, not gctx: the ledger's open transaction is bound to the
			// context that began it, and gctx ends with Wait.
			if err := rt.check(ctx, rows); err != nil {
				return err
			}
			if err := res.add(ctx, in, rows); err != nil {
				return err
			}
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		return res, err
	}
	if over.n > 0 {
		return res, overMax(over, c)
	}
	return res, nil
}

// add records rows and counts what they became.
func (r *IngestResult) add(ctx context.Context, in ledger.Ingest, rows []ledger.IngestRow) error {
	added, err := in.AddMany(ctx, rows)
	if err != nil {
		return err
	}
	for i, a := range added {
		r.Rows++
		switch a.State {
		case ledger.StateQueued:
			r.Queued++
			r.Paise += rows[i].AmountPaise
		case ledger.StateRejected:
			r.Rejected++
			if p := rows[i].Problem; p != nil && p.Code == CodeMissingValue && p.Column == colReferenceID.String() {
				r.BlankRefs++
			}
			if p := rows[i].Problem; p != nil && p.Code == CodeRetryElsewhere {
				if r.RetryElsewhere++; r.RetryElsewhereBatch == "" {
					r.RetryElsewhereBatch, _, _ = ledger.SplitRetryOf(rows[i].RetryOf)
				}
			}
		case ledger.StateConflict:
			r.Conflicts++
		}
		if a.State == ledger.StateRejected && len(r.FirstProblems) < firstProblems {
			r.FirstProblems = append(r.FirstProblems, WithLine(rows[i].Line, a.Message))
		}
	}
	return nil
}

// resumed is what batch b, already in the ledger, holds of its file,
// checked against the control totals: a run that resumes a batch (after a
// --dry-run, or one interrupted) is held to them before it sends anything
// more, as the run that recorded it was. They are counted from the rows
// as recorded, whatever has become of them since.
func resumed(ctx context.Context, l ledger.Store, b ledger.Batch, c Controls) (IngestResult, error) {
	res := IngestResult{Batch: b, Resumed: true, Rows: b.RowsTotal}
	counts, err := l.Counts(ctx, b.Seq)
	if err != nil {
		return res, err
	}
	for s, t := range counts {
		switch s {
		case ledger.StateRejected:
			res.Rejected += t.Rows
		case ledger.StateConflict:
			res.Conflicts += t.Rows
		default:
			res.Queued += t.Rows
			res.Paise += t.Paise
		}
	}
	var over overLimit
	if c.MaxAmountPaise >= 0 {
		err := l.EachRow(ctx, b.Seq, func(r *ledger.Row) error {
			if r.State.HoldsReferenceID() && r.AmountPaise > c.MaxAmountPaise { // a row to send
				over.n++
				if len(over.lines) < 5 {
					over.lines = append(over.lines, r.Line)
				}
			}
			return nil
		})
		if err != nil {
			return res, err
		}
	}
	if res.Rejected > 0 && c.MaxRejectRate >= 0 {
		first, err := l.Page(ctx, b.Seq, ledger.StateRejected, 0, firstProblems)
		if err != nil {
			return res, err
		}
		for _, r := range first {
			res.FirstProblems = append(res.FirstProblems, WithLine(r.Line, r.Message))
		}
	}
	var why []string
	if over.n > 0 {
		why = append(why, overMax(over, c).Reason)
	}
	if err := res.check(c); err != nil {
		var ce *ControlError
		if !errors.As(err, &ce) {
			return res, err
		}
		why = append(why, ce.Reason)
	}
	if len(why) > 0 {
		return res, &ControlError{Reason: strings.Join(why, "; "), Resumed: b.ID}
	}
	return res, nil
}

// overMax is the control error for rows above --max-amount.
func overMax(over overLimit, c Controls) *ControlError {
	return &ControlError{Reason: fmt.Sprintf("%d row(s) above --max-amount %s, first on line(s) %s",
		over.n, FormatRupees(c.MaxAmountPaise), joinInts(over.lines))}
}

func (r IngestResult) check(c Controls) error {
	var why []string
	if r.Rows == 0 {
		return &FileError{Line: 1, Reason: "the file has a header but no data rows"}
	}
	if c.ExpectRows >= 0 && r.Rows != c.ExpectRows {
		why = append(why, fmt.Sprintf("the file has %d data rows, --expect-rows says %d", r.Rows, c.ExpectRows))
	}
	if c.ExpectTotalPaise >= 0 && r.Paise != c.ExpectTotalPaise {
		why = append(why, fmt.Sprintf("the rows to send total %s, --expect-total says %s (%d row(s) rejected or in conflict are not sent)",
			FormatRupees(r.Paise), FormatRupees(c.ExpectTotalPaise), r.Rejected+r.Conflicts))
	}
	if c.MaxTotalPaise >= 0 && r.Paise > c.MaxTotalPaise {
		why = append(why, fmt.Sprintf("the rows to send total %s, above --max-total %s", FormatRupees(r.Paise), FormatRupees(c.MaxTotalPaise)))
	}
	if c.MaxRejectRate >= 0 && float64(r.Rejected) > c.MaxRejectRate*float64(r.Rows) {
		reason := fmt.Sprintf("%d of %d rows are invalid, more than --max-reject-rate %g allows: is this the right file? (%s)",
			r.Rejected, r.Rows, c.MaxRejectRate, strings.Join(r.FirstProblems, "; "))
		if r.RetryElsewhere == r.Rejected {
			// An export's file run on another ledger (a mistyped
			// --ledger): say that first, not the rate.
			reason = fmt.Sprintf("%d of %d rows pay again rows of batch %s (their retryof column), which this ledger does not hold: "+
				"a file from aopbatch export goes to the ledger of the batch it came from (--ledger); more than --max-reject-rate %g of the rows are refused (%s)",
				r.Rejected, r.Rows, r.RetryElsewhereBatch, c.MaxRejectRate, strings.Join(r.FirstProblems, "; "))
		}
		if r.BlankRefs == r.Rejected {
			// What aopbatch export writes: its referenceid column blank,
			// for each row to be sent under a new one.
			reason += "; every one of them has a blank referenceid, as a file from aopbatch export has: " +
				"give each row a new referenceid, or send the file with --generate-refs --batch NEW-ID"
		}
		why = append(why, reason)
	}
	if len(why) > 0 {
		return &ControlError{Reason: strings.Join(why, "; ")}
	}
	return nil
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s, ", ")
}
