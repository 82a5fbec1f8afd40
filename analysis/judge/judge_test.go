package judge

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-dev/vigil/sdk/flag"
)

// errorCounts builds cumulative error-rate counts.
func errorCounts(nT, eT, nC, eC float64) FlagCounts {
	return FlagCounts{
		Flag:      "checkout",
		Treatment: CohortCounts{Requests: nT, Errors: eT},
		Control:   CohortCounts{Requests: nC, Errors: eC},
	}
}

var errorRate = Config{Metrics: []MetricConfig{{Name: "error-rate", Kind: KindErrorRate}}}

// judgeAll feeds cumulative observations through Judge and returns the
// verdicts.
func judgeAll(t *testing.T, cfg Config, obs []FlagCounts, step StepProgress) (State, []Verdict) {
	t.Helper()
	var s State
	var out []Verdict
	for i, o := range obs {
		next, v, err := Judge(cfg, s, o, step)
		if err != nil {
			t.Fatalf("tick %d: %v", i, err)
		}
		s = next
		out = append(out, v)
	}
	return s, out
}

// steady returns k cumulative observations of per-tick counts.
func steady(k int, nT, eT, nC, eC float64) []FlagCounts {
	var out []FlagCounts
	for i := 1; i <= k; i++ {
		f := float64(i)
		out = append(out, errorCounts(f*nT, f*eT, f*nC, f*eC))
	}
	return out
}

// steadyLatency returns k cumulative observations of per-tick requests and
// requests slower than each edge.
func steadyLatency(k int, nT float64, slowT map[float64]float64, nC float64, slowC map[float64]float64) []FlagCounts {
	scaled := func(m map[float64]float64, f float64) map[float64]float64 {
		out := make(map[float64]float64, len(m))
		for e, n := range m {
			out[e] = n * f
		}
		return out
	}
	var out []FlagCounts
	for i := 1; i <= k; i++ {
		f := float64(i)
		out = append(out, FlagCounts{
			Treatment: CohortCounts{Requests: nT * f, Slower: scaled(slowT, f)},
			Control:   CohortCounts{Requests: nC * f, Slower: scaled(slowC, f)},
		})
	}
	return out
}

func TestJudgeFailsAClearRegression(t *testing.T) {
	_, vs := judgeAll(t, errorRate, steady(20, 100, 3, 900, 9), StepProgress{})
	v := vs[len(vs)-1]
	if v.Outcome != Fail {
		t.Fatalf("treatment at 3%% vs control 1%%: outcome %s, want fail (%s)", v.Outcome, v.Explanation)
	}
	c := v.Checks[0]
	// The estimate is the likelihood's peak on the interval grid, placed
	// between grid points by a parabola: 3 within 0.002.
	if !approx(c.Ratio, 3, 0.002) || !(c.CILow > 1 && c.CILow < 3 && c.CIHigh > 3) || c.PValue > 0.01 || c.EValue < 100 {
		t.Errorf("evidence ratio %v CI (%v, %v) p %v e %v: want ratio 3 inside a CI above 1, p <= 0.01, e >= 100",
			c.Ratio, c.CILow, c.CIHigh, c.PValue, c.EValue)
	}
}

func TestJudgeFailIsFinal(t *testing.T) {
	obs := steady(20, 100, 3, 900, 9)
	// After the failure, a long run of healthy ticks.
	last := obs[len(obs)-1]
	for i := 1; i <= 200; i++ {
		f := float64(i)
		obs = append(obs, errorCounts(last.Treatment.Requests+100*f, last.Treatment.Errors+f, last.Control.Requests+900*f, last.Control.Errors+9*f))
	}
	_, vs := judgeAll(t, errorRate, obs, StepProgress{})
	failed := false
	for i, v := range vs {
		if failed && v.Outcome != Fail {
			t.Fatalf("tick %d: outcome %s after a fail", i, v.Outcome)
		}
		failed = failed || v.Outcome == Fail
	}
	if !failed {
		t.Fatal("never failed")
	}
}

