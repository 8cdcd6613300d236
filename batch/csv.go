package batch

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/gocarina/gocsv"

	"github.com/aopbatch/aopbatch/batch/aop"
	"github.com/aopbatch/aopbatch/ledger"
)

// DefaultMaxLineBytes bounds a physical line, and a record, when
// ReaderOptions.MaxLineBytes is 0.
const DefaultMaxLineBytes = 64 << 10

// ReaderOptions configure NewReader.
type ReaderOptions struct {
	// AllowExtraColumns ignores columns the reader does not know instead of
	// refusing the file.
	AllowExtraColumns bool
	// GenerateRefs makes the referenceid column optional: an empty or missing
	// referenceid becomes 12 hex digits of BatchID's SHA-256 followed by the
	// 8-digit physical line number. A non-empty referenceid cell is used as is.
	GenerateRefs bool
	// BatchID names the batch generated referenceids belong to.
	BatchID string
	// Latitude, Longitude and RegistrationID fill empty or missing cells.
	Latitude, Longitude, RegistrationID string
	// MaxLineBytes bounds a physical line and a whole record (a quoted field
	// may span lines); 0 means DefaultMaxLineBytes.
	MaxLineBytes int
}

// Row is one valid data row, ready to send.
type Row struct {
	Line    int // physical line of the record's first line (header = 1)
	Request aop.RechargeRequest
	Raw     []string // the record's cells as they were, header order (nil when unknown)
	RetryOf string   // the row this one retries, "BATCH:LINE" (retryof), or ""
}

// column is a known CSV column, in canonical order.
type column int

const (
	colOperator column = iota
	colCANumber
	colAmount
	colReferenceID
	colLatitude
	colLongitude
	colRegistrationID
	colBillAmount
	colBillNetAmount
	colMinBillAmount
	colMaxBillAmount
	colDueDate
	colAcceptPayment
	colAcceptPartPay
	colCellNumber
	colUserName
	// retryof: the row of an earlier batch this one retries, which
	// export writes; not part of the request.
	colRetryOf
	numColumns

	colExtra column = -1
)

// columnNames are the canonical (normalized) names, which are also the gocsv
// tags of csvRow.
var columnNames = [numColumns]string{
	"operator", "canumber", "amount", "referenceid", "latitude", "longitude",
	"registrationid", "billamount", "billnetamount", "minbillamount",
	"maxbillamount", "duedate", "acceptpayment", "acceptpartpay", "cellnumber",
	"username", "retryof",
}

func (c column) String() string { return columnNames[c] }

var columnByName = func() map[string]column {
	m := make(map[string]column, numColumns)
	for i, n := range columnNames {
		m[n] = column(i)
	}
	return m
}()

// csvRow receives one record from gocsv. Its tags are the normalized names;
// NewReader maps the file's header onto them.
type csvRow struct {
	Operator       string `csv:"operator"`
	CANumber       string `csv:"canumber"`
	Amount         string `csv:"amount"`
	ReferenceID    string `csv:"referenceid"`
	Latitude       string `csv:"latitude"`
	Longitude      string `csv:"longitude"`
	RegistrationID string `csv:"registrationid"`
	BillAmount     string `csv:"billamount"`
	BillNetAmount  string `csv:"billnetamount"`
	MinBillAmount  string `csv:"minbillamount"`
	MaxBillAmount  string `csv:"maxbillamount"`
	DueDate        string `csv:"duedate"`
	AcceptPayment  string `csv:"acceptpayment"`
	AcceptPartPay  string `csv:"acceptpartpay"`
	CellNumber     string `csv:"cellnumber"`
	UserName       string `csv:"username"`
	RetryOf        string `csv:"retryof"`
}

func (c *csvRow) values() [numColumns]string {
	return [numColumns]string{
		c.Operator, c.CANumber, c.Amount, c.ReferenceID, c.Latitude, c.Longitude,
		c.RegistrationID, c.BillAmount, c.BillNetAmount, c.MinBillAmount,
		c.MaxBillAmount, c.DueDate, c.AcceptPayment, c.AcceptPartPay,
		c.CellNumber, c.UserName, c.RetryOf,
	}
}

// personal columns hold personal data: their values are never echoed in errors.
func (c column) personal() bool {
	return c == colCANumber || c == colCellNumber || c == colUserName
}

