// Package reports turns a batch's ledger into the reports finance acts on
// (SPEC section 6) and reconciles the ledger against a provider statement.
//
// Build computes a Summary from the ledger in one pass over the rows and one
// over the attempts log: counts and amounts by state, by operator and by
// response code, the money still at risk (rows not final), and the run's
// duration, throughput and latency. Reconcile compares it with a Statement
// read by ReadStatement. Write renders the files (report.json, rows.csv,
// rejects.csv, reconciliation.csv when a statement was given, summary.md,
// report.html, report.xlsx); the per-row files are streamed from the ledger again, so a
// million-row batch is never held in memory. WriteMetrics renders the figures
// for node_exporter's textfile collector.
//
// Reconciliation rules. A ledger row matches the statement entry with
// refid = referenceid. Statement status "1" is success, "0" failed, "2"
// pending, and refunded "1" turns a success into refunded. Compared with the
// ledger state:
//
//   - success matches success; refunded matches refunded or failed ("0" is
//     "failed, or taken and returned"); failed matches failed or refunded
//     (in both no money was kept).
//   - pending matches pending. duplicate, unknown and inflight rows are not
//     resolved here: whatever the statement says is a status_mismatch noted
//     "unresolved here: run aopbatch resolve", so nothing unsettled passes
//     as matched.
//   - queued and held rows were never sent: absent from the statement they
//     are not_sent; present, they are a status_mismatch (someone sent them).
//   - rejected and conflict rows were never sent and do not hold their
//     referenceid: they are not_sent and never looked up.
//   - When both status and amount differ the row is a status_mismatch (the
//     note says the amount differs too): the status decides who holds money.
//   - A sent row absent from the statement is missing_in_statement, except
//     a failed one: failed_not_in_statement, not a mismatch, since both
//     sides then say nothing was taken and a provider need not record a
//     request it declined (operator down, amount out of limits).
//   - A statement entry no row of this batch holds is missing_in_ledger,
//     unless another batch of the same ledger holds it (in_other_batch, not
//     a mismatch: a statement covers a time range, not a batch). When
//     several batches are reconciled with the statement together
//     (ReconcileTogether), an entry no batch holds is counted in the first
//     one's report only and is counted_in_other_batch in the others', so
//     it is counted once, not once per batch.
//   - A refid on several lines: lines with one txnid are one transaction's
//     history, a line without one is a transaction of its own. The row is
//     compared with the first charged transaction (else refunded, else
//     pending, else the first line); its other lines are
//     duplicated_in_statement, a mismatch only when charged again. A
//     charge and a refund no txnid ties together make the row a
//     status_mismatch, for reconcile to ask the provider.
//
// Every ledger row lands in exactly one of matched, amount_mismatch,
// status_mismatch, missing_in_statement, failed_not_in_statement and
// not_sent, so those add up to counts.total. Control totals compare the ledger's success amount with the
// statement's (every charged line of a refid of this batch or of none);
// difference = statement - ledger, positive when the provider kept more
// than the ledger says.
//
// Every CSV cell written that begins with '=', '+', '-', '@', tab or CR gets a
// leading "'" so a spreadsheet shows it as text rather than running it.
package reports
