package judge

import (
	"math"
	"slices"
)

// minEdgeEvents is how many control requests slower than a slot's chosen
// edge LatencyEdges waits for before it narrows the reads to the edges
// around it: with fewer, the share slower is too rough an estimate (±45%
// at 20) to settle where the p95 or p99 lies.
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
// every slot's edge, the next look reads only those edges, each with the
// bounds on either side of it (so that the next choice can move one bound
// a look, and a drifting p99 is followed), and, for a floor
// (minSlowdown), every bound down to the one below the edge less the floor
// (which the floor interpolates from).
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
				edge, ok := nearestEdge(ctl, target)
				if n, _ := ctl.slower(edge); !ok || n < minEdgeEvents || !around(edge, m.MinSlowdown.Seconds()) {
					return nil
				}
			}
		}
	}
	if !latency {
		return nil
	}
	slices.Sort(need)
	return slices.DeleteFunc(slices.Compact(need), func(e float64) bool { return !(e > 0) || math.IsInf(e, 1) })
}
