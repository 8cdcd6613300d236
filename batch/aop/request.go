package aop

import (
	"encoding/json"
	"strconv"
)

// RechargeRequest is the body of one Recharge call (SPEC section 1). The
// engine encodes it once, when the row enters the ledger, and sends those
// exact bytes on every attempt, so a resend can never drift from the original.
type RechargeRequest struct {
	Operator       int64
	CANumber       string
	AmountPaise    int64
	ReferenceID    string
	Latitude       string
	Longitude      string
	BillFetch      *BillFetch
	RegistrationID string
}

// BillFetch is the optional bill_fetch object. Amount-like fields the
// provider shows as strings stay strings; the ones it shows as numbers are
// kept as validated decimal text and sent as JSON numbers.
type BillFetch struct {
	BillAmount    string      `json:"billAmount,omitempty"`
	BillNetAmount string      `json:"billnetamount,omitempty"`
	MinBillAmount json.Number `json:"minBillAmount,omitempty"`
	MaxBillAmount json.Number `json:"maxBillAmount,omitempty"`
	DueDate       string      `json:"dueDate,omitempty"`
	AcceptPayment *bool       `json:"acceptPayment,omitempty"`
	AcceptPartPay *bool       `json:"acceptPartPay,omitempty"`
	CellNumber    string      `json:"cellNumber,omitempty"`
	UserName      string      `json:"userName,omitempty"`
}

type wireRecharge struct {
	Operator       int64       `json:"operator"`
	CANumber       string      `json:"canumber"`
	Amount         json.Number `json:"amount"`
	ReferenceID    string      `json:"referenceid"`
	Latitude       string      `json:"latitude"`
	Longitude      string      `json:"longitude"`
	BillFetch      *BillFetch  `json:"bill_fetch,omitempty"`
	RegistrationID string      `json:"RegistrationID"`
}

// MarshalJSON encodes the request as the provider expects: operator and
// amount as JSON numbers, the amount in rupees with at most two decimals,
// produced from integer paise without ever passing through a float.
func (r RechargeRequest) MarshalJSON() ([]byte, error) {
	return json.Marshal(wireRecharge{
		Operator:       r.Operator,
		CANumber:       r.CANumber,
		Amount:         json.Number(RupeesNumber(r.AmountPaise)),
		ReferenceID:    r.ReferenceID,
		Latitude:       r.Latitude,
		Longitude:      r.Longitude,
		BillFetch:      r.BillFetch,
		RegistrationID: r.RegistrationID,
	})
}

// RupeesNumber renders paise as a JSON number in rupees: 1000 -> "10",
// 1050 -> "10.50", 5 -> "0.05". Negative input never reaches the wire (the
// reader rejects it), but is rendered faithfully rather than garbled.
func RupeesNumber(paise int64) string {
	sign := ""
	if paise < 0 {
		sign = "-"
		paise = -paise
	}
	whole, frac := paise/100, paise%100
	if frac == 0 {
		return sign + strconv.FormatInt(whole, 10)
	}
	f := strconv.FormatInt(frac, 10)
	if frac < 10 {
		f = "0" + f
	}
	return sign + strconv.FormatInt(whole, 10) + "." + f
}
