package main

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// launchEnv, when set, makes this binary a launcher: it runs its arguments
// as a command and writes the command's peak RSS and wall time to the file
// the variable names.
//
// aopbatch is started through a launcher because a child's ru_maxrss
// includes the peak RSS of the process that started it: on Linux the child
// shares (vfork) or copies (fork) its parent's memory until exec, and exec
// folds that memory's high-water mark into the child's. The harness holds a
// sandbox with a million entries and would be measured instead of
// aopbatch; a fresh launcher is a few MB.
const launchEnv = "AOPBENCH_LAUNCH_REPORT"

// launch runs args, forwarding SIGINT and SIGTERM, writes "maxrss-KiB
// start-unix-ns wall-ns cpu-ns" to report and returns the command's exit
// code.
func launch(report string, args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "aopbench launcher: no command")
		return 1
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, launchEnv+"=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "aopbench launcher:", err)
		return 1
	}
	go func() {
		for s := range sigs {
			_ = cmd.Process.Signal(s)
		}
	}()
	_ = cmd.Wait() // the exit code is passed on below
	wall := time.Since(start)
	ps := cmd.ProcessState
	line := fmt.Sprintf("%d %d %d %d\n", maxRSSKiB(ps), start.UnixNano(), wall.Nanoseconds(), (ps.UserTime() + ps.SystemTime()).Nanoseconds())
	if err := os.WriteFile(report, []byte(line), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "aopbench launcher:", err)
		return 1
	}
	if code := cmd.ProcessState.ExitCode(); code >= 0 {
		return code
	}
	return 1 // killed by a signal
}

// launchReport is what launch measured of its command.
type launchReport struct {
	maxRSS int64 // KiB
	start  time.Time
	wall   time.Duration
	cpu    time.Duration // user and system
}

func readLaunchReport(path string) (launchReport, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return launchReport{}, fmt.Errorf("launcher report: %w", err)
	}
	var r launchReport
	var start, wall, cpu int64
	if _, err := fmt.Sscan(string(b), &r.maxRSS, &start, &wall, &cpu); err != nil {
		return r, fmt.Errorf("launcher report %q: %w", b, err)
	}
	r.start, r.wall, r.cpu = time.Unix(0, start), time.Duration(wall), time.Duration(cpu)
	return r, nil
}
