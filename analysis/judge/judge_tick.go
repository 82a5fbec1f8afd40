package judge

import (
	"fmt"
	"math"
	"slices"
)

// p95Share is the share of control requests slower than control's p95.
const p95Share = 0.05

// latencyTargets are the shares of control requests slower than the edges
// a latency check follows when its plan fixes none: its p95 and its p99.
var latencyTargets = []float64{p95Share, p99Share}

// newCheckState starts the memory of a check.
func newCheckState(c check) CheckState {
	cs := CheckState{Name: c.name}
	switch c.kind {
	case checkRatio:
		m := c.metric
		below := m.Direction == LowerIsWorse
		switch {
		case m.Kind != KindLatency:
			cs.Slots = []Slot{{Evidence: newEvidence(m.null(), below, true)}}
		case len(m.Edges) > 0:
			for _, e := range m.Edges {
				cs.Slots = append(cs.Slots, Slot{Edge: e, Evidence: newEvidence(m.null(), false, true)})
			}
		default:
			// One slot follows the edge nearest control's p95, one its p99.
			for _, t := range latencyTargets {
				cs.Slots = append(cs.Slots, Slot{Target: t, Evidence: newEvidence(m.null(), false, true)})
			}
		}
	case checkMax:
		cs.Slots = []Slot{{Evidence: newEvidence(c.metric.Max, false, false)}}
	case checkMaxP99:
		cs.Slots = []Slot{{Evidence: newEvidence(p99Share, false, false)}}
	}
	return cs
}

// unreadable returns why the counts a check needs could not be read at
// this tick, or "" when they could.
func unreadable(c check, cum FlagCounts) string {
	for _, co := range []struct {
		name string
		c    CohortCounts
	}{{"treatment", cum.Treatment}, {"control", cum.Control}} {
		if !valid(co.c.Requests) {
			return fmt.Sprintf("%s request count unreadable (%v)", co.name, co.c.Requests)
		}
		switch c.metric.Kind {
		case KindErrorRate:
			if !valid(co.c.Errors) {
				return fmt.Sprintf("%s error count unreadable (%v)", co.name, co.c.Errors)
			}
		case KindLatency:
			if len(co.c.Slower) == 0 {
				return fmt.Sprintf("no latency histogram for %s", co.name)
			}
		case KindCustom:
			n, ok := co.c.Custom[c.metric.Name]
			if !ok {
				return fmt.Sprintf("no %s count for %s", c.metric.Name, co.name)
			}
			if !valid(n) {
				return fmt.Sprintf("%s count for %s unreadable (%v)", c.metric.Name, co.name, n)
			}
		}
	}
	return ""
}

// delta is one cohort's counts over a tick.
type delta struct {
	requests, events float64
}

// tickDelta returns both cohorts' requests and events over the tick, where
// events reads the events of a snapshot. Counts never go down (snapshot
// keeps each one's highest reading), so ok is false only when a count is
// missing, or appears after its cohort already had requests: the tick is
// then a no-op and its reading becomes the count's baseline.
func tickDelta(prev, cur Snapshot, events func(CohortSnapshot) (float64, bool)) (t, c delta, ok bool) {
	one := func(p, q CohortSnapshot) (delta, bool) {
		pe, okP := events(p)
		qe, okQ := events(q)
		if !okQ {
			return delta{}, false
		}
		if !okP {
			if p.Requests > 0 {
				// The count was unreadable or missing at the last tick
				// (see snapshot): its value covers more than this tick's
				// requests, so it only sets the baseline.
				return delta{}, false
			}
			pe = 0 // first time this count is seen: it started at zero
		}
		return delta{requests: q.Requests - p.Requests, events: qe - pe}, true
	}
	t, okT := one(prev.Treatment, cur.Treatment)
	c, okC := one(prev.Control, cur.Control)
	return t, c, okT && okC
}

// cumulativeRatio is the ratio estimate from the cumulative counts of cur,
// the centre of the split's residuals (see Dispersion).
func cumulativeRatio(cur Snapshot, events func(CohortSnapshot) (float64, bool)) float64 {
	te, okT := events(cur.Treatment)
	ce, okC := events(cur.Control)
	if !okT || !okC {
		return 1
	}
	return ratioEstimate(delta{cur.Treatment.Requests, te}, delta{cur.Control.Requests, ce})
}

// unitBuckets are the cohorts' unit buckets of one look as snapshots,
// rounded once for all the counts read from them; nil without unit buckets.
type unitBuckets struct {
	treatment, control []CohortSnapshot
}

// unitSnapshots rounds cum's unit buckets.
func unitSnapshots(cum FlagCounts) unitBuckets {
	n := min(len(cum.Treatment.UnitBuckets), len(cum.Control.UnitBuckets))
	u := unitBuckets{treatment: make([]CohortSnapshot, n), control: make([]CohortSnapshot, n)}
	var edges []float64
	for b := range n {
		t, c := cum.Treatment.UnitBuckets[b], cum.Control.UnitBuckets[b]
		edges = edgesOf(t.Slower, edges)
		u.treatment[b] = cohortSnapshotAt(CohortSnapshot{}, t, edges)
		edges = edgesOf(c.Slower, edges)
		u.control[b] = cohortSnapshotAt(CohortSnapshot{}, c, edges)
	}
	return u
}

