package main

import (
	"math"
	"math/rand/v2"

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
	return 0.5 * math.Erfc(math.Log(x/latencyMedian)/(latencySigma*math.Sqrt2))
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
