package runner

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vigil-dev/vigil/analysis/judge"
	"github.com/vigil-dev/vigil/controller/rollout"
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
	if got := gathered(t, reg, rolloutmetrics.CohortRate, "flag", "f", "metric", "error-rate", rolloutmetrics.CohortLabel, rolloutmetrics.Treatment); got != 0.01 {
		t.Errorf("treatment's error rate after the second verdict = %v, want 0.01", got)
	}
}

// gathered is the value of the one series of name in g whose labels
// include the given name, value pairs; the test fails if there is none or
// more than one.
func gathered(t testing.TB, g prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var found []float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			match := true
			for i := 0; i+1 < len(labels); i += 2 {
				match = match && have[labels[i]] == labels[i+1]
			}
			if !match {
				continue
			}
			switch {
			case m.GetGauge() != nil:
				found = append(found, m.GetGauge().GetValue())
			case m.GetCounter() != nil:
				found = append(found, m.GetCounter().GetValue())
			}
		}
	}
	if len(found) != 1 {
		t.Fatalf("%s%v: %d series, want 1", name, labels, len(found))
	}
	return found[0]
}

// BenchmarkFlagMetrics records the state and a verdict (an error-rate
// check, a latency check and the split) of 10,000 rollouts and reports the
// heap they keep a flag once collected, and the time of one scrape of them.
func BenchmarkFlagMetrics(b *testing.B) {
	const n = 10_000
	v := judge.Verdict{
		Outcome: judge.Inconclusive, EValue: 3, Threshold: 100,
		Checks: []judge.CheckVerdict{
			{Check: "error-rate", Metric: "error-rate", Kind: judge.KindErrorRate, Outcome: judge.Inconclusive,
				Treatment: judge.CohortEvidence{Requests: 1000, Events: 30, Rate: 0.03}, Control: judge.CohortEvidence{Requests: 9000, Events: 90, Rate: 0.01},
				Ratio: 3, CILow: 1.5, CIHigh: 6, Tolerance: 1.2, HarmBound: 1.5, FloorRatio: 1.05, Dispersion: 1.25},
			{Check: "latency", Metric: "latency", Kind: judge.KindLatency, Outcome: judge.Pass,
				Treatment: judge.CohortEvidence{Requests: 1000, Events: 10, Rate: 0.01}, Control: judge.CohortEvidence{Requests: 9000, Events: 90, Rate: 0.01},
				Edge: 0.25, Ratio: 1, CILow: 0.5, CIHigh: 1.4, Tolerance: 1.2, HarmBound: 1.5, Dispersion: 1},
		},
		SampleRatio: &judge.SampleRatio{Expected: 0.1, Observed: 0.1, Checked: true},
	}
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("flag-%05d", i)
	}
	var kept uint64
	var scrape time.Duration
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		reg := prometheus.NewRegistry()
		m, err := NewMetrics(reg)
		if err != nil {
			b.Fatal(err)
		}
		for _, k := range keys {
			s := rollout.New(k)
			s.Phase, s.Percent = rollout.Progressing, 10
			m.observeStates([]rollout.State{s})
			m.observeTransition(k, rollout.Transition{To: rollout.Progressing})
			m.observeVerdict(k, v)
		}
		t0 := time.Now()
		if _, err := reg.Gather(); err != nil {
			b.Fatal(err)
		}
		scrape = time.Since(t0)
		runtime.GC()
		runtime.ReadMemStats(&after)
		kept = after.HeapAlloc - before.HeapAlloc
		runtime.KeepAlive(m)
	}
	b.ReportMetric(float64(kept)/n, "heap-B/flag")
	b.ReportMetric(scrape.Seconds()*1000, "gather-ms")
}
