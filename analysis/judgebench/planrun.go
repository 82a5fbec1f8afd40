package main

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/vigil-dev/vigil/analysis/judge"
	"github.com/vigil-dev/vigil/controller/rollout"
	"github.com/vigil-dev/vigil/internal/rolloutsim"
)

// planOutcome is how one run ended under the default plan.
type planOutcome struct {
	// phase is rollout.Promoted, rollout.RolledBack or rollout.Paused
	// (maxStepDuration reached with onTimeout pause).
	phase rollout.Phase
	// at is when, from the start.
	at time.Duration
	// requests is treatment's requests by then.
	requests int
	// held says what held a paused run's step at its last verdict (see
	// holdCause); empty otherwise.
	held string
	// verdicts counts the judge's verdicts; breaches those that broke the
	// pass invariant.
	verdicts int
	breaches breaches
}

// runPlan plays a rollout of key under the default plan (plan.Resolve of
// nothing) on src's counts with the real state machine and judge
// (rolloutsim.Run), as the rollout loop in controller/runner does.
func runPlan(src traffic, key string) (planOutcome, error) {
	var out planOutcome
	res, err := rolloutsim.Run(key, rollout.Command{Kind: rollout.Start, Actor: "judgebench"}, src.advance, func(v judge.Verdict) {
		out.verdicts++
		out.breaches.check(v)
	})
	if err != nil {
		return planOutcome{}, err
	}
	s := res.State
	out.phase, out.at, out.requests = s.Phase, res.Elapsed, int(res.Counts.Treatment.Requests)
	if s.Phase == rollout.Paused && res.Last != nil {
		out.held = holdCause(*res.Last, float64(s.Plan.MinRequests))
	}
	return out, nil
}

// What held a step, read from the judge's last verdict before the pause.
const (
	heldSplit     = "split mismatch"
	heldUnchecked = "split not checked"
	heldMinimum   = "minimums"
	heldHarm      = "harm bound"
	heldOther     = "other"
)

// heldCauses lists them in report order.
var heldCauses = []string{heldHarm, heldSplit, heldUnchecked, heldMinimum, heldOther}

// holdCause says what kept a verdict from passing: a sample ratio
// mismatch, a split not checked yet, a check short of the plan's minimum
// requests, a check whose interval still reaches its harm bound, or
// something else.
func holdCause(v judge.Verdict, minRequests float64) string {
	if sr := v.SampleRatio; sr != nil {
		switch {
		case sr.Mismatch:
			return heldSplit
		case !sr.Checked:
			return heldUnchecked
		}
	}
	for _, c := range v.Checks {
		if c.Outcome == judge.Pass {
			continue
		}
		if c.StepRequests.Treatment < minRequests || c.StepRequests.Control < minRequests {
			return heldMinimum
		}
	}
	for _, c := range v.Checks {
		if c.Outcome != judge.Pass && c.HarmBound > 0 && c.CIHigh >= c.HarmBound {
			return heldHarm
		}
	}
	return heldOther
}

// runPlans runs runs rollouts under the default plan on workers
// goroutines, each on the traffic newTraffic makes from its own seeded
// generator; the result depends only on the seed.
func runPlans(name string, seed, stream uint64, runs, workers int, newTraffic func(r *rand.Rand) traffic) ([]planOutcome, error) {
	out := make([]planOutcome, runs)
	errs := make([]error, runs)
	forEach(runs, workers, func(run int) {
		r := rand.New(rand.NewPCG(seed, stream|uint64(run)))
		out[run], errs[run] = runPlan(newTraffic(r), fmt.Sprintf("flag-%d", run))
	})
	for _, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("%s under the default plan: %w", name, err)
		}
	}
	return out, nil
}

// breaches counts the verdicts that break the pass invariant (see
// violation) and keeps the first, for the report to show.
type breaches struct {
	n     int
	first string
}

func (b *breaches) check(v judge.Verdict) {
	if why := violation(v); why != "" {
		if b.n == 0 {
			b.first = fmt.Sprintf("%s (verdict %s)", why, v.Outcome)
		}
		b.n++
	}
}

// add counts o's breaches in b.
func (b *breaches) add(o breaches) {
	if b.n == 0 {
		b.first = o.first
	}
	b.n += o.n
}

// violation says how a verdict breaks what a verdict promises, or "": a
// check that passes beside an interval beyond what is tolerated, or short
// of its harm bound (judge.CheckVerdict.Violation), or an overall pass
// beside such a check, since an overall pass vouches for every check.
func violation(v judge.Verdict) string {
	for _, c := range v.Checks {
		if v.Outcome == judge.Pass {
			c.Outcome = judge.Pass
		}
		if why := c.Violation(); why != "" {
			return c.Check + ": " + why
		}
	}
	return ""
}

// scenarioTraffic is an exact-count scenario's traffic at the share a
// rollout sets: the same requests, errors and effect as its tick
// simulation, with latency always drawn (the default plan judges it).
type scenarioTraffic struct {
	s   scenario
	r   *rand.Rand
	lat latencyModel
	now time.Duration
	cum judge.FlagCounts
}

func newScenarioTraffic(s scenario, r *rand.Rand) *scenarioTraffic {
	t := &scenarioTraffic{s: s, r: r, lat: s.durations()}
	t.cum.Treatment.Slower = make(map[float64]float64, len(histogramEdges))
	t.cum.Control.Slower = make(map[float64]float64, len(histogramEdges))
	return t
}

func (t *scenarioTraffic) advance(percent float64, d time.Duration) judge.FlagCounts {
	s := t.s
	// The scenario's baseline is a function of its tick; past its horizon
	// it keeps its last value.
	p := s.baseline(min(int(t.now/s.tick), s.ticks-1))
	at := t.now
	t.now += d
	n := int(s.rps * d.Seconds())
	nT := binomial(t.r, n, percent/100)
	nC := n - nT
	add := func(c *judge.CohortCounts, n, e int, slow []int) {
		c.Requests += float64(n)
		c.Errors += float64(e)
		for i, edge := range histogramEdges {
			c.Slower[edge] += float64(slow[i])
		}
	}
	add(&t.cum.Treatment, nT, badEvents(t.r, nT, min(1, p*s.ratio), s.cluster),
		slowCounts(t.r, nT, func(x float64) float64 { return t.lat.treatment(x, at) }))
	add(&t.cum.Control, nC, badEvents(t.r, nC, p, s.cluster), slowCounts(t.r, nC, func(x float64) float64 { return t.lat.control(x, at) }))
	return t.cum
}
