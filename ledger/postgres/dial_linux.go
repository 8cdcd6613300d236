package postgres

import (
	"strings"
	"syscall"
	"time"
)

// tcpUserTimeout is Linux's TCP_USER_TIMEOUT, which the syscall package
// does not name.
const tcpUserTimeout = 0x12

// userTimeout sets how long data sent on a TCP connection may stay
// unacknowledged before the kernel gives the connection up; keepalives
// cover only a connection with nothing in flight.
func userTimeout(d time.Duration) func(network, address string, c syscall.RawConn) error {
	return func(network, _ string, c syscall.RawConn) error {
		if !strings.HasPrefix(network, "tcp") {
			return nil // a Unix socket: its peer cannot vanish unseen
		}
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, tcpUserTimeout, int(d.Milliseconds()))
		})
		if err != nil {
			return err
		}
		return serr
	}
}
