//go:build unix

package proc

import (
	"errors"
	"syscall"
)

// signalable: signal 0 checks that pid exists (EPERM: it does, another
// user's).
func signalable(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
