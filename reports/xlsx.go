package reports

import (
	"context"
	"io"

	"github.com/aopbatch/aopbatch/ledger"
)

func (s *Summary) writeXLSX(ctx context.Context, l *ledger.Ledger, w io.Writer) error { return nil }
