package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
)

func runVersion(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("version", "version", "aopbatch version", stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	bi, _ := debug.ReadBuildInfo()
	fmt.Fprintln(stdout, versionText(bi))
	return nil
}

// versionText says which aopbatch this is, from the build information the
// go command records: the module version ("(devel)" for a build from a
// checkout), the VCS revision and its time, whether the tree had changes
// not committed, and the Go version and platform. For example:
//
//	aopbatch v1.4.0 (revision 3f9a1c07b2e4, 2026-12-01T10:02:03Z) go1.26.8 linux/amd64
//	aopbatch (devel) (revision 3f9a1c07b2e4, 2026-12-01T10:02:03Z, modified) go1.26.8 linux/amd64
func versionText(bi *debug.BuildInfo) string {
	version, goVersion := "(unknown)", runtime.Version()
	var vcs []string
	if bi != nil {
		if bi.Main.Version != "" {
			version = bi.Main.Version
		}
		if bi.GoVersion != "" {
			goVersion = bi.GoVersion
		}
		set := map[string]string{}
		for _, s := range bi.Settings {
			set[s.Key] = s.Value
		}
		if rev := set["vcs.revision"]; rev != "" {
			vcs = append(vcs, "revision "+rev)
			if t := set["vcs.time"]; t != "" {
				vcs = append(vcs, t)
			}
			if set["vcs.modified"] == "true" {
				vcs = append(vcs, "modified")
			}
		} else {
			vcs = append(vcs, "no VCS revision recorded")
		}
	}
	s := "aopbatch " + version
	if len(vcs) > 0 {
		s += " (" + strings.Join(vcs, ", ") + ")"
	}
	return s + " " + goVersion + " " + runtime.GOOS + "/" + runtime.GOARCH
}
