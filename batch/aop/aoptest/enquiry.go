package aoptest

import (
	"bytes"
	"cmp"
	"encoding/csv"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aopbatch/aopbatch/ledger"
)

// statusWire is the RechargeStatus body.
type statusWire struct {
	ReferenceID    string `json:"referenceid"`
	RegistrationID string `json:"RegistrationID"`
}

// statusData is the data object of a found transaction: every field a
// string, as the provider sends it.
type statusData struct {
	TxnID        string `json:"txnid"`
	OperatorName string `json:"operatorname"`
	CANumber     string `json:"canumber"`
	Amount       string `json:"amount"`
	Comm         string `json:"comm"`
	TDS          string `json:"tds"`
	Status       string `json:"status"`
	RefID        string `json:"refid"`
	OperatorID   string `json:"operatorid"`
	DateAdded    string `json:"dateadded"`
	Refunded     string `json:"refunded"`
	RefundTxnID  string `json:"refundtxnid"`
	DateRefunded string `json:"daterefunded"`
}

// timeText is how the sandbox writes times: RFC 3339, UTC, whole seconds.
func timeText(unixNano int64) string {
	return time.Unix(0, unixNano).UTC().Format(time.RFC3339)
}

func (s *Server) serveStatus(w http.ResponseWriter, r *http.Request) {
	s.st.enquiries.Add(1)
	body, readErr := readBody(w, r)
	if limited, ra := s.overLimit(); limited {
		s.replyLimited(w, r, ra)
		return
	}
	if code, msg := s.authenticate(r); code != 0 {
		s.replyAuth(w, r, code, msg)
		return
	}
	if readErr != nil {
		s.reply(w, r, http.StatusRequestEntityTooLarge, 8, s.canned.tooLarge)
		return
	}
	var req statusWire
	if err := json.Unmarshal(body, &req); err != nil || req.ReferenceID == "" {
		s.replyValue(w, r, http.StatusOK, 8, answer{ResponseCode: 8, Message: "referenceid is required"})
		return
	}
	if s.cfg.RegistrationID != "" && req.RegistrationID != s.cfg.RegistrationID {
		s.replyValue(w, r, http.StatusOK, 8, answer{ResponseCode: 8, Message: "Invalid RegistrationID"})
		return
	}

	s.mu.Lock()
	s.settle(s.cfg.Now().UnixNano())
	e := s.refs[req.ReferenceID]
	var snap entry
	found := e != nil && e.recorded
	if found {
		snap = *e
	}
	s.mu.Unlock()
	if !found {
		s.reply(w, r, http.StatusOK, s.cfg.NotFoundCode, s.canned.txnNotFound)
		return
	}

	comm := snap.amount / 100 // 1%, in paise
	d := statusData{
		TxnID:        s.txnID(snap.ref),
		OperatorName: operatorName(snap.operator),
		CANumber:     snap.canumber,
		Amount:       ledger.FormatRupees(snap.amount),
		Comm:         ledger.FormatRupees(comm),
		TDS:          ledger.FormatRupees(comm * 5 / 100),
		Status:       statusText(snap.status),
		RefID:        snap.ref,
		DateAdded:    timeText(snap.created),
		Refunded:     "0",
	}
	if snap.status == statusSuccess {
		d.OperatorID = s.operatorRef(snap.ref)
	}
	if snap.refunded {
		d.Refunded = "1"
		d.RefundTxnID = "R" + d.TxnID
		d.DateRefunded = timeText(snap.refundedAt)
	}
	s.replyValue(w, r, http.StatusOK, 1, answer{Status: true, ResponseCode: 1, Message: "Transaction found", Data: d})
}

func operatorName(op int64) string {
	switch op {
	case 311:
		return "FASTag - ICICI Bank"
	case 1:
		return "Airtel"
	case 2:
		return "Jio"
	}
	return "Operator " + strconv.FormatInt(op, 10)
}

// fetchWire is the FetchConsumerDetails body.
type fetchWire struct {
	Operator       json.RawMessage `json:"operator"`
	CANumber       string          `json:"canumber"`
	RegistrationID string          `json:"RegistrationID"`
}

type fetchAnswer struct {
	ResponseCode int         `json:"response_code"`
	Status       bool        `json:"status"`
	Amount       string      `json:"amount"`
	Name         string      `json:"name"`
	DueDate      string      `json:"duedate"`
	BillFetch    fetchedBill `json:"bill_fetch"`
	Message      string      `json:"message"`
}

type fetchedBill struct {
	BillAmount    string      `json:"billAmount"`
	BillNetAmount string      `json:"billnetamount"`
	DueDate       string      `json:"dueDate"`
	MaxBillAmount json.Number `json:"maxBillAmount"`
	AcceptPayment bool        `json:"acceptPayment"`
	AcceptPartPay bool        `json:"acceptPartPay"`
	CellNumber    string      `json:"cellNumber"`
	UserName      string      `json:"userName"`
}

var cannedNames = []string{
	"NITESH KUMAR SHARMA", "PRIYA NAIR", "ARJUN MEHTA", "KAVITA IYER",
	"RAHUL VERMA", "SUNITA DESAI", "MOHAMMED IQBAL", "ANITA REDDY",
}

