package reports

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/aopbatch/aopbatch/ledger"
)

// WriteMetrics writes the summary's figures to path in the Prometheus text
// exposition format, for node_exporter's textfile collector. The file is
// replaced atomically (a temporary file renamed into place) so the collector
// never reads half of it, and is readable by others (mode 0644): the
// collector usually runs as another user, and the file holds no personal data.
func WriteMetrics(path string, s *Summary) error {
	if err := writeAtomic(path, 0o644, s.writeMetrics); err != nil {
		return fmt.Errorf("write metrics %s: %w", path, err)
	}
	return nil
}

var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

type promWriter struct {
	w     io.Writer
	batch string
	err   error
}

func (p *promWriter) family(name, typ, help string) {
	p.printf("# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
}

// sample writes one line; labels are name, value pairs after batch.
func (p *promWriter) sample(name string, value string, labels ...string) {
	var b strings.Builder
	b.WriteString(name)
	b.WriteString(`{batch="`)
	b.WriteString(labelEscaper.Replace(p.batch))
	b.WriteByte('"')
	for i := 0; i+1 < len(labels); i += 2 {
		fmt.Fprintf(&b, `,%s="%s"`, labels[i], labelEscaper.Replace(labels[i+1]))
	}
	b.WriteString("} ")
	b.WriteString(value)
	b.WriteByte('\n')
	p.printf("%s", b.String())
}

func (p *promWriter) printf(format string, a ...any) {
	if p.err == nil {
		_, p.err = fmt.Fprintf(p.w, format, a...)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func (s *Summary) writeMetrics(w io.Writer) error {
	p := &promWriter{w: w, batch: s.Batch}
	p.family("aopbatch_rows", "gauge", "Rows of the batch by state.")
	for _, st := range ledger.States {
		p.sample("aopbatch_rows", itoa(s.Counts.Get(st)), "state", string(st))
	}
	p.family("aopbatch_amount_paise", "gauge", "Amount of the batch's rows by state, in paise.")
	for _, st := range ledger.States {
		p.sample("aopbatch_amount_paise", itoa(s.AmountsPaise.Get(st)), "state", string(st))
	}
	// Two figures, never added up: money that may have moved (outcome
	// unknown) and money that has not (not yet sent).
	p.family("aopbatch_at_risk_rows", "gauge", "Rows not settled, by kind: outcome_unknown (inflight, pending, duplicate, unknown) or not_yet_sent (queued, held).")
	p.sample("aopbatch_at_risk_rows", itoa(s.AtRisk.OutcomeUnknown.Rows), "kind", "outcome_unknown")
	p.sample("aopbatch_at_risk_rows", itoa(s.AtRisk.NotYetSent.Rows), "kind", "not_yet_sent")
	p.family("aopbatch_at_risk_amount_paise", "gauge", "Amount of the rows not settled, in paise, by kind.")
	p.sample("aopbatch_at_risk_amount_paise", itoa(s.AtRisk.OutcomeUnknown.AmountPaise), "kind", "outcome_unknown")
	p.sample("aopbatch_at_risk_amount_paise", itoa(s.AtRisk.NotYetSent.AmountPaise), "kind", "not_yet_sent")
	p.family("aopbatch_at_risk_oldest_seconds", "gauge", "How long the oldest unsettled row has been unsettled, by kind.")
	p.sample("aopbatch_at_risk_oldest_seconds", itoa(s.AtRisk.OutcomeUnknown.OldestSeconds), "kind", "outcome_unknown")
	p.sample("aopbatch_at_risk_oldest_seconds", itoa(s.AtRisk.NotYetSent.OldestSeconds), "kind", "not_yet_sent")
	p.family("aopbatch_requests", "gauge", "Requests logged for the batch by kind.")
	p.sample("aopbatch_requests", itoa(s.Throughput.RechargeAttempts), "kind", "recharge")
	p.sample("aopbatch_requests", itoa(s.Throughput.StatusEnquiries), "kind", "status")
	p.family("aopbatch_send_duration_seconds", "gauge", "Time from the first to the last recharge request.")
	p.sample("aopbatch_send_duration_seconds", strconv.FormatFloat(s.Duration.Seconds, 'f', -1, 64))
	p.family("aopbatch_request_latency_seconds", "histogram", "Latency of recharge requests.")
	var cum int64
	for _, b := range s.Latency.Buckets {
		cum += b.Count
		le := "+Inf"
		if b.UpToMS > 0 {
			le = strconv.FormatFloat(float64(b.UpToMS)/1000, 'f', -1, 64)
		}
		p.sample("aopbatch_request_latency_seconds_bucket", itoa(cum), "le", le)
	}
	p.sample("aopbatch_request_latency_seconds_sum", strconv.FormatFloat(float64(s.Latency.SumMS)/1000, 'f', -1, 64))
	p.sample("aopbatch_request_latency_seconds_count", itoa(cum))
	if r := s.Reconciliation; r.Performed {
		p.family("aopbatch_reconciliation", "gauge", "Rows and statement lines by reconciliation category.")
		for _, c := range reconRows(r) {
			p.sample("aopbatch_reconciliation", itoa(c.n), "category", string(c.cat))
		}
		p.family("aopbatch_success_total_paise", "gauge", "Control totals: success amount by source, in paise.")
		p.sample("aopbatch_success_total_paise", itoa(r.ControlTotals.LedgerSuccessPaise), "source", "ledger")
		p.sample("aopbatch_success_total_paise", itoa(r.ControlTotals.StatementSuccessPaise), "source", "statement")
		p.family("aopbatch_success_difference_paise", "gauge", "Statement success amount minus the ledger's, in paise.")
		p.sample("aopbatch_success_difference_paise", itoa(r.ControlTotals.DifferencePaise))
	}
	p.family("aopbatch_batch_recorded", "gauge", "1 when every row of the batch's file is in the ledger; 0 when a run stopped while recording it, and every figure above is of part of the file.")
	recorded := "0"
	if s.FileRecorded {
		recorded = "1"
	}
	p.sample("aopbatch_batch_recorded", recorded)
	p.family("aopbatch_batch_running", "gauge", "Processes running the batch when the report read it: while above 0, the figures above are changing.")
	p.sample("aopbatch_batch_running", itoa(int64(len(s.Running))))
	p.family("aopbatch_report_timestamp_seconds", "gauge", "When the report was generated, in Unix seconds.")
	p.sample("aopbatch_report_timestamp_seconds", itoa(s.GeneratedAt.Unix()))
	return p.err
}
