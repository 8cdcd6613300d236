package main

import (
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestVersionText(t *testing.T) {
	platform := runtime.GOOS + "/" + runtime.GOARCH
	for _, tc := range []struct {
		name string
		bi   *debug.BuildInfo
		want string
	}{
		{"release", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.4.0"}, Settings: []debug.BuildSetting{
			{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: "3f9a1c07b2e4d5f60718293a4b5c6d7e8f901234"},
			{Key: "vcs.time", Value: "2026-12-01T10:02:03Z"}, {Key: "vcs.modified", Value: "false"}}},
			"aopbatch v1.4.0 (revision 3f9a1c07b2e4d5f60718293a4b5c6d7e8f901234, 2026-12-01T10:02:03Z) go1.26.8 " + platform},
		{"checkout with changes", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.0.0-20261201100203-3f9a1c07b2e4+dirty"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "3f9a1c07b2e4"}, {Key: "vcs.time", Value: "2026-12-01T10:02:03Z"}, {Key: "vcs.modified", Value: "true"}}},
			"aopbatch v0.0.0-20261201100203-3f9a1c07b2e4+dirty (revision 3f9a1c07b2e4, 2026-12-01T10:02:03Z, modified) go1.26.8 " + platform},
		{"no vcs", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}},
			"aopbatch (devel) (no VCS revision recorded) go1.26.8 " + platform},
		{"no build info", nil, "aopbatch (unknown) " + runtime.Version() + " " + platform},
	} {
		if got := versionText(tc.bi); got != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, got, tc.want)
		}
	}
}

// TestVersionCommand: "version" and "--version" print the build's own
// version line, with the Go version it was built with.
func TestVersionCommand(t *testing.T) {
	t.Parallel()
	bi, _ := debug.ReadBuildInfo()
	want := versionText(bi)
	for _, args := range [][]string{{"version"}, {"--version"}} {
		p := aopbatch(t, nil, args...)
		if p.code != 0 || strings.TrimSpace(p.stdout) != want {
			t.Errorf("%v: exit %d, stdout %q, want %q", args, p.code, p.stdout, want)
		}
		if !strings.Contains(p.stdout, runtime.Version()) {
			t.Errorf("%v: %q lacks the Go version", args, p.stdout)
		}
	}
}