// Limits on cell lengths, in characters.
const (
	maxRefLen      = 64
	maxCANumberLen = 64
	maxTextLen     = 64
	maxUserNameLen = 100
	maxDecimalLen  = 20
	maxCoordLen    = 32
	maxOperatorLen = 18 // keeps int64 safe
)

// Reader streams valid rows out of a CSV file. It holds one record at a time,
// so memory does not grow with the file. It is not safe for concurrent use.
type Reader struct {
	opts      ReaderOptions
	src       *guard
	cr        *csv.Reader
	um        *gocsv.Unmarshaller
	header    []string
	colOf     []column // per header cell: the column it fills, or colExtra
	keys      []string // per header cell: the name handed to gocsv
	present   [numColumns]bool
	extras    bool
	refPrefix string
	err       error // sticky: once the file is broken, it stays broken
}

// NewReader reads and checks the header of the CSV in r. A file that cannot
// be used at all (not text, no header, a missing, unknown or duplicate column)
// returns a *FileError; inconsistent options return a plain error.
func NewReader(r io.Reader, opts ReaderOptions) (*Reader, error) {
	if opts.MaxLineBytes <= 0 {
		opts.MaxLineBytes = DefaultMaxLineBytes
	}
	rd := &Reader{opts: opts}
	for _, c := range []column{colLatitude, colLongitude} {
		if def := rd.defaultOf(c); def != "" {
			if _, err := coordinate(c, def, ""); err != nil {
				return nil, fmt.Errorf("%s default %q (%s): must be a decimal number", c, def, coordinateSetting(c))
			}
		}
	}
	if opts.GenerateRefs {
		if opts.BatchID == "" {
			return nil, errors.New("generate referenceids: batch id is empty")
		}
		rd.refPrefix = refPrefix(opts.BatchID)
	}

	rd.src = &guard{r: r, max: opts.MaxLineBytes, line: 1, recLine: 1, sepOnly: true, rawLine: 1, rawStart: []int{0}}
	br := bufio.NewReaderSize(rd.src, 64<<10)
	if b, _ := br.Peek(3); len(b) >= 2 {
		switch {
		case len(b) == 3 && b[0] == 0xEF && b[1] == 0xBB && b[2] == 0xBF:
			br.Discard(3)
		case b[0] == 0xFF && b[1] == 0xFE, b[0] == 0xFE && b[1] == 0xFF:
			return nil, &FileError{Line: 1, Reason: "not a UTF-8 text CSV (UTF-16 byte order mark)"}
		}
	}
	// csv.NewReader reuses br: it is already a large enough *bufio.Reader.
	rd.cr = csv.NewReader(br)
	rd.cr.FieldsPerRecord = 0 // the header's count; ReadUnmatched relies on it

	um, err := gocsv.NewUnmarshaller(rd.cr, &csvRow{})
	if err != nil {
		if rd.src.err != nil {
			return nil, rd.src.fault()
		}
		if err == io.EOF {
			return nil, &FileError{Reason: "empty file: no header row"}
		}
		return nil, parseFault(err)
	}
	rd.um = um
	headerLine, _ := rd.cr.FieldPos(0)
	// gocsv's header normalizer is process-wide; it is left at its default
	// (identity), so um.Headers are the cells as they were in the file.
	rd.header = append([]string(nil), um.Headers...)
	if err := rd.mapHeader(headerLine); err != nil {
		return nil, err
	}
	if err := um.RenormalizeHeaders(func([]string) []string { return rd.keys }); err != nil {
		return nil, fmt.Errorf("map csv header: %w", err)
	}
	return rd, nil
}

// rejectsTrailer are the normalized names of the columns rejects.csv adds
// after the original ones; a reader ignores them.
var rejectsTrailer = map[string]bool{"line": true, "errorcode": true, "reason": true, "fixable": true}

