package judge

import "math"

// The mixture e-process.
//
// For the null θ0 and an alternative θ1, the product over ticks of each
// tick's likelihood ratio is a test supermartingale under H0 (θ <= θ0)
// because the model is monotone in θ. The e-value is the equally weighted
// mixture of these products over a grid of alternatives fixed in advance,
// a supermartingale too, so by Ville's inequality it reaches 1/α under H0
// with probability at most α however often it is looked at. Evidence keeps
// the running log of each product.
//
// The confidence interval needs every null, not just θ0: for it Evidence
// keeps the cumulative log-likelihood L(θ) on a fixed grid of θ, from which
// any null's and alternative's ratio is a difference, exp(L(θ1)-L(θ0)).

// Mixture grid: the alternatives are θ0·g (θ0/g for lower-is-worse) for the
// factors g below, weighted. Most weight sits on the coarse geometric grid
// from 1.25 to 6 that the judge benchmark (docs/judge-benchmark.md) chose:
// a coarse grid pays less for the mixture (the log of its weight) than a
// fine one loses by missing the true effect, and effects beyond 6 are caught
// at 6 within a few ticks anyway. The two points just above the tolerance
// carry a small weight so that harm there is detectable at all, which a grid
// starting at 1.25 is not below about 1.12; they cost the large effects
// little (log(1/0.85) in evidence).
var (
	altFactors = [...]float64{1.05, 1.12, 1.25, 1.86, 2.74, 4.05, 6}
	altWeights = [...]float64{0.075, 0.075, 0.17, 0.17, 0.17, 0.17, 0.17}
)

// altCount is the number of alternatives.
const altCount = len(altFactors)

// tickCap bounds the log-likelihood ratio one tick can add to an
// alternative. A burst of errors in one tick (retries, one broken client)
// then cannot roll back on its own before control has shown how bursty the
// count is. Capping a supermartingale's factors from above keeps it a
// supermartingale, so the test stays valid; the cost is one more tick for
// the largest effects.
const tickCap = 4

// Interval grid: θ = 2^(i/intervalPerOctave) for |i| <= intervalHalf, that is
// 1/256 to 256 in steps of about 9%. A two-sided mixture at each grid null
// uses the neighbours up to a factor of about 10 either side.
const (
	intervalPerOctave = 8
	intervalHalf      = 64
	intervalSpan      = 27
)

// intervalValue is the parameter at index i of the interval grid.
func intervalValue(i int) float64 {
	return math.Exp2(float64(i-intervalHalf) / intervalPerOctave)
}

// intervalGrid holds each interval grid point θ with its logarithm, which
// every tick's update evaluates the likelihood at: computed once, not at
// every point of every tick.
var intervalGrid = func() (g [2*intervalHalf + 1]struct{ theta, log float64 }) {
	for i := range g {
		g[i].theta = intervalValue(i)
		g[i].log = math.Log(g[i].theta)
	}
	return g
}()

// likelihood is one tick's log-likelihood of a parameter θ, up to a term
// that does not depend on θ: e·log θ − m·log(1+θ·ρ) for the ratio model
// (ρ > 0), e·log θ − n·θ for the rate model (ρ = 0). ok is false when the
// tick carries no information about θ.
type likelihood struct {
	e, m, rho, n float64
	ok           bool
}

// at is the log-likelihood at θ, given log θ too.
func (l likelihood) at(theta, logTheta float64) float64 {
	if l.rho > 0 {
		return l.e*logTheta - l.m*math.Log1p(theta*l.rho)
	}
	return l.e*logTheta - l.n*theta
}

// of is the log-likelihood at θ.
func (l likelihood) of(theta float64) float64 { return l.at(theta, math.Log(theta)) }

