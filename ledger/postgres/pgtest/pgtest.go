// Package pgtest starts a throwaway PostgreSQL server for tests: initdb and
// pg_ctl from PATH or /usr/lib/postgresql/*/bin, a temporary directory,
// loopback only, password authentication. One server serves a test binary
// and each test gets its own database; Launch starts one outside a test
// (the benchmarks).
//
// Without the server's binaries the tests that need it are skipped with
// one line saying what to install; under CI=true they fail instead.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Install says what to install when the server's binaries are missing.
const Install = "PostgreSQL tests need initdb and pg_ctl: install Debian's postgresql package (apt-get install postgresql)"

// User and Password are the server's superuser credentials: the password
// is secret in the sense that the tests check it appears nowhere.
const User = "aopbatch"

// Server is a running throwaway PostgreSQL.
type Server struct {
	dir      string // data, socket and log, removed by Stop
	bin      string
	runAs    string // the unprivileged user the server runs as, when we are root
	port     int
	password string
	dbs      atomic.Int64
}

var (
	once    sync.Once
	shared  *Server
	initErr error
)

// Main runs a test binary's tests and stops the server if one was
// started: call it from TestMain as os.Exit(pgtest.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	if shared != nil {
		shared.Stop()
	}
	return code
}

// Start returns the test binary's server, starting it on first use. When
// it cannot start, the test is skipped (failed under CI=true).
func Start(t testing.TB) *Server {
	t.Helper()
	once.Do(func() { shared, initErr = start() })
	if initErr != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("PostgreSQL: %v", initErr)
		}
		t.Skipf("PostgreSQL: %v", initErr)
	}
	return shared
}

// Launch starts a server of its own, outside a test (the benchmarks):
// the caller stops it.
func Launch() (*Server, error) { return start() }

// CreateDB creates an empty database and returns its name.
func (s *Server) CreateDB(ctx context.Context) (string, error) {
	name := fmt.Sprintf("b%d_%d", os.Getpid(), s.dbs.Add(1))
	conn, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name+" TEMPLATE template0"); err != nil {
		return "", err
	}
	return name, nil
}

// Password is the superuser's password.
func (s *Server) Password() string { return s.password }

// Port is the server's TCP port on 127.0.0.1.
func (s *Server) Port() int { return s.port }

// URL is a postgres:// URL of database db, with the password in it.
func (s *Server) URL(db string) string {
	return fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/%s?sslmode=disable", User, s.password, s.port, db)
}

// URLNoPassword is URL without the password (give it through PGPASSWORD).
func (s *Server) URLNoPassword(db string) string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", User, s.port, db)
}

// NewDB creates an empty database and returns its name; it is dropped
// when the test ends.
func (s *Server) NewDB(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("t%d_%d", os.Getpid(), s.dbs.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		t.Fatalf("connect to the test server: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name+" TEMPLATE template0"); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		conn, err := pgx.Connect(ctx, s.URL("postgres"))
		if err != nil {
			return
		}
		defer conn.Close(ctx)
		_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	return name
}

// Stop stops the server and removes its directory.
func (s *Server) Stop() {
	_ = s.ctl("stop", "-m", "immediate", "-w")
	_ = os.RemoveAll(s.dir)
}

func (s *Server) ctl(args ...string) error {
	all := append([]string{"-D", filepath.Join(s.dir, "data")}, args...)
	out, err := s.command(filepath.Join(s.bin, "pg_ctl"), all...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_ctl %s: %v: %s", args[0], err, strings.TrimSpace(string(out)))
	}
	return nil
}

// command runs a server binary, as the unprivileged user when we are root
// (PostgreSQL refuses to run as root).
func (s *Server) command(name string, args ...string) *exec.Cmd {
	if s.runAs == "" {
		return exec.Command(name, args...)
	}
	return exec.Command("runuser", append([]string{"-u", s.runAs, "--", name}, args...)...)
}

// binDir finds the directory of initdb and pg_ctl.
func binDir() (string, error) {
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		if _, err := exec.LookPath("initdb"); err == nil {
			return filepath.Dir(p), nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", errors.New(Install)
}

func version(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

func start() (*Server, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	s := &Server{bin: bin}
	defer reapOrphans(s)
	if os.Geteuid() == 0 {
		for _, name := range []string{"postgres", "nobody"} {
			if _, err := user.Lookup(name); err == nil {
				s.runAs = name
				break
			}
		}
		if s.runAs == "" {
			return nil, errors.New("running as root, and neither a postgres nor a nobody user exists to run the server as")
		}
		if _, err := exec.LookPath("runuser"); err != nil {
			return nil, errors.New("running as root, and runuser (util-linux) is missing")
		}
	}
	// Not under t.TempDir: its parents are private to us, and the server
	// runs as another user.
	s.dir, err = os.MkdirTemp("", "aopbatch-pg-")
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			_ = os.RemoveAll(s.dir)
		}
	}()
	pw := make([]byte, 12)
	_, _ = rand.Read(pw)
	s.password = "pw" + hex.EncodeToString(pw)
	pwfile := filepath.Join(s.dir, "pw")
	if err := os.WriteFile(pwfile, []byte(s.password+"\n"), 0o600); err != nil {
		return nil, err
	}
	if s.runAs != "" {
		u, _ := user.Lookup(s.runAs)
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		for _, p := range []string{s.dir, pwfile} {
			if err := os.Chown(p, uid, gid); err != nil {
				return nil, err
			}
		}
	}
	out, err := s.command(filepath.Join(bin, "initdb"), "-D", filepath.Join(s.dir, "data"), "-U", User,
		"--pwfile", pwfile, "--auth", "scram-sha-256", "-E", "UTF8", "--no-sync").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("initdb: %v: %s", err, strings.TrimSpace(string(out)))
	}
	if s.port, err = freePort(); err != nil {
		return nil, err
	}
	// Durability is the ledger's concern, not the test server's: fsync
	// off keeps a 2-core machine's suite quick.
	opts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -p %d -c unix_socket_directories=%s -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300",
		s.port, s.dir)
	if err := s.ctl("start", "-w", "-t", "60", "-l", filepath.Join(s.dir, "log"), "-o", opts); err != nil {
		log, _ := os.ReadFile(filepath.Join(s.dir, "log"))
		return nil, fmt.Errorf("%v\n%s", err, log)
	}
	// A test binary killed (a timeout, kill -9) never stops its server:
	// the next one does, knowing its owner is gone.
	if err := os.WriteFile(filepath.Join(s.dir, "owner.pid"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return nil, err
	}
	ok = true
	return s, nil
}

// reapOrphans stops the servers of test binaries that died without
// stopping theirs, and removes their directories.
func reapOrphans(s *Server) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "aopbatch-pg-*"))
	for _, d := range dirs {
		if d == s.dir {
			continue
		}
		b, err := os.ReadFile(filepath.Join(d, "owner.pid"))
		if err != nil {
			continue // still starting, or not ours
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 {
			continue
		}
		if err := syscall.Kill(pid, 0); err == nil || errors.Is(err, syscall.EPERM) {
			continue // its test binary is alive
		}
		orphan := &Server{dir: d, bin: s.bin, runAs: s.runAs}
		orphan.Stop()
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
