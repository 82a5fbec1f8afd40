package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/vigil-dev/vigil/controller/plan"
	"github.com/vigil-dev/vigil/internal/client"
	"github.com/vigil-dev/vigil/sdk/flag"
)

// remote holds the --server and --token of a command that calls the admin
// API.
type remote struct {
	server, token string
}

// addRemoteFlags registers --server and --token on cmd.
func addRemoteFlags(cmd *cobra.Command) *remote {
	r := &remote{}
	cmd.Flags().StringVar(&r.server, "server", "", "controller URL (default $VIGIL_SERVER or http://localhost:8080)")
	cmd.Flags().StringVar(&r.token, "token", "", "API token (default $VIGIL_TOKEN)")
	return r
}

// client returns an admin API client for the flags or the environment.
func (r *remote) client() (*client.Client, error) {
	server, token := r.server, r.token
	if server == "" {
		server = os.Getenv("VIGIL_SERVER")
	}
	if server == "" {
		server = "http://localhost:8080"
	}
	if token == "" {
		token = os.Getenv("VIGIL_TOKEN")
	}
	return client.New(server, token)
}

// addOutputFlag registers -o with the given formats, the first the default.
func addOutputFlag(cmd *cobra.Command, formats ...string) *string {
	o := new(string)
	cmd.Flags().StringVarP(o, "output", "o", formats[0], "output format: "+strings.Join(formats, ", "))
	return o
}

func checkOutput(o string, formats ...string) error {
	for _, f := range formats {
		if o == f {
			return nil
		}
	}
	return fmt.Errorf("--output %q: want one of %s", o, strings.Join(formats, ", "))
}

// printJSON writes v as indented JSON.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printYAML writes v as YAML with its JSON field names.
func printYAML(w io.Writer, v any) error {
	js, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var doc any
	if err := json.Unmarshal(js, &doc); err != nil {
		return err
	}
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return err
	}
	return enc.Close()
}

func newApplyCmd() *cobra.Command {
	var file, reason string
	var dryRun, prune bool
	cmd := &cobra.Command{
		Use:   "apply -f FILE",
		Short: "Create or update flags from a flags file (YAML or JSON)",
		Long: `Send a whole flags file to the controller. The file is validated as a unit
and applied in one transaction: every flag or none. Flags on the server that
the file does not list are kept, unless --prune is given. --dry-run shows
what would change. Use -f - to read standard input.`,
		Args: cobra.NoArgs,
	}
	r := addRemoteFlags(cmd)
	cmd.Flags().StringVarP(&file, "file", "f", "", "flags file, or - for standard input (required)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "show the changes without making them")
	cmd.Flags().BoolVar(&prune, "prune", false, "delete flags that the file does not list")
	cmd.Flags().StringVarP(&reason, "message", "m", "", "why, recorded in the audit log")
	cmd.MarkFlagRequired("file")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		var data []byte
		var err error
		if file == "-" {
			data, err = io.ReadAll(cmd.InOrStdin())
		} else {
			data, err = os.ReadFile(file)
		}
		if err != nil {
			return fmt.Errorf("read flags file: %w", err)
		}
		// Check locally first, so that a mistake is reported with the
		// file's name and without a round trip.
		parsed, err := flag.ParseFileOrFlag(data)
		if err == nil {
			err = plan.ValidateFlags(parsed.Flags)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
		c, err := r.client()
		if err != nil {
			return err
		}
		res, err := c.Apply(cmd.Context(), data, dryRun, prune, reason)
		if err != nil {
			return err
		}
		out := cmd.OutOrStdout()
		verb := map[string]string{"created": "created", "updated": "updated", "deleted": "deleted"}
		if dryRun {
			verb = map[string]string{"created": "would create", "updated": "would update", "deleted": "would delete"}
		}
		for _, g := range []struct {
			what string
			keys []string
		}{{"created", res.Created}, {"updated", res.Updated}, {"deleted", res.Deleted}} {
			for _, k := range g.keys {
				fmt.Fprintf(out, "%s %s\n", verb[g.what], k)
			}
		}
		changed := len(res.Created) + len(res.Updated) + len(res.Deleted)
		fmt.Fprintf(out, "%d changed, %d unchanged (revision %d)\n", changed, len(res.Unchanged), res.Revision)
		return nil
	}
	return cmd
}

func newGetCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "get",
		Short: "Show flags",
	}
	list := &cobra.Command{
		Use:   "flags",
		Short: "List every flag",
		Args:  cobra.NoArgs,
	}
	lr := addRemoteFlags(list)
	lo := addOutputFlag(list, "table", "json", "yaml")
	list.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := checkOutput(*lo, "table", "json", "yaml"); err != nil {
			return err
		}
		c, err := lr.client()
		if err != nil {
			return err
		}
		l, err := c.Flags(cmd.Context())
		if err != nil {
			return err
		}
		// Both print a flags file, which `vigil apply -f` takes back.
		switch *lo {
		case "json":
			return printJSON(cmd.OutOrStdout(), flag.File{Flags: l.Flags})
		case "yaml":
			return printYAML(cmd.OutOrStdout(), flag.File{Flags: l.Flags})
		}
		return printFlagTable(cmd.OutOrStdout(), l.Flags)
	}
	one := &cobra.Command{
		Use:   "flag KEY",
		Short: "Show one flag",
		Args:  cobra.ExactArgs(1),
	}
	or := addRemoteFlags(one)
	oo := addOutputFlag(one, "yaml", "json", "table")
	one.RunE = func(cmd *cobra.Command, args []string) error {
		if err := checkOutput(*oo, "yaml", "json", "table"); err != nil {
			return err
		}
		c, err := or.client()
		if err != nil {
			return err
		}
		f, err := c.Flag(cmd.Context(), args[0])
		if err != nil {
			return err
		}
		switch *oo {
		case "json":
			return printJSON(cmd.OutOrStdout(), f)
		case "table":
			return printFlagTable(cmd.OutOrStdout(), []flag.Flag{f})
		}
		return printYAML(cmd.OutOrStdout(), f)
	}
	cmd.AddCommand(list, one)
	return cmd
}

