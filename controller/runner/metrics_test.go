package runner

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vigil-dev/vigil/analysis/judge"
	"github.com/vigil-dev/vigil/controller/rolloutmetrics"
)

// judgementMetrics are the gauges of the judge's findings, which
// TestVerdictMetrics compares in full.
var judgementMetrics = []string{
	rolloutmetrics.Edge, rolloutmetrics.CohortRate, rolloutmetrics.Ratio, rolloutmetrics.RatioLow, rolloutmetrics.RatioHigh,
	rolloutmetrics.Tolerance, rolloutmetrics.HarmBound, rolloutmetrics.FloorRatio, rolloutmetrics.Dispersion,
	rolloutmetrics.SplitExpected, rolloutmetrics.SplitObserved, rolloutmetrics.SplitMismatch,
}

// TestVerdictMetrics: a verdict's ratio checks and split check become the
// gauges that dashboards and alerts read, under the names of package
// rolloutmetrics; an absolute bound adds none; a quantity the verdict does
// not have is no series, and one it stops having is deleted.
func TestVerdictMetrics(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	v := judge.Verdict{
		Outcome: judge.Inconclusive, Flag: "f", EValue: 3, Threshold: 100,
		Checks: []judge.CheckVerdict{
			{
				Check: "error-rate", Metric: "error-rate", Kind: judge.KindErrorRate, Outcome: judge.Inconclusive,
				Treatment: judge.CohortEvidence{Requests: 1000, Events: 30, Rate: 0.03},
				Control:   judge.CohortEvidence{Requests: 9000, Events: 90, Rate: 0.01},
				Ratio:     3, CILow: 1.5, CIHigh: 6, CILevel: 0.99, Tolerance: 1.2, HarmBound: 1.5, FloorRatio: 1.05, Dispersion: 1.25,
			},
			{
				Check: "latency", Metric: "latency", Kind: judge.KindLatency, Outcome: judge.Inconclusive,
				Treatment: judge.CohortEvidence{Requests: 1000, Events: 0, Rate: 0},
				Control:   judge.CohortEvidence{},
				Edge:      0.025, Tolerance: 1.2, Dispersion: 1,
			},
			{
				Check: "error-rate:max", Metric: "error-rate", Kind: judge.KindErrorRate, Outcome: judge.Pass,
				Treatment: judge.CohortEvidence{Requests: 1000, Events: 30, Rate: 0.03}, Bound: 0.05, Dispersion: 1,
			},
		},
		SampleRatio: &judge.SampleRatio{Expected: 0.1, Observed: 0.125, Requests: judge.RequestCounts{Treatment: 1000, Control: 7000}, Mismatch: true, Checked: true},
	}
	m.observeVerdict("f", v)
	want := `
# HELP vigil_analysis_cohort_rate Bad events per request of each cohort since the rollout began, per ratio check.
# TYPE vigil_analysis_cohort_rate gauge
vigil_analysis_cohort_rate{cohort="control",flag="f",metric="error-rate"} 0.01
vigil_analysis_cohort_rate{cohort="treatment",flag="f",metric="error-rate"} 0.03
vigil_analysis_cohort_rate{cohort="treatment",flag="f",metric="latency"} 0
# HELP vigil_analysis_dispersion Over-dispersion the check's evidence was divided by.
# TYPE vigil_analysis_dispersion gauge
vigil_analysis_dispersion{flag="f",metric="error-rate"} 1.25
vigil_analysis_dispersion{flag="f",metric="latency"} 1
# HELP vigil_analysis_edge_seconds Latency edge in seconds that each latency check's counts and interval refer to.
# TYPE vigil_analysis_edge_seconds gauge
vigil_analysis_edge_seconds{flag="f",metric="latency"} 0.025
# HELP vigil_analysis_floor_ratio Ratio at which the difference reaches the metric's practical floor.
# TYPE vigil_analysis_floor_ratio gauge
vigil_analysis_floor_ratio{flag="f",metric="error-rate"} 1.05
# HELP vigil_analysis_harm_bound Ratio the interval must lie below before the check passes.
# TYPE vigil_analysis_harm_bound gauge
vigil_analysis_harm_bound{flag="f",metric="error-rate"} 1.5
# HELP vigil_analysis_ratio The ratio estimate of treatment's rate over control's, look by look where the check has an interval, per ratio check.
# TYPE vigil_analysis_ratio gauge
vigil_analysis_ratio{flag="f",metric="error-rate"} 3
# HELP vigil_analysis_ratio_ci_high High end of the ratio's always-valid confidence interval at level 1-alpha.
# TYPE vigil_analysis_ratio_ci_high gauge
vigil_analysis_ratio_ci_high{flag="f",metric="error-rate"} 6
# HELP vigil_analysis_ratio_ci_low Low end of the ratio's always-valid confidence interval at level 1-alpha.
# TYPE vigil_analysis_ratio_ci_low gauge
vigil_analysis_ratio_ci_low{flag="f",metric="error-rate"} 1.5
# HELP vigil_analysis_split_expected_share Treatment's share of the split's requests that the flag should give.
# TYPE vigil_analysis_split_expected_share gauge
vigil_analysis_split_expected_share{flag="f"} 0.1
# HELP vigil_analysis_split_mismatch 1 once treatment's share differs from the flag's beyond chance: the rollout holds.
# TYPE vigil_analysis_split_mismatch gauge
vigil_analysis_split_mismatch{flag="f"} 1
# HELP vigil_analysis_split_observed_share Treatment's share of the split's requests that it got.
# TYPE vigil_analysis_split_observed_share gauge
vigil_analysis_split_observed_share{flag="f"} 0.125
# HELP vigil_analysis_tolerance Ratio each check tests against: evidence above it fails the rollout.
# TYPE vigil_analysis_tolerance gauge
vigil_analysis_tolerance{flag="f",metric="error-rate"} 1.2
vigil_analysis_tolerance{flag="f",metric="latency"} 1.2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), judgementMetrics...); err != nil {
		t.Fatal(err)
	}

	// The next verdict has no harm bound, no interval and no split check:
	// those series go, the others follow the verdict.
	c := &v.Checks[0]
	c.HarmBound, c.CILow, c.CIHigh, c.Ratio = 0, 0, 0, 0
	c.Treatment = judge.CohortEvidence{Requests: 2000, Events: 20, Rate: 0.01}
	v.SampleRatio = nil
	m.observeVerdict("f", v)
	for name, want := range map[string]int{
		rolloutmetrics.HarmBound: 0, rolloutmetrics.RatioLow: 0, rolloutmetrics.RatioHigh: 0, rolloutmetrics.Ratio: 0,
		rolloutmetrics.SplitExpected: 0, rolloutmetrics.SplitObserved: 0, rolloutmetrics.SplitMismatch: 0,
		rolloutmetrics.Tolerance: 2, rolloutmetrics.FloorRatio: 1, rolloutmetrics.CohortRate: 3,
	} {
		if got, err := testutil.GatherAndCount(reg, name); err != nil || got != want {
			t.Errorf("%s: %d series (%v), want %d", name, got, err, want)
		}
	}
	if got := testutil.ToFloat64(m.cohortRate.WithLabelValues("f", "error-rate", rolloutmetrics.Treatment)); got != 0.01 {
		t.Errorf("treatment's error rate after the second verdict = %v, want 0.01", got)
	}
}