// mapHeader decides which column each header cell fills and checks that the
// header as a whole is usable.
func (r *Reader) mapHeader(line int) error {
	n := len(r.header)
	r.colOf = make([]column, n)
	r.keys = make([]string, n)
	first := make(map[column]int, n)
	var unknown []string
	for i, h := range r.header {
		if !utf8.ValidString(h) {
			return &FileError{Line: line, Reason: "not a UTF-8 text CSV"}
		}
		key := normalizeHeader(h)
		col, ok := columnByName[key]
		if !ok && rejectsTrailer[key] {
			// rejects.csv appends these to the rows it lists, so a person
			// can fix that file and feed it straight back in.
			r.colOf[i] = colExtra
			r.keys[i] = "\x00extra" + strconv.Itoa(i)
			r.extras = true
			continue
		}
		if !ok {
			r.colOf[i] = colExtra
			// A name no csvRow tag can match, even after gocsv's own
			// trimming and zero-width stripping.
			r.keys[i] = "\x00extra" + strconv.Itoa(i)
			r.extras = true
			if key == "" {
				unknown = append(unknown, fmt.Sprintf("column %d has no name", i+1))
			} else {
				unknown = append(unknown, fmt.Sprintf("unknown column %q", strings.TrimSpace(h)))
			}
			continue
		}
		if j, dup := first[col]; dup {
			return &FileError{Line: line, Column: col.String(), Reason: fmt.Sprintf(
				"duplicate column %q (columns %d and %d)", col.String(), j+1, i+1)}
		}
		first[col] = i
		r.colOf[i] = col
		r.keys[i] = col.String()
		r.present[col] = true
	}
	required := []column{colOperator, colCANumber, colAmount, colReferenceID}
	if r.opts.GenerateRefs {
		required = required[:3]
	}
	var missing []string
	for _, c := range required {
		if !r.present[c] {
			missing = append(missing, strconv.Quote(c.String()))
		}
	}
	if len(unknown) > 0 && !r.opts.AllowExtraColumns {
		if hint := ledger.SeparatorHint(r.header); hint != "" {
			return &FileError{Line: line, Reason: hint}
		}
		reason := unknown[0]
		if len(unknown) > 1 {
			reason += fmt.Sprintf(" and %d more", len(unknown)-1)
		}
		// A required column under a name of its own ("Amount (Rs)"):
		// --allow-extra-columns would only ignore it and refuse the file
		// for the column missing. Say that one first.
		if len(missing) == 0 {
			return &FileError{Line: line, Reason: reason + " (remove it, or use --allow-extra-columns)"}
		}
	}
	if len(missing) > 0 {
		reason := "missing required column " + missing[0]
		if len(missing) > 1 {
			reason = "missing required columns " + strings.Join(missing, ", ")
		}
		if len(unknown) > 0 && !r.opts.AllowExtraColumns {
			reason += "; the header has " + strings.Join(unknown, ", ")
			switch {
			case len(missing) > 1:
				reason += ": name the ones that hold them " + strings.Join(missing, ", ")
			case len(unknown) > 1:
				reason += fmt.Sprintf(": if one of them holds the %s, name it %s", strings.Trim(missing[0], `"`), missing[0])
			default:
				reason += fmt.Sprintf(": if it holds the %s, name it %s", strings.Trim(missing[0], `"`), missing[0])
			}
		}
		if missing[0] == strconv.Quote(colReferenceID.String()) && len(missing) == 1 {
			reason += " (a file without referenceids goes with --generate-refs --batch ID)"
		}
		return &FileError{Line: line, Column: strings.Trim(missing[0], `"`), Reason: reason}
	}
	if !r.present[colRegistrationID] && r.opts.RegistrationID == "" {
		return &FileError{Line: line, Column: colRegistrationID.String(),
			Reason: "RegistrationID missing: add a RegistrationID column, or set --registration-id or AOP_REGISTRATION_ID"}
	}
	// Every request carries coordinates: without a column or a default,
	// every row would go out with "" (or be rejected one by one).
	for _, c := range []column{colLatitude, colLongitude} {
		if !r.present[c] && r.defaultOf(c) == "" {
			return &FileError{Line: line, Column: c.String(), Reason: c.String() + " missing: add a " + c.String() +
				" column, or set " + coordinateSetting(c)}
		}
	}
	return nil
}

// defaultOf is the value that fills an empty latitude or longitude cell.
func (r *Reader) defaultOf(c column) string {
	if c == colLatitude {
		return r.opts.Latitude
	}
	return r.opts.Longitude
}

// coordinateSetting names where a latitude or longitude default is set.
func coordinateSetting(c column) string {
	return "--" + c.String() + " or AOP_" + strings.ToUpper(c.String())
}

