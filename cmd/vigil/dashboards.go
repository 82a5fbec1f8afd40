package main

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/spf13/cobra"

	"github.com/vigil-dev/vigil/dashboards"
	"github.com/vigil-dev/vigil/sdk/flag"
)

// provisioningFile is the name of the Grafana provisioning file written
// beside the dashboards.
const provisioningFile = "vigil-dashboards.yaml"

func newDashboardsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dashboards",
		Short: "Grafana dashboards of rollouts",
	}
	cmd.AddCommand(newDashboardsGenerateCmd())
	return cmd
}

func newDashboardsGenerateCmd() *cobra.Command {
	var (
		key, file, dir, path, folder string
		all                          bool
		opts                         dashboards.Options
	)
	cmd := &cobra.Command{
		Use:   "generate (--flag KEY | --all) [-f FILE] -o DIR",
		Short: "Write Grafana dashboards for flags, ready for file provisioning",
		Long: `Write one dashboard per flag as JSON into DIR, named by the dashboard's
stable UID, and ` + provisioningFile + `, a Grafana provisioning file that loads
them. --all also writes the overview of every rollout, and removes the
dashboards of flags that no longer exist.

Flags come from the flags file given with -f (- for standard input), or
else from the controller (--server, --token or $VIGIL_SERVER, $VIGIL_TOKEN).
Point Grafana's provisioning at ` + provisioningFile + `; if Grafana sees DIR under
another path, as in a container, give that path with --provisioning-path.`,
		Args: cobra.NoArgs,
	}
	r := addRemoteFlags(cmd)
	fl := cmd.Flags()
	fl.StringVar(&key, "flag", "", "the flag whose dashboard to write")
	fl.BoolVar(&all, "all", false, "write every flag's dashboard and the overview")
	fl.StringVarP(&file, "file", "f", "", "flags file, or - for standard input (default: the controller's flags)")
	fl.StringVarP(&dir, "output", "o", "", "directory to write into, created if missing (required)")
	fl.StringVar(&path, "provisioning-path", "", "DIR as Grafana sees it (default: DIR's absolute path)")
	fl.StringVar(&folder, "folder", "Vigil", "Grafana folder of the dashboards")
	fl.StringVar(&opts.Refresh, "refresh", "", "dashboards' refresh interval (default 30s)")
	cmd.MarkFlagRequired("output")
	cmd.MarkFlagsMutuallyExclusive("flag", "all")
	cmd.MarkFlagsOneRequired("flag", "all")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		flags, err := loadFlags(cmd, file, r)
		if err != nil {
			return err
		}
		if !all {
			i := indexFlag(flags, key)
			if i < 0 {
				return fmt.Errorf("flag %q not found in %s", key, flagSource(file))
			}
			flags = flags[i : i+1]
		}
		if path == "" {
			if path, err = filepath.Abs(dir); err != nil {
				return fmt.Errorf("output directory %s: %w", dir, err)
			}
		}
		// Everything is generated before anything is written, so a flag
		// that fails leaves DIR as it was.
		files := map[string][]byte{}
		for _, f := range flags {
			js, err := dashboards.ForFlag(f, opts)
			if err != nil {
				return err
			}
			files[dashboards.UID(f.Key)+".json"] = js
		}
		if all {
			js, err := dashboards.Overview(opts)
			if err != nil {
				return err
			}
			files[dashboards.OverviewUID+".json"] = js
		}
		prov, err := dashboards.Provisioning(path, folder)
		if err != nil {
			return err
		}
		files[provisioningFile] = prov

		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("output directory: %w", err)
		}
		out := cmd.OutOrStdout()
		for _, name := range slices.Sorted(maps.Keys(files)) {
			p := filepath.Join(dir, name)
			if err := writeFileAtomic(p, files[name]); err != nil {
				return err
			}
			fmt.Fprintln(out, "wrote", p)
		}
		if all {
			return pruneDashboards(out, dir, files)
		}
		return nil
	}
	return cmd
}

// pruneDashboards removes the flag dashboards in dir that were not just
// written: their flags are gone, and Grafana would go on showing them.
func pruneDashboards(out io.Writer, dir string, keep map[string][]byte) error {
	old, err := filepath.Glob(filepath.Join(dir, dashboards.FlagUIDPrefix+"*.json"))
	if err != nil {
		return err
	}
	for _, p := range old {
		if _, ok := keep[filepath.Base(p)]; ok {
			continue
		}
		if err := os.Remove(p); err != nil {
			return fmt.Errorf("remove stale dashboard: %w", err)
		}
		fmt.Fprintln(out, "removed", p)
	}
	return nil
}

// loadFlags reads the flags file, or, without one, asks the controller.
func loadFlags(cmd *cobra.Command, file string, r *remote) ([]flag.Flag, error) {
	if file == "" {
		c, err := r.client()
		if err != nil {
			return nil, err
		}
		list, err := c.Flags(cmd.Context())
		if err != nil {
			return nil, fmt.Errorf("list flags: %w", err)
		}
		return list.Flags, nil
	}
	var data []byte
	var err error
	if file == "-" {
		data, err = io.ReadAll(cmd.InOrStdin())
	} else {
		data, err = os.ReadFile(file)
	}
	if err != nil {
		return nil, fmt.Errorf("read flags file: %w", err)
	}
	f, err := flag.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return f.Flags, nil
}

func flagSource(file string) string {
	switch file {
	case "":
		return "the controller's flags"
	case "-":
		return "standard input"
	}
	return file
}

func indexFlag(flags []flag.Flag, key string) int {
	for i, f := range flags {
		if f.Key == key {
			return i
		}
	}
	return -1
}

// writeFileAtomic replaces path with data in one rename, so that Grafana or
// Prometheus, reloading at any moment, reads the old file or the new one,
// never half of one.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	_, werr := tmp.Write(data)
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr, os.Chmod(tmp.Name(), 0o644)); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
