package judge

import "math"

// minDispersionTicks is how many ticks with bad events (minDispersionTicks-1
// degrees of freedom) the tick-to-tick dispersion estimate needs. Before that
// φ is not known, and that is when a burst or two in treatment's first ticks
// looks most like a large effect. So a test holds any fail until it has an
// estimate (this many ticks, or enough unit buckets), then judges the held
// ticks under the estimate as well (see CheckState.holds and assess).
const minDispersionTicks = 3

// minUnitBuckets is how many unit buckets with bad events the unit estimate
// needs (minUnitBuckets-1 degrees of freedom) before it is used.
const minUnitBuckets = 4

// The judge's test counts requests, but requests are not independent: bad
// events cluster by unit (a bot, a retrying client, a customer with broken
// data) and in bursts. Clustering makes the variance of how bad events split
// between treatment and control about φ times the binomial variance the test
// assumes, and the test then over-states its evidence by about φ. The judge
// divides its log-evidence and widens its interval by an estimate of φ.
// Tempering is a heuristic, not a proof; the judge benchmark measures it.
//
// φ is estimated from the split itself, never from one cohort over time: an
// outage or a daily swing that hits both cohorts alike moves the split's
// expectation with it and adds nothing. Given m bad events in a span where
// treatment served nT requests and control nC, treatment's share of them is
// binomial with π(θ) = θ·nT/(θ·nT+nC) for independent requests. Pearson's
// residual (eT − m·π)²/(m·π·(1−π)) has mean 1 then and φ under clustering;
// θ is the ratio estimated from all counts so far.
//
// There are two estimates:
//   - across unit buckets (unitDispersion), from the cumulative counts per
//     bucket, when the services label them. A unit's requests all fall in
//     its bucket, so a heavy unit shows as one bucket far off the common
//     split. The counts are cumulative, so a unit that errs all rollout long
//     makes φ grow as its evidence does, and its evidence stops adding up:
//     the number of units, not of requests, bounds what the test learns.
//   - across ticks (Dispersion), when they do not: it sees bursts within a
//     tick but not a unit that errs all along.

// Dispersion accumulates Pearson's residuals of the split over ticks.
type Dispersion struct {
	// Ticks counts the ticks with bad events in either cohort.
	Ticks int `json:"ticks"`
	// ChiSquare is the sum of their residuals.
	ChiSquare float64 `json:"chiSquare"`
}

// add records one tick's split at the ratio estimate theta.
func (d *Dispersion) add(t, c delta, theta float64) {
	if r, ok := splitResidual(t, c, theta); ok && !math.IsInf(d.ChiSquare+r, 1) {
		d.Ticks++
		d.ChiSquare += r
	}
}

// Known reports whether there are the minDispersionTicks ticks the estimate
// needs.
func (d Dispersion) Known() bool { return d.Ticks >= minDispersionTicks }

// Phi is the estimated over-dispersion, at least 1; it is 1 until the
// estimate is known.
func (d Dispersion) Phi() float64 {
	if !d.Known() {
		return 1
	}
	return max(1, d.ChiSquare/float64(d.Ticks-1))
}

// UnitDispersion is the estimate across unit buckets at the last look.
type UnitDispersion struct {
	// Buckets counts the unit buckets with bad events and requests in both
	// cohorts.
	Buckets int `json:"buckets"`
	// ChiSquare is the sum of their residuals.
	ChiSquare float64 `json:"chiSquare"`
}

// Known reports whether enough buckets carry bad events.
func (u UnitDispersion) Known() bool { return u.Buckets >= minUnitBuckets }

// Phi is the estimated over-dispersion, at least 1; it is 1 until the
// estimate is known.
func (u UnitDispersion) Phi() float64 {
	if !u.Known() {
		return 1
	}
	return max(1, u.ChiSquare/float64(u.Buckets-1))
}

// unitDispersion estimates φ from per-bucket cumulative counts, t[b] and
// c[b] for bucket b, around the ratio of their totals. Every bucket sees the
// same ramp and the same baseline over time, so the common ratio is the
// right centre even while the treatment share and the baseline change.
func unitDispersion(t, c []delta) UnitDispersion {
	var tt, ct delta
	for b := range t {
		tt.requests += t[b].requests
		tt.events += t[b].events
		ct.requests += c[b].requests
		ct.events += c[b].events
	}
	theta := ratioEstimate(tt, ct)
	var u UnitDispersion
	for b := range t {
		if r, ok := splitResidual(t[b], c[b], theta); ok && !math.IsInf(u.ChiSquare+r, 1) {
			u.Buckets++
			u.ChiSquare += r
		}
	}
	return u
}

// ratioEstimate is treatment's rate over control's, with half an event added
// to each so that a cohort without events still gives a finite, positive
// estimate.
func ratioEstimate(t, c delta) float64 {
	if t.requests <= 0 || c.requests <= 0 {
		return 1
	}
	return ((t.events + 0.5) / t.requests) / ((c.events + 0.5) / c.requests)
}

// splitResidual is Pearson's residual of treatment's share of the bad events
// at ratio theta; ok is false when the span carries no information.
func splitResidual(t, c delta, theta float64) (float64, bool) {
	m := t.events + c.events
	if t.requests <= 0 || c.requests <= 0 || m <= 0 || !(theta > 0) || math.IsInf(theta, 0) {
		return 0, false
	}
	pi := theta * t.requests / (theta*t.requests + c.requests)
	v := m * pi * (1 - pi)
	if !(v > 0) {
		return 0, false
	}
	d := t.events - m*pi
	r := d * d / v
	if math.IsNaN(r) || math.IsInf(r, 0) {
		return 0, false // counts too large to weigh
	}
	return r, true
}