func TestJudgeRatioIsNotConfoundedByTheSteps(t *testing.T) {
	// Ten looks at a 10% share and a 1% error rate in both cohorts, then
	// ten at 50% while load lifts both cohorts' rate to 5%. Since the
	// start treatment has 260 errors in 6,000 requests (4.33%) and control
	// 340 in 14,000 (2.43%): a ratio of 1.7843, though no look ever differed.
	// Look by look the split is even, and so is the estimate.
	var obs []FlagCounts
	var cum [4]float64
	for i := range 20 {
		look := [4]float64{100, 1, 900, 9}
		if i >= 10 {
			look = [4]float64{500, 25, 500, 25}
		}
		for j := range cum {
			cum[j] += look[j]
		}
		obs = append(obs, errorCounts(cum[0], cum[1], cum[2], cum[3]))
	}
	_, vs := judgeAll(t, errorRate, obs, StepProgress{})
	c := vs[len(vs)-1].Checks[0]
	if !approx(c.Treatment.Rate/c.Control.Rate, 1.7843, 1e-4) {
		t.Fatalf("rates since the start %v and %v, want a ratio of 1.7843", c.Treatment.Rate, c.Control.Rate)
	}
	if !approx(c.Ratio, 1, 0.01) || !(c.CILow <= c.Ratio && c.Ratio <= c.CIHigh) {
		t.Errorf("ratio %v beside the interval %v to %v; want 1 within it", c.Ratio, c.CILow, c.CIHigh)
	}
}

func TestJudgePassNeedsMinimumEvidence(t *testing.T) {
	cases := []struct {
		name   string
		ticks  int
		step   StepProgress
		want   Outcome
		reason string
	}{
		{"enough", 10, StepProgress{MinRequests: 500, MinDuration: time.Minute, Elapsed: 2 * time.Minute}, Pass, ""},
		{"too few treatment requests", 8, StepProgress{MinRequests: 1000}, Inconclusive, "needs 1000 requests per cohort in this step, has 800 treatment"},
		{"too short", 10, StepProgress{MinDuration: time.Minute, Elapsed: 30 * time.Second}, Inconclusive, "step has run 30s of the 1m0s needed"},
	}
	for _, tc := range cases {
		_, vs := judgeAll(t, errorRate, steady(tc.ticks, 100, 1, 900, 9), tc.step)
		v := vs[len(vs)-1]
		if v.Outcome != tc.want || !strings.Contains(v.Checks[0].Reason, tc.reason) {
			t.Errorf("%s: outcome %s reason %q, want %s with %q", tc.name, v.Outcome, v.Checks[0].Reason, tc.want, tc.reason)
		}
	}
}

func TestJudgeNoDataNeverPasses(t *testing.T) {
	nan := math.NaN()
	latency := Config{Metrics: []MetricConfig{{Name: "latency", Kind: KindLatency}}}
	custom := Config{Metrics: []MetricConfig{{Name: "checkouts", Kind: KindCustom, Direction: LowerIsWorse}}}
	cases := []struct {
		name string
		cfg  Config
		obs  FlagCounts
	}{
		{"zero requests", errorRate, errorCounts(0, 0, 0, 0)},
		{"no treatment requests", errorRate, errorCounts(0, 0, 1000, 10)},
		{"NaN requests", errorRate, errorCounts(nan, 0, 1000, 10)},
		{"NaN errors", errorRate, errorCounts(100, nan, 1000, 10)},
		{"infinite requests", errorRate, errorCounts(math.Inf(1), 0, 1000, 10)},
		{"negative requests", errorRate, errorCounts(-5, 0, 1000, 10)},
		{"no histogram", latency, errorCounts(100, 0, 1000, 10)},
		{"no custom count", custom, errorCounts(100, 0, 1000, 10)},
	}
	for _, tc := range cases {
		_, v, err := Judge(tc.cfg, State{}, tc.obs, StepProgress{})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if v.Outcome != Inconclusive || v.Checks[0].Reason == "" {
			t.Errorf("%s: outcome %s reason %q, want inconclusive with a reason", tc.name, v.Outcome, v.Checks[0].Reason)
		}
	}
}

// TestJudgeCounterWentDown: a count read below its last value (increase()
// extrapolated less this time) stays at its highest reading, so the look
// adds nothing for it and the next adds only what lies above: no event is
// counted twice, and the other counts go on.
func TestJudgeCounterWentDown(t *testing.T) {
	s, _ := judgeAll(t, errorRate, []FlagCounts{
		errorCounts(1000, 10, 9000, 90),
		errorCounts(1050, 9, 9500, 95),  // treatment's errors read lower: they stay at 10
		errorCounts(1100, 11, 9900, 99), // +1 treatment error above the mark
	}, StepProgress{})
	if s.Last.Treatment.Errors != 11 || s.Last.Treatment.Requests != 1100 || s.Last.Control.Requests != 9900 {
		t.Errorf("last snapshot %+v, want the third look's counts", s.Last)
	}
	if got := s.Checks[0].Slots[0].Evidence.Ticks; got != 3 {
		t.Errorf("evidence from %d looks, want 3", got)
	}
	if got := snapshot(s.Last, errorCounts(5, 0, 5, 0)); got.Treatment.Requests != 1100 || got.Control.Errors != 99 {
		t.Errorf("a reading far below the marks moved them: %+v", got)
	}
}

