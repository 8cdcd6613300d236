package reports

import (
	"cmp"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/aopbatch/aopbatch/ledger"
)

// StatementColumnNames are our names for a statement's columns, as the
// status enquiry's data object names them. refid, amount and status are
// required.
var StatementColumnNames = []string{"refid", "txnid", "amount", "status", "refunded", "operatorid", "dateadded"}

var requiredStatementColumns = map[string]bool{"refid": true, "amount": true, "status": true}

// TheirStatus is a statement entry's outcome.
type TheirStatus uint8

// Statement outcomes: status "1", "1" with refunded "1", "0", and "2".
const (
	TheirSuccess TheirStatus = iota + 1
	TheirRefunded
	TheirFailed
	TheirPending
)

// String names the outcome like the ledger's states.
func (t TheirStatus) String() string {
	switch t {
	case TheirSuccess:
		return "success"
	case TheirRefunded:
		return "refunded"
	case TheirFailed:
		return "failed"
	case TheirPending:
		return "pending"
	}
	return ""
}

// Statement is a provider statement held compactly: the text of every refid
// and txnid lives in one string, so a million-line statement costs tens of
// megabytes, not hundreds.
type Statement struct {
	text    string
	entries []stEntry // file order
	byRef   []int32   // entry indexes sorted by refid, then file order
	// rep is, by entry, the entry of its refid a row is compared with,
	// again whether it is a second charge of its refid, unsure whether its
	// refid's lines leave unsure whether money was kept (see payments). A
	// refid's other lines are its history (failed, then charged late).
	rep     []int32
	again   []bool
	unsure  []bool
	kept    []bool // by entry: the line a transaction that stands charged stands at
	columns map[string]string
	// from and to are the earliest and latest dateadded that could be
	// read; zero when none could.
	from, to time.Time
}

type span struct{ off, n uint32 }

type stEntry struct {
	ref, txn, opref span
	amount          int64
	line            int32
	status          TheirStatus
	// short: the line had fewer cells than the header. Its money columns
	// were all there, but a value missing in the middle would have
	// shifted them: charged says such a refid may be charged.
	short bool
}

// StatementError is a statement line that cannot be read.
type StatementError struct {
	Line   int
	Column string // the statement's header name
	Value  string // at most 40 characters
	Reason string
}

func (e *StatementError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "statement line %d", e.Line)
	if e.Column != "" {
		fmt.Fprintf(&b, ", column %q", e.Column)
	}
	if e.Value != "" || e.Column != "" {
		fmt.Fprintf(&b, ", value %q", e.Value)
	}
	b.WriteString(": ")
	b.WriteString(e.Reason)
	return b.String()
}

// Len is the number of entries (data lines) of the statement.
func (s *Statement) Len() int { return len(s.entries) }

// Columns maps our column names to the statement's header names as found.
func (s *Statement) Columns() map[string]string { return s.columns }

func (s *Statement) str(sp span) string { return s.text[sp.off : sp.off+sp.n] }

// find returns the first position in byRef holding ref, and how many entries
// hold it (0 when none).
func (s *Statement) find(ref string) (int, int) {
	i := sort.Search(len(s.byRef), func(i int) bool { return s.str(s.entries[s.byRef[i]].ref) >= ref })
	j := i
	for j < len(s.byRef) && s.str(s.entries[s.byRef[j]].ref) == ref {
		j++
	}
	return i, j - i
}

// charged reports whether any line of the statement shows ref charged or
// pending (money taken, or perhaps taken).
func (s *Statement) charged(ref string) bool {
	pos, n := s.find(ref)
	return s.chargedEntry(pos, n) != nil || s.shortEntry(pos, n) != nil
}

// shortEntry returns the first of the n entries from byRef[pos] read from
// a short line, or nil. Such a line may read failed with its values
// shifted (a review: a charge, its txnid missing, read as amount 1.00 and
// status failed): a row under its refid is not to be sent again on its
// word.
func (s *Statement) shortEntry(pos, n int) *stEntry {
	for k := pos; k < pos+n; k++ {
		if e := &s.entries[s.byRef[k]]; e.short {
			return e
		}
	}
	return nil
}

// chargedEntry returns the first of the n entries from byRef[pos] that
// shows money taken or perhaps taken, or nil.
func (s *Statement) chargedEntry(pos, n int) *stEntry {
	for k := pos; k < pos+n; k++ {
		if e := &s.entries[s.byRef[k]]; e.status == TheirSuccess || e.status == TheirPending {
			return e
		}
	}
	return nil
}

