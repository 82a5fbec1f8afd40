package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// Set at link time by `make build` and release builds:
// -X main.version=v1.2.3 -X main.commit=<sha> -X main.date=<RFC 3339>.
// Empty, they are read from the build information Go records.
var (
	version string
	commit  string
	date    string
)

// buildVersion describes a vigil binary.
type buildVersion struct {
	Version, Commit, Date, Go string
	Modified                  bool
}

// String reads "v1.2.3 (commit 0123abc, built 2026-11-25T10:00:00Z, go1.26.7)".
func (v buildVersion) String() string {
	c := v.Commit
	if c == "" {
		c = "unknown"
	}
	if v.Modified {
		c += ", modified"
	}
	d := v.Date
	if d == "" {
		d = "unknown"
	}
	return fmt.Sprintf("%s (commit %s, built %s, %s)", v.Version, c, d, v.Go)
}

// readVersion is what the linker set, or else what bi records: the module
// version for `go install …@v1.2.3`, and the VCS revision and time for a
// build in a checkout.
func readVersion(bi *debug.BuildInfo, ldVersion, ldCommit, ldDate string) buildVersion {
	v := buildVersion{Version: ldVersion, Commit: ldCommit, Date: ldDate, Go: runtime.Version()}
	if bi == nil {
		bi = &debug.BuildInfo{}
	}
	if bi.GoVersion != "" {
		v.Go = bi.GoVersion
	}
	if v.Version == "" {
		v.Version = bi.Main.Version
	}
	if v.Version == "" {
		v.Version = "(devel)"
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			if v.Commit == "" {
				v.Commit = s.Value
			}
		case "vcs.time":
			if v.Date == "" {
				v.Date = s.Value
			}
		case "vcs.modified":
			v.Modified = ldCommit == "" && s.Value == "true"
		}
	}
	return v
}

// thisVersion is the running binary's version.
func thisVersion() buildVersion {
	bi, _ := debug.ReadBuildInfo()
	return readVersion(bi, version, commit, date)
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print vigil's version, commit and build date",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), "vigil", thisVersion())
			return err
		},
	}
}