// serveFetch answers a bill with an amount, a name and a due date derived
// from the canumber alone (the due date counts from today).
func (s *Server) serveFetch(w http.ResponseWriter, r *http.Request) {
	body, readErr := readBody(w, r)
	if limited, ra := s.overLimit(); limited {
		s.replyLimited(w, r, ra)
		return
	}
	if code, msg := s.authenticate(r); code != 0 {
		s.replyAuth(w, r, code, msg)
		return
	}
	if readErr != nil {
		s.reply(w, r, http.StatusRequestEntityTooLarge, 8, s.canned.tooLarge)
		return
	}
	var req fetchWire
	if err := json.Unmarshal(body, &req); err != nil {
		s.replyValue(w, r, http.StatusOK, 8, answer{ResponseCode: 8, Message: "Invalid request body"})
		return
	}
	op, ok := parseOperator(req.Operator)
	switch {
	case !ok:
		s.replyValue(w, r, http.StatusOK, 8, answer{ResponseCode: 8, Message: "Operator is blank or invalid"})
		return
	case strings.TrimSpace(req.CANumber) == "":
		s.replyValue(w, r, http.StatusOK, 8, answer{ResponseCode: 8, Message: "canumber is required"})
		return
	case s.cfg.RegistrationID != "" && req.RegistrationID != s.cfg.RegistrationID:
		s.replyValue(w, r, http.StatusOK, 8, answer{ResponseCode: 8, Message: "Invalid RegistrationID"})
		return
	}
	s.mu.Lock()
	down := s.down[op]
	s.mu.Unlock()
	if down {
		s.reply(w, r, http.StatusOK, 13, s.canned.down)
		return
	}
	h := hashOf(0, req.CANumber, 0, "bill")
	paise := int64(100+h%4900)*100 + int64(h>>20)%100
	amount := ledger.FormatRupees(paise)
	due := s.cfg.Now().UTC().AddDate(0, 0, 7+int(h>>40)%21).Format(time.DateOnly)
	name := cannedNames[int(h>>50)%len(cannedNames)]
	s.replyValue(w, r, http.StatusOK, 1, fetchAnswer{
		ResponseCode: 1,
		Status:       true,
		Amount:       amount,
		Name:         name,
		DueDate:      due,
		BillFetch: fetchedBill{
			BillAmount:    amount,
			BillNetAmount: amount,
			DueDate:       due,
			MaxBillAmount: json.Number(amount),
			AcceptPayment: true,
			AcceptPartPay: h&1 == 1,
			CellNumber:    req.CANumber,
			UserName:      name,
		},
		Message: "Bill fetched successfully",
	})
}

// StatementHeader is the header row of the statement export.
var StatementHeader = []string{"refid", "txnid", "amount", "status", "refunded", "operatorid", "dateadded"}

// serveStatement exports the recorded transactions whose dateadded lies in
// [from, to) as CSV, sorted by dateadded then refid. from and to are
// optional RFC 3339 times.
func (s *Server) serveStatement(w http.ResponseWriter, r *http.Request) {
	if code, msg := s.authenticate(r); code != 0 {
		s.replyAuth(w, r, code, msg)
		return
	}
	q := r.URL.Query()
	from, to := int64(-1<<63), int64(1<<63-1)
	for _, p := range []struct {
		name string
		dst  *int64
	}{{"from", &from}, {"to", &to}} {
		v := q.Get(p.name)
		if v == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			s.replyValue(w, r, http.StatusBadRequest, 8, answer{ResponseCode: 8, Message: p.name + " is not an RFC 3339 time"})
			return
		}
		*p.dst = t.UnixNano()
	}

	type row struct {
		sec int64
		e   entry
	}
	s.mu.Lock()
	s.settle(s.cfg.Now().UnixNano())
	var rows []row
	for _, e := range s.refs {
		if e.recorded && e.created >= from && e.created < to {
			rows = append(rows, row{sec: time.Unix(0, e.created).Unix(), e: *e})
		}
	}
	s.mu.Unlock()
	// Sorted by the dateadded a reader sees (whole seconds), then refid.
	slices.SortFunc(rows, func(a, b row) int {
		return cmp.Or(cmp.Compare(a.sec, b.sec), cmp.Compare(a.e.ref, b.e.ref))
	})

	var buf bytes.Buffer
	cw := csv.NewWriter(&buf)
	_ = cw.Write(StatementHeader)
	for _, rw := range rows {
		e := &rw.e
		refunded, opid := "0", ""
		if e.refunded {
			refunded = "1"
		}
		if e.status == statusSuccess {
			opid = s.operatorRef(e.ref)
		}
		_ = cw.Write([]string{e.ref, s.txnID(e.ref), ledger.FormatRupees(e.amount), statusText(e.status), refunded, opid, timeText(e.created)})
	}
	cw.Flush()
	if s.delay(r) {
		s.write(w, http.StatusOK, -1, ctypeCSV, buf.Bytes())
	}
}
