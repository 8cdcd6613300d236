package reports

import "testing"

// The ledger logs latencies in whole milliseconds: an answer within the
// millisecond (loopback) reads "<1 ms", not "0 ms".
func TestMsText(t *testing.T) {
	for ms, want := range map[int64]string{0: "<1 ms", 1: "1 ms", 3000: "3000 ms"} {
		if got := msText(ms); got != want {
			t.Errorf("msText(%d) = %q, want %q", ms, got, want)
		}
	}
}
