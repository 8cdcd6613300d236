package reports

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aopbatch/aopbatch/ledger"
)

// File names written by Write.
const (
	FileJSON           = "report.json"
	FileRows           = "rows.csv"
	FileRejects        = "rejects.csv"
	FileReconciliation = "reconciliation.csv"
	FileMarkdown       = "summary.md"
	FileHTML           = "report.html"
	FileXLSX           = "report.xlsx"
)

// RowsHeader is the header of rows.csv: SPEC section 6's columns, then the
// provider's operator reference (from the statement, when one was given),
// when the row was first sent and when it settled (RFC 3339, the report's
// time zone; empty when never sent, or not settled).
var RowsHeader = []string{"line", "referenceid", "operator", "canumber", "amount", "state", "response_code", "message", "attempts",
	"provider_txnid", "operator_ref", "first_sent", "settled"}

// RejectsTrailer is appended to the batch's own header in rejects.csv.
var RejectsTrailer = []string{"line", "error_code", "reason", "fixable"}

// ReconciliationHeader is the header of reconciliation.csv.
var ReconciliationHeader = []string{"category", "line", "referenceid", "state", "amount", "provider_txnid",
	"statement_line", "statement_status", "statement_amount", "statement_txnid", "note"}

// format is one report format: the files it writes.
type format struct {
	name string
	// write writes the format's files into dir and returns their paths.
	write func(w *writer) error
}

// formats is the registry of report formats, in the order Write writes
// them; --format picks from it by name.
var formats = []format{
	{"json", func(w *writer) error { return w.put(FileJSON, w.s.writeJSON) }},
	{"csv", func(w *writer) error {
		paths, err := w.s.writeRowFiles(w.ctx, w.l, w.dir)
		w.written = append(w.written, paths...)
		if err != nil {
			return err
		}
		return w.put(FileRejects, func(out io.Writer) error { return w.s.writeRejects(w.ctx, w.l, out) })
	}},
	{"md", func(w *writer) error { return w.put(FileMarkdown, w.view().writeMarkdown) }},
	{"html", func(w *writer) error { return w.put(FileHTML, w.view().writeHTML) }},
	{"xlsx", func(w *writer) error {
		return w.put(FileXLSX, func(out io.Writer) error { return w.s.writeXLSX(w.ctx, w.l, w.view(), out) })
	}},
}

// Formats are the report formats Write knows, in the order it writes them.
var Formats = func() []string {
	names := make([]string, len(formats))
	for i, f := range formats {
		names[i] = f.name
	}
	return names
}()

// ParseFormats reads a --format value ("md,csv"); empty means all.
func ParseFormats(v string) ([]string, error) {
	var out []string
	for _, f := range strings.Split(v, ",") {
		f = strings.ToLower(strings.TrimSpace(f))
		if f == "" {
			continue
		}
		if f == "markdown" {
			f = "md"
		}
		if !slices.Contains(Formats, f) {
			return nil, fmt.Errorf("unknown report format %q (known: %s)", f, strings.Join(Formats, ", "))
		}
		out = append(out, f)
	}
	return out, nil
}

// writer is one Write call: where it writes, and what it wrote.
type writer struct {
	ctx     context.Context
	l       ledger.Reader
	dir     string
	s       *Summary
	v       *view
	written []string
}

func (w *writer) view() *view {
	if w.v == nil {
		w.v = w.s.view()
	}
	return w.v
}

func (w *writer) put(name string, fn func(io.Writer) error) error {
	p := filepath.Join(w.dir, name)
	if err := writeAtomic(p, 0o600, fn); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	w.written = append(w.written, p)
	return nil
}

// Write writes the reports of s into dir (created with mode 0700 if needed;
// files 0600, each replaced atomically) and returns the paths written.
// formats name entries of Formats; none means all. The csv format is
// rows.csv, rejects.csv and, after Reconcile, reconciliation.csv, all
// streamed from the ledger l, as are the workbook's row sheets.
func Write(ctx context.Context, l ledger.Reader, dir string, s *Summary, names []string) ([]string, error) {
	want := map[string]bool{}
	if len(names) == 0 {
		names = Formats
	}
	for _, f := range names {
		fs, err := ParseFormats(f)
		if err != nil {
			return nil, err
		}
		for _, f := range fs {
			want[f] = true
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("write reports: %w", err)
	}
	w := &writer{ctx: ctx, l: l, dir: dir, s: s}
	for _, f := range formats {
		if !want[f.name] {
			continue
		}
		if err := f.write(w); err != nil {
			return w.written, fmt.Errorf("write reports: %w", err)
		}
	}
	return w.written, nil
}

// atomicFile is a file written under a temporary name in its directory and
// renamed into place by commit, so no reader ever sees half of it.
type atomicFile struct {
	f    *os.File
	tmp  string
	bw   *bufio.Writer
	path string
	mode os.FileMode
	done bool
}

func createAtomic(path string, mode os.FileMode) (*atomicFile, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return nil, err
	}
	return &atomicFile{f: f, tmp: f.Name(), bw: bufio.NewWriterSize(f, 64<<10), path: path, mode: mode}, nil
}

