package judge

import (
	"slices"
	"testing"
	"time"
)

// TestLatencyEdgesByHand: control served 10,000 requests, of which 6% were
// slower than 50 ms and 0.9% slower than 250 ms, so the p95 slot settles on
// 50 ms and the p99 slot on 250 ms (the shares nearest 5% and 1% on a log
// scale: |log 1.2| = 0.18 beats |log 0.3| = 1.20, and |log 0.9| = 0.11
// beats |log 1.5| = 0.41), and the next look reads those edges and their
// neighbours.
func TestLatencyEdgesByHand(t *testing.T) {
	ctl := CohortSnapshot{Requests: 10_000, Slower: []EdgeCount{
		{Edge: 0.01, Count: 5000}, {Edge: 0.025, Count: 2000}, {Edge: 0.05, Count: 600},
		{Edge: 0.1, Count: 150}, {Edge: 0.25, Count: 90}, {Edge: 0.5, Count: 30}, {Edge: 1, Count: 5},
	}}
	settled := State{Version: stateVersion, Last: Snapshot{Control: ctl}}
	bounds := []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1}
	latency := func(m MetricConfig) Config {
		m.Name, m.Kind = "latency", KindLatency
		return Config{Metrics: []MetricConfig{m}}
	}
	// A tenth of the traffic: 9 requests slower than the p99 edge.
	few := settled.clone()
	few.Last.Control.Requests /= 10
	for i := range few.Last.Control.Slower {
		few.Last.Control.Slower[i].Count = float64(int(few.Last.Control.Slower[i].Count / 10))
	}
	narrowed := State{Version: stateVersion, Last: Snapshot{Control: CohortSnapshot{Requests: 10_000, Slower: []EdgeCount{
		{Edge: 0.05, Count: 600}, {Edge: 0.1, Count: 150}, {Edge: 0.25, Count: 90},
	}}}}
	// Control's p99 drifted up: 1.5% slower than 250 ms, 0.9% than 500.
	drifted := State{Version: stateVersion, Last: Snapshot{Control: CohortSnapshot{Requests: 10_000, Slower: []EdgeCount{
		{Edge: 0.025, Count: 2000}, {Edge: 0.05, Count: 600}, {Edge: 0.1, Count: 300}, {Edge: 0.25, Count: 150}, {Edge: 0.5, Count: 90},
	}}}}
	// Control's latencies leave a gap: 12% are slower than 50 ms and as
	// many than 100 ms, so neither read edge settles the p99 (nor the
	// p95), which lie beyond 100 ms: the next look reads every bound.
	gap := State{Version: stateVersion, Last: Snapshot{Control: CohortSnapshot{Requests: 10_000, Slower: []EdgeCount{
		{Edge: 0.025, Count: 2000}, {Edge: 0.05, Count: 1200}, {Edge: 0.1, Count: 1200},
	}}}}
	// The same gap read at every bound: it reaches 250 ms, and 0.5% are
	// slower than 500 ms. The p95 slot takes the gap's foot, 50 ms (ties go
	// to the lowest edge), which only 500 ms shows to be nearest, so the
	// next look reads the gap through; the p99 slot takes 500 ms.
	gapAll := State{Version: stateVersion, Last: Snapshot{Control: CohortSnapshot{Requests: 10_000, Slower: []EdgeCount{
		{Edge: 0.01, Count: 5000}, {Edge: 0.025, Count: 2000}, {Edge: 0.05, Count: 1200}, {Edge: 0.1, Count: 1200},
		{Edge: 0.25, Count: 1200}, {Edge: 0.5, Count: 50}, {Edge: 1, Count: 0},
	}}}}
	// A first look of 40 requests, 29 of them slower than 25 ms and none
	// slower than 50: the p99 slot's 25 ms has enough slow requests, and
	// 50 ms was read with none, so it is nearest among every bound.
	first := State{Version: stateVersion, Last: Snapshot{Control: CohortSnapshot{Requests: 40, Slower: []EdgeCount{
		{Edge: 0.01, Count: 40}, {Edge: 0.025, Count: 29}, {Edge: 0.05, Count: 0}, {Edge: 0.1, Count: 0},
	}}}}
	for _, tc := range []struct {
		name  string
		state State
		cfg   Config
		want  []float64
	}{
		{"no look yet", State{}, latency(MetricConfig{}), nil},
		{"an older state", State{Version: stateVersion - 1, Last: settled.Last}, latency(MetricConfig{}), nil},
		{"no latency judged", settled, Config{Metrics: []MetricConfig{{Name: "error-rate", Kind: KindErrorRate}}}, nil},
		{"settled", settled, latency(MetricConfig{}), []float64{0.025, 0.05, 0.1, 0.25, 0.5}},
		{"a 1 ms floor", settled, latency(MetricConfig{MinSlowdown: time.Millisecond}), []float64{0.025, 0.05, 0.1, 0.25, 0.5}},
		// 50 ms less 30 ms is 20 ms, below the 25 ms edge: the floor
		// interpolates from 10 ms.
		{"a 30 ms floor", settled, latency(MetricConfig{MinSlowdown: 30 * time.Millisecond}), []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5}},
		{"a p99 edge with too few slow requests", few, latency(MetricConfig{}), nil},
		{"maxP99 adds the edge at or above it", settled, latency(MetricConfig{MaxP99: 700 * time.Millisecond}), []float64{0.025, 0.05, 0.1, 0.25, 0.5, 1}},
		{"fixed edges", settled, latency(MetricConfig{Edges: []float64{0.1}}), []float64{0.05, 0.1, 0.25}},
		// The p99 slot chooses 500 ms (0.9%), and the next look reads 1 s.
		{"a p99 that drifts", drifted, latency(MetricConfig{}), []float64{0.025, 0.05, 0.1, 0.25, 0.5, 1}},
		// Read at three edges, the slots still choose 50 and 250 ms, and
		// the bounds beside them are read again.
		{"narrowed before", narrowed, latency(MetricConfig{}), []float64{0.025, 0.05, 0.1, 0.25, 0.5}},
		{"a gap in control's latencies", gap, latency(MetricConfig{}), nil},
		{"a gap read whole", gapAll, latency(MetricConfig{}), []float64{0.025, 0.05, 0.1, 0.25, 0.5, 1}},
		{"a first look", first, latency(MetricConfig{}), []float64{0.01, 0.025, 0.05}},
	} {
		if got := tc.state.LatencyEdges(tc.cfg, bounds); !slices.Equal(got, tc.want) {
			t.Errorf("%s: edges %v, want %v", tc.name, got, tc.want)
		}
	}
}