// normalizeHeader folds a header cell to its canonical form; it is the
// ledger's one normaliser, shared with the reports.
func normalizeHeader(h string) string { return ledger.NormalizeColumn(h) }

// Header returns the header cells as they were in the file (without a BOM).
func (r *Reader) Header() []string { return append([]string(nil), r.header...) }

// Next returns the next valid row. An invalid row returns a *RowError (with
// Line and, when known, Raw) and the reader stays usable; the end of the file
// returns io.EOF; a broken file returns a *FileError, and so does every later
// call.
func (r *Reader) Next() (Row, error) {
	for {
		row, err := r.next()
		if err != errSeparatorLine {
			return row, err
		}
	}
}

// cellsOf splits the record starting on line of the file again into
// cells, as the parser read them but whatever their number; nil when its
// bytes are no longer kept or do not parse. (The parser's error gives the
// record's first line only; it has read the whole record, so the bytes
// kept from there hold it all.)
func (r *Reader) cellsOf(line int) []string {
	b := r.src.from(line)
	if b == nil {
		return nil
	}
	cr := csv.NewReader(bytes.NewReader(b))
	cr.FieldsPerRecord = -1
	cells, err := cr.Read()
	if err != nil {
		return nil
	}
	for i := range cells {
		cells[i] = unescapeFormula(cells[i])
	}
	return cells
}

// errSeparatorLine is next's answer for a line of only separators, which
// Next skips as the parser skips empty lines.
var errSeparatorLine = errors.New("a line of only separators")

// next reads one record.
func (r *Reader) next() (Row, error) {
	if r.err != nil {
		return Row{}, r.err
	}
	var (
		v         any
		unmatched map[string]string
		err       error
	)
	if r.extras {
		v, unmatched, err = r.um.ReadUnmatched()
	} else {
		v, err = r.um.Read()
	}
	// A fault of the byte stream outranks whatever the parser made of the
	// truncated record it caused.
	if r.src.err != nil {
		r.err = r.src.fault()
		return Row{}, r.err
	}
	if err != nil {
		if err == io.EOF {
			return Row{}, io.EOF
		}
		var pe *csv.ParseError
		if errors.As(err, &pe) && pe.Err == csv.ErrFieldCount {
			if r.src.separatorOnly(pe.StartLine) {
				return Row{}, errSeparatorLine
			}
			cells := r.cellsOf(pe.StartLine)
			r.src.forget(pe.StartLine)
			reason := fmt.Sprintf("wrong number of cells: the header has %d", len(r.header))
			if cells != nil {
				reason += fmt.Sprintf(", this row %d", len(cells))
			}
			return Row{}, &RowError{Line: pe.StartLine, Code: CodeFieldCount, Reason: reason, Raw: cells}
		}
		r.err = parseFault(err)
		return Row{}, r.err
	}
	rec, ok := v.(*csvRow)
	if !ok {
		r.err = fmt.Errorf("read csv: unexpected record type %T", v)
		return Row{}, r.err
	}
	line, _ := r.cr.FieldPos(0)
	r.src.forget(line)
	if r.src.separatorOnly(line) {
		return Row{}, errSeparatorLine
	}
	vals := rec.values()
	for i := range vals {
		vals[i] = unescapeFormula(vals[i])
	}
	raw := make([]string, len(r.colOf))
	for i, c := range r.colOf {
		if c != colExtra {
			raw[i] = vals[c]
		} else {
			raw[i] = unescapeFormula(unmatched[r.keys[i]])
		}
	}
	req, rerr := r.request(line, &vals)
	var retryOf string
	if rerr == nil {
		retryOf, rerr = parseRetryOf(vals[colRetryOf], r.present[colRetryOf])
	}
	if rerr != nil {
		rerr.Line = line
		rerr.Raw = raw
		return Row{}, rerr
	}
	return Row{Line: line, Request: req, Raw: raw, RetryOf: retryOf}, nil
}

// unescapeFormula takes off the one leading "'" that aopbatch's own CSV
// writers put before a cell beginning with '=', '+', '-', '@', tab or CR
// (so a spreadsheet shows it as text, SPEC section 6): rejects.csv and
// export files then read back to exactly the values of the original file,
// and a +91 phone number reaches the provider as it was written.
func unescapeFormula(s string) string {
	if len(s) >= 2 && s[0] == '\'' {
		switch s[1] {
		case '=', '+', '-', '@', '\t', '\r':
			return s[1:]
		}
	}
	return s
}