func TestJudgeCohortCountsAdvanceTogether(t *testing.T) {
	// Control's request count is unreadable at the second tick while its
	// error count has moved on to 18. Had the errors advanced alone, the
	// third tick would pair 1,800 requests with 9 errors. Instead nothing
	// of control advances at the second tick, and the third covers both
	// ticks: 1,800 requests and 18 errors. The dispersion then holds the
	// looks (100, 1 | 900, 9) and (100, 1 | 1800, 18) (treatment's counts
	// advanced at the second tick, without control), at ratio estimates
	// (1.5/100)/(9.5/900) = 1.42105 and (3.5/300)/(27.5/2700) = 1.14545:
	//   π = 0.13636, m = 10: (1 − 1.3636)²/1.17769 = 0.11228
	//   π = 0.05983, m = 19: (1 − 1.1368)²/1.06874 = 0.01750, sum 0.12978.
	nan := math.NaN()
	s, vs := judgeAll(t, errorRate, []FlagCounts{
		errorCounts(100, 1, 900, 9),
		errorCounts(200, 2, nan, 18),
		errorCounts(300, 3, 2700, 27),
	}, StepProgress{})
	if vs[1].Outcome != Inconclusive || !strings.Contains(vs[1].Checks[0].Reason, "control request count unreadable") {
		t.Errorf("tick 2: %s %q, want inconclusive: control requests unreadable", vs[1].Outcome, vs[1].Checks[0].Reason)
	}
	d := s.Checks[0].Dispersion[0].Dispersion
	if d.Ticks != 2 || !approx(d.ChiSquare, 0.12978, 1e-4) {
		t.Errorf("dispersion %+v, want 2 looks with residuals summing to 0.12978", d)
	}

	// A custom count missing at one tick while requests advance is dropped
	// and comes back as a new baseline, so no tick pairs its events with
	// the wrong requests. Control's refunds read 9, missing, 30, 39 against
	// 900, 1800, 2700, 3600 requests: the ticks used are (900, 9) and
	// (900, 39-30 = 9); tick 3 alone would have been (900, 30-9 = 21).
	refunds := Config{Metrics: []MetricConfig{{Name: "refunds", Kind: KindCustom}}}
	obs := []FlagCounts{}
	for i, c := range []float64{9, -1, 30, 39} {
		f := float64(i + 1)
		o := errorCounts(100*f, 0, 900*f, 0)
		o.Treatment.Custom = map[string]float64{"refunds": f}
		if c >= 0 {
			o.Control.Custom = map[string]float64{"refunds": c}
		}
		obs = append(obs, o)
	}
	s, _ = judgeAll(t, refunds, obs, StepProgress{})
	if _, ok := snapshot(Snapshot{}, obs[1]).Control.Custom["refunds"]; ok {
		t.Error("a missing custom count was kept in the snapshot")
	}
	cs := s.Checks[0]
	d = cs.Dispersion[0].Dispersion
	if d.Ticks != 2 {
		t.Errorf("dispersion %+v, want 2 looks", d)
	}
	if cs.Skipped != 2 || cs.Slots[0].Evidence.Ticks != 2 {
		t.Errorf("skipped %d ticks, evidence from %d; want 2 (missing, then the new baseline) and 2", cs.Skipped, cs.Slots[0].Evidence.Ticks)
	}
}

