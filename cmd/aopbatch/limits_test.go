package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aopbatch/aopbatch/batch/aop"
	"github.com/aopbatch/aopbatch/batch/aop/aoptest"
	"github.com/aopbatch/aopbatch/ledger"
)

// maxRSSKiB bounds the peak resident memory of a run against a hostile
// server; buffering a 100 MB body would break it.
const maxRSSKiB = 150 << 10

// aopbatchRSS runs the binary like aopbatch and also returns its peak
// resident memory in KiB.
//
// ru_maxrss (KiB on Linux) is an upper bound, not the child's own peak: os/exec
// starts the child with vfork, so when it execs, Linux records the test
// process's high-water mark as the child's. When that bound is over
// maxRSSKiB, the child's own VmHWM, polled from /proc while it runs, is
// returned instead.
func aopbatchRSS(t *testing.T, env []string, args ...string) (proc, int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := aopbatchCmd(ctx, env, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var hwm int64 // written by the poller until polled is closed
	exited, polled := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(polled)
		status := fmt.Sprintf("/proc/%d/status", cmd.Process.Pid)
		for {
			if kib, ok := vmHWM(status); ok {
				hwm = max(hwm, kib)
			}
			select {
			case <-exited:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	err := cmd.Wait()
	close(exited)
	<-polled
	p := finished(t, args, err, out.String(), errb.String())
	ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		t.Fatalf("no rusage for the subprocess")
	}
	t.Logf("peak RSS: ru_maxrss %d KiB, VmHWM %d KiB", ru.Maxrss, hwm)
	if ru.Maxrss > maxRSSKiB && hwm > 0 {
		return p, hwm
	}
	return p, ru.Maxrss
}

// vmHWM reads the VmHWM line (peak RSS of the current image, KiB) of a
// /proc/PID/status file; ok is false once the process has exited.
func vmHWM(status string) (kib int64, ok bool) {
	b, err := os.ReadFile(status)
	if err != nil {
		return 0, false
	}
	for line := range strings.Lines(string(b)) {
		if v, found := strings.CutPrefix(line, "VmHWM:"); found {
			f := strings.Fields(v)
			if len(f) > 0 {
				n, err := strconv.ParseInt(f[0], 10, 64)
				return n, err == nil
			}
		}
	}
	return 0, false
}

// quietServer is an unstarted httptest server that does not log the
// handshake and write errors the tests provoke on purpose.
func quietServer(h http.Handler) *httptest.Server {
	s := httptest.NewUnstartedServer(h)
	s.Config.ErrorLog = log.New(io.Discard, "", 0)
	return s
}

// fileModes records the permission bits of files that exist at one moment.
type fileModes struct {
	mu    sync.Mutex
	modes map[string]fs.FileMode
}

func (m *fileModes) record(paths ...string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.modes == nil {
		m.modes = map[string]fs.FileMode{}
	}
	for _, p := range paths {
		if fi, err := os.Stat(p); err == nil {
			m.modes[filepath.Base(p)] = fi.Mode().Perm()
		}
	}
}

// TestLimitHostileServer points a run at a server whose Recharge answer is
// 100 MB of garbage, or a body that never ends, and whose status enquiry
// answers HTML. Each row must cost one request and end unknown (exit 3),
// the process must stay small, and everything it writes must be private.
func TestLimitHostileServer(t *testing.T) {
	garbage := func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		chunk := bytes.Repeat([]byte("\x00garbage\xff{\"response_code\":1"), 2048)
		for sent := 0; sent < 100<<20; sent += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return // the client gave up on the rest, as it should
			}
		}
	}
	endless := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"response_code": `)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-tick.C:
			}
			if _, err := io.WriteString(w, " "); err != nil {
				return
			}
		}
	}
	for _, tc := range []struct {
		name     string
		recharge http.HandlerFunc
	}{
		{"garbage-100MB", garbage},
		{"endless-body", endless},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			csvPath, db, reportDir := filepath.Join(dir, "in.csv"), filepath.Join(dir, "l.db"), filepath.Join(dir, "out")
			rows := goodRows(2, "H")
			writeCSV(t, csvPath, rows)

			var recharges, enquiries atomic.Int64
			var modes fileModes
			mux := http.NewServeMux()
			mux.HandleFunc(aop.PathRecharge, func(w http.ResponseWriter, r *http.Request) {
				recharges.Add(1)
				// The row is recorded inflight before it is sent, so the
				// ledger's WAL files exist now.
				modes.record(db, db+"-wal", db+"-shm")
				tc.recharge(w, r)
			})
			mux.HandleFunc(aop.PathStatus, func(w http.ResponseWriter, _ *http.Request) {
				enquiries.Add(1)
				w.Header().Set("Content-Type", "text/html")
				_, _ = io.WriteString(w, "<html><body>502 Bad Gateway</body></html>")
			})
			srv := quietServer(mux)
			srv.Start()
			t.Cleanup(srv.Close)

			p, rss := aopbatchRSS(t, nil, runArgs(csvPath, db, srv.URL,
				"--workers", "2", "--timeout", "1s", "--resolve-timeout", "1s", "--report", reportDir)...)
			t.Logf("peak RSS %d MiB, %d enquiries", rss>>10, enquiries.Load())
			if p.code != 3 {
				t.Fatalf("exit %d, want 3\nstderr:\n%s", p.code, p.stderr)
			}
			if rss > maxRSSKiB {
				t.Errorf("peak RSS %d KiB, want under %d KiB", rss, maxRSSKiB)
			}
			if got, want := recharges.Load(), int64(len(rows)); got != want {
				t.Errorf("server got %d recharges, want %d (one per row, no re-send on a guess)", got, want)
			}
			if enquiries.Load() == 0 {
				t.Errorf("no status enquiry was made about the unknown rows")
			}
			_, _, all := ledgerRows(t, db)
			for _, r := range all {
				if r.State != ledger.StateUnknown || !strings.Contains(r.Message, "not a JSON object") {
					t.Errorf("line %d: state %s (%s), want unknown after an unreadable enquiry", r.Line, r.State, r.Message)
				}
			}

			modes.record(db)
			for _, name := range []string{"l.db", "l.db-wal"} {
				if _, ok := modes.modes[name]; !ok {
					t.Errorf("%s not seen while the run was sending", name)
				}
			}
			for name, m := range modes.modes {
				if m != 0o600 {
					t.Errorf("%s has mode %v, want 0600", name, m)
				}
			}
			assertPrivateReports(t, reportDir)
		})
	}
}

// assertPrivateReports checks that run --report wrote the reports, each
// readable by its owner only: they hold account numbers and amounts.
func assertPrivateReports(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("reports: %v", err)
	}
	if len(entries) < 5 {
		t.Errorf("report dir holds %d files, want at least 5 (report.json, rows.csv, rejects.csv, summary.md, report.html)", len(entries))
	}
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if m := fi.Mode().Perm(); m != 0o600 {
			t.Errorf("report %s has mode %v, want 0600", e.Name(), m)
		}
	}
}

// TestInsecureHTTPRefused checks that a plain-http base URL that is not
// loopback is refused before anything is opened or contacted, and that
// --insecure-http lets it through. Every http request of the subprocess is
// routed through a loopback proxy, so nothing leaves this machine either way.
func TestInsecureHTTPRefused(t *testing.T) {
	cfg := aoptest.DefaultConfig()
	cfg.Seed = 1
	sb := aoptest.New(cfg)
	var proxied atomic.Int64
	proxy := quietServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proxied.Add(1)
		if r.URL.Host != "example.com" {
			http.Error(w, "unexpected host", http.StatusBadGateway)
			return
		}
		sb.ServeHTTP(w, r)
	}))
	proxy.Start()
	t.Cleanup(proxy.Close)
	env := []string{"HTTP_PROXY=" + proxy.URL, "http_proxy=" + proxy.URL, "NO_PROXY=", "no_proxy="}

	dir := t.TempDir()
	csvPath, db := filepath.Join(dir, "in.csv"), filepath.Join(dir, "l.db")
	writeCSV(t, csvPath, goodRows(1, "I"))

	p := aopbatch(t, env, runArgs(csvPath, db, "http://example.com")...)
	if p.code != 1 {
		t.Fatalf("exit %d, want 1\nstderr:\n%s", p.code, p.stderr)
	}
	if want := "plain http to a non-loopback host"; !strings.Contains(p.stderr, want) || !strings.Contains(p.stderr, "--insecure-http") {
		t.Errorf("stderr does not say %q and name --insecure-http:\n%s", want, p.stderr)
	}
	if n := proxied.Load(); n != 0 {
		t.Errorf("%d requests went out, want 0", n)
	}
	if _, err := os.Stat(db); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ledger %s exists after a refused start (err %v)", db, err)
	}

	p = aopbatch(t, env, runArgs(csvPath, db, "http://example.com", "--insecure-http")...)
	if p.code != 0 {
		t.Fatalf("with --insecure-http: exit %d, want 0\nstderr:\n%s", p.code, p.stderr)
	}
	if got := sb.Stats().Recharges; got != 1 {
		t.Errorf("with --insecure-http: %d recharges, want 1", got)
	}
}

// TestTLSVerificationAlwaysOn points a run at a loopback https server with a
// self-signed certificate: every handshake must fail, so no row is sent and
// all stay queued for a rerun; the run stops at the first refusal and names
// the cause.
func TestTLSVerificationAlwaysOn(t *testing.T) {
	var hits atomic.Int64
	srv := quietServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		_, _ = io.WriteString(w, `{"status": true, "response_code": 1, "message": "ok"}`)
	}))
	srv.StartTLS()
	t.Cleanup(srv.Close)

	dir := t.TempDir()
	csvPath, db := filepath.Join(dir, "in.csv"), filepath.Join(dir, "l.db")
	rows := goodRows(60, "T") // more than the breaker's window of 50
	writeCSV(t, csvPath, rows)
	p := aopbatch(t, nil, runArgs(csvPath, db, srv.URL, "--max-attempts", "1", "--resolve-timeout", "1s")...)
	if p.code != 3 {
		t.Fatalf("exit %d, want 3\nstderr:\n%s", p.code, p.stderr)
	}
	if want := "TLS certificate is not trusted"; !strings.Contains(p.stderr, want) {
		t.Errorf("stderr does not say %q:\n%s", want, p.stderr)
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("server handled %d requests through an untrusted certificate, want 0", n)
	}
	_, _, all := ledgerRows(t, db)
	if got := countStates(all)[ledger.StateQueued]; got != len(rows) {
		t.Errorf("queued rows = %d, want %d: %v", got, len(rows), countStates(all))
	}
	for _, r := range all {
		if r.Message != "" && r.Message != "not sent: TLS certificate not trusted" {
			t.Errorf("line %d: message %q, want the certificate named once", r.Line, r.Message)
		}
	}
}