func (a *atomicFile) Write(p []byte) (int, error) { return a.bw.Write(p) }

func (a *atomicFile) commit() error {
	err := a.bw.Flush()
	if err == nil {
		err = a.f.Chmod(a.mode)
	}
	if err == nil {
		err = a.f.Sync()
	}
	if err == nil {
		err = a.f.Close()
		a.f = nil
	}
	if err == nil {
		err = os.Rename(a.tmp, a.path)
	}
	if err != nil {
		a.abort()
	}
	a.done = true
	return err
}

// abort removes the temporary file; after commit it does nothing.
func (a *atomicFile) abort() {
	if a.done {
		return
	}
	a.done = true
	if a.f != nil {
		a.f.Close()
		a.f = nil
	}
	os.Remove(a.tmp)
}

// writeAtomic writes path through an atomicFile.
func writeAtomic(path string, mode os.FileMode, fn func(io.Writer) error) error {
	a, err := createAtomic(path, mode)
	if err != nil {
		return err
	}
	if err := fn(a); err != nil {
		a.abort()
		return err
	}
	return a.commit()
}

func (s *Summary) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(s)
}

// csvWriter writes records with every cell defused against formula injection.
type csvWriter struct{ w *csv.Writer }

func newCSV(w io.Writer) *csvWriter { return &csvWriter{w: csv.NewWriter(w)} }

func (c *csvWriter) write(rec []string) error { return c.w.Write(safeRecord(rec)) }

func (c *csvWriter) flush() error {
	c.w.Flush()
	return c.w.Error()
}

// amountCell is a row's amount in rupees; empty for a rejected row whose
// amount could not be read (stored as 0).
func amountCell(st ledger.State, paise int64) string {
	if paise == 0 && st == ledger.StateRejected {
		return ""
	}
	return rupees(paise)
}

// rowTimes are a row's first-sent and settled times for rows.csv: empty
// when it was never sent, or has not settled.
func (s *Summary) rowTimes(r *ledger.Row) (first, settled string) {
	if r.FirstSent.IsZero() {
		return "", ""
	}
	first = r.FirstSent.In(s.loc).Format(time.RFC3339)
	if r.State.Final() {
		settled = r.Updated.In(s.loc).Format(time.RFC3339)
	}
	return first, settled
}

