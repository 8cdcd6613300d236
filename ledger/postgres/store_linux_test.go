package postgres

import (
	"context"
	"net"
	"syscall"
	"testing"
	"time"
)

// TestConnectionsGiveUpADeadPeer: both ends of every connection give up a
// peer that stops answering within deadPeer, not TCP's hours: the server
// ends a vanished process's session (and its locks, even mid-COPY), and a
// run's ledger call fails rather than waits. And a server that accepts a
// connection and never answers fails Open in connectTimeout, not pgx's
// two minutes.
func TestConnectionsGiveUpADeadPeer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	for name, want := range map[string]string{
		"tcp_keepalives_idle": "10", "tcp_keepalives_interval": "5", "tcp_keepalives_count": "3", "tcp_user_timeout": "30000",
	} {
		var got string
		if err := conn.QueryRow(ctx, "SHOW "+name).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("server's %s = %q, want %q", name, got, want)
		}
	}
	sc, ok := conn.Conn().PgConn().Conn().(syscall.Conn)
	if !ok {
		t.Fatalf("connection %T is not a socket", conn.Conn().PgConn().Conn())
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var keepalive, unacked int
	_ = raw.Control(func(fd uintptr) {
		keepalive, _ = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE)
		unacked, _ = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, tcpUserTimeout)
	})
	if keepalive != 10 || unacked != 30000 {
		t.Errorf("our end: TCP_KEEPIDLE %d s, TCP_USER_TIMEOUT %d ms; want 10 and 30000", keepalive, unacked)
	}

	// A server that accepts and never answers.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	done := make(chan error, 1)
	go func() {
		_, err := Open(ctx, "postgres://u@"+ln.Addr().String()+"/db?sslmode=disable", Options{})
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Error("Open against a server that never answers succeeded")
		}
	case <-time.After(time.Minute):
		t.Error("Open against a server that never answers still waits after a minute")
	}
}
