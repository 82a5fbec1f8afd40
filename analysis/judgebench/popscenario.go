package main

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/vigil-dev/vigil/analysis/judge"
)

// popScenario is a rollout over a user population.
type popScenario struct {
	name string
	pop  popSpec
	// steps are the treatment percentages the judge alone sees, each held
	// for an equal part of popHorizon.
	steps []float64
	// plan runs the scenario under the default plan too. It is false where
	// the plan's own ramp makes it the same as another scenario.
	plan bool
}

// effect reports whether treatment differs from control.
func (s popScenario) effect() bool { return s.pop.ratio != 1 }

// filterName is the name -only matches: "users: " and its name.
func (s popScenario) filterName() string { return "users: " + s.name }

// The judge alone looks every popLook for popHorizon.
const (
	popLook    = 30 * time.Second
	popHorizon = time.Hour
)

// popJudgeNames are the judges of a population scenario alone, in table
// order.
var popJudgeNames = []string{"Vigil", "oracle SPRT"}

// popScenarios are the scenarios over user populations.
func popScenarios() []popScenario {
	ramp := []float64{1, 5, 10, 25, 50}
	heavy := popSpec{users: 1000, heavy: 0.3, ratio: 1}
	mixed := func(users int) popSpec {
		return popSpec{users: users, activitySigma: 1.5, errorSigma: 1.5, ratio: 1}
	}
	clients := popSpec{users: 10, activitySigma: 0.5, errorSigma: 0.5, ratio: 1}
	outage := popSpec{users: 10000, outage: 10 * time.Minute, ratio: 1}
	times := func(p popSpec, r float64) popSpec { p.ratio = r; return p }
	stalled := func(p popSpec, m stallMode) popSpec { p.stall = m; return p }
	out := []popScenario{
		{name: "A/A, heavy user (30% of errors), 5% share", pop: heavy, steps: []float64{5}},
		{name: "A/A, heavy user (30% of errors), ramp 1→50%", pop: heavy, steps: ramp, plan: true},
		{name: "A/A, 1,000 mixed users, ramp 1→50%", pop: mixed(1000), steps: ramp, plan: true},
		{name: "A/A, 10,000 mixed users, ramp 1→50%", pop: mixed(10000), steps: ramp, plan: true},
		{name: "A/A, 10 sticky clients, ramp 1→50%", pop: clients, steps: ramp, plan: true},
		{name: "A/A, 10 sticky clients stalling at every look, ramp 1→50%", pop: stalled(clients, stallAlways), steps: ramp, plan: true},
		{name: "A/A, 10 sticky clients stalling in the first 3 looks, ramp 1→50%", pop: stalled(clients, stallAtStart), steps: ramp, plan: true},
		{name: "A/A, 30 s outage in both cohorts at 10 min, 5% share", pop: outage, steps: []float64{5}, plan: true},
	}
	for _, r := range []float64{1.5, 2} {
		x := fmt.Sprintf("errors ×%g", r)
		out = append(out,
			popScenario{name: x + ", heavy user (30% of errors), ramp 1→50%", pop: times(heavy, r), steps: ramp, plan: true},
			popScenario{name: x + ", 1,000 mixed users, ramp 1→50%", pop: times(mixed(1000), r), steps: ramp, plan: true},
			popScenario{name: x + ", 10,000 mixed users, ramp 1→50%", pop: times(mixed(10000), r), steps: ramp, plan: true},
			popScenario{name: x + ", 30 s outage in both cohorts at 10 min, 5% share", pop: times(outage, r), steps: []float64{5}, plan: true},
		)
	}
	// A flag evaluated by three services along each request's chain: the
	// counts come in threes, which the unit buckets and the looks both see.
	chained := popSpec{users: 10000, ratio: 1, chain: 3}
	out = append(out,
		popScenario{name: "A/A, 10,000 users, each request counted by 3 services, ramp 1→50%", pop: chained, steps: ramp, plan: true},
		popScenario{name: "errors ×2, 10,000 users, each request counted by 3 services, ramp 1→50%", pop: times(chained, 2), steps: ramp, plan: true},
	)
	return out
}

