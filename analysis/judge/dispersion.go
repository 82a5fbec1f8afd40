package judge

import "math"

// dispersionShrink subtracts this many standard errors of χ²/dof (about
// sqrt(2/dof) without over-dispersion) from the estimate, so that noise alone
// seldom tempers the evidence of a well-behaved count.
const dispersionShrink = 1

// minDispersionTicks is how many control ticks (minDispersionTicks-1
// degrees of freedom) the dispersion estimate needs. Before that φ is not
// known to be 1, it is not known at all, and that is when a burst or two in
// treatment's first ticks looks most like a large effect: the judge
// benchmark's false rollbacks under clustered errors came mostly from the
// second tick, judged as if φ were 1. So a test holds any fail until
// control has this many ticks, then judges the held ticks under the
// estimate as well (see CheckState.holds and assess). Two degrees of
// freedom are the fewest that give more than a single squared difference;
// each further tick would delay the rollback of every large effect by a
// tick, and the estimate keeps improving as ticks come in anyway.
const minDispersionTicks = 3

// Dispersion estimates over-dispersion of one count (errors, slow requests,
// custom events) from control's own tick-to-tick variation.
//
// Bursts of bad events (retries, one broken client, batch jobs) make the
// variance of a tick's count about φ times its mean, with φ > 1, and every
// binomial or Poisson test then over-states its evidence by about φ. Control
// is not touched by the rollout, so its variation around its own pooled rate
// measures φ: Pearson's χ² = Σ_k (e_k - n_k·p̂)² / (n_k·p̂) with p̂ = Σe/Σn,
// divided by its K-1 degrees of freedom and clamped at 1. The judge divides
// log-evidence by it. Tempering is a heuristic, not a proof; the judge
// benchmark measures what it buys. A drifting baseline also raises the
// estimate, which only makes the test more cautious.
//
// The sufficient statistics are kept, since
// χ² = (Σ e_k²/n_k)/p̂ - Σ e_k.
type Dispersion struct {
	// Ticks counts control ticks with requests.
	Ticks int `json:"ticks"`
	// Events is Σ e_k.
	Events float64 `json:"events"`
	// Requests is Σ n_k.
	Requests float64 `json:"requests"`
	// SquaresPerRequest is Σ e_k²/n_k.
	SquaresPerRequest float64 `json:"squaresPerRequest"`
}

// add records one control tick of n requests with e bad events.
func (d *Dispersion) add(n, e float64) {
	if n <= 0 || e < 0 {
		return
	}
	d.Ticks++
	d.Events += e
	d.Requests += n
	d.SquaresPerRequest += e * e / n
}

// Known reports whether control has had the minDispersionTicks ticks the
// estimate needs; before that the judge holds any fail.
func (d Dispersion) Known() bool { return d.Ticks >= minDispersionTicks }

// Phi is the estimated over-dispersion factor, at least 1; it is 1 until
// there are minDispersionTicks control ticks, while the judge holds fails,
// and when control has had no events.
func (d Dispersion) Phi() float64 {
	if d.Ticks < minDispersionTicks || d.Events <= 0 {
		return 1
	}
	p := d.Events / d.Requests
	dof := float64(d.Ticks - 1)
	chi2 := d.SquaresPerRequest/p - d.Events
	return max(1, chi2/dof-dispersionShrink*math.Sqrt(2/dof))
}
