// Package rolloutsim plays a rollout on simulated traffic with a fake clock:
// the real state machine (rollout.Apply and rollout.Step) and the real judge,
// a look every plan interval, as the rollout loop in controller/runner
// drives them, without a store or a metric source. The judge benchmark and
// the demo's plan test measure plans with it.
package rolloutsim

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/vigil-dev/vigil/analysis/judge"
	"github.com/vigil-dev/vigil/controller/plan"
	"github.com/vigil-dev/vigil/controller/rollout"
)

// Epoch is when every simulated rollout starts.
var Epoch = time.UnixMilli(1_800_000_000_000).UTC()

// MaxLooks ends a run that has neither promoted, rolled back nor paused in
// this many looks: a plan's maxStepDuration and onTimeout make that
// impossible, so it is an error, not an outcome.
const MaxLooks = 5000

// Traffic is one flag's traffic as the rollout loop reads it: called with
// treatment's percent and a look's interval d, it moves the traffic on by d
// and returns the cumulative counts a look at the end of d reads.
type Traffic func(percent float64, d time.Duration) judge.FlagCounts

// Result is how a run ended.
type Result struct {
	// State is the rollout's last state: promoted, rolled back or paused.
	State rollout.State
	// Elapsed is the time from the start to the last look.
	Elapsed time.Duration
	// Counts are the last look's counts.
	Counts judge.FlagCounts
	// Last is the judge's last verdict, nil when it never judged.
	Last *judge.Verdict
}

// String is how the run ended, with the judge's last verdict.
func (r Result) String() string {
	if r.Last == nil {
		return fmt.Sprintf("%s at %v%%, never judged", r.State.Phase, r.State.Percent)
	}
	return fmt.Sprintf("%s at %v%%: %s", r.State.Phase, r.State.Percent, r.Last.Explanation)
}

// Run starts a rollout of key with start (whose Kind must be rollout.Start)
// and looks every plan interval until it leaves Progressing. The judge is
// asked only when the state machine analyses (after each step's warm-up),
// its state carried from look to look; verdict, when not nil, sees each
// verdict.
func Run(key string, start rollout.Command, traffic Traffic, verdict func(judge.Verdict)) (Result, error) {
	now := Epoch
	s, _, err := rollout.Apply(rollout.New(key), start, now)
	if err != nil {
		return Result{}, fmt.Errorf("start %s: %w", key, err)
	}
	prep, err := plan.Prepare(s.Plan)
	if err != nil {
		return Result{}, fmt.Errorf("prepare the plan of %s: %w", key, err)
	}
	var (
		out Result
		js  judge.State
	)
	for look := 0; s.Phase == rollout.Progressing; look++ {
		if look == MaxLooks {
			return Result{}, fmt.Errorf("%s still progressing after %d looks", key, look)
		}
		d := s.Plan.Interval.Std()
		now = now.Add(d)
		cum := traffic(s.Percent, d)
		// Traffic gives every bound of the histogram.
		cum = AsRead(cum, js.LatencyEdges(prep.Judge, slices.Sorted(maps.Keys(cum.Control.Slower))))
		cum.Flag = key
		out.Counts = cum
		obs := rollout.Observation{Requests: judge.RequestCounts{Treatment: cum.Treatment.Requests, Control: cum.Control.Requests}}
		if s.Analyzing(now) {
			next, v, err := judge.Judge(prep.Judge, js, cum, s.StepProgress(now))
			if err != nil {
				return Result{}, fmt.Errorf("judge %s: %w", key, err)
			}
			js = next
			obs.Verdict, out.Last = &v, &v
			if verdict != nil {
				verdict(v)
			}
		}
		s, _ = rollout.Step(s, obs, now)
	}
	out.State, out.Elapsed = s, now.Sub(Epoch)
	return out, nil
}

// AsRead keeps of c's latency counts those of edges, as a metric source
// answers a read the rollout loop narrowed to them (judge.State.LatencyEdges;
// all when edges is nil), so that a judge sees what it sees in a
// controller.
func AsRead(c judge.FlagCounts, edges []float64) judge.FlagCounts {
	if edges == nil {
		return c
	}
	keep := func(slower map[float64]float64) map[float64]float64 {
		if slower == nil {
			return nil
		}
		out := make(map[float64]float64, len(edges))
		for _, e := range edges {
			if n, ok := slower[e]; ok {
				out[e] = n
			}
		}
		return out
	}
	for _, co := range []*judge.CohortCounts{&c.Treatment, &c.Control} {
		co.Slower = keep(co.Slower)
		if co.UnitBuckets == nil {
			continue
		}
		// A copy: traffic may keep the buckets it returned.
		buckets := make([]judge.CohortCounts, len(co.UnitBuckets))
		for i, b := range co.UnitBuckets {
			b.Slower = keep(b.Slower)
			buckets[i] = b
		}
		co.UnitBuckets = buckets
	}
	return c
}

// RunMany plays n runs of Run at once, one per core, each on the traffic
// newTraffic builds from its own source, seeded with seed and the run's
// index: the results are the same whatever the cores.
func RunMany(n int, seed uint64, key string, start rollout.Command, newTraffic func(r *rand.Rand) Traffic) ([]Result, error) {
	results := make([]Result, n)
	errs := make([]error, n)
	next := make(chan int)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for run := range next {
				traffic := newTraffic(rand.New(rand.NewPCG(seed, uint64(run))))
				results[run], errs[run] = Run(key, start, traffic, nil)
			}
		})
	}
	for run := range n {
		next <- run
	}
	close(next)
	wg.Wait()
	return results, errors.Join(errs...)
}
