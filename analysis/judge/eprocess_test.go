package judge

import (
	"math"
	"math/rand/v2"
	"testing"
)

func approx(a, b, tol float64) bool { return math.Abs(a-b) <= tol }

func TestRatioLikelihoodByHand(t *testing.T) {
	// One tick: nT=100, nC=900, eT=5, eC=10, null r0=1, alternative r=2.
	//   π(1) = 100/(100+900) = 0.1
	//   π(2) = 200/(200+900) = 0.181818...
	//   LR = (π(2)/π(1))^5 · ((1-π(2))/(1-π(1)))^10
	//      = 1.818182^5 · 0.909091^10 = 19.869482 · 0.385543 = 7.66055
	//   log LR = 2.03608
	l := ratioLikelihood(100, 900, 5, 10)
	if got := l.of(2) - l.of(1); !approx(got, 2.03608, 1e-5) {
		t.Errorf("log LR(2 vs 1) = %.6f, want 2.03608", got)
	}
}

func TestRateLikelihoodByHand(t *testing.T) {
	// Poisson: 20 errors in 1,000 requests, rate 2% against 1%:
	//   log LR = 20·ln(0.02/0.01) - 1000·(0.02-0.01) = 13.86294 - 10 = 3.86294
	l := rateLikelihood(1000, 20)
	if got := l.of(0.02) - l.of(0.01); !approx(got, 3.86294, 1e-5) {
		t.Errorf("log LR = %.6f, want 3.86294", got)
	}
}

func TestMixtureByHand(t *testing.T) {
	// The same tick as TestRatioLikelihoodByHand against the grid
	//   g = 1.05, 1.12, 1.25, 1.86, 2.74, 4.05, 6
	//   w = 0.075, 0.075, 0.17, 0.17, 0.17, 0.17, 0.17
	// with ρ = nT/nC = 1/9:
	//   log LR_j = 5·ln g_j - 15·ln((1+g_j/9)/(1+1/9))
	//            = 0.1691, 0.3877, 0.7453, 1.8654, 2.6335, 3.0005, 2.8768
	//   e-value = 0.075·(1.1843 + 1.4736) + 0.17·(2.1071 + 6.4583 + 13.923
	//             + 20.096 + 17.758) = 0.19934 + 10.2582 = 10.4575
	//   log e-value = 2.34733
	ev := newEvidence(1, false, false)
	ev.add(ratioLikelihood(100, 900, 5, 10))
	if got := ev.logE(1); !approx(got, 2.34733, 1e-4) {
		t.Errorf("log e-value = %.5f, want 2.34733", got)
	}
	// Tempered by φ = 2, every log LR is halved: log e-value 1.08663.
	if got := ev.logE(2); !approx(got, 1.08663, 1e-4) {
		t.Errorf("tempered log e-value = %.5f, want 1.08663", got)
	}
}

func TestTickCap(t *testing.T) {
	// 40 treatment errors against 1 control error at a 5% share: every
	// alternative from 1.12 up is far above the cap and adds exactly 4;
	// 1.05 adds 40·ln 1.05 − 41·ln((1+1.05ρ)/(1+ρ)) = 1.8492, ρ = 50/950.
	// log e = log(0.075·e^1.8492 + 0.925·e^4) = 3.93143.
	ev := newEvidence(1, false, false)
	ev.add(ratioLikelihood(50, 950, 40, 1))
	if got := ev.logE(1); !approx(got, 3.93143, 1e-5) {
		t.Errorf("log e-value = %v, want 3.93143", got)
	}
	for j, l := range ev.LogLR[1:] {
		if l != tickCap {
			t.Errorf("alternative %v added %v, want the cap %v", altFactors[j+1], l, tickCap)
		}
	}
}

func TestLowerIsWorseMirrors(t *testing.T) {
	// Swapping the cohorts mirrors the test: evidence that treatment's rate
	// is below 1/r of control's equals evidence that control's is above r
	// times treatment's.
	up := newEvidence(1, false, false)
	up.add(ratioLikelihood(100, 900, 30, 90)) // treatment 30%, control 10%
	down := newEvidence(1, true, false)
	down.add(ratioLikelihood(900, 100, 90, 30)) // treatment 10%, control 30%
	if a, b := up.logE(1), down.logE(1); !approx(a, b, 1e-9) || a <= 0 {
		t.Errorf("log e-values %v (higher-is-worse) and %v (mirrored) should match and be positive", a, b)
	}
}

func TestEmptyTicksCarryNoEvidence(t *testing.T) {
	for _, l := range []likelihood{
		ratioLikelihood(0, 100, 0, 3),
		ratioLikelihood(100, 0, 3, 0),
		ratioLikelihood(100, 100, 0, 0),
		rateLikelihood(0, 0),
	} {
		if l.ok {
			t.Errorf("an empty tick should give no likelihood")
		}
	}
	ev := newEvidence(1, false, true)
	ev.add(likelihood{})
	if ev.Ticks != 0 || !approx(ev.logE(1), 0, 1e-12) {
		t.Errorf("empty evidence: ticks %d, log e %v; want 0, 0", ev.Ticks, ev.logE(1))
	}
	if _, _, ok := ev.interval(1, 0.01); ok {
		t.Errorf("an interval without data should not exist")
	}
}