func TestJudgeHoldsAFailUntilItsDispersionIsKnown(t *testing.T) {
	// Looks of treatment at 10% (100 requests, 10 errors) against control
	// at 1% (900, 9). With ρ = 100/900 each look adds to alternative g the
	// log-ratio 10·log g − 19·log((9+g)/10), capped at 4: 0.3931, 0.9066
	// and 1.7623 at g = 1.05, 1.12 and 1.25, and the cap at 1.86 and above.
	// After two looks log e = log(Σ w_j·e^(L_j)) = 7.6175, past log(1/α) =
	// 4.61, but the split has had too few looks to estimate its dispersion
	// (minDispersionTicks, 8), so the judge holds.
	var obs []FlagCounts
	for i := 1; i <= minDispersionTicks; i++ {
		obs = append(obs, errorCounts(float64(100*i), float64(10*i), float64(900*i), float64(9*i)))
	}
	// At the eighth look the split has been the same eight times: the
	// residuals around the ratio estimate (about 9.99) sum to 0.0002, φ =
	// 1, and log e = Σ_j of eight looks' capped terms = 31.6143: fail.
	_, vs := judgeAll(t, errorRate, obs, StepProgress{})
	for i, v := range vs[:minDispersionTicks-1] {
		c := v.Checks[0]
		if v.Outcome != Inconclusive || !strings.Contains(c.Reason, fmt.Sprintf("have %d of the %d looks", i+1, minDispersionTicks)) || c.EValue != 1 {
			t.Errorf("look %d: %s %q e-value %v; want inconclusive, held with e-value 1", i+1, v.Outcome, c.Reason, c.EValue)
		}
	}
	last := vs[minDispersionTicks-1]
	if c := last.Checks[0]; last.Outcome != Fail || c.Dispersion != 1 || !approx(math.Log(c.EValue), 31.614338, 1e-5) ||
		!approx(math.Log(c.PValue), -31.614338, 1e-5) {
		t.Errorf("look 8: %s, dispersion %v, e-value %v, p-value %v; want fail, 1, %.4g",
			last.Outcome, c.Dispersion, c.EValue, c.PValue, math.Exp(31.614338))
	}

	// Had treatment had no errors at the eighth look while control had 18,
	// the split would have swung: the ratio estimate falls to 7.7853, π =
	// 778.53/1678.53 = 0.46381, and the look's residual is (0 − 8.3489)² /
	// 4.4764 = 15.5706; with the seven steady looks' 0.0002, φ = 15.5708/7 =
	// 2.2244. The held looks are judged under it: the seventh's log e,
	// 12.2023, is the path's highest, and seven looks of a tenfold ratio
	// are evidence even so.
	obs[7] = errorCounts(800, 70, 7200, 81)
	_, vs = judgeAll(t, errorRate, obs, StepProgress{})
	if c := vs[7].Checks[0]; vs[7].Outcome != Fail || !approx(c.Dispersion, 2.224394, 1e-5) || !approx(c.PValue, math.Exp(-12.202264), 1e-4) {
		t.Errorf("swing at the eighth look: %s, dispersion %v, p-value %v; want fail, 2.2244, %.4g", vs[7].Outcome, c.Dispersion, c.PValue, math.Exp(-12.202264))
	}
}

func TestJudgeRoundsFractionalCounts(t *testing.T) {
	// increase() extrapolates: 10.4 then 20.6 cumulative errors are 10 then
	// 21, so the two ticks add 10 and 11, summing to the rounded total.
	s, _ := judgeAll(t, errorRate, []FlagCounts{
		errorCounts(100.4, 0.6, 999.5, 10.4),
		errorCounts(200.2, 1.4, 1999.6, 20.6),
	}, StepProgress{})
	if c := s.Last.Control; c.Errors != 21 || c.Requests != 2000 || s.Last.Treatment.Requests != 200 {
		t.Errorf("control errors %v requests %v, treatment %v: want 21, 2000, 200", c.Errors, c.Requests, s.Last.Treatment.Requests)
	}
}

func TestJudgeStepCounts(t *testing.T) {
	obs := steady(2*minDispersionTicks, 100, 1, 900, 9)
	var s State
	var v Verdict
	for i, o := range obs {
		// Steps of eight ticks: the second begins after the eighth tick's
		// 800 treatment and 7200 control requests.
		step := StepProgress{MinRequests: 250}
		if i >= minDispersionTicks {
			step.Baseline = RequestCounts{Treatment: 800, Control: 7200}
		}
		var err error
		if s, v, err = Judge(errorRate, s, o, step); err != nil {
			t.Fatal(err)
		}
		want := RequestCounts{Treatment: float64(100 * (i%minDispersionTicks + 1)), Control: float64(900 * (i%minDispersionTicks + 1))}
		if got := v.Checks[0].StepRequests; got != want {
			t.Errorf("tick %d: step requests %+v, want %+v", i, got, want)
		}
	}
	if v.Outcome != Pass {
		t.Errorf("after 800 requests per cohort in the step: %s, want pass", v.Outcome)
	}
}

