// Command testfmt runs "go test -json ..." and shows its progress as it
// goes: a line per package when it finishes, the output of each test that
// fails as soon as it fails, the tests that take long, and every 15
// seconds which tests are still running. It exits with the status of the
// command it ran (1 if that was 0 but a test failed). It is what
// "make test" runs:
//
//	go run ./.ci/testfmt go test -race -json ./...
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// event is one line of go test -json (cmd/test2json).
type event struct {
	Action  string
	Package string
	Test    string
	Elapsed float64
	Output  string
}

// slow is how long a test runs before its end is shown.
const slow = 10 * time.Second

type pkg struct {
	passed, failed, skips int
	running               map[string]time.Time // top-level tests running now, since when
	output                map[string][]string  // by test ("" for the package)
}

type formatter struct {
	mu      sync.Mutex
	out     io.Writer
	start   time.Time
	pkgs    map[string]*pkg
	done    int // packages finished
	failed  bool
	ok, bad int // packages
	tests   [3]int
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: testfmt go test -json [flags] [packages]")
		os.Exit(2)
	}
	f := &formatter{out: os.Stdout, start: time.Now(), pkgs: map[string]*pkg{}}
	cmd := exec.Command(os.Args[1], os.Args[2:]...)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		fmt.Fprintln(os.Stderr, "testfmt:", err)
		os.Exit(2)
	}
	// Ctrl-C reaches go test through the terminal's process group: let it
	// stop the tests and report, rather than dying before it does.
	signal.Ignore(syscall.SIGINT)
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "testfmt:", err)
		os.Exit(2)
	}
	stop := make(chan struct{})
	go f.heartbeat(stop)
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		f.line(sc.Bytes())
	}
	if err := sc.Err(); err != nil {
		// Keep reading, or go test blocks on a full pipe and never ends.
		fmt.Fprintln(os.Stderr, "testfmt: reading go test's output:", err)
		f.mu.Lock()
		f.failed = true
		f.mu.Unlock()
		_, _ = io.Copy(io.Discard, stdout)
	}
	close(stop)
	err = cmd.Wait()
	code := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
		if code < 0 {
			code = 1
		}
	case err != nil:
		fmt.Fprintln(os.Stderr, "testfmt:", err)
		code = 2
	}
	f.summary(code)
	if code == 0 && f.failed {
		code = 1
	}
	os.Exit(code)
}

func (f *formatter) line(b []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var e event
	if len(b) == 0 || b[0] != '{' || json.Unmarshal(b, &e) != nil {
		fmt.Fprintf(f.out, "%s\n", b) // not an event: pass it on
		return
	}
	switch e.Action {
	case "build-output":
		fmt.Fprint(f.out, e.Output)
		return
	case "build-fail":
		f.failed = true
		return
	}
	p := f.pkgs[e.Package]
	if p == nil {
		p = &pkg{running: map[string]time.Time{}, output: map[string][]string{}}
		f.pkgs[e.Package] = p
	}
	top, _, sub := strings.Cut(e.Test, "/")
	switch e.Action {
	case "output":
		p.output[e.Test] = append(p.output[e.Test], e.Output)
	case "run", "cont":
		if !sub && e.Test != "" {
			p.running[e.Test] = time.Now()
		}
	case "pause":
		// A parallel test waiting for the serial ones is not running.
		if !sub {
			delete(p.running, e.Test)
		}
	case "pass", "fail", "skip":
		if e.Test == "" {
			f.packageDone(e, p)
			return
		}
		if sub {
			return // counted, and shown, with its top-level test
		}
		delete(p.running, top)
		switch e.Action {
		case "pass":
			p.passed++
			if d := seconds(e.Elapsed); d >= slow {
				fmt.Fprintf(f.out, "      slow: %s %s (%s)\n", short(e.Package), e.Test, d)
			}
		case "skip":
			p.skips++
			// A skip can hide a missing install: say why, in one line.
			fmt.Fprintf(f.out, "      skip: %s %s: %s\n", short(e.Package), e.Test, skipReason(p.output[top]))
		case "fail":
			p.failed++
			f.failed = true
			fmt.Fprintf(f.out, "--- FAIL: %s %s (%s)\n", short(e.Package), e.Test, seconds(e.Elapsed))
			f.dump(p, func(name string) bool { return name == top || strings.HasPrefix(name, top+"/") })
		}
		// Output is kept only while it may be needed.
		for name := range p.output {
			if name == top || strings.HasPrefix(name, top+"/") {
				delete(p.output, name)
			}
		}
	}
}

