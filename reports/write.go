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
func Write(ctx context.Context, l *ledger.Ledger, dir string, s *Summary, formats []string) ([]string, error) {
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
		if err := put(FileRows, func(w io.Writer) error { return s.writeRows(ctx, l, w) }); err != nil {
			return written, err
		}
		if err := put(FileRejects, func(w io.Writer) error { return s.writeRejects(ctx, l, w) }); err != nil {
			return written, err
		}
		if s.recon != nil {
			if err := put(FileReconciliation, func(w io.Writer) error { return s.writeReconciliation(ctx, l, w) }); err != nil {
				return written, err
			}
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

// writeAtomic writes path through a temporary file in the same directory
// and renames it into place, so no reader ever sees half a file.
func writeAtomic(path string, mode os.FileMode, fn func(io.Writer) error) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	bw := bufio.NewWriterSize(f, 64<<10)
	if err := fn(bw); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if err := f.Chmod(mode); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
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

func (s *Summary) writeRows(ctx context.Context, l *ledger.Ledger, w io.Writer) error {
	c := newCSV(w)
	if err := c.write(append([]string(nil), RowsHeader...)); err != nil {
		return err
	}
	rec := make([]string, len(RowsHeader))
	err := l.EachRow(ctx, s.seq, func(r *ledger.Row) error {
		rec[0] = strconv.Itoa(r.Line)
		rec[1] = r.ReferenceID
		rec[2] = ""
		if r.Operator != 0 {
			rec[2] = strconv.FormatInt(r.Operator, 10)
		}
		rec[3] = s.mask(r.CANumber)
		rec[4] = amountCell(r)
		rec[5] = string(r.State)
		rec[6] = ""
		if r.ResponseCode >= 0 {
			rec[6] = strconv.Itoa(r.ResponseCode)
		}
		rec[7] = s.rowMessage(r)
		rec[8] = strconv.Itoa(r.Attempts)
		rec[9] = r.ProviderTxnID
		return c.write(rec)
	})
	if err != nil {
		return err
	}
	return c.flush()
}

// writeRejects writes the rejected rows as they came, under the batch's own
// header plus line, error_code, reason and fixable, ready to be corrected.
// fixable is "yes", or "review" for a referenceid repeated in the file: that
// row may be the same payment twice, and must not just get a new id.
func (s *Summary) writeRejects(ctx context.Context, l *ledger.Ledger, w io.Writer) error {
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
	err := l.EachRow(ctx, s.seq, func(r *ledger.Row) error {
		if r.State != ledger.StateRejected {
			return nil
		}
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

func (s *Summary) writeReconciliation(ctx context.Context, l *ledger.Ledger, w io.Writer) error {
	c := newCSV(w)
	if err := c.write(append([]string(nil), ReconciliationHeader...)); err != nil {
		return err
	}
	rec := make([]string, len(ReconciliationHeader))
	err := s.walk(ctx, l, s.recon, func(d *Discrepancy) error {
		rec[0] = string(d.Category)
		rec[1], rec[3], rec[4] = "", "", ""
		if d.Line > 0 {
			rec[1] = strconv.Itoa(d.Line)
			rec[3] = string(d.State)
			rec[4] = rupees(d.AmountPaise)
			if d.AmountPaise == 0 && d.State == ledger.StateRejected {
				rec[4] = ""
			}
		}
		rec[2] = d.ReferenceID
		rec[5] = d.ProviderTxnID
		rec[6], rec[7], rec[8] = "", "", ""
		if d.StatementLine > 0 {
			rec[6] = strconv.Itoa(d.StatementLine)
			rec[7] = d.StatementStatus
			rec[8] = rupees(d.StatementAmountPaise)
		}
		rec[9] = d.StatementTxnID
		rec[10] = d.Note
		return c.write(rec)
	})
	if err != nil {
		return err
	}
	return c.flush()
}