func TestJudgeIsPureAndStateRoundTrips(t *testing.T) {
	// Two controllers judge the same rollout; one persists its state as
	// JSON and reloads it before every tick, as after a kill -9. Their
	// verdicts must be identical, and Judge must never change its input.
	cfg := Config{Metrics: []MetricConfig{
		{Name: "error-rate", Kind: KindErrorRate, Max: 0.05},
		{Name: "latency", Kind: KindLatency, MaxP99: 500 * time.Millisecond},
		{Name: "checkouts", Kind: KindCustom, Direction: LowerIsWorse, Tolerance: 0.9},
	}}
	var live State
	var stored []byte
	for k := 1; k <= 30; k++ {
		f := float64(k)
		obs := FlagCounts{
			Flag: "checkout",
			Treatment: CohortCounts{Requests: 100 * f, Errors: 2 * f, Slower: map[float64]float64{0.25: 8 * f, 0.5: 2 * f},
				Custom: map[string]float64{"checkouts": 9 * f}},
			Control: CohortCounts{Requests: 900 * f, Errors: 9*f + float64(k%3), Slower: map[float64]float64{0.25: 40 * f, 0.5: 9 * f},
				Custom: map[string]float64{"checkouts": 90 * f}},
		}
		var resumed State
		if stored != nil {
			if err := json.Unmarshal(stored, &resumed); err != nil {
				t.Fatal(err)
			}
		}
		before, _ := json.Marshal(live)
		nextLive, vLive, err := Judge(cfg, live, obs, StepProgress{})
		if err != nil {
			t.Fatal(err)
		}
		if after, _ := json.Marshal(live); string(before) != string(after) {
			t.Fatalf("tick %d: Judge changed its input state", k)
		}
		nextResumed, vResumed, err := Judge(cfg, resumed, obs, StepProgress{})
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(vLive, vResumed) {
			t.Fatalf("tick %d: verdicts differ after a JSON round trip:\n%+v\n%+v", k, vLive, vResumed)
		}
		if stored, err = json.Marshal(nextResumed); err != nil {
			t.Fatalf("tick %d: state does not marshal: %v", k, err)
		}
		if _, err := json.Marshal(vLive); err != nil {
			t.Fatalf("tick %d: verdict does not marshal: %v", k, err)
		}
		live = nextLive
	}
}

func TestJudgeGuardrails(t *testing.T) {
	// Both cohorts fail 5% of requests: no relative harm, but the absolute
	// bound of 1% fails.
	cfg := Config{Metrics: []MetricConfig{{Name: "error-rate", Kind: KindErrorRate, Max: 0.01}}}
	_, vs := judgeAll(t, cfg, steady(10, 100, 5, 900, 45), StepProgress{})
	v := vs[len(vs)-1]
	if v.Outcome != Fail || v.Checks[0].Outcome == Fail || v.Checks[1].Outcome != Fail || v.Checks[1].Check != "error-rate:max" {
		t.Errorf("outcomes %s / %s %s / %s, want fail from error-rate:max only", v.Outcome, v.Checks[0].Outcome, v.Checks[1].Check, v.Checks[1].Outcome)
	}

	// 3% of treatment requests slower than 500 ms breaks a p99 of 500 ms,
	// although control is as slow.
	cfg = Config{Metrics: []MetricConfig{{Name: "latency", Kind: KindLatency, MaxP99: 400 * time.Millisecond}}}
	obs := steadyLatency(10, 100, map[float64]float64{0.25: 10, 0.5: 3}, 900, map[float64]float64{0.25: 90, 0.5: 27})
	_, vs = judgeAll(t, cfg, obs, StepProgress{})
	c := vs[len(vs)-1].Checks[1]
	if c.Check != "latency:maxP99" || c.Outcome != Fail || c.Edge != 0.5 || c.Bound != 0.01 {
		t.Errorf("%s: %s at edge %v bound %v, want fail at edge 0.5, bound 1%%", c.Check, c.Outcome, c.Edge, c.Bound)
	}
}

func TestJudgeLatencyEdges(t *testing.T) {
	// Control: 20% slower than 0.1 s, 6% than 0.25 s, 0.8% than 0.5 s. The
	// edges nearest its p95 and p99 are 0.25 s and 0.5 s; treatment is twice
	// as slow in the tail and fails.
	cfg := Config{Metrics: []MetricConfig{{Name: "latency", Kind: KindLatency}}}
	obs := steadyLatency(30, 100, map[float64]float64{0.1: 20, 0.25: 12, 0.5: 1.6}, 1000, map[float64]float64{0.1: 200, 0.25: 60, 0.5: 8})
	s, vs := judgeAll(t, cfg, obs, StepProgress{})
	if vs[0].Outcome != Inconclusive || !strings.Contains(vs[0].Checks[0].Reason, "no latency edge") {
		t.Errorf("first tick: %s %q, want inconclusive: no edge chosen before any control data", vs[0].Outcome, vs[0].Checks[0].Reason)
	}
	fixed := Config{Metrics: []MetricConfig{{Name: "latency", Kind: KindLatency, Edges: []float64{0.3}}}}
	if _, v, _ := Judge(fixed, State{}, obs[0], StepProgress{}); !strings.Contains(v.Checks[0].Reason, "none of the edges [0.3]") {
		t.Errorf("an edge missing from the histogram: reason %q", v.Checks[0].Reason)
	}
	slots := s.Checks[0].Slots
	if slots[0].Edge != 0.25 || slots[1].Edge != 0.5 {
		t.Errorf("edges %v and %v, want 0.25 and 0.5", slots[0].Edge, slots[1].Edge)
	}
	if v := vs[len(vs)-1]; v.Outcome != Fail {
		t.Errorf("outcome %s, want fail: %s", v.Outcome, v.Explanation)
	}
}

