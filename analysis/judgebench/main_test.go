package main

import (
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/vigil-dev/vigil/analysis/judge"
	"github.com/vigil-dev/vigil/controller/plan"
	"github.com/vigil-dev/vigil/controller/rollout"
	"github.com/vigil-dev/vigil/sdk/semconv"
)

// scenarioNamed returns a benchmark scenario by name.
func scenarioNamed(t *testing.T, name string) (scenario, int) {
	t.Helper()
	return named(t, scenarios(), func(s scenario) string { return s.name }, name)
}

// named returns the scenario of all called name, with its index.
func named[S any](t *testing.T, all []S, nameOf func(S) string, name string) (S, int) {
	t.Helper()
	for i, s := range all {
		if nameOf(s) == name {
			return s, i
		}
	}
	t.Fatalf("no scenario %q", name)
	var zero S
	return zero, 0
}

// TestSmoke runs a few hundred short runs and asserts only properties that
// hold with a wide margin; the real numbers come from make bench-judge.
func TestSmoke(t *testing.T) {
	aa, i := scenarioNamed(t, "A/A, 1% errors")
	aa.ticks = 120
	if got := summarize(runScenario(aa, 1, i, 200, 2), 0).rate; got >= 0.05 {
		t.Errorf("A/A: %.1f%% false rollbacks, want under 5%%", 100*got)
	}
	x5, i := scenarioNamed(t, "errors ×5")
	x5.ticks = 40
	if got := summarize(runScenario(x5, 1, i, 200, 2), 0).rate; got <= 0.9 {
		t.Errorf("errors ×5: detected in %.1f%% of runs, want over 90%%", 100*got)
	}
}

func TestRunsAreReproducible(t *testing.T) {
	s, i := scenarioNamed(t, "errors ×2")
	s.ticks = 30
	one, two := runScenario(s, 7, i, 20, 1), runScenario(s, 7, i, 20, 2)
	if !reflect.DeepEqual(one, two) {
		t.Error("the same seed gave different results on 1 and 2 workers")
	}
}

func TestBinomialMean(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	for _, p := range []float64{0.01, 0.3, 0.9} {
		const n, draws = 1000, 4000
		sum := 0
		for range draws {
			sum += binomial(r, n, p)
		}
		mean := float64(sum) / draws
		// Standard error of the mean is sqrt(n·p·(1-p)/draws) <= 0.25.
		if math.Abs(mean-n*p) > 1.5 {
			t.Errorf("Binomial(%d, %v): mean %v, want %v", n, p, mean, n*p)
		}
	}
}

func TestHistogramQuantile(t *testing.T) {
	// 100 requests, 10 slower than 0.25 s, none slower than 0.5 s: the 99th
	// request by rank lies in (0.25, 0.5], 9 of the 10 into it, so
	// 0.25 + 0.25·9/10 = 0.475 s.
	slow := make([]int, len(histogramEdges))
	for i, e := range histogramEdges {
		switch {
		case e < 0.25:
			slow[i] = 100
		case e == 0.25:
			slow[i] = 10
		}
	}
	if got := histogramQuantile(0.99, 100, slow); math.Abs(got-0.475) > 1e-9 {
		t.Errorf("p99 = %v, want 0.475", got)
	}
}

