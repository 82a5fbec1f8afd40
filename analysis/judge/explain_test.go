package judge

import (
	"testing"
	"time"
)

func TestExplainCheck(t *testing.T) {
	errs := check{name: "error-rate", metric: MetricConfig{Name: "error-rate", Kind: KindErrorRate}}
	lat := check{name: "latency", metric: MetricConfig{Name: "latency", Kind: KindLatency}}
	p99 := check{name: "latency:maxP99", kind: checkMaxP99, metric: MetricConfig{Name: "latency", Kind: KindLatency, MaxP99: 500 * time.Millisecond}}
	conv := check{name: "checkouts", metric: MetricConfig{Name: "checkouts", Kind: KindCustom, Direction: LowerIsWorse}}
	ratioCV := func(out Outcome, rt, rc, ratio, lo, hi, tol float64) CheckVerdict {
		return CheckVerdict{Outcome: out, Treatment: CohortEvidence{Rate: rt}, Control: CohortEvidence{Rate: rc},
			Ratio: ratio, CILow: lo, CIHigh: hi, CILevel: 0.99, Tolerance: tol, EValue: 0.42, Threshold: 100}
	}
	cases := []struct {
		name string
		cv   CheckVerdict
		c    check
		want string
	}{
		{"issue example", ratioCV(Fail, 0.021, 0.010, 2.1, 1.4, 3.2, 1.2), errs,
			"treatment error rate 2.1% vs control 1.0% (ratio 2.1, 99% CI 1.4 to 3.2) exceeds tolerance 1.2: fail"},
		{"pass", ratioCV(Pass, 0.0101, 0.0099, 1.02, 0.61, 1.7, 1), errs,
			"treatment error rate 1.0% vs control 0.99% (ratio 1.0, 99% CI 0.61 to 1.7), no evidence above tolerance 1.0 (e-value 0.42 of 100): pass"},
		{"inconclusive", func() CheckVerdict {
			cv := ratioCV(Inconclusive, 0.001, 0, 0, 0, 0, 1)
			cv.Reason = "needs 500 requests per cohort in this step, has 20 treatment and 380 control"
			return cv
		}(), errs,
			"treatment error rate 0.1% vs control 0% (no control events), no evidence above tolerance 1.0 yet (e-value 0.42 of 100): inconclusive, needs 500 requests per cohort in this step, has 20 treatment and 380 control"},
		{"latency edge, open interval", func() CheckVerdict {
			cv := ratioCV(Fail, 0.071, 0.033, 2.15, 1.3, intervalValue(2*intervalHalf), 1)
			cv.Edge = 0.25
			return cv
		}(), lat,
			"treatment requests slower than 250ms 7.1% vs control 3.3% (ratio 2.1, 99% CI 1.3 to over 256) exceeds tolerance 1.0: fail"},
		{"p99 bound", CheckVerdict{Outcome: Fail, Treatment: CohortEvidence{Rate: 0.03}, Bound: 0.01, Edge: 0.5, EValue: 140, Threshold: 100}, p99,
			"treatment requests slower than 500ms 3.0% against max 1.0% (p99 at most 500ms) exceeds it (e-value 140 of 100): fail"},
		{"lower is worse", ratioCV(Fail, 0.05, 0.1, 0.5, 0.39, 0.65, 0.9), conv,
			"treatment checkouts per request 5.0% vs control 10% (ratio 0.5, 99% CI 0.39 to 0.65) is below tolerance 0.9: fail"},
	}
	for _, tc := range cases {
		if got := explainCheck(tc.cv, tc.c); got != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, got, tc.want)
		}
	}
}

func TestOverall(t *testing.T) {
	pass := CheckVerdict{Check: "a", Outcome: Pass, Explanation: "fine"}
	fail := CheckVerdict{Check: "b", Outcome: Fail, Explanation: "bad"}
	open := CheckVerdict{Check: "c", Outcome: Inconclusive, Explanation: "wait"}
	cases := []struct {
		checks   []CheckVerdict
		combined bool
		want     Outcome
		text     string
	}{
		{[]CheckVerdict{pass, pass}, false, Pass, "a: fine; a: fine"},
		{[]CheckVerdict{pass, open}, false, Inconclusive, "c: wait"},
		{[]CheckVerdict{open, fail}, false, Fail, "b: bad"},
		{[]CheckVerdict{pass, open}, true, Fail, "combined evidence of 2 checks reached e-value 120 of 100: fail"},
		{[]CheckVerdict{pass, pass}, false, Inconclusive, "sample ratio mismatch: split"},
		{[]CheckVerdict{pass, fail}, false, Fail, "b: bad"},
	}
	for i, tc := range cases {
		var split *SampleRatio
		if i >= 4 {
			split = &SampleRatio{Mismatch: true, Explanation: "sample ratio mismatch: split"}
		}
		got, text := overall(tc.checks, tc.combined, 120, 100, split)
		if got != tc.want || text != tc.text {
			t.Errorf("overall = %s %q, want %s %q", got, text, tc.want, tc.text)
		}
	}
}
