// Package proc says whether a process that holds a lease is still alive.
package proc

import "os"

// Alive is conservative: a process on another host than myHost is
// presumed alive (only its lease's end says otherwise); on this host a
// vanished pid means it died.
func Alive(host string, pid int, myHost string) bool {
	if host != myHost || pid <= 0 {
		return true
	}
	if pid == os.Getpid() {
		return true
	}
	return signalable(pid)
}
