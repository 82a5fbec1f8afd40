package demo

import (
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"time"

	"github.com/vigil-dev/vigil/controller/rollout"
)

// Artifacts are where the run left things a person can explore.
type Artifacts struct {
	Dashboards string // directory of Grafana dashboards
	AlertRules string // Prometheus rule file
	// PrometheusAPI is the base URL of the Prometheus query API that holds
	// the fleet's metrics, for Grafana; PrometheusAuth says how to
	// authenticate to it, if at all.
	PrometheusAPI  string
	PrometheusAuth string
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
	fmt.Fprintln(w, "\nEnd to end, as users saw it (requests through the gateway):")
	for _, key := range slices.Sorted(maps.Keys(o.Rollouts)) {
		t, c := o.Served[key][treatmentVariant], o.Served[key][controlVariant]
		if t.Requests == 0 || c.Requests == 0 {
			continue
		}
		fmt.Fprintf(w, "  %s: treatment %d of %d failed (%.2f%%), control %d of %d (%.2f%%): %.2f times as often",
			key, t.Failed, t.Requests, 100*t.Rate(), c.Failed, c.Requests, 100*c.Rate(), o.ErrorRatio(key))
		// The treatment cohort of a rollout rolled back early is a few
		// hundred requests: say how far off its ratio may be.
		if lo, hi, ok := ratioInterval(t, c, 1.96); ok {
			fmt.Fprintf(w, " (95%% CI %.2f to %.2f)", lo, hi)
		}
		fmt.Fprintln(w)
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
		how := "a Prometheus data source"
		if a.PrometheusAuth != "" {
			how += ", " + a.PrometheusAuth
		}
		fmt.Fprintf(w, "Prometheus API for Grafana (%s): %s\n", how, a.PrometheusAPI)
	}
}

// ratioInterval is the approximate confidence interval of the ratio of two
// cohorts' failure rates, at z standard errors of its logarithm (Katz's
// method); ok is false when a cohort has no failures, where it is unbounded.
func ratioInterval(t, c Tally, z float64) (lo, hi float64, ok bool) {
	if t.Failed == 0 || c.Failed == 0 {
		return 0, 0, false
	}
	se := math.Sqrt(1/float64(t.Failed) - 1/float64(t.Requests) + 1/float64(c.Failed) - 1/float64(c.Requests))
	r := t.Rate() / c.Rate()
	return r * math.Exp(-z*se), r * math.Exp(z*se), true
}
