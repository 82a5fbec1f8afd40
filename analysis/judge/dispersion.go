package judge

import "math"

// minDispersionTicks is how many ticks with bad events (minDispersionTicks-1
// degrees of freedom) the tick-to-tick dispersion estimate needs. Before that
// φ is not known, and that is when a burst or two in treatment's first ticks
// looks most like a large effect. So a test holds any fail until it has an
// estimate (this many ticks, or enough unit buckets), then judges the held
// ticks under the estimate as well (see CheckState.holds and assess).
//
// With few degrees of freedom the estimate is often far below the truth
// (χ² on 2 degrees of freedom is below a quarter of its mean one time in
// five), and an estimate too low right when the hold ends rolled back
// healthy flags with bursty errors: 1.65% of A/A runs at 3 ticks, 1.00% at
// 6, in the judge benchmark's clustered scenario. The cost is a few looks
// for the largest effects, which could otherwise fail at the third.
const minDispersionTicks = 8

// minUnitBuckets is how many unit buckets (minUnitBuckets-1 degrees of
// freedom) the unit estimate needs before it is used.
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
//   - across the unit buckets the services label (unitDispersion), from the
//     cumulative counts of each: how far each cohort's buckets' rates stray
//     from that cohort's own rate. A unit's requests all fall in its
//     bucket, so a heavy unit shows as one bucket far off its cohort's rate,
//     and a cohort of few units as buckets that differ. The counts are
//     cumulative, so a unit that errs all rollout long makes φ grow as its
//     evidence does, and its evidence stops adding up: the number of units,
//     not of requests, bounds what the test learns. Each cohort is compared
//     with itself, so buckets that hold one cohort only (a handful of units)
//     count too, and the ramp and the baseline, which every bucket of a
//     cohort shares, add nothing.
//   - across looks (Dispersion), when they do not: the split of each look's
//     bad events around the ratio estimate. It sees bursts within a look
//     but not a unit that errs all along.

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
	// DOF is its degrees of freedom: the buckets with requests, less one
	// per cohort.
	DOF int `json:"dof"`
	// ChiSquare is the sum of the buckets' residuals.
	ChiSquare float64 `json:"chiSquare"`
}

// Known reports whether the buckets give the minUnitBuckets-1 degrees of
// freedom the estimate needs.
func (u UnitDispersion) Known() bool { return u.DOF >= minUnitBuckets-1 }

// Phi is the estimated over-dispersion, at least 1; it is 1 until the
// estimate is known.
func (u UnitDispersion) Phi() float64 {
	if !u.Known() {
		return 1
	}
	return max(1, u.ChiSquare/float64(u.DOF))
}

// upperPhi is the upper end of a one-sided 95% interval for φ: the χ²
// over its 5% quantile on DOF degrees of freedom (Wilson and Hilferty's
// approximation), at least 1; 1 until the estimate is known. On seven
// degrees of freedom it is 3.2 times the estimate.
func (u UnitDispersion) upperPhi() float64 {
	if !u.Known() {
		return 1
	}
	const z05 = -1.6448536269514722
	k := float64(u.DOF)
	c := 1 - 2/(9*k) + z05*math.Sqrt(2/(9*k))
	return max(1, u.ChiSquare/(k*c*c*c))
}

// unitDispersion estimates φ from per-bucket cumulative counts, t[b] and
// c[b] for bucket b: Pearson's χ² of each bucket's events against its
// requests times its cohort's rate, over both cohorts.
//
// The cohorts are pooled, not weighed apart: both are drawn from the same
// units, so their excess dispersion (requests per unit times how unevenly
// units err) is the same, and control's many units estimate it far better
// than a small treatment's few. With treatment's own estimate weighted by
// control's share of the events, treatment's handful of units at a low
// percent (one erring unit, its bucket also the busiest) read as barely
// dispersed, and 1.67% of 300 of the benchmark's A/A runs over 1,000
// mixed users rolled back; pooled, 0.33%. A heavy unit in control is
// evidence of dispersion treatment may have drawn too.
func unitDispersion(t, c []delta) UnitDispersion {
	var u UnitDispersion
	for _, cohort := range [][]delta{t, c} {
		var total delta
		buckets := 0
		for _, b := range cohort {
			if b.requests > 0 {
				total.requests += b.requests
				total.events += b.events
				buckets++
			}
		}
		p := total.events / total.requests
		if buckets < 2 || !(p > 0 && p < 1) {
			continue
		}
		for _, b := range cohort {
			if b.requests <= 0 {
				continue
			}
			d := b.events - b.requests*p
			r := d * d / (b.requests * p * (1 - p))
			if math.IsNaN(r) || math.IsInf(u.ChiSquare+r, 1) {
				return UnitDispersion{}
			}
			u.ChiSquare += r
		}
		u.DOF += buckets - 1
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
