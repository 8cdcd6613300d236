package aop

// Class is what one Recharge answer means for the row that was sent. The
// engine decides a row's next state from the Class alone, never from the HTTP
// status or the provider's status boolean (code 18 comes with status true).
type Class string

// The classes of a Recharge answer (SPEC section 1 and 2).
const (
	// ClassSuccess is code 1: the recharge went through.
	ClassSuccess Class = "success"
	// ClassPending is code 0: accepted, the final status comes later.
	ClassPending Class = "pending"
	// ClassDuplicate is code 18: the provider already holds this referenceid.
	ClassDuplicate Class = "duplicate"
	// ClassUnknown means the outcome cannot be read: the provider may or may
	// not have the transaction, so only a status enquiry can tell.
	ClassUnknown Class = "unknown"
	// ClassAuth is a rejected credential (HTTP 401/403 without a code, or code
	// 10/11). The request was not processed.
	ClassAuth Class = "auth"
	// ClassAccountStop is a condition of the account that fails every later
	// row the same way (wallet empty, commission not set, permission off).
	ClassAccountStop Class = "account-stop"
	// ClassOperatorDown is code 13: this operator is down for now.
	ClassOperatorDown Class = "operator-down"
	// ClassFailed is a final failure of this row (codes 8, 14, 17).
	ClassFailed Class = "failed"
	// ClassThrottled is HTTP 429: not processed, retry after Result.RetryAfter.
	ClassThrottled Class = "throttled"
	// ClassNotSent is a transport failure before the request could reach the
	// provider (dial refused, DNS, TLS handshake): safe to retry as is.
	ClassNotSent Class = "not-sent"
)

// codeClass is the upstream aggregator's published response-code table.
// Codes absent from it are ClassUnknown.
var codeClass = map[int]Class{
	1:  ClassSuccess,
	0:  ClassPending,
	18: ClassDuplicate,
	9:  ClassUnknown,
	16: ClassAccountStop,
	6:  ClassAccountStop,
	12: ClassAccountStop,
	10: ClassAuth,
	11: ClassAuth,
	13: ClassOperatorDown,
	14: ClassFailed,
	17: ClassFailed,
	8:  ClassFailed,
}

// Published reports whether code is in the provider's published table:
// it has a meaning of its own, so it cannot also be a "not found" code.
func Published(code int) bool {
	_, ok := codeClass[code]
	return ok
}

// ClassOf returns the class of a provider response code; a code the table
// does not list is ClassUnknown.
func ClassOf(code int) Class {
	if c, ok := codeClass[code]; ok {
		return c
	}
	return ClassUnknown
}