// ParseStatementColumns parses a --statement-columns value,
// "refid=Reference,amount=Amt", into our name -> their header.
func ParseStatementColumns(v string) (map[string]string, error) {
	m := map[string]string{}
	if strings.TrimSpace(v) == "" {
		return m, nil
	}
	for _, pair := range strings.Split(v, ",") {
		ours, theirs, ok := strings.Cut(pair, "=")
		ours, theirs = strings.TrimSpace(ours), strings.TrimSpace(theirs)
		if !ok || ours == "" || theirs == "" {
			return nil, fmt.Errorf("statement columns: %q is not name=Header", pair)
		}
		if _, dup := m[ours]; dup {
			return nil, fmt.Errorf("statement columns: %s given twice", ours)
		}
		m[ours] = theirs
	}
	return m, checkColumnNames(m)
}

func checkColumnNames(columns map[string]string) error {
	for ours := range columns {
		known := false
		for _, n := range StatementColumnNames {
			known = known || n == ours
		}
		if !known {
			return fmt.Errorf("statement columns: unknown name %q (known: %s)", ours, strings.Join(StatementColumnNames, ", "))
		}
	}
	return nil
}

// maxIDBytes bounds a refid or txnid: real ones are a few dozen bytes.
const maxIDBytes = 256

// ReadStatementFile reads the statement CSV at path; see ReadStatement.
func ReadStatementFile(path string, columns map[string]string) (*Statement, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read statement: %w", err)
	}
	defer f.Close()
	st, err := ReadStatement(f, columns)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return st, nil
}