// Seed streams: each kind of run draws from its own streams, so that adding
// one kind leaves the others' numbers alone.
const (
	popStream      = 1 << 62
	planStream     = 1 << 61
	popPlanStream  = 1<<61 | 1<<60
	streamIndexBit = 32
)

// runPopOnce runs one seeded rollout of a population scenario through the
// judge alone (judge.Judge with its defaults, testing the error rate) and
// the oracle, one look every popLook.
func runPopOnce(s popScenario, seed uint64, index, run int) []outcome {
	r := rand.New(rand.NewPCG(seed, popStream|uint64(index)<<streamIndexBit|uint64(run)))
	src := newPopulation(s.pop, r)
	cfg := judge.Config{Metrics: []judge.MetricConfig{{Name: "error-rate", Kind: judge.KindErrorRate}}}
	oracle := &oracleJudge{r: s.pop.ratio, r0: judge.DefaultTolerance}
	var state judge.State
	out := make([]outcome, len(popJudgeNames))
	looks := int(popHorizon / popLook)
	per := max(1, looks/len(s.steps))
	var prev judge.FlagCounts
	var baseline judge.RequestCounts
	stepStart := 0
	for k := 0; k < looks && !(out[0].rolledBack && (out[1].rolledBack || !oracle.applies())); k++ {
		step := min(len(s.steps)-1, k/per)
		if k > 0 && step != min(len(s.steps)-1, (k-1)/per) {
			stepStart = k
			baseline = judge.RequestCounts{Treatment: prev.Treatment.Requests, Control: prev.Control.Requests}
		}
		cum := src.advance(s.steps[step], popLook)
		ended := outcome{rolledBack: true, requests: int(cum.Treatment.Requests), events: int(cum.Treatment.Errors)}
		if !out[0].rolledBack {
			next, v, err := judge.Judge(cfg, state, cum, judge.StepProgress{Baseline: baseline, Elapsed: time.Duration(k-stepStart+1) * popLook})
			if err != nil {
				panic(err) // the benchmark's own configuration is fixed and valid
			}
			state = next
			out[0].breaches.check(v)
			if v.Outcome == judge.Fail {
				ended.breaches = out[0].breaches
				out[0] = ended
			}
		}
		t := tick{
			nT: int(cum.Treatment.Requests - prev.Treatment.Requests), nC: int(cum.Control.Requests - prev.Control.Requests),
			eT: int(cum.Treatment.Errors - prev.Treatment.Errors), eC: int(cum.Control.Errors - prev.Control.Errors),
		}
		if !out[1].rolledBack && oracle.observe(t) {
			out[1] = ended
			out[1].breaches = breaches{}
		}
		prev = cum
	}
	return out
}

// runPopScenario runs a population scenario runs times alone on workers
// goroutines.
func runPopScenario(s popScenario, seed uint64, index, runs, workers int) [][]outcome {
	results := make([][]outcome, runs)
	forEach(runs, workers, func(run int) { results[run] = runPopOnce(s, seed, index, run) })
	return results
}

// runPopPlans runs a population scenario under the default plan, with its
// requests' latency drawn (the plan judges it too).
func runPopPlans(s popScenario, seed uint64, index, runs, workers int) ([]planOutcome, error) {
	spec := s.pop
	spec.latency = true
	return runPlans(s.name, seed, popPlanStream|uint64(index)<<streamIndexBit, runs, workers,
		func(r *rand.Rand) traffic { return newPopulation(spec, r) })
}

// runScenarioPlans runs an exact-count scenario under the default plan.
func runScenarioPlans(s scenario, seed uint64, index, runs, workers int) ([]planOutcome, error) {
	return runPlans(s.name, seed, planStream|uint64(index)<<streamIndexBit, runs, workers,
		func(r *rand.Rand) traffic { return newScenarioTraffic(s, r) })
}