// parseFault turns a parser error into the file-level error it is: after a
// quoting error the record boundaries can no longer be trusted.
func parseFault(err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		reason := pe.Err.Error()
		switch {
		case errors.Is(pe.Err, csv.ErrBareQuote):
			reason = `a " in a cell that is not quoted (quote the cell and double the ")`
		case errors.Is(pe.Err, csv.ErrQuote):
			reason = `a quoted cell is not closed properly (a " inside a quoted cell must be doubled)`
		}
		// The row's first line is where to look: a quote opened there and
		// never closed is only noticed lines later.
		if pe.StartLine != pe.Line {
			reason += fmt.Sprintf(" (noticed at line %d)", pe.Line)
		}
		return &FileError{Line: pe.StartLine, Reason: reason}
	}
	return fmt.Errorf("read csv: %w", err)
}

// request validates one record and builds its request. The first problem
// found, in canonical column order, is the one reported.
func (r *Reader) request(line int, v *[numColumns]string) (aop.RechargeRequest, *RowError) {
	var req aop.RechargeRequest
	var err *RowError

	if req.Operator, err = parseOperator(v[colOperator]); err != nil {
		return req, err
	}
	if req.CANumber, err = text(colCANumber, v[colCANumber], maxCANumberLen, true); err != nil {
		return req, err
	}
	if req.AmountPaise, err = parseAmount(v[colAmount]); err != nil {
		return req, err
	}
	if req.ReferenceID, err = r.referenceID(line, v[colReferenceID]); err != nil {
		return req, err
	}
	if req.Latitude, err = coordinate(colLatitude, v[colLatitude], r.opts.Latitude); err != nil {
		return req, err
	}
	if req.Longitude, err = coordinate(colLongitude, v[colLongitude], r.opts.Longitude); err != nil {
		return req, err
	}
	if req.RegistrationID, err = text(colRegistrationID, v[colRegistrationID], maxTextLen, false); err != nil {
		return req, err
	}
	if req.RegistrationID == "" {
		req.RegistrationID = r.opts.RegistrationID
		if req.RegistrationID == "" {
			return req, &RowError{Column: colRegistrationID.String(), Code: CodeMissingValue,
				Reason: "RegistrationID missing: set --registration-id or AOP_REGISTRATION_ID"}
		}
	}
	req.BillFetch, err = billFetch(v)
	return req, err
}

// maxRetryOfLen bounds a retryof cell: a batch id and a line number.
const maxRetryOfLen = 200

// parseRetryOf checks a retryof cell: "BATCH:LINE", the row of an earlier
// batch this one retries (export writes it), LINE a data line (2 or
// more). Whether the ledger holds that row is the ingest's check. In a
// file with the column every row names one: export fills every cell, and
// a row whose cell was emptied would be paid as a new payment, the row it
// retried again.
func parseRetryOf(cell string, column bool) (string, *RowError) {
	s, err := text(colRetryOf, cell, maxRetryOfLen, false)
	if err != nil {
		return "", err
	}
	if s == "" {
		if column {
			e := missing(colRetryOf)
			e.Reason = "missing value: this file names the row each of its rows pays again, and this one names none; " +
				"sent, it could pay that row a second time (a new payment goes in a file of its own)"
			return "", e
		}
		return "", nil
	}
	i := strings.LastIndexByte(s, ':')
	if i <= 0 {
		return "", bad(colRetryOf, cell, "must be BATCH:LINE, the row this one retries, as aopbatch export wrote it")
	}
	id, n, ok := ledger.SplitRetryOf(s)
	if !ok || n < 2 || s[i+1] == '+' {
		return "", bad(colRetryOf, cell, "must be BATCH:LINE, the row this one retries, as aopbatch export wrote it; the line is a number, 2 or more")
	}
	// One spelling per row: "b:02" is "b:2", which the ledger holds once.
	return id + ":" + strconv.Itoa(n), nil
}

func missing(c column) *RowError {
	return &RowError{Column: c.String(), Code: CodeMissingValue, Reason: "missing value"}
}

