// Package batch reads a batch file of recharges and bill payments, records
// its rows in the ledger, sends them to the provider and settles every
// answer that was not final.
//
// # The run
//
// Ingest streams the file into the ledger under the batch's lease and checks
// the control totals; a refused file leaves nothing behind. Engine.Send then
// runs one reader, a pool of workers and the ledger's single writer: the
// reader dispatches each chunk of queued rows in one durable commit (the
// next chunk while the workers send this one) and hands them to the
// workers. Rows earlier runs left pending, duplicate or unknown are handed
// out meanwhile, to be asked about. Every request takes a slot (the
// in-flight limit) and then a token of the shared rate limiter.
//
// The rate limiter is the run's clock; concurrency is what keeping its
// pace takes. With Config.Workers 0 (the default) the in-flight limit
// follows rate × observed latency with headroom, grows while requests wait
// for a slot and the limiter has tokens to spare, is cut when timeouts and
// 5xx pass 5% of the answers, and stays under Config.MaxInFlight
// (concurrency.go says why this and not a latency-gradient limiter). When
// the rate stays short of Config.Rate for 30 s while rows wait, one WARN
// line says why and what to change; Engine.Stats gives the run's figures.
//
// Only answers that decided nothing are retried, by one RetryPolicy for
// both loops: a request that provably never left, and a 429, which waits
// its Retry-After. A 429 is never a row's outcome; the send rate is lowered
// only while 429s persist, to what the provider accepts, and climbs back
// (throttle.go). What every other answer does to a row and to the run is
// one table (outcome.go).
//
// Engine.Resolve asks the provider about pending, duplicate and unknown rows
// in rounds with growing pauses; an unknown row the provider has no record
// of goes out again under the same referenceid, never a new one.
//
// Safety stops (SPEC section 2) leave the remaining rows queued and return a
// *StopError: account problems (16, 6, 12), credentials still refused after
// a refresh, an untrusted TLS certificate, a breaker over recent transient
// failures, and money in unknown rows above a limit. Operators answering 13
// several times in a row have their rows held; a rerun queues them again.
//
// # Input
//
// NewReader takes a CSV with one header row. Header names match ignoring
// case, '_', '-', white space and zero-width characters, so "Bill_Net_Amount",
// "bill-net-amount" and " billnetamount " are one column. The file must be
// UTF-8 (a byte order mark is skipped), with CRLF or LF line ends and RFC 4180
// quoting. Rows are read one at a time: memory does not grow with the file.
//
// Columns: operator, canumber and amount are required; referenceid is
// required unless ReaderOptions.GenerateRefs is set. latitude, longitude and
// RegistrationID fall back to the options when the column is absent or the
// cell is empty. The bill fields (billAmount, billnetamount, minBillAmount,
// maxBillAmount, dueDate, acceptPayment, acceptPartPay, cellNumber, userName)
// are optional; a row gets a bill_fetch object only when one of them is
// non-empty.
//
// With GenerateRefs, an empty or missing referenceid becomes 12 hex digits
// of the batch id's SHA-256 followed by the record's 8-digit physical line
// number ("3f9a1c07b2e400000042"); a non-empty referenceid cell is still used
// as it is. Ingest needs an explicit batch id for it: one derived from the
// file's bytes would change with any edit or re-save of the file, and with
// it every generated referenceid, so a corrected copy would pay again the
// rows already paid. Under a named batch such a copy is refused as content
// that differs.
//
// # Errors
//
// Problems with one row are *RowError values: the row is rejected and the
// reader carries on. Problems with the file as a whole (not text, no header,
// a missing, unknown or duplicate column, broken quoting, a line longer than
// ReaderOptions.MaxLineBytes) are *FileError values: after one the file is
// unusable and nothing in it should be sent, so callers read the whole file
// before sending anything. Row errors never echo personal data (canumber,
// cellNumber, userName).
//
// # Money
//
// Amounts are integer paise from end to end. ParseRupees reads rupee text
// without ever using a float; FormatRupees writes paise for text reports.
package batch