// TestLatencyGap: after the tail begins, 8% of control's requests are
// slower than every edge from 50 to 250 ms (the tail's median, 420 ms, is
// 3.8σ above 250 ms), 0.8% slower than 500 ms (500 ms is 1.28σ above
// 420 ms: 8% × 10%), which is the edge nearest its p99; treatment's tail,
// three times as slow, has its 8% past 500 ms. Before the tail, none are
// slower than 50 ms (the fast requests' 5 ms median is 4.6σ below).
func TestLatencyGap(t *testing.T) {
	m := scenario{slowdown: 2, gap: &latencyGap{from: time.Minute}}.durations()
	after := time.Minute
	for _, c := range []struct {
		name      string
		got, want float64
		tolerance float64
	}{
		{"control slower than 50 ms", m.control(0.05, after), 0.08, 1e-4},
		{"control slower than 250 ms", m.control(0.25, after), 0.08, 1e-4},
		{"control slower than 500 ms", m.control(0.5, after), 0.008, 1e-4},
		{"treatment slower than 500 ms", m.treatment(0.5, after), 0.08, 1e-4},
		{"control slower than 50 ms before the tail", m.control(0.05, after-time.Second), 0, 1e-5},
	} {
		if math.Abs(c.got-c.want) > c.tolerance {
			t.Errorf("%s: %v, want %v", c.name, c.got, c.want)
		}
	}
	if e := histogramEdges[m.p99Edge()]; e != 0.5 {
		t.Errorf("edge nearest the p99: %v, want 0.5", e)
	}
	if m.p99 < 0.25 || m.p99 > 0.5 {
		t.Errorf("p99 %v s, want between 250 and 500 ms", m.p99)
	}
}

func TestPickKeepsIndices(t *testing.T) {
	scs, idx := pick("clustered errors (mean 3), tempered|errors ×5")
	var names []string
	for _, s := range scs {
		names = append(names, s.name)
	}
	want := []string{"A/A, clustered errors (mean 3), tempered", "errors ×5"}
	if !reflect.DeepEqual(names, want) {
		t.Fatalf("picked %q, want %q", names, want)
	}
	for i, s := range scs {
		if all := scenarios(); all[idx[i]].name != s.name {
			t.Errorf("%s: index %d is %q among all scenarios", s.name, idx[i], all[idx[i]].name)
		}
	}
	if scs, _ := pick(""); len(scs) != len(scenarios()) {
		t.Errorf("an empty filter picked %d of %d scenarios", len(scs), len(scenarios()))
	}
}

// TestPopulationCellRates checks that the cells' rates add up to the
// population's at every share, that a ramp only adds users to treatment,
// and that the heavy user makes its share of the errors.
func TestPopulationCellRates(t *testing.T) {
	spec := popSpec{users: 1000, activitySigma: 1.5, errorSigma: 1.5, heavy: 0.3, ratio: 1}
	p := newPopulation(spec, rand.New(rand.NewPCG(1, 2)))
	var treated []bool
	for _, pct := range []float64{1, 5, 50, 100} {
		p.setPercent(pct)
		var reqs, errs, treatment float64
		for v := range p.rate {
			for b := range p.rate[v] {
				reqs += p.rate[v][b]
				errs += p.errRate[v][b]
				if v == treatmentCell {
					treatment += p.rate[v][b]
				}
			}
		}
		if math.Abs(reqs-popRPS) > 1e-6 || math.Abs(errs-popRPS*popBaseline) > 1e-6 {
			t.Errorf("at %v%%: cells sum to %v requests and %v errors per second, want %v and %v", pct, reqs, errs, popRPS, popRPS*popBaseline)
		}
		now := make([]bool, len(p.users))
		for i, u := range p.users {
			now[i] = p.variantOf(u) == treatmentCell
			if treated != nil && treated[i] && !now[i] {
				t.Fatalf("at %v%%: user %d left treatment", pct, i)
			}
		}
		treated = now
	}
	heaviest := 0.0
	for _, u := range p.users {
		heaviest = max(heaviest, u.errors)
	}
	if got := heaviest / (popRPS * popBaseline); math.Abs(got-0.3) > 1e-9 {
		t.Errorf("the heavy user makes %.3f of the errors, want 0.3", got)
	}
}

