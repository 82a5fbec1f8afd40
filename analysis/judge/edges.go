package judge

import (
	"math"
	"slices"
)

// minEdgeEvents is how many control requests slower than a slot's chosen
// edge, discounted as the choice is (State.Recent), LatencyEdges waits for
// before it narrows the reads to the edges around it: with fewer, the
// share slower is too rough an estimate (±45% at 20) to settle where the
// p95 or p99 lies.
const minEdgeEvents = 20

// LatencyEdges returns the latency histogram edges (in seconds, sorted)
// that the next look at a rollout in state s needs under cfg, or nil when
// it needs all of them, or cfg judges no latency. bounds are the
// histogram's bucket bounds, ascending, without +Inf.
//
// A latency check tests the requests slower than a few edges: those
// nearest control's p95 and p99, chosen from the counts of the look before
// (the ratio test's slots), a plan's fixed edges, and the edge at or above
// maxP99. Every other edge is read only to choose those, and each costs
// 16 series a flag (two cohorts of eight unit buckets) that a metric
// source must send and the controller decode at every look: at 1,000
// rollouts, most of both's work. So once control's counts have settled
// every slot's edge (see settled), the next look reads only those edges,
// each with the bounds on either side of it (so that the next choice can
// move one bound a look, and a drifting p99 is followed), those up to the
// first past a gap in control's latencies, and, for a floor
// (minSlowdown), every bound down to the one below the edge less the floor
// (which the floor interpolates from). When a look's counts no longer
// settle an edge, the next reads every bound.
//
// The choice stays a function of counts before the look, which keeps each
// slot's test valid (see updateLatency).
func (s State) LatencyEdges(cfg Config, bounds []float64) []float64 {
	if s.Version != stateVersion {
		return nil
	}
	ctl := s.Last.Control
	if len(ctl.Slower) == 0 {
		// No look has read the histogram yet.
		return nil
	}
	// The slots choose from discounted counts (State.choice), and so
	// does what the next look must read to tell their choice again.
	choice := s.choice()
	var need []float64
	// around adds edge and the bounds beside it, and for a floor those
	// down to edge−floor; false when edge is no bound.
	around := func(edge, floor float64) bool {
		i, ok := slices.BinarySearch(bounds, edge)
		if !ok {
			return false
		}
		lo := max(0, i-1)
		for lo > 0 && bounds[lo] > edge-floor {
			lo--
		}
		need = append(need, bounds[lo:min(len(bounds), i+2)]...)
		return true
	}
	latency := false
	for _, c := range cfg.checks() {
		m := c.metric
		if m.Kind != KindLatency {
			continue
		}
		latency = true
		switch {
		case c.kind == checkMaxP99:
			edge, ok := edgeAtOrAbove(ctl, m.MaxP99.Seconds())
			if !ok || !around(edge, 0) {
				return nil
			}
		case len(m.Edges) > 0:
			for _, e := range m.Edges {
				if !around(e, m.MinSlowdown.Seconds()) {
					// Not a bound: the check says so at every look.
					need = append(need, e)
				}
			}
		default:
			for _, target := range latencyTargets {
				edge, ok := nearestEdge(choice, target)
				if !ok {
					return nil
				}
				span, ok := settled(choice, bounds, edge, target)
				if !ok || !around(edge, m.MinSlowdown.Seconds()) {
					return nil
				}
				need = append(need, span...)
			}
		}
	}
	if !latency {
		return nil
	}
	slices.Sort(need)
	return slices.DeleteFunc(slices.Compact(need), func(e float64) bool { return !(e > 0) || math.IsInf(e, 1) })
}

// settled reports whether edge, the read edge whose share of control's
// requests slower than it is nearest target, is the nearest among all
// bounds, not only among those read, and returns the bounds from edge to
// the other of that pair, which the next look must read to tell again. The edge needs
// minEdgeEvents slower requests, and the next bound toward target must
// have been read and lie beyond it (or there is none): shares fall as
// edges rise, so no unread bound outside that pair can be nearer.
//
// Toward higher edges, the next bound may have the same share: control's
// latencies can leave a gap (requests at 2 ms and at 400 ms have as many
// slower than 50 ms as than 300 ms), ties go to the lowest edge, and the
// pair is then the edge and the first bound above the gap. Testing only
// the edge and its neighbours, a slot would stall at the gap's foot, never
// reaching the p99 beyond it, and a treatment slower only in that tail
// would pass.
func settled(ctl CohortSnapshot, bounds []float64, edge, target float64) ([]float64, bool) {
	n, ok := ctl.slower(edge)
	i, found := slices.BinarySearch(bounds, edge)
	if !ok || !found || n < minEdgeEvents {
		return nil, false
	}
	if n/ctl.Requests < target {
		if i == 0 {
			return bounds[:1], true
		}
		m, ok := ctl.slower(bounds[i-1])
		return bounds[i-1 : i+1], ok && m/ctl.Requests >= target
	}
	for j := i + 1; j < len(bounds); j++ {
		m, ok := ctl.slower(bounds[j])
		if !ok {
			return nil, false
		}
		if m < n {
			return bounds[i : j+1], m/ctl.Requests <= target
		}
	}
	return bounds[i:], true
}
