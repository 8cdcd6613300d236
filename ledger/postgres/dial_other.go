//go:build !linux

package postgres

import (
	"syscall"
	"time"
)

// userTimeout does nothing where there is no TCP_USER_TIMEOUT: keepalives
// alone cover a dead peer there.
func userTimeout(time.Duration) func(network, address string, c syscall.RawConn) error {
	return nil
}