func bad(c column, value, reason string) *RowError {
	if c.personal() {
		value = ""
	}
	return &RowError{Column: c.String(), Value: clip(value), Code: "bad_" + c.String(), Reason: reason}
}

func badEncoding(c column, value string) *RowError {
	e := bad(c, value, "not valid UTF-8")
	e.Code = CodeBadEncoding
	return e
}

func parseOperator(cell string) (int64, *RowError) {
	s := strings.TrimSpace(cell)
	if s == "" {
		return 0, missing(colOperator)
	}
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return 0, bad(colOperator, cell, "must be digits only")
		}
	}
	digits := strings.TrimLeft(s, "0")
	if digits == "" {
		return 0, bad(colOperator, cell, "must be greater than zero")
	}
	if len(digits) > maxOperatorLen {
		return 0, bad(colOperator, cell, "too large")
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil {
		return 0, bad(colOperator, cell, "too large")
	}
	return n, nil
}

func parseAmount(cell string) (int64, *RowError) {
	paise, err := ParseRupees(cell)
	if err == nil {
		return paise, nil
	}
	if err == ErrAmountEmpty {
		return 0, missing(colAmount)
	}
	if !utf8.ValidString(cell) {
		return 0, badEncoding(colAmount, cell)
	}
	return 0, bad(colAmount, cell, err.Error())
}

func (r *Reader) referenceID(line int, cell string) (string, *RowError) {
	s := strings.TrimSpace(cell)
	if s == "" {
		if r.opts.GenerateRefs {
			return generateRef(r.refPrefix, line), nil
		}
		return "", missing(colReferenceID)
	}
	if !utf8.ValidString(s) {
		return "", badEncoding(colReferenceID, cell)
	}
	if utf8.RuneCountInString(s) > maxRefLen {
		return "", bad(colReferenceID, cell, fmt.Sprintf("longer than %d characters", maxRefLen))
	}
	if reason := checkRefChars(s); reason != "" {
		return "", bad(colReferenceID, cell, reason)
	}
	return s, nil
}

// refPrefix is the part of a generated referenceid that names the batch:
// 12 hex digits of the id's SHA-256. Hashed, since ids people choose share
// long prefixes ("nightly-2026-06-01", "nightly-2026-06-02"), and the
// referenceids of two batches must never meet.
func refPrefix(batchID string) string {
	sum := sha256.Sum256([]byte(batchID))
	return hex.EncodeToString(sum[:6])
}

// generateRef derives a stable referenceid: the batch prefix and the
// zero-padded physical line, e.g. "3f9a1c07b2e4" + "00000042".
func generateRef(prefix string, line int) string {
	n := strconv.Itoa(line)
	if len(n) < 8 {
		n = "00000000"[len(n):] + n
	}
	return prefix + n
}

// checkRefChars returns why s is not made only of [A-Za-z0-9_-./], or "".
func checkRefChars(s string) string {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isDigit(c) || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' ||
			c == '_' || c == '-' || c == '.' || c == '/' {
			continue
		}
		r, _ := utf8.DecodeRuneInString(s[i:])
		return fmt.Sprintf("character %q not allowed (only A-Z a-z 0-9 _ - . /)", r)
	}
	return ""
}

// text validates a free-text cell: trimmed, valid UTF-8, no control
// characters, at most max characters.
func text(c column, cell string, max int, required bool) (string, *RowError) {
	s := strings.TrimSpace(cell)
	if s == "" {
		if required {
			return "", missing(c)
		}
		return "", nil
	}
	if !utf8.ValidString(s) {
		return "", badEncoding(c, cell)
	}
	n := 0
	for _, ch := range s {
		if unicode.IsControl(ch) {
			return "", bad(c, cell, "control character not allowed")
		}
		n++
	}
	if n > max {
		return "", bad(c, cell, fmt.Sprintf("longer than %d characters", max))
	}
	return s, nil
}

