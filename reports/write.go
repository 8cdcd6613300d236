package reports

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/aopbatch/aopbatch/ledger"
)

// Formats are the report formats Write knows, in the order it writes them.
var Formats = []string{"json", "csv", "md", "html"}

// File names written by Write.
const (
	FileJSON           = "report.json"
	FileRows           = "rows.csv"
	FileRejects        = "rejects.csv"
	FileReconciliation = "reconciliation.csv"
	FileMarkdown       = "summary.md"
	FileHTML           = "report.html"
)

// RowsHeader is the header of rows.csv.
var RowsHeader = []string{"line", "referenceid", "operator", "canumber", "amount", "state", "response_code", "message", "attempts", "provider_txnid"}

// RejectsTrailer is appended to the batch's own header in rejects.csv.
var RejectsTrailer = []string{"line", "error_code", "reason", "fixable"}

// ReconciliationHeader is the header of reconciliation.csv.
var ReconciliationHeader = []string{"category", "line", "referenceid", "state", "amount", "provider_txnid",
	"statement_line", "statement_status", "statement_amount", "statement_txnid", "note"}

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
		known := false
		for _, k := range Formats {
			known = known || k == f
		}
		if !known {
			return nil, fmt.Errorf("unknown report format %q (known: md, csv, json, html)", f)
		}
		out = append(out, f)
	}
	return out, nil
}

// Write writes the reports of s into dir (created with mode 0700 if needed;
// files 0600, each replaced atomically) and returns the paths written.
// formats are "json", "csv", "md", "html"; none means all. The csv format
// is rows.csv, rejects.csv and, after Reconcile, reconciliation.csv, all
// streamed from the ledger l.
func Write(ctx context.Context, l ledger.Reader, dir string, s *Summary, formats []string) ([]string, error) {
	want := map[string]bool{}
	if len(formats) == 0 {
		formats = Formats
	}
	for _, f := range formats {
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
	var written []string
	put := func(name string, fn func(io.Writer) error) error {
		p := filepath.Join(dir, name)
		if err := writeAtomic(p, 0o600, fn); err != nil {
			return fmt.Errorf("write %s: %w", p, err)
		}
		written = append(written, p)
		return nil
	}
	if want["json"] {
		if err := put(FileJSON, s.writeJSON); err != nil {
			return written, err
		}
	}
	if want["csv"] {
		paths, err := s.writeRowFiles(ctx, l, dir)
		written = append(written, paths...)
		if err != nil {
			return written, fmt.Errorf("write reports: %w", err)
		}
		if err := put(FileRejects, func(w io.Writer) error { return s.writeRejects(ctx, l, w) }); err != nil {
			return written, err
		}
	}
	if want["md"] {
		if err := put(FileMarkdown, s.writeMarkdown); err != nil {
			return written, err
		}
	}
	if want["html"] {
		if err := put(FileHTML, s.writeHTML); err != nil {
			return written, err
		}
	}
	return written, nil
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
func amountCell(r *ledger.Row) string {
	if r.AmountPaise == 0 && r.State == ledger.StateRejected {
		return ""
	}
	return rupees(r.AmountPaise)
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
	writeRow := func(r *ledger.Row) error {
		rowRec[0] = strconv.Itoa(r.Line)
		rowRec[1] = r.ReferenceID
		rowRec[2] = ""
		if r.Operator != 0 {
			rowRec[2] = strconv.FormatInt(r.Operator, 10)
		}
		rowRec[3] = s.mask(r.CANumber)
		rowRec[4] = amountCell(r)
		rowRec[5] = string(r.State)
		rowRec[6] = ""
		if r.ResponseCode >= 0 {
			rowRec[6] = strconv.Itoa(r.ResponseCode)
		}
		rowRec[7] = s.rowMessage(r)
		rowRec[8] = strconv.Itoa(r.Attempts)
		rowRec[9] = r.ProviderTxnID
		return rows.write(rowRec)
	}
	if s.recon == nil {
		err = l.EachRow(ctx, s.seq, writeRow)
	} else {
		err = s.walk(ctx, l, s.recon, func(r *ledger.Row, d *Discrepancy) error {
			if r != nil {
				if err := writeRow(r); err != nil {
					return err
				}
			}
			reconRec[0] = string(d.Category)
			reconRec[1], reconRec[3], reconRec[4] = "", "", ""
			if d.Line > 0 {
				reconRec[1] = strconv.Itoa(d.Line)
				reconRec[3] = string(d.State)
				reconRec[4] = amountCell(r)
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
// header plus line, error_code, reason and fixable, ready to be corrected.
// fixable is "yes", or "review" for a referenceid repeated in the file: that
// row may be the same payment twice, and must not just get a new id.
func (s *Summary) writeRejects(ctx context.Context, l ledger.Reader, w io.Writer) error {
	c := newCSV(w)
	width := len(s.header)
	hdr := append(append([]string(nil), s.header...), RejectsTrailer...)
	if err := c.write(hdr); err != nil {
		return err
	}
	pii := make([]bool, width)
	for i, h := range s.header {
		pii[i] = s.PIIMasked && piiColumns[normName(h)]
	}
	rec := make([]string, width+len(RejectsTrailer))
	err := eachInState(ctx, l, s.seq, ledger.StateRejected, func(r *ledger.Row) error {
		for i := 0; i < width; i++ {
			rec[i] = ""
			if i < len(r.Raw) {
				rec[i] = r.Raw[i]
				if pii[i] {
					rec[i] = maskTail(rec[i])
				}
			}
		}
		reason := s.rowMessage(r)
		if r.ErrorColumn != "" && !strings.Contains(reason, r.ErrorColumn) {
			reason = "column " + r.ErrorColumn + ": " + reason
		}
		if len(r.Raw) > width {
			extra := make([]string, 0, len(r.Raw)-width)
			for _, v := range r.Raw[width:] {
				extra = append(extra, strconv.Quote(s.maskIfPII(v)))
			}
			reason += "; cells beyond the header: " + strings.Join(extra, ", ")
		}
		fixable := "yes"
		if r.ErrorCode == "duplicate_referenceid" {
			fixable = "review"
		}
		rec[width] = strconv.Itoa(r.Line)
		rec[width+1] = r.ErrorCode
		rec[width+2] = reason
		rec[width+3] = fixable
		return c.write(rec)
	})
	if err != nil {
		return err
	}
	return c.flush()
}

// maskIfPII masks a cell whose column is unknown (beyond the header) when
// masking is on: it may be personal data.
func (s *Summary) maskIfPII(v string) string {
	if s.PIIMasked {
		return maskTail(v)
	}
	return v
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