// counts returns each unit bucket's cumulative requests and events of both
// cohorts, for buckets where both can be read; ok is false when there are
// no unit buckets.
func (u unitBuckets) counts(events func(CohortSnapshot) (float64, bool)) (t, c []delta, ok bool) {
	for b := range u.treatment {
		te, okT := events(u.treatment[b])
		ce, okC := events(u.control[b])
		if !okT || !okC {
			continue
		}
		t = append(t, delta{u.treatment[b].Requests, te})
		c = append(c, delta{u.control[b].Requests, ce})
	}
	return t, c, len(u.treatment) > 0
}

// errorsOf, slowerOf and customOf read one count of a snapshot.
func errorsOf(s CohortSnapshot) (float64, bool) { return s.Errors, true }

func slowerOf(edge float64) func(CohortSnapshot) (float64, bool) {
	return func(s CohortSnapshot) (float64, bool) { return s.slower(edge) }
}

func customOf(name string) func(CohortSnapshot) (float64, bool) {
	return func(s CohortSnapshot) (float64, bool) {
		n, ok := s.Custom[name]
		return n, ok
	}
}

// eventsOf is the count a non-latency check tests.
func eventsOf(m MetricConfig) func(CohortSnapshot) (float64, bool) {
	if m.Kind == KindCustom {
		return customOf(m.Name)
	}
	return errorsOf
}

// update folds the tick from prev to cur into the check's state; latency
// slots choose their edges from choose (State.choice). It reports whether
// the tick added to the evidence (false for a counter that went down or a
// count not yet present).
func update(cs *CheckState, c check, prev, cur Snapshot, choose CohortSnapshot) bool {
	switch {
	case c.metric.Kind == KindLatency && c.kind == checkMaxP99:
		edge, ok := edgeAtOrAbove(cur.Treatment, c.metric.MaxP99.Seconds())
		if !ok {
			return false
		}
		t, ctl, ok := tickDelta(prev, cur, slowerOf(edge))
		if !ok {
			return false
		}
		cs.dispersion(edge).add(t, ctl, cumulativeRatio(cur, slowerOf(edge)))
		s := &cs.Slots[0]
		s.useEdge(edge)
		s.Evidence.add(rateLikelihood(t.requests, t.events))
		return true
	case c.metric.Kind == KindLatency:
		return updateLatency(cs, prev, cur, choose)
	}
	t, ctl, ok := tickDelta(prev, cur, eventsOf(c.metric))
	if !ok {
		return false
	}
	cs.dispersion(0).add(t, ctl, cumulativeRatio(cur, eventsOf(c.metric)))
	ev := &cs.Slots[0].Evidence
	if c.kind == checkMax {
		ev.add(rateLikelihood(t.requests, t.events))
	} else {
		ev.add(ratioLikelihood(t.requests, ctl.requests, t.events, ctl.events))
	}
	return true
}

// updateLatency folds a tick into a latency ratio check: every edge's
// dispersion, and each slot at the edge it chose from control's counts up to
// the previous tick (discounted: choose). Choosing from data seen before
// the tick keeps each slot's running product a supermartingale under H0.
func updateLatency(cs *CheckState, prev, cur Snapshot, choose CohortSnapshot) bool {
	used := false
	for _, ec := range cur.Control.Slower {
		if t, ctl, ok := tickDelta(prev, cur, slowerOf(ec.Edge)); ok {
			cs.dispersion(ec.Edge).add(t, ctl, cumulativeRatio(cur, slowerOf(ec.Edge)))
		}
	}
	for i := range cs.Slots {
		s := &cs.Slots[i]
		edge := s.Edge
		if s.Target > 0 {
			var ok bool
			if edge, ok = nearestEdge(choose, s.Target); !ok {
				continue
			}
		}
		t, ctl, ok := tickDelta(prev, cur, slowerOf(edge))
		if !ok {
			continue
		}
		s.useEdge(edge)
		s.Evidence.add(ratioLikelihood(t.requests, ctl.requests, t.events, ctl.events))
		used = true
	}
	return used
}

// nearestEdge returns the edge whose share of control requests slower than
// it is nearest target (on a log scale), among edges some request exceeded.
func nearestEdge(control CohortSnapshot, target float64) (float64, bool) {
	if control.Requests <= 0 {
		return 0, false
	}
	best, bestDist := 0.0, math.Inf(1)
	for _, ec := range control.Slower {
		if ec.Count <= 0 {
			continue
		}
		d := math.Abs(math.Log(ec.Count / control.Requests / target))
		if d < bestDist {
			best, bestDist = ec.Edge, d
		}
	}
	return best, bestDist < math.Inf(1)
}

// edgeAtOrAbove returns the smallest edge at or above limit seconds. Testing
// the share slower than an edge above the limit can only under-state the
// share slower than the limit, so a failure found there is real.
func edgeAtOrAbove(c CohortSnapshot, limit float64) (float64, bool) {
	i := slices.IndexFunc(c.Slower, func(e EdgeCount) bool { return e.Edge >= limit*(1-1e-9) })
	if i < 0 {
		return 0, false
	}
	return c.Slower[i].Edge, true
}
