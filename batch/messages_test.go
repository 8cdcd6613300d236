package batch

import "testing"

func TestThrottledMessage(t *testing.T) {
	for _, tc := range []struct {
		throttles            int
		interrupted, stopped bool
		want                 string
	}{
		{1, true, false, "not sent: interrupted while waiting to try again after one 429 (rate limited)"},
		{3, false, true, "not sent: the run stopped while waiting to try again after 3 answers of 429 (rate limited) in a row"},
		{20, false, false, "not sent: the provider kept answering 429 (rate limited), 20 times"},
	} {
		if got := throttledMessage(tc.throttles, tc.interrupted, tc.stopped); got != tc.want {
			t.Errorf("throttledMessage(%d, %v, %v) = %q, want %q", tc.throttles, tc.interrupted, tc.stopped, got, tc.want)
		}
	}
}