// ReadStatement reads a provider statement CSV with a header row. columns
// maps our names (StatementColumnNames) to the statement's header names;
// a name not mapped is looked for under itself. Header names match
// case-insensitively, ignoring '_', '-' and spaces. Blank lines are
// skipped. Any unreadable line fails the whole statement with a
// *StatementError naming line, column and value: reconciling against a
// statement read in part would report false mismatches.
func ReadStatement(r io.Reader, columns map[string]string) (*Statement, error) {
	if err := checkColumnNames(columns); err != nil {
		return nil, err
	}
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, errors.New("statement is empty: no header line")
	}
	if err != nil {
		return nil, fmt.Errorf("read statement: %w", err)
	}
	// A header with a CR in it: the file's lines end with CR only, and it
	// reads as one line, the header, whatever its columns (a review: a
	// statement of charges read as none, with no error).
	for _, h := range header {
		if strings.Contains(h, "\r") {
			return nil, &StatementError{Line: 1, Reason: ledger.SeparatorHint(header)}
		}
	}
	index := map[string]int{}
	names := make([]string, len(header))
	for i, h := range header {
		names[i] = strings.TrimPrefix(h, "\ufeff")
		n := normName(h)
		if n == "" {
			continue
		}
		if _, dup := index[n]; dup {
			return nil, &StatementError{Line: 1, Column: names[i], Value: names[i], Reason: "header names this column twice"}
		}
		index[n] = i
	}
	col := map[string]int{}
	found := map[string]string{}
	for _, ours := range StatementColumnNames {
		theirs, mapped := columns[ours]
		if !mapped {
			theirs = ours
		}
		i, ok := index[normName(theirs)]
		switch {
		case ok:
			col[ours] = i
			found[ours] = names[i]
		case mapped || requiredStatementColumns[ours]:
			if hint := ledger.SeparatorHint(header); hint != "" {
				return nil, &StatementError{Line: 1, Reason: hint}
			}
			hint := ""
			if !mapped {
				hint = fmt.Sprintf(" (map it with --statement-columns %s=Header)", ours)
			}
			return nil, &StatementError{Line: 1, Reason: fmt.Sprintf("no column %q for %s%s; the header has: %s",
				theirs, ours, hint, clipN(strings.Join(names, ", "), 300))}
		default:
			col[ours] = -1
		}
	}
	// The columns every line must reach, found once: a line short of one
	// is refused (below).
	type need struct {
		ours string
		i    int
	}
	var needs []need
	for _, ours := range []string{"refid", "amount", "status"} {
		needs = append(needs, need{ours, col[ours]})
	}
	// The header's cells up to its last name: a trailing comma on the
	// header alone adds no column a line must fill.
	named := len(names)
	for named > 0 && normName(names[named-1]) == "" {
		named--
	}
	st := &Statement{columns: found}
	var text strings.Builder
	add := func(v string) (span, error) {
		if text.Len()+len(v) > math.MaxUint32 {
			return span{}, errors.New("statement too large")
		}
		sp := span{off: uint32(text.Len()), n: uint32(len(v))}
		text.WriteString(v)
		return sp, nil
	}
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read statement: %w", err)
		}
		line, _ := cr.FieldPos(0)
		if blank(rec) {
			continue
		}
		if len(st.entries) >= math.MaxInt32 {
			return nil, errors.New("statement too large")
		}
		short, err := cellCount(line, rec, named, len(header))
		if err != nil {
			return nil, err
		}
		// Short of a column every line needs: refused. Short of another
		// (txnid, refunded, dateadded, operatorid, a remark): read, its
		// empty last cells left off, and marked short: a value missing in
		// the middle would have shifted the rest, so its refid is taken
		// as perhaps charged (charged) and reconcile asks the provider.
		for _, n := range needs {
			if n.i >= len(rec) {
				return nil, &StatementError{Line: line, Reason: fmt.Sprintf("has %d cells, the header has %d: no %s cell (%s); if a value is missing before it, the ones after it are under the wrong columns",
					len(rec), len(header), n.ours, found[n.ours])}
			}
		}
		cell := func(ours string) string {
			if i := col[ours]; i >= 0 && i < len(rec) { // a short line's last cells are empty
				return strings.TrimSpace(rec[i])
			}
			return ""
		}
		bad := func(ours, v, reason string) error {
			return &StatementError{Line: line, Column: found[ours], Value: clip(v), Reason: reason + short}
		}
		var e stEntry
		e.line = int32(line)
		e.short = short != ""
		ref := cell("refid")
		if ref == "" {
			return nil, bad("refid", ref, "empty refid")
		}
		if len(ref) > maxIDBytes {
			return nil, bad("refid", ref, "refid longer than 256 bytes")
		}
		amount := cell("amount")
		if e.amount, err = parseStatementRupees(amount); err != nil {
			return nil, bad("amount", amount, err.Error())
		}
		status := cell("status")
		refunded := cell("refunded")
		if e.status, err = theirStatus(status); err != nil {
			return nil, bad("status", status, err.Error())
		}
		isRefunded, err := parseRefunded(refunded)
		if err != nil {
			return nil, bad("refunded", refunded, err.Error())
		}
		if isRefunded && e.status == TheirSuccess {
			e.status = TheirRefunded
		}
		txn := cell("txnid")
		if len(txn) > maxIDBytes {
			return nil, bad("txnid", txn, "txnid longer than 256 bytes")
		}
		if v := cell("dateadded"); v != "" {
			if t, ok := parseStatementTime(v); ok {
				if st.from.IsZero() || t.Before(st.from) {
					st.from = t
				}
				if t.After(st.to) {
					st.to = t
				}
			}
		}
		opref := cell("operatorid")
		if len(opref) > maxIDBytes {
			return nil, bad("operatorid", opref, "operatorid longer than 256 bytes")
		}
		if e.ref, err = add(ref); err != nil {
			return nil, err
		}
		if e.txn, err = add(txn); err != nil {
			return nil, err
		}
		if e.opref, err = add(opref); err != nil {
			return nil, err
		}
		st.entries = append(st.entries, e)
	}
	st.text = text.String()
	st.byRef = make([]int32, len(st.entries))
	for i := range st.byRef {
		st.byRef[i] = int32(i)
	}
	// Ties keep file order, so the first of a run is the first occurrence.
	slices.SortFunc(st.byRef, func(a, b int32) int {
		return cmp.Or(strings.Compare(st.str(st.entries[a].ref), st.str(st.entries[b].ref)), cmp.Compare(a, b))
	})
	st.rep = make([]int32, len(st.entries))
	st.again = make([]bool, len(st.entries))
	st.unsure = make([]bool, len(st.entries))
	st.kept = make([]bool, len(st.entries))
	for k := 0; k < len(st.byRef); {
		ref := st.str(st.entries[st.byRef[k]].ref)
		n := 1
		for k+n < len(st.byRef) && st.str(st.entries[st.byRef[k+n]].ref) == ref {
			n++
		}
		st.payments(st.byRef[k : k+n])
		k += n
	}
	return st, nil
}

// cellCount refuses a line with more cells than the header's columns (an
// unquoted 1,250.00 is two): its values sit under the wrong columns, and
// what the reader would say about one of them (status is not "1"...)
// hides what is wrong. Empty cells past the header's (a trailing comma)
// shift nothing. A line with fewer cells is read: providers, and
// spreadsheets, leave a line's empty last cells off. But a value missing
// in the middle shifts the rest as well, so short says so, for any error
// the line's values then meet.
func cellCount(line int, rec []string, named, width int) (short string, err error) {
	used := len(rec)
	for used > width && strings.TrimSpace(rec[used-1]) == "" {
		used--
	}
	switch {
	case used > width:
		return "", &StatementError{Line: line, Reason: fmt.Sprintf(
			"has %d cells, the header has %d: a value with a comma in it (1,250.00) must be in quotes", len(rec), width)}
	case len(rec) < named:
		return fmt.Sprintf(" (the line has %d cells, the header %d: if a value is missing, the ones after it are under the wrong columns)", len(rec), width), nil
	}
	return "", nil
}