// writeRowFiles writes rows.csv and, after Reconcile, reconciliation.csv
// in one pass over the ledger.
func (s *Summary) writeRowFiles(ctx context.Context, l ledger.Reader, dir string) ([]string, error) {
	rowsFile, err := createAtomic(filepath.Join(dir, FileRows), 0o600)
	if err != nil {
		return nil, err
	}
	defer rowsFile.abort()
	rows := newCSV(rowsFile)
	if err := rows.write(append([]string(nil), RowsHeader...)); err != nil {
		return nil, err
	}
	var (
		reconFile *atomicFile
		recon     *csvWriter
	)
	if s.recon != nil {
		if reconFile, err = createAtomic(filepath.Join(dir, FileReconciliation), 0o600); err != nil {
			return nil, err
		}
		defer reconFile.abort()
		recon = newCSV(reconFile)
		if err := recon.write(append([]string(nil), ReconciliationHeader...)); err != nil {
			return nil, err
		}
	}
	rowRec := make([]string, len(RowsHeader))
	reconRec := make([]string, len(ReconciliationHeader))
	writeRow := func(r *ledger.Row, opRef string) error {
		rowRec[0] = strconv.Itoa(r.Line)
		rowRec[1] = r.ReferenceID
		rowRec[2] = ""
		if r.Operator != 0 {
			rowRec[2] = strconv.FormatInt(r.Operator, 10)
		}
		rowRec[3] = s.mask(r.CANumber)
		rowRec[4] = amountCell(r.State, r.AmountPaise)
		rowRec[5] = string(r.State)
		rowRec[6] = ""
		if r.ResponseCode >= 0 {
			rowRec[6] = strconv.Itoa(r.ResponseCode)
		}
		rowRec[7] = s.rowMessage(r)
		rowRec[8] = strconv.Itoa(r.Attempts)
		rowRec[9] = r.ProviderTxnID
		rowRec[10] = opRef
		rowRec[11], rowRec[12] = s.rowTimes(r)
		return rows.write(rowRec)
	}
	if s.recon == nil {
		err = l.EachRow(ctx, s.seq, func(r *ledger.Row) error { return writeRow(r, "") })
	} else {
		err = s.walk(ctx, l, s.recon, func(r *ledger.Row, d *Discrepancy) error {
			if r != nil {
				if err := writeRow(r, d.StatementOperatorRef); err != nil {
					return err
				}
			}
			reconRec[0] = string(d.Category)
			reconRec[1], reconRec[3], reconRec[4] = "", "", ""
			if d.Line > 0 {
				reconRec[1] = strconv.Itoa(d.Line)
				reconRec[3] = string(d.State)
				reconRec[4] = amountCell(r.State, r.AmountPaise)
			}
			reconRec[2] = d.ReferenceID
			reconRec[5] = d.ProviderTxnID
			reconRec[6], reconRec[7], reconRec[8] = "", "", ""
			if d.StatementLine > 0 {
				reconRec[6] = strconv.Itoa(d.StatementLine)
				reconRec[7] = d.StatementStatus
				reconRec[8] = rupees(d.StatementAmountPaise)
			}
			reconRec[9] = d.StatementTxnID
			reconRec[10] = d.Note
			return recon.write(reconRec)
		})
	}
	if err != nil {
		return nil, err
	}
	var written []string
	if err := rows.flush(); err != nil {
		return nil, err
	}
	if err := rowsFile.commit(); err != nil {
		return nil, err
	}
	written = append(written, rowsFile.path)
	if recon == nil {
		// A reconciliation.csv an earlier report left here is of another
		// moment and another statement: beside these files, which
		// reconciled nothing, it would disagree with them.
		if err := os.Remove(filepath.Join(dir, FileReconciliation)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return written, err
		}
	}
	if recon != nil {
		if err := recon.flush(); err != nil {
			return written, err
		}
		if err := reconFile.commit(); err != nil {
			return written, err
		}
		written = append(written, reconFile.path)
	}
	return written, nil
}

// writeRejects writes the rejected rows as they came, under the batch's own
// header plus line, error_code, reason and fixable, ready to be corrected;
// a row whose cells do not fit the header has them in its reason instead,
// so that run as it is, it is rejected again.
// fixable is "yes", or "review" for a referenceid repeated in the file: that
// row may be the same payment twice, and must not just get a new id.
func (s *Summary) writeRejects(ctx context.Context, l ledger.Reader, w io.Writer) error {
	c := newCSV(w)
	width := len(s.header)
	// The file's columns but the trailer of an earlier rejects.csv fed
	// back in (a reader ignores them): written again, the trailer would
	// repeat, once more each round.
	trailerNames := map[string]bool{}
	for _, n := range RejectsTrailer {
		trailerNames[normName(n)] = true
	}
	var keep []int
	var cols []string
	retryCol := -1
	for i, h := range s.header {
		if trailerNames[normName(h)] {
			continue
		}
		if normName(h) == RetryOfColumn {
			retryCol = len(cols)
		}
		keep = append(keep, i)
		cols = append(cols, h)
	}
	// Each row names the row it retries, as export's do: fed back in
	// twice, or beside an export of the same rows, it is paid once.
	own := retryCol < 0
	if own {
		retryCol = len(cols)
		cols = append(cols, RetryOfColumn)
	}
	hdr := append(cols, RejectsTrailer...)
	if err := c.write(hdr); err != nil {
		return err
	}
	pii := s.piiMasked()
	trailer := len(cols)
	rec := make([]string, trailer+len(RejectsTrailer))
	err := eachInState(ctx, l, s.seq, ledger.StateRejected, func(r *ledger.Row) error {
		// A row whose cells do not fit the header has them in its reason,
		// and none under the columns: placed there as they came, an
		// unquoted "1,250.00" made amount 1 and referenceid "250.00", a
		// valid row that, run as it is, paid the wrong amount.
		ragged := raggedRow(r, width)
		for k, i := range keep {
			rec[k] = ""
			if i < len(r.Raw) && !ragged {
				rec[k] = r.Raw[i]
				if pii[i] {
					rec[k] = maskTail(rec[k])
				}
			}
		}
		if own {
			rec[retryCol] = s.Batch + ":" + strconv.Itoa(r.Line)
		}
		// Otherwise the file had the column: never sent, a rejected row
		// that retried another still retries that one (see Export), and
		// one whose cells did not fit has it in its reason, for a person
		// to put back (a run refuses the row while its cell is empty).
		reason, fixable := s.rejectReason(r)
		rec[trailer] = strconv.Itoa(r.Line)
		rec[trailer+1] = r.ErrorCode
		rec[trailer+2] = reason
		rec[trailer+3] = fixable
		return c.write(rec)
	})
	if err != nil {
		return err
	}
	return c.flush()
}