func TestJudgeLowerIsWorse(t *testing.T) {
	cfg := Config{Metrics: []MetricConfig{{Name: "checkouts", Kind: KindCustom, Direction: LowerIsWorse, Tolerance: 0.9}}}
	run := func(treatmentRate float64) Verdict {
		var obs []FlagCounts
		for k := 1; k <= 40; k++ {
			f := float64(k)
			obs = append(obs, FlagCounts{
				Treatment: CohortCounts{Requests: 100 * f, Custom: map[string]float64{"checkouts": treatmentRate * 100 * f}},
				Control:   CohortCounts{Requests: 900 * f, Custom: map[string]float64{"checkouts": 0.1 * 900 * f}},
			})
		}
		_, vs := judgeAll(t, cfg, obs, StepProgress{})
		return vs[len(vs)-1]
	}
	if v := run(0.05); v.Outcome != Fail || !strings.Contains(v.Explanation, "is below tolerance 0.9: fail") {
		t.Errorf("half the conversions: %s %q, want a fail below tolerance", v.Outcome, v.Explanation)
	}
	if v := run(0.1); v.Outcome != Pass {
		t.Errorf("same conversions: %s %q, want pass", v.Outcome, v.Explanation)
	}
}

func TestJudgeAveragesEValuesAcrossChecks(t *testing.T) {
	// Three checks share α through their mean e-value: each alone fails at
	// 3/α, and the overall verdict at a mean of 1/α.
	cfg := Config{Metrics: []MetricConfig{
		{Name: "error-rate", Kind: KindErrorRate},
		{Name: "a", Kind: KindCustom},
		{Name: "b", Kind: KindCustom},
	}}
	_, v, err := Judge(cfg, State{}, FlagCounts{
		Treatment: CohortCounts{Requests: 10, Custom: map[string]float64{"a": 1, "b": 1}},
		Control:   CohortCounts{Requests: 10, Custom: map[string]float64{"a": 1, "b": 1}},
	}, StepProgress{})
	if err != nil {
		t.Fatal(err)
	}
	if v.Threshold != 100 || v.Checks[0].Threshold != 300 {
		t.Errorf("thresholds %v overall, %v per check; want 100 and 300", v.Threshold, v.Checks[0].Threshold)
	}
}

func TestJudgeRestartsEvidenceWhenTheTestChanges(t *testing.T) {
	s, _ := judgeAll(t, errorRate, steady(5, 100, 2, 900, 9), StepProgress{})
	cfg := Config{Metrics: []MetricConfig{{Name: "error-rate", Kind: KindErrorRate, Tolerance: 1.5}}}
	next, _, err := Judge(cfg, s, errorCounts(600, 12, 5400, 54), StepProgress{})
	if err != nil {
		t.Fatal(err)
	}
	if ev := next.Checks[0].Slots[0].Evidence; ev.Null != 1.5 || ev.Ticks != 1 {
		t.Errorf("after a tolerance change: null %v with %d ticks, want 1.5 from 1 tick", ev.Null, ev.Ticks)
	}
}

