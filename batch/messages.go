package batch

import "fmt"

// throttledMessage says why a row answered 429 went back to queued: the
// provider's answers alone, or the run ending while the row waited to
// try again. "Kept answering 429" after a single 429 and a Ctrl-C sent
// the person after a rate problem that was not there.
func throttledMessage(throttles int, interrupted, stopped bool) string {
	answered := "one 429 (rate limited)"
	if throttles > 1 {
		answered = fmt.Sprintf("%d answers of 429 (rate limited) in a row", throttles)
	}
	switch {
	case interrupted:
		return "not sent: interrupted while waiting to try again after " + answered
	case stopped:
		return "not sent: the run stopped while waiting to try again after " + answered
	}
	return "not sent: the provider kept answering 429 (rate limited), " + fmt.Sprintf("%d times", throttles)
}