// TestPopulationCounts checks that the counts read add up across unit
// buckets and that stalled counts arrive later rather than never.
func TestPopulationCounts(t *testing.T) {
	spec := popSpec{users: 10, activitySigma: 0.5, errorSigma: 0.5, ratio: 1, stall: stallAtStart, latency: true}
	p := newPopulation(spec, rand.New(rand.NewPCG(3, 4)))
	var c judge.FlagCounts
	for range stallStartLooks + 1 {
		c = p.advance(50, popLook)
	}
	var sum judge.CohortCounts
	for _, b := range c.Treatment.UnitBuckets {
		sum.Requests += b.Requests
		sum.Errors += b.Errors
	}
	if sum.Requests != c.Treatment.Requests || sum.Errors != c.Treatment.Errors {
		t.Errorf("treatment's unit buckets sum to %v requests and %v errors, the cohort has %v and %v",
			sum.Requests, sum.Errors, c.Treatment.Requests, c.Treatment.Errors)
	}
	// After the stalls, every late count has been read.
	for i := range p.late {
		for _, l := range p.late[i] {
			if l.requests != 0 {
				t.Fatalf("user %d still has %v late requests after the stalls", i, l.requests)
			}
		}
	}
	total := c.Treatment.Requests + c.Control.Requests
	// 4 looks of 30 s: 120 s of popRPS, Poisson; allow 5 standard
	// deviations.
	if want := 120 * popRPS; math.Abs(total-want) > 5*math.Sqrt(want) {
		t.Errorf("%v requests in 2 minutes, want about %v", total, want)
	}
	if got := c.Control.Slower[semconv.DurationBuckets[0]]; got <= 0 || got > c.Control.Requests {
		t.Errorf("control: %v requests slower than %v s of %v", got, semconv.DurationBuckets[0], c.Control.Requests)
	}
}

// TestOracleBeatsFixedHorizon checks the oracle column against theory: at
// 1% base errors, ratio 2 and a 5% share, a fixed-horizon test (α = 0.01
// one-sided, power 0.9, control's rate known) needs about 1,690 treatment
// requests; the oracle's sequential test needs fewer in the median, and no
// valid judge needs fewer than the oracle.
func TestOracleBeatsFixedHorizon(t *testing.T) {
	s, i := scenarioNamed(t, "errors ×2")
	s.ticks = 150
	res := runScenario(s, 1, i, 200, 2)
	oracle, vigil := summarize(res, oracleIndex), summarize(res, 0)
	const za, zb, p0, p1 = 2.3263478740408408, 1.2815515655446004, 0.01, 0.02
	fixed := math.Pow(za*math.Sqrt(p0*(1-p0))+zb*math.Sqrt(p1*(1-p1)), 2) / ((p1 - p0) * (p1 - p0))
	if oracle.rate < 0.95 || float64(oracle.medianReq) >= fixed {
		t.Errorf("oracle: detected %.1f%%, median %d treatment requests; want ≥ 95%% and fewer than the fixed horizon's %.0f",
			100*oracle.rate, oracle.medianReq, fixed)
	}
	if vigil.medianReq < oracle.medianReq {
		t.Errorf("Vigil's median %d treatment requests is below the oracle's %d", vigil.medianReq, oracle.medianReq)
	}
}

// TestDefaultPlan drives the rollout state machine at small scale: healthy
// rollouts with enough traffic are promoted, no sooner than the plan's
// minimums allow, a fivefold error regression never is, and no verdict
// passes beside an interval beyond the tolerance.
func TestDefaultPlan(t *testing.T) {
	for _, tc := range []struct {
		name          string
		minPromoted   float64
		maxPromoted   float64
		minRolledBack float64
	}{
		{name: "A/A, 1,000 req/s", minPromoted: 0.8, maxPromoted: 1},
		{name: "errors ×5", minPromoted: 0, maxPromoted: 0, minRolledBack: 1},
	} {
		s, i := scenarioNamed(t, tc.name)
		outs, err := runScenarioPlans(s, 1, i, 30, 2)
		if err != nil {
			t.Fatal(err)
		}
		p := summarizePlans(outs)
		promoted, rolledBack := float64(p.promoted)/float64(p.runs), float64(p.rolledBack)/float64(p.runs)
		if promoted < tc.minPromoted || promoted > tc.maxPromoted || rolledBack < tc.minRolledBack {
			t.Errorf("%s: promoted %.0f%%, rolled back %.0f%%; want promoted in [%.0f%%, %.0f%%], rolled back ≥ %.0f%%",
				tc.name, 100*promoted, 100*rolledBack, 100*tc.minPromoted, 100*tc.maxPromoted, 100*tc.minRolledBack)
		}
		for _, o := range outs {
			d := plan.Defaults()
			if least := time.Duration(len(d.Steps)-1) * d.MinStepDuration.Std(); o.phase == rollout.Promoted && o.at < least {
				t.Errorf("%s: promoted after %v, sooner than every step's minStepDuration allows (%v)", tc.name, o.at, least)
			}
		}
		if v := (results{plans: [][]planOutcome{outs}}).violations(); v != 0 {
			t.Errorf("%s: %d verdicts passed beside an interval beyond the tolerance", tc.name, v)
		}
	}
}

