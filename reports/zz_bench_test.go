package reports

import (
	"fmt"
	"strings"
	"testing"
)

func BenchmarkReadStatement(b *testing.B) {
	const n = 200000
	var sb strings.Builder
	sb.WriteString("refid,txnid,amount,status,refunded\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&sb, "R%07d,T%d,%s,1,0\n", (i*7919)%n, i, rupees(int64(100+i%1000)))
	}
	in := sb.String()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		st, err := ReadStatement(strings.NewReader(in), nil)
		if err != nil {
			b.Fatal(err)
		}
		seen := 0
		for j := range st.entries {
			seen += int(st.first[j])
		}
	}
}