// skipReason is the first line a skipped test logged, without go test's
// own lines.
func skipReason(out []string) string {
	for _, l := range out {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "=== ") || strings.HasPrefix(t, "--- ") {
			continue
		}
		return t
	}
	return "(no reason given)"
}

// packageDone prints a package's line, and its own output if it failed
// outside any test (a panic, TestMain, a timeout).
func (f *formatter) packageDone(e event, p *pkg) {
	counts := fmt.Sprintf("%d passed", p.passed)
	if p.failed > 0 {
		counts += fmt.Sprintf(", %d failed", p.failed)
	}
	if p.skips > 0 {
		counts += fmt.Sprintf(", %d skipped", p.skips)
	}
	f.tests[0] += p.passed
	f.tests[1] += p.failed
	f.tests[2] += p.skips
	f.done++
	switch e.Action {
	case "fail":
		f.bad++
		f.failed = true
		fmt.Fprintf(f.out, "FAIL  %-50s %7s  %s\n", e.Package, seconds(e.Elapsed), counts)
		f.dump(p, func(string) bool { return true })
	case "skip":
		fmt.Fprintf(f.out, "?     %-50s [no test files]\n", e.Package)
	default:
		f.ok++
		fmt.Fprintf(f.out, "ok    %-50s %7s  %s\n", e.Package, seconds(e.Elapsed), counts)
	}
	delete(f.pkgs, e.Package)
}

// dump prints the kept output of the tests that match.
func (f *formatter) dump(p *pkg, match func(string) bool) {
	var names []string
	for name := range p.output {
		if match(name) {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		for _, l := range p.output[name] {
			fmt.Fprint(f.out, "    "+l)
		}
	}
}

// heartbeat says every 15 seconds what is still running, so a long
// package is not mistaken for a hung one.
func (f *formatter) heartbeat(stop <-chan struct{}) {
	t := time.NewTicker(15 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		f.mu.Lock()
		var parts []string
		var names []string
		for name := range f.pkgs {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			p := f.pkgs[name]
			if len(p.running) == 0 {
				continue
			}
			var running []string
			for test, since := range p.running {
				running = append(running, fmt.Sprintf("%s %s", test, time.Since(since).Round(time.Second)))
			}
			sort.Strings(running)
			if len(running) > 3 {
				running = append(running[:3], fmt.Sprintf("%d more", len(running)-3))
			}
			parts = append(parts, fmt.Sprintf("%s (%d done; %s)", short(name), p.passed+p.failed+p.skips, strings.Join(running, ", ")))
		}
		if len(parts) > 0 {
			fmt.Fprintf(f.out, "   ... %s: %d packages done; running %s\n",
				time.Since(f.start).Round(time.Second), f.done, strings.Join(parts, "; "))
		}
		f.mu.Unlock()
	}
}

func (f *formatter) summary(code int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	verdict := "PASS"
	if code != 0 || f.failed {
		verdict = "FAIL"
	}
	fmt.Fprintf(f.out, "%s: %d packages (%d failed), %d tests passed, %d failed, %d skipped in %s\n",
		verdict, f.ok+f.bad, f.bad, f.tests[0], f.tests[1], f.tests[2], time.Since(f.start).Round(time.Second))
}

func seconds(s float64) time.Duration {
	return time.Duration(s * float64(time.Second)).Round(100 * time.Millisecond)
}

// module is the path of the module in the working directory, from go.mod.
var module = func() string {
	b, _ := os.ReadFile("go.mod")
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == "module" {
			return strings.Trim(f[1], `"`)
		}
	}
	return ""
}()

// short drops the module path from a package path.
func short(p string) string {
	if module != "" && strings.HasPrefix(p, module+"/") {
		return p[len(module)+1:]
	}
	return p
}
