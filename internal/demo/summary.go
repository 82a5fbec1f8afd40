package demo

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"time"

	"github.com/vigil-dev/vigil/analysis"
	"github.com/vigil-dev/vigil/controller/rollout"
)

// Artifacts are where the run left things a person can explore.
type Artifacts struct {
	Dashboards    string // directory of Grafana dashboards
	AlertRules    string // Prometheus rule file
	PrometheusAPI string // base URL of the Prometheus query API
}

// PrintSummary writes each rollout's path, the judge's explanation of every
// rollback, the cross-service check and where to look next.
func PrintSummary(w io.Writer, o Outcome, a Artifacts) {
	fmt.Fprintf(w, "\nSummary after %s: %d requests sent, %d failed\n", o.Elapsed.Round(time.Second), o.Sent, o.Failed)
	for _, key := range slices.Sorted(maps.Keys(o.Rollouts)) {
		s := o.Rollouts[key]
		fmt.Fprintf(w, "\n%s: %s at %s%%\n", key, s.Phase, formatPercent(s.Percent))
		if s.Verdict != nil {
			fmt.Fprintf(w, "  last verdict: %s\n", s.Verdict.Summary)
		}
		for _, t := range s.History {
			fmt.Fprintf(w, "  %s  %-11s -> %-11s %6s%%  %s\n", t.At.Format("15:04:05"), t.From, t.To, formatPercent(t.Percent), t.Reason)
			if t.To == rollout.RolledBack && t.Evidence != nil {
				v := judgeVerdictOf(t.Evidence)
				if v == nil {
					fmt.Fprintf(w, "      judge: %s\n", t.Evidence.Summary)
					continue
				}
				for _, c := range v.Checks {
					fmt.Fprintf(w, "      %s: %s\n", c.Check, c.Explanation)
				}
			}
		}
	}
	fmt.Fprintln(w, "\nOne request, one variant:")
	for _, key := range slices.Sorted(maps.Keys(o.CrossService)) {
		if o.CrossService[key] == 0 {
			continue
		}
		fmt.Fprintf(w, "  %s: %d users were served it by more than one service; %d of them saw different variants in one request\n",
			key, o.CrossService[key], o.Mismatched[key])
	}
	if a.Dashboards != "" {
		fmt.Fprintf(w, "\nGrafana dashboards: %s\n", a.Dashboards)
	}
	if a.AlertRules != "" {
		fmt.Fprintf(w, "Prometheus alert rules: %s\n", a.AlertRules)
	}
	if a.PrometheusAPI != "" {
		fmt.Fprintf(w, "Prometheus API for Grafana (a Prometheus data source, bearer token auth): %s\n", a.PrometheusAPI)
	}
}

func judgeVerdictOf(v *rollout.Verdict) *analysis.Verdict {
	return judgeVerdict(rollout.State{Verdict: v})
}
