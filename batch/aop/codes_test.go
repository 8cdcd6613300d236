package aop

import "testing"

func TestClassOf(t *testing.T) {
	tests := []struct {
		code int
		want Class
	}{
		{1, ClassSuccess},
		{0, ClassPending},
		{18, ClassDuplicate},
		{9, ClassUnknown},
		{16, ClassAccountStop},
		{6, ClassAccountStop},
		{12, ClassAccountStop},
		{10, ClassAuth},
		{11, ClassAuth},
		{13, ClassOperatorDown},
		{14, ClassFailed},
		{17, ClassFailed},
		{8, ClassFailed},
		{2, ClassUnknown},
		{77, ClassUnknown},
		{-1, ClassUnknown},
	}
	for _, tt := range tests {
		if got := ClassOf(tt.code); got != tt.want {
			t.Errorf("ClassOf(%d) = %q, want %q", tt.code, got, tt.want)
		}
	}
	if got, want := len(codeClass), 13; got != want {
		t.Errorf("code table has %d codes, want %d (SPEC section 1)", got, want)
	}
}