// ratioLikelihood is the conditional binomial of treatment's bad events given
// both cohorts' bad events, when treatment's rate is θ times control's:
// e_T ~ Binomial(e_T+e_C, π) with π = θ·n_T/(θ·n_T+n_C). The baseline rate
// cancels, so a drifting baseline or a changing treatment share cannot bias
// it. (log π = log θ + log ρ − log(1+θρ) and log(1−π) = −log(1+θρ) with
// ρ = n_T/n_C; the e_T·log ρ term does not depend on θ and is dropped.)
func ratioLikelihood(nT, nC, eT, eC float64) likelihood {
	m := eT + eC
	if nT <= 0 || nC <= 0 || m <= 0 {
		return likelihood{}
	}
	return likelihood{e: eT, m: m, rho: nT / nC, ok: true}
}

// rateLikelihood is the Poisson log-likelihood of e bad events in n requests
// at rate θ per request. Its likelihood ratio is a supermartingale under
// H0: rate <= θ0 for binomial counts as well, since a binomial is less
// dispersed than a Poisson of the same mean. It carries nothing for an
// empty tick.
func rateLikelihood(n, e float64) likelihood {
	if n <= 0 {
		return likelihood{}
	}
	return likelihood{e: e, n: n, ok: true}
}

// Evidence is the running state of one mixture e-process: the log
// likelihood ratio of each alternative against the null, and the cumulative
// log-likelihood on the interval grid. It is plain data so that it survives
// a JSON round trip.
type Evidence struct {
	// Null is θ0, the tolerated ratio (or, for an absolute bound, rate).
	Null float64 `json:"null"`
	// Below is set when harm means θ below Null (lower-is-worse metrics).
	Below bool `json:"below,omitempty"`
	// LogLR[j] is the running sum over ticks of the log-likelihood ratio of
	// alternative j against Null, each tick's term capped at tickCap.
	LogLR []float64 `json:"logLR"`
	// Interval is the cumulative log-likelihood (uncapped) on the interval
	// grid; nil for tests that report no confidence interval.
	Interval []float64 `json:"interval,omitempty"`
	// Ticks counts the ticks that carried information.
	Ticks int `json:"ticks"`
}

// newEvidence starts an e-process for H0: θ <= null (θ >= null if below),
// with an interval grid when withInterval is set.
func newEvidence(null float64, below, withInterval bool) Evidence {
	ev := Evidence{Null: null, Below: below, LogLR: make([]float64, altCount)}
	if withInterval {
		ev.Interval = make([]float64, 2*intervalHalf+1)
	}
	return ev
}

// clone returns a deep copy, so that judging stays a pure function of its
// inputs.
func (ev Evidence) clone() Evidence {
	ev.LogLR = append([]float64(nil), ev.LogLR...)
	if ev.Interval != nil {
		ev.Interval = append([]float64(nil), ev.Interval...)
	}
	return ev
}

// alternative is the parameter at grid factor g.
func (ev Evidence) alternative(g float64) float64 {
	if ev.Below {
		return ev.Null / g
	}
	return ev.Null * g
}

// add folds one tick's likelihood into the running sums.
func (ev *Evidence) add(l likelihood) {
	if !l.ok {
		return
	}
	l0 := l.of(ev.Null)
	for j, g := range altFactors {
		ev.LogLR[j] += min(l.of(ev.alternative(g))-l0, tickCap)
	}
	if len(ev.Interval) == len(intervalGrid) {
		for i, p := range intervalGrid {
			ev.Interval[i] += l.at(p.theta, p.log)
		}
	}
	ev.Ticks++
}

// logE is the log of the mixture e-value with the evidence tempered by
// 1/phi (phi >= 1 is the estimated over-dispersion).
func (ev Evidence) logE(phi float64) float64 {
	if len(ev.LogLR) != altCount {
		return 0
	}
	var terms [altCount]float64
	for j := range terms {
		terms[j] = ev.LogLR[j]/phi + math.Log(altWeights[j])
	}
	return logSumExp(terms[:])
}

