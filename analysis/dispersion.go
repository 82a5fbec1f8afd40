package analysis

import "math"

// dispersionShrink subtracts this many standard errors of χ²/dof (about
// sqrt(2/dof) without over-dispersion) from the estimate, so that noise alone
// seldom tempers the evidence of a well-behaved count.
const dispersionShrink = 1

// minDispersionTicks is how many control ticks the dispersion estimate needs
// before it departs from 1: with fewer, Pearson's statistic is mostly noise.
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

// Phi is the estimated over-dispersion factor, at least 1; it stays 1 until
// there are minDispersionTicks control ticks with events.
func (d Dispersion) Phi() float64 {
	if d.Ticks < minDispersionTicks || d.Events <= 0 {
		return 1
	}
	p := d.Events / d.Requests
	dof := float64(d.Ticks - 1)
	chi2 := d.SquaresPerRequest/p - d.Events
	return max(1, chi2/dof-dispersionShrink*math.Sqrt(2/dof))
}
