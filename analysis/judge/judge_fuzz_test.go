package judge

import (
	"encoding/json"
	"slices"
	"testing"
	"time"
)

// FuzzJudge feeds arbitrary cumulative counts (NaN, infinities, negative,
// going down) through three ticks of every kind of check: Judge must not
// panic, state and verdict must stay JSON, and a cohort without requests in
// the step must never pass.
func FuzzJudge(f *testing.F) {
	f.Add(100.0, 1.0, 900.0, 9.0, 10.0, 0.5, 200.0, 3.0, 1800.0, 18.0)
	f.Add(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
	f.Add(1e300, -1.0, 5.0, 1e9, -3.0, 2.0, 7.5, 7.5, 1.0, 0.0)
	f.Add(1e5, 100.0, 9e5, 900.0, 3000.0, 0.25, 2e5, 200.0, 1.8e6, 1800.0)
	cfg := Config{Metrics: []MetricConfig{
		{Name: "error-rate", Kind: KindErrorRate, Max: 0.05, Tolerance: 1.2, MaxRatio: 1.5, MinDifference: 0.001},
		{Name: "latency", Kind: KindLatency, MaxP99: 300 * time.Millisecond, MaxRatio: 2, MinSlowdown: time.Millisecond},
		{Name: "signups", Kind: KindCustom, Direction: LowerIsWorse, Tolerance: 0.9},
	}}
	f.Fuzz(func(t *testing.T, nT, eT, nC, eC, slow, edge, nT2, eT2, nC2, eC2 float64) {
		obs := []FlagCounts{
			{Treatment: CohortCounts{Requests: nT, Errors: eT, Slower: map[float64]float64{edge: slow}, Custom: map[string]float64{"signups": eT}},
				Control: CohortCounts{Requests: nC, Errors: eC, Slower: map[float64]float64{edge: slow * 9}, Custom: map[string]float64{"signups": eC}}},
			{Treatment: CohortCounts{Requests: nT2, Errors: eT2, Slower: map[float64]float64{edge: slow + eT2}, Custom: map[string]float64{"signups": eT2}},
				Control: CohortCounts{Requests: nC2, Errors: eC2, Slower: map[float64]float64{edge: slow}, Custom: map[string]float64{"signups": eC2}}},
			{Treatment: CohortCounts{Requests: nT2, Errors: eT2}, Control: CohortCounts{Requests: nC2, Errors: eC2}},
		}
		// The third look also carries unit buckets: two with the counts
		// halved, one with the fuzzed values as they are.
		half := func(c CohortCounts) CohortCounts {
			return CohortCounts{Requests: c.Requests / 2, Errors: c.Errors / 2}
		}
		obs[2].Treatment.UnitBuckets = []CohortCounts{half(obs[2].Treatment), half(obs[2].Treatment), {Requests: nT, Errors: eT}}
		obs[2].Control.UnitBuckets = []CohortCounts{half(obs[2].Control), half(obs[2].Control), {Requests: nC, Errors: eC}}
		var s State
		for i, o := range obs {
			next, v, err := Judge(cfg, s, o, StepProgress{Percent: edge, Elapsed: time.Hour})
			if err != nil {
				t.Fatalf("tick %d: %v", i, err)
			}
			if _, err := json.Marshal(next); err != nil {
				t.Fatalf("tick %d: state does not marshal: %v", i, err)
			}
			if _, err := json.Marshal(v); err != nil {
				t.Fatalf("tick %d: verdict does not marshal: %v", i, err)
			}
			for _, c := range v.Checks {
				if c.Outcome == Pass && (c.StepRequests.Treatment < 1 || c.StepRequests.Control < 1) {
					t.Fatalf("tick %d: %s passed with step requests %+v", i, c.Check, c.StepRequests)
				}
				if why := c.Violation(); why != "" {
					t.Fatalf("tick %d: %s: %s", i, c.Check, why)
				}
			}
			s = next
			// The edges the next look reads are bounds (or the plan's),
			// ascending, and never none while latency is judged.
			bounds := []float64{0.1, 0.25, 0.5, 1}
			if e := s.LatencyEdges(cfg, bounds); e != nil {
				if len(e) == 0 || !slices.IsSorted(e) || slices.ContainsFunc(e, func(x float64) bool { return !slices.Contains(bounds, x) }) {
					t.Fatalf("tick %d: latency edges %v, want some of %v, ascending", i, e, bounds)
				}
			}
		}
	})
}

// BenchmarkJudge measures one tick of an error-rate and a latency check.
func BenchmarkJudge(b *testing.B) {
	cfg := Config{Metrics: []MetricConfig{{Name: "error-rate", Kind: KindErrorRate}, {Name: "latency", Kind: KindLatency}}}
	var s State
	for k := 0; b.Loop(); k++ {
		f := float64(k + 1)
		obs := FlagCounts{
			Treatment: CohortCounts{Requests: 50 * f, Errors: f / 2, Slower: map[float64]float64{0.1: 25 * f, 0.25: 2 * f, 0.5: f / 10}},
			Control:   CohortCounts{Requests: 950 * f, Errors: 9.5 * f, Slower: map[float64]float64{0.1: 475 * f, 0.25: 38 * f, 0.5: f}},
		}
		next, _, err := Judge(cfg, s, obs, StepProgress{})
		if err != nil {
			b.Fatal(err)
		}
		s = next
	}
}

// BenchmarkJudgeUnitBuckets measures one look of the default plan's checks
// (error rate and latency, harm bounds and floors) on counts with a
// latency histogram of 15 edges and 8 unit buckets, as the SDKs send them.
func BenchmarkJudgeUnitBuckets(b *testing.B) {
	cfg := Config{Metrics: []MetricConfig{
		{Name: "error-rate", Kind: KindErrorRate, Tolerance: 1.2, MaxRatio: 1.5, MinDifference: 0.0005},
		{Name: "latency", Kind: KindLatency, Tolerance: 1.2, MaxRatio: 1.5, MinSlowdown: time.Millisecond},
	}}
	edges := []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}
	cohort := func(requests, errors, f float64) CohortCounts {
		c := CohortCounts{Requests: requests * f, Errors: errors * f, Slower: map[float64]float64{}}
		for i, e := range edges {
			c.Slower[e] = requests * f / float64(2*i+2)
		}
		for range 8 {
			u := CohortCounts{Requests: c.Requests / 8, Errors: c.Errors / 8, Slower: map[float64]float64{}}
			for e, n := range c.Slower {
				u.Slower[e] = n / 8
			}
			c.UnitBuckets = append(c.UnitBuckets, u)
		}
		return c
	}
	var s State
	for k := 0; b.Loop(); k++ {
		f := float64(k%500 + 1)
		if k%500 == 0 {
			s = State{}
		}
		obs := FlagCounts{Treatment: cohort(50, 0.5, f), Control: cohort(950, 9.5, f)}
		next, _, err := Judge(cfg, s, obs, StepProgress{Percent: 5, Elapsed: time.Hour})
		if err != nil {
			b.Fatal(err)
		}
		s = next
	}
}
