package aoptest

import (
	"net"
	"net/http"
	"net/http/httptest"
)

// TestServer is a sandbox listening on a loopback port, like
// httptest.Server. Its Server methods inspect and steer it.
type TestServer struct {
	*Server
	URL string // base URL, e.g. http://127.0.0.1:41234, no trailing slash

	hs *httptest.Server
}

// NewServer starts a sandbox on 127.0.0.1 with a random port. Close it when
// done, typically with t.Cleanup(ts.Close).
func NewServer(cfg Config) *TestServer {
	s := New(cfg)
	hs := httptest.NewServer(s)
	return &TestServer{Server: s, URL: hs.URL, hs: hs}
}

// Client returns an HTTP client configured for the server.
func (ts *TestServer) Client() *http.Client { return ts.hs.Client() }

// Close releases stalled answers and shuts the server down, blocking until
// every outstanding request has finished.
func (ts *TestServer) Close() {
	ts.Server.ReleaseStalls()
	ts.hs.Close()
}

// IsLoopbackAddr reports whether a listen address such as "127.0.0.1:8080",
// "[::1]:0" or "localhost:8080" only accepts connections from this machine.
// An empty host (":8080") listens on every interface and is not loopback.
func IsLoopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
