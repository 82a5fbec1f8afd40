package main

import "time"

// scenario is synthetic traffic with a known effect.
type scenario struct {
	name string
	// effect is false for A/A scenarios, where every rollback is false.
	effect bool
	// latency tests the latency metric instead of the error rate.
	latency bool
	// rps is requests per second across both cohorts; tick is the look
	// interval and ticks the horizon.
	rps   float64
	tick  time.Duration
	ticks int
	// baseline is control's error rate at tick k.
	baseline func(k int) float64
	// steps are the treatment shares of a ramp, each held for an equal
	// part of the horizon.
	steps []float64
	// ratio is treatment's error rate over control's.
	ratio float64
	// cluster is the mean size of error bursts; 0 means independent errors.
	cluster float64
	// slowdown stretches treatment requests slower than control's p90,
	// or with a gap, treatment's tail.
	slowdown float64
	// gap draws latencies with a gap rather than from one log-normal.
	gap *latencyGap
	// noTempering turns off Vigil's over-dispersion correction.
	noTempering bool
}

// planToo reports whether the scenario also runs under the default plan:
// all but the one that turns tempering off, which no plan can, and the
// ramps of 1% errors, which the plan's own ramp makes the same as the
// fixed share.
func (s scenario) planToo() bool {
	return !s.noTempering && !(len(s.steps) > 1 && s.baseline(0) == s.baseline(s.ticks-1))
}

// share is the treatment share at tick k.
func (s scenario) share(k int) float64 {
	per := max(1, s.ticks/len(s.steps))
	return s.steps[min(len(s.steps)-1, k/per)]
}

// step is the ramp step index at tick k.
func (s scenario) step(k int) int {
	per := max(1, s.ticks/len(s.steps))
	return min(len(s.steps)-1, k/per)
}

func constant(p float64) func(int) float64 { return func(int) float64 { return p } }

// scenarios are the benchmark's cases. Unless a case says otherwise: 100
// requests per second, a look every 10 s (1,000 requests), one hour (360
// looks), 5% treatment share, 1% baseline error rate.
func scenarios() []scenario {
	base := scenario{rps: 100, tick: 10 * time.Second, ticks: 360, baseline: constant(0.01), steps: []float64{0.05}, ratio: 1}
	with := func(name string, f func(*scenario)) scenario {
		s := base
		s.name = name
		f(&s)
		return s
	}
	ramp := []float64{0.01, 0.05, 0.10, 0.25, 0.50}
	return []scenario{
		with("A/A, 1% errors", func(s *scenario) {}),
		with("A/A, 0.1% errors", func(s *scenario) { s.baseline = constant(0.001) }),
		with("A/A, ramp 1→50%", func(s *scenario) { s.steps = ramp }),
		with("A/A, baseline drifting 0.5→2% during ramp 1→50%", func(s *scenario) {
			s.steps = ramp
			s.baseline = func(k int) float64 { return 0.005 + 0.015*float64(k)/float64(s.ticks) }
		}),
		with("A/A, clustered errors (mean 3), tempered", func(s *scenario) { s.cluster = 3 }),
		with("A/A, clustered errors (mean 3), not tempered", func(s *scenario) { s.cluster = 3; s.noTempering = true }),
		with("A/A, 1 req/s (1-min looks, 24 h)", func(s *scenario) { s.rps, s.tick, s.ticks = 1, time.Minute, 1440 }),
		with("A/A, 1,000 req/s", func(s *scenario) { s.rps = 1000 }),
		with("A/A, latency", func(s *scenario) { s.latency = true }),
		with("errors ×1.5", func(s *scenario) { s.effect, s.ratio = true, 1.5 }),
		with("errors ×2", func(s *scenario) { s.effect, s.ratio = true, 2 }),
		with("errors ×5", func(s *scenario) { s.effect, s.ratio = true, 5 }),
		with("errors ×2, 0.1% baseline", func(s *scenario) { s.effect, s.ratio, s.baseline = true, 2, constant(0.001) }),
		with("errors ×2, ramp 1→50%", func(s *scenario) { s.effect, s.ratio, s.steps = true, 2, ramp }),
		with("errors ×2, 1 req/s (1-min looks, 24 h)", func(s *scenario) {
			s.effect, s.ratio, s.rps, s.tick, s.ticks = true, 2, 1, time.Minute, 1440
		}),
		with("errors ×2, 1,000 req/s", func(s *scenario) { s.effect, s.ratio, s.rps = true, 2, 1000 }),
		with("errors ×1.2, 1,000 req/s", func(s *scenario) { s.effect, s.ratio, s.rps = true, 1.2, 1000 }),
		with("latency +20% above p90", func(s *scenario) { s.effect, s.latency, s.slowdown = true, true, 0.2 }),
		with("latency +50% above p90", func(s *scenario) { s.effect, s.latency, s.slowdown = true, true, 0.5 }),
		with("A/A, latency with a gap, the tail from 2 min", func(s *scenario) {
			s.latency, s.gap = true, &latencyGap{from: 2 * time.Minute}
		}),
		with("latency tail ×3 beyond a gap, the tail from 2 min", func(s *scenario) {
			s.effect, s.latency, s.slowdown, s.gap = true, true, 2, &latencyGap{from: 2 * time.Minute}
		}),
	}
}