func TestJudgeRejectsBadInput(t *testing.T) {
	bad := []struct {
		cfg  Config
		want string
	}{
		{Config{}, "at least one metric"},
		{Config{Alpha: 0.7, Metrics: errorRate.Metrics}, "alpha"},
		{Config{Metrics: []MetricConfig{{Name: "x", Kind: "bogus"}}}, `metrics[0].kind: "bogus"`},
		{Config{Metrics: []MetricConfig{{Kind: KindErrorRate}}}, "metrics[0].name: is required"},
		{Config{Metrics: []MetricConfig{{Name: "e", Kind: KindErrorRate, Tolerance: 0.8}}}, "metrics[0].tolerance: 0.8 is below 1"},
		{Config{Metrics: []MetricConfig{{Name: "e", Kind: KindErrorRate, Direction: LowerIsWorse}}}, "custom metrics only"},
		{Config{Metrics: []MetricConfig{{Name: "l", Kind: KindLatency, Max: 0.1}}}, "metrics[0].max"},
		{Config{Metrics: []MetricConfig{{Name: "e", Kind: KindErrorRate, MaxP99: time.Second}}}, "latency only"},
		{Config{Metrics: []MetricConfig{{Name: "l", Kind: KindLatency, Edges: []float64{-1}}}}, "metrics[0].edges[0]"},
		{Config{Metrics: []MetricConfig{{Name: "e", Kind: KindErrorRate}, {Name: "e", Kind: KindErrorRate}}}, "duplicate"},
	}
	// A bad configuration is refused once, by Validate, when the rollout
	// plan is resolved (controller/plan); Judge trusts its configuration
	// and does not validate it again at every look. Each problem names its
	// field.
	for _, tc := range bad {
		err := tc.cfg.Validate()
		var fe *flag.FieldError
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.As(err, &fe) || fe.Field == "" {
			t.Errorf("config %+v: error %v, want a field error containing %q", tc.cfg, err, tc.want)
		}
	}
	if err := errorRate.Validate(); err != nil {
		t.Errorf("valid config: %v", err)
	}
	s, _, err := Judge(errorRate, State{Version: 99, Ticks: 7}, errorCounts(1, 0, 1, 0), StepProgress{})
	if err == nil || !strings.Contains(err.Error(), "version 99") {
		t.Errorf("foreign state version: error %v", err)
	}
	if s.Version != 99 || s.Ticks != 7 {
		t.Errorf("foreign state version: state changed on error: %+v", s)
	}
}

// TestBeyondTolerance: a ratio check whose interval lies wholly on the
// harmful side of its tolerance (or of its floor's ratio, where that is
// further) cannot pass (the rule Judge applies before
// a pass; FuzzJudge checks that no verdict breaks it).
func TestBeyondTolerance(t *testing.T) {
	higher := check{name: "error-rate", metric: MetricConfig{Name: "error-rate", Kind: KindErrorRate}, kind: checkRatio}
	lower := check{name: "signups", metric: MetricConfig{Name: "signups", Kind: KindCustom, Direction: LowerIsWorse}, kind: checkRatio}
	bound := check{name: "error-rate:max", metric: higher.metric, kind: checkMax}
	for _, tc := range []struct {
		name   string
		c      check
		cv     CheckVerdict
		reason string
	}{
		{"above", higher, CheckVerdict{Tolerance: 1.2, CILow: 6.2, CIHigh: 16}, "its interval 6.2 to 16 lies above the tolerance 1.2"},
		{"straddles", higher, CheckVerdict{Tolerance: 1.2, CILow: 1.1, CIHigh: 16}, ""},
		{"below, higher is worse", higher, CheckVerdict{Tolerance: 1.2, CILow: 0.5, CIHigh: 0.9}, ""},
		{"no interval yet", higher, CheckVerdict{Tolerance: 1.2}, ""},
		{"lower is worse, below", lower, CheckVerdict{Tolerance: 0.9, CILow: 0.5, CIHigh: 0.8}, "its interval 0.5 to 0.8 lies below the tolerance 0.9"},
		{"lower is worse, above", lower, CheckVerdict{Tolerance: 0.9, CILow: 1.5, CIHigh: 3}, ""},
		{"not a ratio", bound, CheckVerdict{Tolerance: 0.05, CILow: 6, CIHigh: 9}, ""},
		{"above the floor's ratio", higher, CheckVerdict{Tolerance: 1.2, FloorRatio: 3, CILow: 3.5, CIHigh: 16}, "its interval 3.5 to 16 lies above the practical floor's ratio 3.0"},
		{"under the floor's ratio", higher, CheckVerdict{Tolerance: 1.2, FloorRatio: 3, CILow: 1.5, CIHigh: 16}, ""},
	} {
		a := assessed{CheckVerdict: tc.cv, slots: []slotInterval{{lo: tc.cv.CILow, hi: tc.cv.CIHigh}}}
		if got := a.beyondTolerance(tc.c); got != tc.reason {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.reason)
		}
	}
}