// rejectReason is a rejected row's reason and fixable for rejects.csv:
// fixable is "yes"; "review" for a referenceid repeated in the file (the
// row may be the same payment twice), a retry refused for the row it
// retries (export leaves it out too), or a row with the wrong number of
// cells (its cells do not fit the columns as they are); "no" when the
// statement given shows
// its referenceid charged (someone sent it: it must not be sent again).
func (s *Summary) rejectReason(r *ledger.Row) (reason, fixable string) {
	width := len(s.header)
	reason = s.rowMessage(r)
	if r.ErrorColumn != "" && !strings.Contains(reason, r.ErrorColumn) {
		reason = "column " + r.ErrorColumn + ": " + reason
	}
	if raggedRow(r, width) {
		cells := make([]string, len(r.Raw))
		for i, v := range r.Raw {
			// Not under their columns: any may be personal data.
			cells[i] = strconv.Quote(s.mask(v))
		}
		reason += fmt.Sprintf("; its %d cells as they came (the header has %d), left out of the columns: put each under its own: %s",
			len(r.Raw), width, strings.Join(cells, ", "))
	}
	fixable = "yes"
	switch {
	case r.ErrorCode == codeDuplicateRef, ledger.RefusedForRetry(r.ErrorCode):
		// The same payment twice, or a retry of a row that is not this
		// ledger's or was paid since: a person decides.
		fixable = "review"
	case r.ErrorCode == "field_count": // batch.CodeFieldCount
		// Its cells do not fall under the header's columns as they are:
		// a person sees where they belong (an unquoted "1,000" is two).
		fixable = "review"
		if len(r.Raw) == 0 {
			reason += fmt.Sprintf("; its cells are not shown here: take line %d of the original file", r.Line)
		}
	}
	if s.recon != nil {
		if note, ok := s.recon.rejectedCharged[r.Line]; ok {
			fixable, reason = "no", reason+"; "+note
		}
	}
	if h, ok := s.rejectedLater[r.Line]; ok {
		fixable, reason = "no", reason+"; held by a later batch: "+h.why
	}
	if why, ok := s.rejectedPaidBehind[r.Line]; ok {
		fixable, reason = "no", reason+"; "+why
	}
	return reason, fixable
}

// raggedRow reports whether rejected row r has more or fewer cells than
// the header's width: which column each belongs to takes a person. Empty
// cells past the header's (a trailing comma) shift nothing: such a row's
// cells are where they belong.
func raggedRow(r *ledger.Row, width int) bool {
	if r.ErrorCode != "field_count" || len(r.Raw) == 0 || len(r.Raw) == width { // batch.CodeFieldCount
		return false
	}
	if len(r.Raw) > width {
		for _, v := range r.Raw[width:] {
			if strings.TrimSpace(v) != "" {
				return true
			}
		}
		return false
	}
	return true
}

// piiMasked says, by column of the file's header, which cells are masked.
func (s *Summary) piiMasked() []bool {
	pii := make([]bool, len(s.header))
	for i, h := range s.header {
		pii[i] = s.PIIMasked && piiColumns[normName(h)]
	}
	return pii
}

// eachInState calls fn for the rows of one state in line order, a page at a
// time through the state index.
func eachInState(ctx context.Context, l ledger.Reader, seq int64, st ledger.State, fn func(*ledger.Row) error) error {
	after := 0
	for {
		rows, err := l.Page(ctx, seq, st, after, exportPage)
		if err != nil {
			return err
		}
		for i := range rows {
			after = rows[i].Line
			if err := fn(&rows[i]); err != nil {
				return err
			}
		}
		if len(rows) < exportPage {
			return nil
		}
	}
}