// coordinate validates a latitude or longitude: an optionally signed decimal
// number. An empty cell takes the default; with none, the row is refused
// as one without a RegistrationID is.
func coordinate(c column, cell, def string) (string, *RowError) {
	s := strings.TrimSpace(cell)
	if s == "" {
		if def == "" {
			return "", &RowError{Column: c.String(), Code: CodeMissingValue,
				Reason: c.String() + " missing: fill the cell, or set " + coordinateSetting(c)}
		}
		return def, nil
	}
	t := s
	if t[0] == '-' || t[0] == '+' {
		t = t[1:]
	}
	if len(s) > maxCoordLen || !isDecimal(t) {
		return "", bad(c, cell, "must be a decimal number")
	}
	return s, nil
}

// isDecimal reports whether s is digits, optionally followed by '.' and digits.
func isDecimal(s string) bool {
	i := 0
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	if i == 0 {
		return false
	}
	if i == len(s) {
		return true
	}
	if s[i] != '.' || i+1 == len(s) {
		return false
	}
	for i++; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

// decimal validates an unsigned decimal bill amount, kept as text.
func decimal(c column, cell string) (string, *RowError) {
	s := strings.TrimSpace(cell)
	if s == "" {
		return "", nil
	}
	if len(s) > maxDecimalLen || !isDecimal(s) {
		return "", bad(c, cell, `must be a decimal number, e.g. "1000.0"`)
	}
	return s, nil
}

// number validates a decimal bill amount sent as a JSON number. Leading zeros
// are dropped: JSON does not allow them.
func number(c column, cell string) (json.Number, *RowError) {
	s, err := decimal(c, cell)
	if err != nil || s == "" {
		return "", err
	}
	for len(s) > 1 && s[0] == '0' && isDigit(s[1]) {
		s = s[1:]
	}
	return json.Number(s), nil
}

func parseBool(c column, cell string) (*bool, *RowError) {
	s := strings.TrimSpace(cell)
	if s == "" {
		return nil, nil
	}
	var b bool
	switch strings.ToLower(s) {
	case "true", "1", "yes":
		b = true
	case "false", "0", "no":
		b = false
	default:
		return nil, bad(c, cell, "must be true/false, 1/0 or yes/no")
	}
	return &b, nil
}

// billFetch builds the bill_fetch object, or nil when every bill cell is empty.
func billFetch(v *[numColumns]string) (*aop.BillFetch, *RowError) {
	found := false
	for c := colBillAmount; c <= colUserName; c++ {
		if strings.TrimSpace(v[c]) != "" {
			found = true
			break
		}
	}
	if !found {
		return nil, nil
	}
	var (
		bf  aop.BillFetch
		err *RowError
	)
	if bf.BillAmount, err = decimal(colBillAmount, v[colBillAmount]); err != nil {
		return nil, err
	}
	if bf.BillNetAmount, err = decimal(colBillNetAmount, v[colBillNetAmount]); err != nil {
		return nil, err
	}
	if bf.MinBillAmount, err = number(colMinBillAmount, v[colMinBillAmount]); err != nil {
		return nil, err
	}
	if bf.MaxBillAmount, err = number(colMaxBillAmount, v[colMaxBillAmount]); err != nil {
		return nil, err
	}
	if bf.DueDate, err = text(colDueDate, v[colDueDate], maxTextLen, false); err != nil {
		return nil, err
	}
	if bf.AcceptPayment, err = parseBool(colAcceptPayment, v[colAcceptPayment]); err != nil {
		return nil, err
	}
	if bf.AcceptPartPay, err = parseBool(colAcceptPartPay, v[colAcceptPartPay]); err != nil {
		return nil, err
	}
	if bf.CellNumber, err = text(colCellNumber, v[colCellNumber], maxTextLen, false); err != nil {
		return nil, err
	}
	if bf.UserName, err = text(colUserName, v[colUserName], maxUserNameLen, false); err != nil {
		return nil, err
	}
	return &bf, nil
}

// guard sits between the file and the CSV parser. It refuses bytes that are
// not text (NUL) and lines or records longer than max, so a 10 MB line, or an
// unclosed quote swallowing the rest of the file, is never buffered whole. It
// tracks quoting by parity, which is exact for every file the parser accepts.
type guard struct {
	r         io.Reader
	max       int
	line      int // current physical line, 1-based
	lineBytes int
	recLine   int // line where the current record started
	recBytes  int
	inQuote   bool
	pending   error // found, not yet returned: bytes before it are delivered first
	err       error // returned to the parser; sticky

	// A line of only commas (a spreadsheet's empty rows below the data) is
	// an empty line, not a row: the guard notes such lines as it passes
	// them, and Next skips the records that start on one.
	sepOnly bool  // the current line started outside quotes and holds only ',' and CR so far
	sawSep  bool  // ... and has at least one ','
	blank   []int // separator-only lines not yet passed by Next, ascending

	// raw keeps the bytes from line rawLine on (rawStart[k] is where line
	// rawLine+k starts), so that a record the parser refuses for its
	// number of cells can be split again, its cells kept for rejects.csv.
	// Next lets go of the lines before the record it reads: what stays is
	// the parser's read-ahead, a few hundred KB at most.
	raw      []byte
	rawLine  int
	rawStart []int
}

// keepRaw notes bytes delivered to the parser.
func (g *guard) keepRaw(b []byte) {
	base := len(g.raw)
	g.raw = append(g.raw, b...)
	for i := 0; ; {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return
		}
		i += j + 1
		g.rawStart = append(g.rawStart, base+i)
	}
}

