package main

import (
	"math"
	"math/rand/v2"
	"time"

	"gonum.org/v1/gonum/stat/distuv"
)

// directDraws is the expected number of successes up to which binomial
// counts geometric gaps; above it, gonum's rejection sampler costs less.
const directDraws = 30

// binomial draws from Binomial(n, p) exactly: by counting geometric gaps
// between successes while n·min(p, 1-p) is small, whose cost grows with it,
// and by gonum's rejection sampler, of constant cost, above directDraws.
func binomial(r *rand.Rand, n int, p float64) int {
	switch {
	case n <= 0 || p <= 0:
		return 0
	case p >= 1:
		return n
	case p > 0.5:
		return n - binomial(r, n, 1-p)
	case float64(n)*p > directDraws:
		return int(distuv.Binomial{N: float64(n), P: p, Src: r}.Rand())
	}
	logQ := math.Log1p(-p)
	k, i := 0, 0
	for {
		i += geometricGap(r, logQ)
		if i > n {
			return k
		}
		k++
	}
}

// poisson draws from Poisson(mean) exactly (gonum: the direct method below
// a mean of 10, transformed rejection above it).
func poisson(r *rand.Rand, mean float64) int {
	if mean <= 0 {
		return 0
	}
	return int(distuv.Poisson{Lambda: mean, Src: r}.Rand())
}

// geometricGap draws the number of trials up to and including the first
// success, where logQ is the log of the failure probability.
func geometricGap(r *rand.Rand, logQ float64) int {
	return int(math.Log(1-r.Float64())/logQ) + 1
}

// badEvents draws the bad events of n requests at rate p per request. With
// cluster > 1 they come in bursts: each request starts a burst with
// probability p/cluster, and a burst's size is geometric with mean cluster,
// as with retries or one broken client. The variance of the count is then
// about (2·cluster-1) times its mean.
func badEvents(r *rand.Rand, n int, p, cluster float64) int {
	if cluster <= 1 {
		return binomial(r, n, p)
	}
	bursts := binomial(r, n, p/cluster)
	logQ := math.Log1p(-1 / cluster)
	total := 0
	for range bursts {
		total += geometricGap(r, logQ)
	}
	return min(total, n)
}

// Latency model: log-normal with a 100 ms median, σ = 0.5 (p95 ≈ 227 ms,
// p99 ≈ 320 ms), read through a histogram with OpenTelemetry's default
// bucket edges.
const (
	latencyMedian = 0.1
	latencySigma  = 0.5
)

var histogramEdges = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}

// survival is the share of control requests slower than x seconds.
func survival(x float64) float64 {
	return logNormalSurvival(x, latencyMedian, latencySigma)
}

// logNormalSurvival is the share of a log-normal's values above x.
func logNormalSurvival(x, median, sigma float64) float64 {
	return 0.5 * math.Erfc(math.Log(x/median)/(sigma*math.Sqrt2))
}

// controlQuantile is control's q-quantile in seconds.
func controlQuantile(q float64) float64 {
	return latencyMedian * math.Exp(latencySigma*math.Sqrt2*math.Erfinv(2*q-1))
}

// treatmentSurvival is the share of treatment requests slower than x when
// every request slower than control's p90 takes (1+slowdown) times as long.
func treatmentSurvival(x, slowdown float64) float64 {
	q90 := controlQuantile(0.9)
	if x <= q90 {
		return survival(x)
	}
	return survival(max(q90, x/(1+slowdown)))
}

// latencyGap is a latency model with a gap: most requests take a few
// milliseconds and gapTailShare of them about 420 ms (a slow dependency),
// so control has as many requests slower than 50 ms as than 250 ms, and
// under 1% slower than 500 ms. The tail begins at from; before it, every
// request is fast. Treatment's tail takes (1+slowdown) times as long.
//
// It is the end-to-end test's fleet, where the latency reads narrowed
// before the tail came once stalled at the gap's foot and never tested
// the p99 beyond it (docs/benchmarks.md).
type latencyGap struct {
	from time.Duration
}

// The gap model's fixed parts: the fast requests' and the tail's
// log-normals.
const (
	gapFastMedian = 0.005
	gapFastSigma  = 0.5
	gapTailMedian = 0.42
	gapTailSigma  = 0.136
	gapTailShare  = 0.08
)

// steady is a time after every change of a scenario's latencies: its
// steady state, the one the comparison judges are told of.
const steady = time.Duration(math.MaxInt64)

// latencyModel is a scenario's request durations: the share of control's
// and of treatment's requests slower than x seconds at a time since the
// start, and what the comparison judges are told of control's steady
// state (its p99).
type latencyModel struct {
	control, treatment func(x float64, at time.Duration) float64
	p99                float64
}

// durations is s's latency model: the log-normal above with treatment's
// requests slower than control's p90 stretched by s.slowdown, or s.gap's.
func (s scenario) durations() latencyModel {
	if s.gap == nil {
		return latencyModel{
			control:   func(x float64, _ time.Duration) float64 { return survival(x) },
			treatment: func(x float64, _ time.Duration) float64 { return treatmentSurvival(x, s.slowdown) },
			p99:       controlQuantile(0.99),
		}
	}
	from := s.gap.from
	surv := func(stretch float64) func(float64, time.Duration) float64 {
		return func(x float64, at time.Duration) float64 {
			fast := logNormalSurvival(x, gapFastMedian, gapFastSigma)
			if at < from {
				return fast
			}
			return (1-gapTailShare)*fast + gapTailShare*logNormalSurvival(x, gapTailMedian*stretch, gapTailSigma)
		}
	}
	m := latencyModel{control: surv(1), treatment: surv(1 + s.slowdown)}
	// Control's steady p99, by bisection on a log scale.
	lo, hi := 1e-4, 100.0
	for range 100 {
		mid := math.Sqrt(lo * hi)
		if m.control(mid, steady) > 0.01 {
			lo = mid
		} else {
			hi = mid
		}
	}
	m.p99 = hi
	return m
}

// p99Edge is the index of the histogram edge nearest m's steady p99 (by
// share slower, on a log scale).
func (m latencyModel) p99Edge() int {
	edge, best := 0, math.Inf(1)
	for i, e := range histogramEdges {
		if d := math.Abs(math.Log(m.control(e, steady) / 0.01)); d < best {
			edge, best = i, d
		}
	}
	return edge
}

// slowCounts draws how many of n requests are slower than each histogram
// edge, given the survival function: a chain of binomials from the lowest
// edge up.
func slowCounts(r *rand.Rand, n int, surv func(float64) float64) []int {
	out := make([]int, len(histogramEdges))
	above, prevS := n, 1.0
	for i, e := range histogramEdges {
		s := surv(e)
		if prevS > 0 {
			above = binomial(r, above, s/prevS)
		}
		out[i], prevS = above, s
	}
	return out
}
