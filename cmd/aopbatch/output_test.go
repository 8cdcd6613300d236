package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aopbatch/aopbatch/batch"
	"github.com/schollz/progressbar/v3"
)

// TestBarNeverShowsMoreOkThanDone: every frame the bar draws shows the
// ok count of a moment no later than its done count, so ok never runs
// ahead of done for rows this run sends.
func TestBarNeverShowsMoreOkThanDone(t *testing.T) {
	var out bytes.Buffer
	// No throttle: every redraw is a frame, the one the eye may catch.
	bar := progressbar.NewOptions64(200, progressbar.OptionSetWriter(&out), progressbar.OptionShowCount(),
		progressbar.OptionThrottle(0))
	var p batch.Progress
	p.Todo.Store(200)
	for tick := 1; tick <= 20; tick++ {
		for range 10 { // the engine: done first, then the outcome
			p.Done.Add(1)
			p.Success.Add(1)
		}
		drawBar(bar, &p, 200)
	}
	re := regexp.MustCompile(`ok (\d+) .*\((\d+)/200`)
	frames := 0
	for _, f := range strings.Split(out.String(), "\r") {
		m := re.FindStringSubmatch(f)
		if m == nil {
			continue
		}
		frames++
		ok, _ := strconv.Atoi(m[1])
		done, _ := strconv.Atoi(m[2])
		if ok > done {
			t.Errorf("a frame shows ok %d of %d done: %q", ok, done, f)
		}
	}
	if frames < 20 {
		t.Fatalf("%d frames with ok and a count, want at least 20:\n%q", frames, out.String())
	}
}

// TestProgressLineNumbers: in --log-format json a progress line's counts
// and rate are JSON numbers, which a log pipeline can compare and plot.
func TestProgressLineNumbers(t *testing.T) {
	var p batch.Progress
	p.Todo.Store(300)
	p.Done.Store(123)
	p.Success.Store(120)
	var out bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&out, nil))
	log.Info("progress", progressArgs(&p, 123, 70, 5*time.Second, 12*time.Second)...)
	var line map[string]any
	if err := json.Unmarshal(out.Bytes(), &line); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out.String())
	}
	for name, want := range map[string]float64{"done": 123, "of": 300, "rows_per_s": 10.6, "success": 120} {
		if got, ok := line[name].(float64); !ok || got != want {
			t.Errorf("%s = %#v, want the number %g", name, line[name], want)
		}
	}
}

// With JSON logs stdout carries one summary: a bare one (a second
// signal) only when none was written, and the exit code is the one the
// summary on stdout gives.
func TestSummaryOutOneLine(t *testing.T) {
	var b bytes.Buffer
	o := &summaryOut{w: &b}
	_, _ = o.Write([]byte(`{"msg":"run summary","exit_code":2}` + "\n"))
	if code := o.bare(3, "second signal"); code != 2 || strings.Count(b.String(), "\n") != 1 {
		t.Errorf("after a full summary: bare gave %d, stdout %q; want 2 and the one line", code, b.String())
	}
	b.Reset()
	o = &summaryOut{w: &b}
	if code := o.bare(3, "second signal"); code != 3 {
		t.Errorf("bare first: gave %d, want 3", code)
	}
	_, _ = o.Write([]byte(`{"msg":"run summary","exit_code":0}` + "\n"))
	if strings.Count(b.String(), "\n") != 1 || !strings.Contains(b.String(), `"exit_code":3`) {
		t.Errorf("a summary after the bare one: stdout %q, want the bare one only", b.String())
	}
}
