package main

import (
	"github.com/spf13/cobra"

	"github.com/vigil-dev/vigil/alerts"
)

func newAlertsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "alerts",
		Short: "Prometheus alerting and recording rules for rollouts",
	}
	cmd.AddCommand(newAlertsGenerateCmd())
	return cmd
}

func newAlertsGenerateCmd() *cobra.Command {
	var (
		file, out string
		opts      alerts.Options
	)
	cmd := &cobra.Command{
		Use:   "generate [-f FILE] [-o FILE]",
		Short: "Write a Prometheus rule file for the flags' rollouts",
		Long: `Write Prometheus rules: recording rules for every flag's cohorts, and
alerts on the controller's rollouts: a treatment that the judge's own
evidence shows failing more or slower than control beyond its tolerance (at
the latency edge the judge tests), a traffic split that is not the flag's,
a rollout stuck or rolled back, a metric provider that fails; and, for each
flag whose plan sets max or maxP99, alerts on those bounds. Each alert
links to its runbook section and its dashboard.

Flags come from the flags file given with -f (- for standard input), or
else from the controller (--server, --token or $VIGIL_SERVER, $VIGIL_TOKEN).
Generate again when flags' bounds change: those alerts are per flag.`,
		Args: cobra.NoArgs,
	}
	r := addRemoteFlags(cmd)
	fl := cmd.Flags()
	fl.StringVarP(&file, "file", "f", "", "flags file, or - for standard input (default: the controller's flags)")
	fl.StringVarP(&out, "output", "o", "-", "rule file to write, or - for standard output")
	fl.StringVar(&opts.Team, "team", "", "value of the team label on every alert, for routing")
	fl.StringVar(&opts.GrafanaURL, "grafana-url", "", "Grafana's base URL, for the dashboard links (default http://localhost:3000)")
	fl.StringVar(&opts.RunbookURL, "runbook-url", "", "runbook URL; each alert links to its section (default Vigil's docs/runbook.md)")
	fl.DurationVar(&opts.For, "for", 0, "how long a treatment must stay worse before alerting (default 10m)")
	fl.DurationVar(&opts.StuckAfter, "stuck-after", 0, "how long a rollout may progress without a transition (default 2h)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		flags, err := loadFlags(cmd, file, r)
		if err != nil {
			return err
		}
		rules, err := alerts.Generate(flags, opts)
		if err != nil {
			return err
		}
		if out == "-" {
			_, err := cmd.OutOrStdout().Write(rules)
			return err
		}
		return writeFileAtomic(out, rules)
	}
	return cmd
}