// payments works out, for the lines of one refid (in file order), the line
// a row is compared with (rep), the lines that are a second charge
// (again), the lines a kept charge stands at (kept) and whether the lines
// leave unsure whether money was kept (unsure).
//
// Lines with one txnid are one transaction's history; a line without a
// txnid is a transaction of its own. A transaction stands at its line that
// shows the most money gone: refunded, else charged, else perhaps charged,
// else failed. A row is compared with the first charged transaction, else
// the first pending (perhaps charged), else refunded, else the first line:
// a failed row the statement shows charged, or perhaps charged, anywhere
// is a mismatch. Every charged transaction after the first is a second
// charge. Unsure: a charge and a refund or a "0" ("0" is also "taken and
// returned") that no txnid ties together (one payment returned, or two
// and one kept), or one transaction shown both charged and failed: the
// row is asked about.
func (st *Statement) payments(lines []int32) {
	if len(lines) == 1 { // nearly every refid: the rule below, for one line
		i := lines[0]
		st.rep[i], st.kept[i] = i, st.entries[i].status == TheirSuccess
		return
	}
	type txn struct {
		at     int32 // the line it stands at
		status TheirStatus
		failed bool // some line of it shows failed
	}
	var txns []txn
	byID := map[string]int{}
	loose := false // a charged, refunded or failed line without a txnid
	failed := false
	for _, i := range lines {
		e := &st.entries[i]
		id := st.str(e.txn)
		if id == "" && e.status != TheirPending {
			loose = true
		}
		failed = failed || e.status == TheirFailed
		t, ok := byID[id]
		if id == "" || !ok {
			t = len(txns)
			txns = append(txns, txn{at: i, status: e.status})
			if id != "" {
				byID[id] = t
			}
		}
		if rank(e.status) > rank(txns[t].status) {
			txns[t].at, txns[t].status = i, e.status
		}
		txns[t].failed = txns[t].failed || e.status == TheirFailed
	}
	rep := lines[0]
	for _, want := range []TheirStatus{TheirRefunded, TheirPending, TheirSuccess} {
		for _, t := range txns {
			if t.status == want {
				rep = t.at
				break
			}
		}
	}
	var charged, refunded int
	unsure := false
	for _, t := range txns {
		switch t.status {
		case TheirSuccess:
			st.again[t.at] = charged > 0
			st.kept[t.at] = true
			charged++
			unsure = unsure || t.failed
		case TheirRefunded:
			refunded++
		}
	}
	unsure = unsure || charged > 0 && (refunded > 0 || failed) && loose
	for _, i := range lines {
		st.rep[i] = rep
		st.unsure[i] = unsure
	}
}

// rank orders statuses by money gone: refunded (taken, then given back)
// above charged above perhaps charged above failed.
func rank(t TheirStatus) int {
	switch t {
	case TheirRefunded:
		return 3
	case TheirSuccess:
		return 2
	case TheirPending:
		return 1
	}
	return 0
}

// parseStatementTime reads a dateadded: RFC 3339, or a date and time
// without a zone, taken as UTC.
func parseStatementTime(v string) (time.Time, bool) {
	for _, layout := range []string{time.RFC3339, "2006-01-02 15:04:05", "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// Span is the earliest and latest dateadded of the statement; ok is false
// when no line had a readable one.
func (s *Statement) Span() (from, to time.Time, ok bool) { return s.from, s.to, !s.from.IsZero() }

// Has reports whether some line of the statement names ref.
func (s *Statement) Has(ref string) bool {
	_, n := s.find(ref)
	return n > 0
}

func blank(rec []string) bool {
	for _, c := range rec {
		if strings.TrimSpace(c) != "" {
			return false
		}
	}
	return true
}

// theirStatus reads the status enquiry's codes, and the words a portal
// export would use instead.
func theirStatus(v string) (TheirStatus, error) {
	switch strings.ToLower(v) {
	case "1", "success", "successful":
		return TheirSuccess, nil
	case "0", "failed", "failure":
		return TheirFailed, nil
	case "2", "pending":
		return TheirPending, nil
	case "refunded", "reversed":
		return TheirRefunded, nil
	}
	return 0, errors.New(`status is not "1" (success), "0" (failed) or "2" (pending)`)
}

func parseRefunded(v string) (bool, error) {
	switch strings.ToLower(v) {
	case "", "0", "false", "no", "n":
		return false, nil
	case "1", "true", "yes", "y":
		return true, nil
	}
	return false, errors.New(`refunded is not "1" or "0"`)
}

func (e *stEntry) lineText() string { return fmt.Sprint(e.line) }
