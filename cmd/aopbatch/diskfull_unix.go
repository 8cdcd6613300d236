//go:build unix

package main

import (
	"math"
	"os"
	"syscall"
)

// fileSizeLimit is RLIMIT_FSIZE, when one is set.
func fileSizeLimit() (uint64, bool) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &rl); err != nil || rl.Cur >= math.MaxInt64 { // RLIM_INFINITY is all ones
		return 0, false
	}
	return rl.Cur, true
}

// freeBytes is the room left to an unprivileged user on dir's filesystem.
func freeBytes(dir string) (int64, bool) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, false
	}
	return int64(st.Bavail) * int64(st.Bsize), true
}

// writable reports why path (when it exists) cannot be written, or nil.
func writable(path string) error {
	if _, err := os.Stat(path); err != nil {
		return nil
	}
	return syscall.Access(path, 2) // W_OK
}