// TestPassInvariantSmall runs population scenarios alone and under the
// default plan at small scale and finds no verdict that passes beside a
// ratio interval wholly beyond the tolerance.
func TestPassInvariantSmall(t *testing.T) {
	res := results{}
	for _, name := range []string{"A/A, heavy user (30% of errors), ramp 1→50%", "errors ×2, 1,000 mixed users, ramp 1→50%"} {
		s, i := named(t, popScenarios(), func(s popScenario) string { return s.name }, name)
		plans, err := runPopPlans(s, 1, i, 8, 2)
		if err != nil {
			t.Fatal(err)
		}
		res.uscs = append(res.uscs, s)
		res.uall = append(res.uall, runPopScenario(s, 1, i, 8, 2))
		res.uplans = append(res.uplans, plans)
	}
	if v := res.violationCounts(); v.planVerdicts == 0 || res.violations() != 0 {
		t.Errorf("%d verdicts broke the pass invariant, of %d checked under the plan; the first alone: %q, under the plan: %q",
			res.violations(), v.planVerdicts, v.users.first, v.userPlans.first)
	}
}

// TestViolation checks the benchmark's reading of the pass invariant: the
// judge's CheckVerdict.Violation for each check, and an overall pass held
// to it for every check.
func TestViolation(t *testing.T) {
	check := func(out judge.Outcome, lo, hi float64) judge.CheckVerdict {
		return judge.CheckVerdict{Check: "error-rate", Metric: "error-rate", Kind: judge.KindErrorRate, Outcome: out,
			CILow: lo, CIHigh: hi, Tolerance: 1.2}
	}
	for _, tc := range []struct {
		name string
		v    judge.Verdict
		want bool
	}{
		{"pass inside", judge.Verdict{Outcome: judge.Pass, Checks: []judge.CheckVerdict{check(judge.Pass, 0.8, 1.3)}}, false},
		{"pass above", judge.Verdict{Outcome: judge.Pass, Checks: []judge.CheckVerdict{check(judge.Pass, 1.3, 2)}}, true},
		{"check passes above, overall holds", judge.Verdict{Outcome: judge.Inconclusive, Checks: []judge.CheckVerdict{check(judge.Pass, 1.3, 2)}}, true},
		{"overall passes, check above holds", judge.Verdict{Outcome: judge.Pass, Checks: []judge.CheckVerdict{check(judge.Inconclusive, 0.8, 1.3), check(judge.Inconclusive, 1.3, 2)}}, true},
		{"held above", judge.Verdict{Outcome: judge.Inconclusive, Checks: []judge.CheckVerdict{check(judge.Inconclusive, 1.3, 2)}}, false},
		{"no interval", judge.Verdict{Outcome: judge.Pass, Checks: []judge.CheckVerdict{check(judge.Pass, 0, 0)}}, false},
	} {
		if got := violation(tc.v) != ""; got != tc.want {
			t.Errorf("%s: violation %q, want one: %v", tc.name, violation(tc.v), tc.want)
		}
	}
}