// interval returns the always-valid (1-alpha) confidence interval for θ: the
// grid values that a two-sided mixture, tempered by 1/phi, has not rejected,
// widened by one grid step each side. Ends beyond the grid are clamped to
// it. ok is false when there is no interval grid or no information yet.
func (ev Evidence) interval(phi, alpha float64) (lo, hi float64, ok bool) {
	n := len(ev.Interval)
	if n != 2*intervalHalf+1 || ev.Ticks == 0 {
		return 0, 0, false
	}
	// The two-sided e-value at grid null i is
	//   M(i) = w · Σ_{0<|m|<=span} exp((L(i+m) - L(i))/phi),  w = 1/(2·span).
	// L is concave in log θ, so the nulls not rejected are a run of grid
	// points around L's peak, which is never rejected (every term is at
	// most 1 there, so M < 1). Each end is found by walking out from the
	// peak to the first rejected null. With a(j) = exp((L(j) - L(peak))/phi)
	// computed once, M(i) = w · Σ a(i+m) / a(i): a sum of positive terms
	// that loses nothing small (prefix sums over a would, by cancelling),
	// at one exponential per grid point instead of one per term. a(i)
	// underflows only some 700 nats below the peak, far past any rejection.
	peak := ev.peak()
	var a [2*intervalHalf + 1]float64
	for j, v := range ev.Interval {
		a[j] = math.Exp((v - ev.Interval[peak]) / phi)
	}
	rejected := func(i int) bool {
		if a[i] == 0 {
			return true
		}
		var m float64
		for j := max(0, i-intervalSpan); j <= min(n-1, i+intervalSpan); j++ {
			if j != i {
				m += a[j]
			}
		}
		return m/a[i]/(2*intervalSpan) >= 1/alpha
	}
	first, last := peak, peak
	for first > 0 && !rejected(first-1) {
		first--
	}
	for last < n-1 && !rejected(last+1) {
		last++
	}
	// The test covers every θ, not only the grid's: a θ between the last
	// rejected and the first accepted grid point may be accepted, so the
	// interval reaches to the rejected neighbours. Without this, a true
	// ratio between grid points was outside the interval at some look in
	// about 70% of runs once the interval was narrower than the grid's
	// steps (TestIntervalCoversRatiosBetweenGridPoints).
	return intervalValue(max(first-1, 0)), intervalValue(min(last+1, n-1)), true
}

// peak is the index of the interval grid's most likely θ.
func (ev Evidence) peak() int {
	peak := 0
	for i, v := range ev.Interval {
		if v > ev.Interval[peak] {
			peak = i
		}
	}
	return peak
}

// estimate is the ratio the evidence finds most likely: the peak of the
// cumulative log-likelihood on the interval grid, placed between its
// neighbours by the parabola through the three in log θ. Each look's split
// is weighed under that look's own share and baseline, so, unlike the ratio
// of the cohorts' rates since the rollout began, the estimate is not
// confounded by traffic or load that change with the steps (treatment's
// requests fall mostly in the later, larger steps), and it lies within the
// interval. ok is false when there is no interval grid or no information.
func (ev Evidence) estimate() (float64, bool) {
	n := len(ev.Interval)
	if n != 2*intervalHalf+1 || ev.Ticks == 0 {
		return 0, false
	}
	peak := ev.peak()
	x := float64(peak)
	if peak > 0 && peak < n-1 {
		l, c, r := ev.Interval[peak-1], ev.Interval[peak], ev.Interval[peak+1]
		if d := l - 2*c + r; d < 0 {
			x += (l - r) / (2 * d)
		}
	}
	return math.Exp2((x - intervalHalf) / intervalPerOctave), true
}

// logSumExp is log Σ exp(x_i), computed without overflow.
func logSumExp(xs []float64) float64 {
	top := math.Inf(-1)
	for _, x := range xs {
		top = max(top, x)
	}
	if math.IsInf(top, -1) {
		return top
	}
	var s float64
	for _, x := range xs {
		s += math.Exp(x - top)
	}
	return top + math.Log(s)
}