// forget lets go of the bytes of the lines before line, in 64 KB steps.
func (g *guard) forget(line int) {
	k := line - g.rawLine
	if k <= 0 || k >= len(g.rawStart) || g.rawStart[k] < 64<<10 {
		return
	}
	cut := g.rawStart[k]
	g.raw = g.raw[:copy(g.raw, g.raw[cut:])]
	g.rawStart = g.rawStart[:copy(g.rawStart, g.rawStart[k:])]
	for i := range g.rawStart {
		g.rawStart[i] -= cut
	}
	g.rawLine = line
}

// from returns the kept bytes from the start of line on; nil when they
// are no longer kept.
func (g *guard) from(line int) []byte {
	i := line - g.rawLine
	if i < 0 || i >= len(g.rawStart) {
		return nil
	}
	return g.raw[g.rawStart[i]:]
}

// separatorOnly reports whether line was a line of only separators, and
// forgets the lines before it: Next asks in ascending order.
func (g *guard) separatorOnly(line int) bool {
	i := 0
	for i < len(g.blank) && g.blank[i] < line {
		i++
	}
	g.blank = g.blank[i:]
	return len(g.blank) > 0 && g.blank[0] == line
}

// endLine notes the line just ended if it held only separators.
func (g *guard) endLine() {
	if g.sepOnly && g.sawSep && !g.inQuote {
		g.blank = append(g.blank, g.line)
	}
	g.sepOnly, g.sawSep = !g.inQuote, false
}

func (g *guard) Read(p []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	if g.pending != nil {
		g.err = g.pending
		return 0, g.err
	}
	n, err := g.r.Read(p)
	for i := 0; i < n; i++ {
		switch p[i] {
		case '\n':
			g.endLine()
			g.line++
			g.lineBytes = 0
			if !g.inQuote {
				g.recLine = g.line
				g.recBytes = 0
			} else {
				g.recBytes++
			}
			continue
		case 0:
			g.pending = &FileError{Line: g.line, Reason: "not a UTF-8 text CSV (NUL byte)"}
		case '"':
			g.inQuote = !g.inQuote
			g.sepOnly = false
		case ',':
			g.sawSep = true
		case '\r':
		default:
			g.sepOnly = false
		}
		if g.pending == nil {
			g.lineBytes++
			g.recBytes++
			switch {
			case g.lineBytes > g.max:
				g.pending = &FileError{Line: g.line, Reason: fmt.Sprintf("line longer than %d bytes", g.max)}
			case g.recBytes > g.max:
				g.pending = &FileError{Line: g.recLine, Reason: fmt.Sprintf(
					"row longer than %d bytes (a quoted cell that is never closed?)", g.max)}
			}
		}
		if g.pending != nil {
			if i > 0 {
				g.keepRaw(p[:i])
				return i, nil
			}
			g.err = g.pending
			return 0, g.err
		}
	}
	g.keepRaw(p[:n])
	if err == io.EOF {
		g.endLine() // a last line without a line end
	}
	if err != nil && err != io.EOF {
		g.err = err
	}
	return n, err
}

// fault is the error the guard handed to the parser, as NewReader and Next
// report it.
func (g *guard) fault() error {
	var fe *FileError
	if errors.As(g.err, &fe) {
		return fe
	}
	return fmt.Errorf("read csv: %w", g.err)
}