func printFlagTable(w io.Writer, flags []flag.Flag) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tVERSION\tENABLED\tPERCENT\tTRACKED\tDESCRIPTION")
	for _, f := range flags {
		pct := "-"
		if f.Rollout != nil {
			pct = strconv.FormatFloat(f.Rollout.Percent, 'f', -1, 64) + "%"
		}
		fmt.Fprintf(tw, "%s\t%d\t%t\t%s\t%t\t%s\n", f.Key, f.Version, f.Enabled, pct, f.Tracked, f.Description)
	}
	return tw.Flush()
}

func newDeleteCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "delete",
		Short: "Delete flags",
	}
	var reason string
	var ifVersion int64
	one := &cobra.Command{
		Use:   "flag KEY",
		Short: "Delete one flag",
		Args:  cobra.ExactArgs(1),
	}
	r := addRemoteFlags(one)
	one.Flags().StringVarP(&reason, "message", "m", "", "why, recorded in the audit log")
	one.Flags().Int64Var(&ifVersion, "if-version", 0, "delete only if the flag is still at this version")
	one.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := r.client()
		if err != nil {
			return err
		}
		d, err := c.DeleteFlag(cmd.Context(), args[0], ifVersion, reason)
		if err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "deleted %s (version %d)\n", d.Key, d.Version)
		return nil
	}
	cmd.AddCommand(one)
	return cmd
}

func newAuditCmd() *cobra.Command {
	var key string
	var limit int
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Show the audit log, newest first",
		Args:  cobra.NoArgs,
	}
	r := addRemoteFlags(cmd)
	o := addOutputFlag(cmd, "table", "json")
	cmd.Flags().StringVar(&key, "flag", "", "only changes of this flag")
	cmd.Flags().IntVar(&limit, "limit", 50, "at most this many entries (up to 1000)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := checkOutput(*o, "table", "json"); err != nil {
			return err
		}
		c, err := r.client()
		if err != nil {
			return err
		}
		entries, err := c.Audit(cmd.Context(), key, limit)
		if err != nil {
			return err
		}
		if *o == "json" {
			return printJSON(cmd.OutOrStdout(), entries)
		}
		tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "TIME\tACTOR\tACTION\tFLAG\tVERSION\tMESSAGE")
		for _, e := range entries {
			v := "-"
			if e.Version > 0 {
				v = strconv.FormatInt(e.Version, 10)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.Time.Local().Format(time.DateTime), e.Actor, e.Action, orDash(e.Flag), v, e.Message)
		}
		return tw.Flush()
	}
	return cmd
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