func TestEvidenceGrowsWhenEveryTreatmentRequestFails(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for run := range 200 {
		ev := newEvidence(1, false, false)
		prev := 0.0
		for k := range 30 {
			nT := float64(1 + r.IntN(200))
			nC := nT * (1 + 20*r.Float64()) // treatment share at most 50%
			eC := math.Floor(nC * 0.05 * r.Float64())
			ev.add(ratioLikelihood(nT, nC, nT, eC))
			got := ev.logE(1)
			if got < prev-1e-12 {
				t.Fatalf("run %d tick %d: log e-value fell from %v to %v with every treatment request failing", run, k, prev, got)
			}
			prev = got
		}
	}
}

func TestCalibrationUnderNull(t *testing.T) {
	// A/A: 200 seeded runs of 100 ticks, 50 treatment and 950 control
	// requests a tick at a 1% error rate. Ville's inequality bounds false
	// rejections by α = 1%; allow sampling noise up to 3%.
	const runs, ticks = 200, 100
	r := rand.New(rand.NewPCG(3, 4))
	bernoulli := func(n int, p float64) float64 {
		k := 0
		for range n {
			if r.Float64() < p {
				k++
			}
		}
		return float64(k)
	}
	rejected := 0
	for range runs {
		ev := newEvidence(1, false, false)
		for range ticks {
			ev.add(ratioLikelihood(50, 950, bernoulli(50, 0.01), bernoulli(950, 0.01)))
			if ev.logE(1) >= math.Log(100) {
				rejected++
				break
			}
		}
	}
	if rejected > runs*3/100 {
		t.Errorf("%d of %d A/A runs rejected at α = 1%%", rejected, runs)
	}
}

func TestIntervalCoversTruth(t *testing.T) {
	// 60 ticks at a true ratio of 2 (expected counts, no noise): the
	// interval must contain 2, exclude 1, and sit inside the grid.
	ev := newEvidence(1, false, true)
	for range 60 {
		ev.add(ratioLikelihood(100, 900, 2, 9))
	}
	lo, hi, ok := ev.interval(1, 0.01)
	if !ok || !(lo < 2 && 2 < hi) || lo <= 1 {
		t.Errorf("interval (%v, %v, %v): want it around 2 and above 1", lo, hi, ok)
	}
	// Tempering widens it.
	lo2, hi2, _ := ev.interval(4, 0.01)
	if !(lo2 < lo && hi2 > hi) {
		t.Errorf("tempered interval (%v, %v) should contain (%v, %v)", lo2, hi2, lo, hi)
	}
}

func TestLogSumExp(t *testing.T) {
	if got := logSumExp([]float64{1000, 1000}); !approx(got, 1000+math.Ln2, 1e-9) {
		t.Errorf("logSumExp overflowed: %v", got)
	}
	if got := logSumExp([]float64{math.Inf(-1)}); !math.IsInf(got, -1) {
		t.Errorf("logSumExp(-Inf) = %v", got)
	}
}

// TestIntervalCoversRatiosBetweenGridPoints: the interval is always valid
// for any true ratio, not only for the grid's. With much data the interval
// is narrower than the grid's steps (about 9%), so a true ratio halfway
// between two grid points is where a hull of grid points would miss it.
// Seeded runs of 200 looks at 1,000 treatment and 9,000 control requests
// each, 5% control errors: the truth must lie inside the 99% interval at
// every look in at least 99% of runs (sampling noise allowed: at most 2 of
// 100 runs).
func TestIntervalCoversRatiosBetweenGridPoints(t *testing.T) {
	const runs, ticks = 100, 200
	r := rand.New(rand.NewPCG(5, 6))
	// binomial draws from the normal approximation, ample at these counts.
	binomial := func(n, p float64) float64 {
		return math.Max(0, math.Round(n*p+math.Sqrt(n*p*(1-p))*r.NormFloat64()))
	}
	for _, between := range []int{intervalHalf + 3, intervalHalf + 5} {
		truth := math.Sqrt(intervalValue(between) * intervalValue(between+1))
		missed := 0
		for range runs {
			ev := newEvidence(1, false, true)
			for range ticks {
				ev.add(ratioLikelihood(1000, 9000, binomial(1000, 0.05*truth), binomial(9000, 0.05)))
				if lo, hi, ok := ev.interval(1, 0.01); ok && !(lo <= truth && truth <= hi) {
					missed++
					break
				}
			}
		}
		if missed > 2 {
			t.Errorf("true ratio %.4f (between grid points %.4f and %.4f): outside the interval at some look in %d of %d runs",
				truth, intervalValue(between), intervalValue(between+1), missed, runs)
		}
	}
}