// TestJudgeStartsAfreshFromAnOlderState: a version 1 state (dispersion from
// control alone) is not misread; its evidence is dropped and the look
// judged as the first.
func TestJudgeStartsAfreshFromAnOlderState(t *testing.T) {
	old := State{Version: 1, Ticks: 40, MaxLogMean: 9, Checks: []CheckState{{Name: "error-rate", MaxLogE: 9}}}
	s, v, err := Judge(errorRate, old, errorCounts(100, 1, 900, 9), StepProgress{})
	if err != nil || s.Version != stateVersion || s.Ticks != 1 || v.Outcome == Fail || s.Checks[0].MaxLogE >= 9 {
		t.Errorf("from a version 1 state: version %d, ticks %d, outcome %s, max log e %v, err %v; want a fresh start",
			s.Version, s.Ticks, v.Outcome, s.Checks[0].MaxLogE, err)
	}
}

func TestDiscountByHand(t *testing.T) {
	// λ = 2^(−1/10) = 0.933033. Requests: 0.933033·100 + 100; slower
	// than 0.1 s: 0.933033·10 + 10; than 0.5 s: 0.933033·2 + 0; 1 s, first
	// read at this look: its share so far, 5/1,100, of the discounted
	// requests.
	recent := CohortSnapshot{Requests: 100, Slower: []EdgeCount{{0.1, 10}, {0.5, 2}}}
	last := CohortSnapshot{Requests: 1000, Slower: []EdgeCount{{0.1, 80}, {0.5, 20}}}
	cur := CohortSnapshot{Requests: 1100, Slower: []EdgeCount{{0.1, 90}, {0.5, 20}, {1, 5}}}
	got := discount(recent, last, cur)
	want := CohortSnapshot{Requests: 193.3033, Slower: []EdgeCount{{0.1, 19.33033}, {0.5, 1.866066}, {1, 0.878651}}}
	if !approx(got.Requests, want.Requests, 1e-4) || len(got.Slower) != len(want.Slower) {
		t.Fatalf("discount: %+v, want %+v", got, want)
	}
	for i, w := range want.Slower {
		if g := got.Slower[i]; g.Edge != w.Edge || !approx(g.Count, w.Count, 1e-5) {
			t.Errorf("edge %v: %+v, want %+v", w.Edge, g, w)
		}
	}
	// The first look, and counters that went back, start from the look.
	for _, c := range []struct {
		name         string
		recent, last CohortSnapshot
	}{{"first look", CohortSnapshot{}, CohortSnapshot{}}, {"counters went back", recent, CohortSnapshot{Requests: 5000}}} {
		if got := discount(c.recent, c.last, cur); got.Requests != cur.Requests || !slices.Equal(got.Slower, cur.Slower) {
			t.Errorf("%s: %+v, want the look's own counts %+v", c.name, got, cur)
		}
	}
}

func TestLatencyEdgeLeavesAPassedSlowdown(t *testing.T) {
	// Every look: 1,000 control requests, 5% slower than 100 ms, 1% than
	// 250 ms (control's p99), 0.05% than 500 ms; treatment, 100 requests,
	// alike. In the first 10 looks 30 more requests a look, in both
	// cohorts alike, were slower than every edge: a slowdown that passed.
	// Counted from the start, 1.04% of control is slower than 500 ms
	// after 30 looks, and the p99 slot would test 500 ms, which 0.05% of
	// new requests exceed; with the slowdown's looks discounted it tests
	// 250 ms again.
	cfg := Config{Metrics: []MetricConfig{{Name: "latency", Kind: KindLatency}}}
	var obs []FlagCounts
	var cum FlagCounts
	cum.Treatment.Slower, cum.Control.Slower = map[float64]float64{}, map[float64]float64{}
	for k := range 30 {
		burst := 0.0
		if k < 10 {
			burst = 30
		}
		cum.Control.Requests += 1000 + burst
		cum.Treatment.Requests += 100 + burst/10
		for e, share := range map[float64]float64{0.1: 0.05, 0.25: 0.01, 0.5: 0.0005} {
			cum.Control.Slower[e] += 1000*share + burst
			cum.Treatment.Slower[e] += 100*share + burst/10
		}
		obs = append(obs, FlagCounts{
			Treatment: CohortCounts{Requests: cum.Treatment.Requests, Slower: maps.Clone(cum.Treatment.Slower)},
			Control:   CohortCounts{Requests: cum.Control.Requests, Slower: maps.Clone(cum.Control.Slower)},
		})
	}
	s, _ := judgeAll(t, cfg, obs, StepProgress{})
	if p99 := s.Checks[0].Slots[1]; p99.Target != 0.01 || p99.Edge != 0.25 {
		t.Errorf("p99 slot (target %v) at %v s after the slowdown, want 0.25", p99.Target, p99.Edge)
	}
}
