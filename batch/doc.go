// Package batch reads a batch file of recharges and bill payments and turns
// its rows into provider requests.
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
// With GenerateRefs, an empty or missing referenceid becomes the first 12
// characters of the batch id followed by the record's 8-digit physical line
// number ("3f9a1c07b2e400000042"); a non-empty referenceid cell is still used
// as it is. Generated ids are stable only as long as the file is not edited,
// which the batch id (derived from the content) guarantees.
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
