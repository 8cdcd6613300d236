package sqlite

import (
	"testing"
)

func TestRupees(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		paise int64
		want  string
	}{{0, "0.00"}, {1, "0.01"}, {1250, "12.50"}, {100000, "1000.00"}, {-5, "-0.05"}} {
		t.Run(tc.want, func(t *testing.T) {
			if got := rupees(tc.paise); got != tc.want {
				t.Errorf("rupees(%d) = %q, want %q", tc.paise, got, tc.want)
			}
		})
	}
}
