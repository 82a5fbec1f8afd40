package judge

import (
	"math"
	"strings"
	"testing"
	"time"
)

// harmBounded is the error-rate check with a tolerance of 1.2 and a harm
// bound of 1.5, as the default plan sets them.
var harmBounded = Config{Metrics: []MetricConfig{{Name: "error-rate", Kind: KindErrorRate, Tolerance: 1.2, MaxRatio: 1.5}}}

func TestPassNeedsTheIntervalBelowTheHarmBound(t *testing.T) {
	// Equal rates, 1,000 requests and 10 errors a cohort a look: early on
	// nothing points to harm, but the interval still reaches past 1.5, so
	// the check holds; once it lies below 1.5 the check passes.
	_, vs := judgeAll(t, harmBounded, steady(60, 1000, 10, 1000, 10), StepProgress{})
	first := vs[minDispersionTicks-1].Checks[0]
	if first.Outcome != Inconclusive || !strings.Contains(first.Reason, "not yet below the harm bound 1.5") || first.HarmBound != 1.5 {
		t.Errorf("look 8: %s %q (harm bound %v); want inconclusive, interval not yet below 1.5", first.Outcome, first.Reason, first.HarmBound)
	}
	last := vs[len(vs)-1].Checks[0]
	if last.Outcome != Pass || !(last.CIHigh < 1.5) {
		t.Errorf("look 60: %s, interval %v to %v; want pass with the interval below 1.5 (%s)", last.Outcome, last.CILow, last.CIHigh, last.Explanation)
	}
	passed := -1
	for i, v := range vs {
		if c := v.Checks[0]; c.Outcome == Pass && passed < 0 {
			passed = i
		}
		if c := v.Checks[0]; c.Outcome == Pass && !(c.CIHigh < 1.5) {
			t.Errorf("look %d passed beside an interval up to %v", i+1, c.CIHigh)
		}
	}
	if passed < 0 {
		t.Fatal("never passed")
	}
}

func TestHarmBoundHoldsA1_5Regression(t *testing.T) {
	// Treatment at 1.5 times control never shows an interval below 1.5:
	// the check holds or fails, and never passes.
	_, vs := judgeAll(t, harmBounded, steady(200, 1000, 15, 1000, 10), StepProgress{})
	for i, v := range vs {
		if v.Outcome == Pass {
			t.Fatalf("look %d passed a 1.5× regression: %s", i+1, v.Explanation)
		}
	}
	if vs[len(vs)-1].Outcome != Fail {
		t.Errorf("after 200 looks: %s, want fail", vs[len(vs)-1].Outcome)
	}
}

func TestPracticalFloor(t *testing.T) {
	// Control at 0.01%, treatment at 0.02%: twice the rate, but 0.01
	// percentage points apart. With a floor of 0.1 points the ratio at
	// which the difference reaches the floor is 1 + 0.001/0.0001 = 11:
	// the check does not fail, and passes once its interval lies below 11
	// even though the harm bound of 1.5 is far from reached.
	cfg := Config{Metrics: []MetricConfig{{Name: "error-rate", Kind: KindErrorRate, Tolerance: 1.2, MaxRatio: 1.5, MinDifference: 0.001}}}
	_, vs := judgeAll(t, cfg, steady(40, 100000, 20, 100000, 10), StepProgress{})
	last := vs[len(vs)-1].Checks[0]
	if last.Outcome != Pass || !approx(last.FloorRatio, 11, 1e-9) || !(last.CILow > 1.2) {
		t.Errorf("%s, floor ratio %v, interval %v to %v; want pass at floor ratio 11 beside an interval above the tolerance (%s)",
			last.Outcome, last.FloorRatio, last.CILow, last.CIHigh, last.Explanation)
	}
	// Without the floor the same counts fail.
	cfg.Metrics[0].MinDifference = 0
	_, vs = judgeAll(t, cfg, steady(40, 100000, 20, 100000, 10), StepProgress{})
	if got := vs[len(vs)-1].Outcome; got != Fail {
		t.Errorf("without a floor: %s, want fail", got)
	}
}

func TestLatencyFloorReadsControlsHistogram(t *testing.T) {
	// Control: 1,000 requests, 100 slower than 40 ms, 50 slower than 50 ms.
	// A 5 ms floor at the 50 ms edge: slower than 45 ms interpolates to 75,
	// so the floor is 25 extra requests in 1,000 (a difference of 0.025)
	// over control's 50.
	ctl := CohortSnapshot{Requests: 1000, Slower: []EdgeCount{{0.04, 100}, {0.05, 50}}}
	m := MetricConfig{Kind: KindLatency, MinSlowdown: 5 * time.Millisecond}
	if got := floorDifference(m, newCohortEvidence(1000, 50), ctl, 0.05); !approx(got, 0.025, 1e-12) {
		t.Errorf("floor difference %v, want 0.025", got)
	}
	// Below the first edge, every request counts as slower than 0.
	if got := slowerAt(ctl, 0.02); !approx(got, 550, 1e-9) {
		t.Errorf("slower than 20 ms: %v, want 550 (halfway from 1,000 at 0 to 100 at 40 ms)", got)
	}
}

func TestSampleRatioMismatchHolds(t *testing.T) {
	// Counts pushed alike for both cohorts while the flag sends 1% to
	// treatment: once the step has settled, the check finds the mismatch
	// and no step passes, though the cohorts look identical.
	step := StepProgress{Percent: 1, Elapsed: 10 * time.Minute}
	_, vs := judgeAll(t, errorRate, steady(10, 1000, 10, 1000, 10), step)
	v := vs[len(vs)-1]
	if v.SampleRatio == nil || !v.SampleRatio.Mismatch || v.Outcome != Inconclusive ||
		!strings.Contains(v.Explanation, "sample ratio mismatch") || !approx(v.SampleRatio.Observed, 0.5, 1e-9) {
		t.Fatalf("outcome %s, split %+v; want inconclusive on a mismatch at 50%% observed", v.Outcome, v.SampleRatio)
	}
	// The split the flag makes is no mismatch.
	step.Percent = 10
	_, vs = judgeAll(t, errorRate, steady(10, 1000, 10, 9000, 90), step)
	if v := vs[len(vs)-1]; v.SampleRatio == nil || v.SampleRatio.Mismatch || v.Outcome != Pass {
		t.Errorf("10%% split at 10%%: outcome %s, split %+v; want pass, no mismatch", v.Outcome, v.SampleRatio)
	}
	// Looks right after a change of percent are left out, and until one
	// is counted no step passes.
	step.Elapsed = time.Minute
	_, vs = judgeAll(t, errorRate, steady(10, 1000, 10, 9000, 90), step)
	if v := vs[len(vs)-1]; v.SampleRatio == nil || v.SampleRatio.Checked || v.SampleRatio.Requests.Treatment != 0 ||
		v.Outcome != Inconclusive || !strings.Contains(v.Explanation, "not checked yet") {
		t.Errorf("unsettled step: %s, split %+v; want inconclusive with nothing counted", v.Outcome, v.SampleRatio)
	}
	// The step says when its looks settle.
	step.SplitSettle = 30 * time.Second
	_, vs = judgeAll(t, errorRate, steady(10, 1000, 10, 9000, 90), step)
	if v := vs[len(vs)-1]; v.Outcome != Pass || !v.SampleRatio.Checked {
		t.Errorf("settled after 30 s: %s, split %+v; want pass, checked", v.Outcome, v.SampleRatio)
	}
}

// TestSampleRatioMismatchNamesItsPeak checks that a mismatch found at early
// looks still holds once the split is back to the flag's, and that its
// line gives the e-value that found it, not only today's lower one.
func TestSampleRatioMismatchNamesItsPeak(t *testing.T) {
	step := StepProgress{Percent: 1, Elapsed: 10 * time.Minute}
	obs := steady(10, 1000, 10, 1000, 10) // half to treatment at 1%
	last := obs[len(obs)-1]
	for _, o := range steady(300, 100, 1, 9900, 99) {
		obs = append(obs, errorCounts(last.Treatment.Requests+o.Treatment.Requests, last.Treatment.Errors+o.Treatment.Errors,
			last.Control.Requests+o.Control.Requests, last.Control.Errors+o.Control.Errors))
	}
	_, vs := judgeAll(t, errorRate, obs, step)
	v := vs[len(vs)-1].SampleRatio
	if v == nil || !v.Mismatch || v.EValue >= v.Threshold {
		t.Fatalf("split %+v; want a mismatch held with the e-value now below its threshold", v)
	}
	if !strings.Contains(v.Explanation, ", down from ") {
		t.Errorf("explanation %q does not give the e-value that found the mismatch", v.Explanation)
	}
	if first := vs[9].SampleRatio; !first.Mismatch || strings.Contains(first.Explanation, "down from") {
		t.Errorf("at the look that found it: %q; want the mismatch, with no peak above today's e-value", first.Explanation)
	}
}

// TestSampleRatioDispersionNeverFalls checks the floor under the share's
// over-dispersion: once buckets have shown it, a look whose buckets agree
// (as a noisy estimate's does by chance) does not untemper the evidence.
func TestSampleRatioDispersionNeverFalls(t *testing.T) {
	buckets := func(t0, t1 float64) FlagCounts {
		var c FlagCounts
		for b := range 8 {
			nT := t0
			if b%2 == 1 {
				nT = t1
			}
			c.Treatment.UnitBuckets = append(c.Treatment.UnitBuckets, CohortCounts{Requests: nT})
			c.Control.UnitBuckets = append(c.Control.UnitBuckets, CohortCounts{Requests: 500 - nT})
		}
		return c
	}
	var s SampleRatioState
	// Shares of 10% and 6% in alternate buckets of 500 requests, 8%
	// pooled: each bucket's residual is 10²/(500·0.08·0.92) = 2.717, and
	// χ² = 21.74 on 7 degrees of freedom gives 3.106. The looks' estimate
	// is not known yet, so the buckets' upper bound tempers.
	first := s.phi(buckets(50, 30))
	if !approx(s.PhiFloor, 21.739/7, 1e-3) || first <= s.PhiFloor {
		t.Fatalf("first look: φ %v, floor %v; want the upper bound above a floor of 3.106", first, s.PhiFloor)
	}
	// Every bucket at the pooled share, and looks that show nothing.
	s.Dispersion = Dispersion{Ticks: minDispersionTicks, ChiSquare: minDispersionTicks - 1}
	if got := s.phi(buckets(40, 40)); !approx(got, 21.739/7, 1e-3) {
		t.Errorf("a look whose buckets agree: φ %v, want the floor 3.106 the earlier look showed", got)
	}
}

// withUnits spreads cumulative counts over 8 unit buckets evenly and adds
// heavy errors to treatment's bucket 0.
func withUnits(c FlagCounts, heavy float64) FlagCounts {
	split := func(cc CohortCounts, extra float64) CohortCounts {
		cc.UnitBuckets = make([]CohortCounts, 8)
		for b := range cc.UnitBuckets {
			cc.UnitBuckets[b] = CohortCounts{Requests: cc.Requests / 8, Errors: cc.Errors / 8}
		}
		cc.UnitBuckets[0].Errors += extra
		cc.Errors += extra
		return cc
	}
	c.Treatment = split(c.Treatment, heavy)
	c.Control = split(c.Control, 0)
	return c
}

func TestAHeavyUnitIsNotARegression(t *testing.T) {
	// One unit in treatment errs 20 times a look; everyone else errs at 1%
	// in both cohorts. Counted by request, treatment's rate is 3 times
	// control's and the judge fails; counted by unit bucket, all of the
	// excess sits in one bucket, and it does not.
	var plain, units []FlagCounts
	for i := 1; i <= 30; i++ {
		f := float64(i)
		c := errorCounts(1000*f, 10*f, 19000*f, 190*f)
		u := withUnits(c, 20*f)
		plain = append(plain, u)
		plain[i-1].Treatment.UnitBuckets, plain[i-1].Control.UnitBuckets = nil, nil
		units = append(units, u)
	}
	if _, vs := judgeAll(t, errorRate, plain, StepProgress{}); vs[len(vs)-1].Outcome != Fail {
		t.Errorf("without unit buckets: %s, want fail", vs[len(vs)-1].Outcome)
	}
	_, vs := judgeAll(t, errorRate, units, StepProgress{})
	for i, v := range vs {
		if v.Outcome == Fail {
			t.Fatalf("look %d failed on one heavy unit: %s", i+1, v.Explanation)
		}
	}
	if phi := vs[len(vs)-1].Checks[0].Dispersion; phi < 10 {
		t.Errorf("dispersion %v, want the heavy unit to show (above 10)", phi)
	}
}

func TestAFloorLetsACleanServicePass(t *testing.T) {
	// Neither cohort has errors, so no ratio can be bounded. With a floor
	// of 0.05 percentage points the check passes once treatment's rate is
	// shown below it: log(100)/n < 0.0005, so n above 9,210 requests.
	cfg := Config{Metrics: []MetricConfig{{Name: "error-rate", Kind: KindErrorRate, Tolerance: 1.2, MaxRatio: 1.5, MinDifference: 0.0005}}}
	_, vs := judgeAll(t, cfg, steady(20, 1000, 0, 9000, 0), StepProgress{})
	for i, v := range vs {
		want := Inconclusive
		if float64(i+1)*1000 > 9210 {
			want = Pass
		}
		if v.Outcome != want {
			t.Errorf("look %d, %d treatment requests: %s, want %s (%s)", i+1, (i+1)*1000, v.Outcome, want, v.Explanation)
		}
	}
	// Without the floor it never passes.
	cfg.Metrics[0].MinDifference = 0
	_, vs = judgeAll(t, cfg, steady(20, 1000, 0, 9000, 0), StepProgress{})
	if got := vs[len(vs)-1]; got.Outcome != Inconclusive || !strings.Contains(got.Explanation, "no bad events yet") {
		t.Errorf("without a floor: %s (%s), want inconclusive: no bad events yet", got.Outcome, got.Explanation)
	}
}

func TestRateUpperByHand(t *testing.T) {
	// No events in 1,000 requests at α = 0.01: log(100)/1000 = 0.0046052.
	if got := rateUpper(0, 1000, 0.01); !approx(got, 0.0046052, 1e-7) {
		t.Errorf("0 events: %v, want 0.0046052", got)
	}
	// 10 events: μ = 22.8835 solves 10·log(10/μ) + μ − 10 = log(100):
	// 10·log(10/22.8835) = −8.2783, and −8.2783 + 12.8835 = 4.6052.
	if got := rateUpper(10, 1000, 0.01); !approx(got, 0.0228835, 1e-7) {
		t.Errorf("10 events: %v, want 0.0228835", got)
	}
}

func TestAFloorDoesNotHideErrorsControlNeverHas(t *testing.T) {
	// Control has no errors at all; treatment fails 1% of its requests,
	// far above the 0.05-point floor: the check fails.
	cfg := Config{Metrics: []MetricConfig{{Name: "error-rate", Kind: KindErrorRate, Tolerance: 1.2, MaxRatio: 1.5, MinDifference: 0.0005}}}
	_, vs := judgeAll(t, cfg, steady(10, 1000, 10, 9000, 0), StepProgress{})
	if got := vs[len(vs)-1]; got.Outcome != Fail {
		t.Errorf("treatment at 1%%, control at 0: %s (%s), want fail", got.Outcome, got.Explanation)
	}
}

func TestSampleRatioSkipsUnreadableLooks(t *testing.T) {
	// Control's requests cannot be read at the second look, so only
	// treatment's advance: counted, that look alone would read as a
	// mismatch. The look is left out, and the next covers both cohorts.
	step := StepProgress{Percent: 10, Elapsed: 10 * time.Minute}
	obs := steady(6, 1000, 10, 9000, 90)
	obs[1].Control.Requests = math.NaN()
	_, vs := judgeAll(t, errorRate, obs, step)
	if s := vs[len(vs)-1].SampleRatio; s == nil || s.Mismatch || !approx(s.Observed, 0.1, 1e-9) {
		t.Errorf("split %+v; want no mismatch at 10%% observed", s)
	}
}

func TestSampleRatioOfAnEmptyCohortIsNoEvidence(t *testing.T) {
	// Ten sticky clients at 1%: none is in treatment, as happens nine times
	// in ten. Every bucket's requests are control's, so the buckets cannot
	// tell few units from a split that sends nobody to treatment, and the
	// check does not call it a mismatch; nothing passes on an empty cohort
	// either. Without unit buckets the same counts are a mismatch: the
	// looks' shares stay at 0 where 1% was due, look after look.
	step := StepProgress{Percent: 1, Elapsed: 10 * time.Minute}
	var units, plain []FlagCounts
	for i := 1; i <= 10; i++ {
		c := withUnits(errorCounts(0, 0, 10000*float64(i), 100*float64(i)), 0)
		units = append(units, c)
		c.Treatment.UnitBuckets, c.Control.UnitBuckets = nil, nil
		plain = append(plain, c)
	}
	_, vs := judgeAll(t, errorRate, units, step)
	v := vs[len(vs)-1]
	if sr := v.SampleRatio; sr == nil || sr.Mismatch || !sr.OneCohort || v.Outcome == Pass ||
		!strings.Contains(sr.Explanation, "went to one cohort") {
		t.Errorf("empty treatment with unit buckets: %s, split %+v; want no pass, no mismatch, one cohort", v.Outcome, sr)
	}
	_, vs = judgeAll(t, errorRate, plain, step)
	if sr := vs[len(vs)-1].SampleRatio; sr == nil || !sr.Mismatch {
		t.Errorf("empty treatment without unit buckets: split %+v; want a mismatch", sr)
	}
}

// strayingUnits spreads cumulative counts over 8 unit buckets, treatment's
// unevenly: its odd buckets get 1+spread times the even ones' requests.
func strayingUnits(c FlagCounts, spread float64) FlagCounts {
	c = withUnits(c, 0)
	var sum float64
	for b := range c.Treatment.UnitBuckets {
		w := 1.0
		if b%2 == 1 {
			w += spread
		}
		sum += w
		c.Treatment.UnitBuckets[b].Requests = w
	}
	for b := range c.Treatment.UnitBuckets {
		c.Treatment.UnitBuckets[b].Requests *= c.Treatment.Requests / sum
	}
	return c
}

func TestSampleRatioDoesNotTrustALowEarlyEstimate(t *testing.T) {
	// A 10% split whose first looks stray: 8.5% of 10,000 requests at each
	// of the first three looks, 10.6% at the next nine, 10% in all.
	// Treatment's unit buckets stray a little (odd ones get 10% more
	// requests), not enough at the first looks for their estimate of φ to
	// exceed 1. Untempered, the first two counted looks are more than a
	// 1/α e-value against 10%, and a mismatch would hold the rollout for
	// good. Until the looks' own estimate is known the buckets' is taken at
	// its upper bound (1.6 and 2.5 there), and once it is, the looks'
	// straying shows.
	step := StepProgress{Percent: 10, Elapsed: 10 * time.Minute}
	var obs []FlagCounts
	var nT float64
	for look := 1; look <= 12; look++ {
		if look <= 3 {
			nT += 850
		} else {
			nT += 1060
		}
		n := 10000 * float64(look)
		obs = append(obs, strayingUnits(errorCounts(nT, nT/100, n-nT, (n-nT)/100), 0.1))
	}
	_, vs := judgeAll(t, errorRate, obs, step)
	for i, v := range vs {
		if sr := v.SampleRatio; sr == nil || sr.Mismatch {
			t.Fatalf("look %d: split %+v, want no mismatch", i+1, sr)
		}
	}
	if phi := vs[len(vs)-1].SampleRatio.Dispersion; phi < 5 {
		t.Errorf("dispersion %v, want the looks' straying to show (above 5)", phi)
	}
}

func TestUpperPhiByHand(t *testing.T) {
	// χ² of 7 on 7 degrees of freedom: the 5% quantile is 2.1673, so the
	// bound is 3.23. Wilson and Hilferty's approximation: 1 − 2/63 −
	// 1.64485·√(2/63) = 0.675184, cubed 0.307798, times 7 is 2.154585, and
	// 7 over that is 3.24889.
	if got := (UnitDispersion{DOF: 7, ChiSquare: 7}).upperPhi(); !approx(got, 3.24889, 1e-5) {
		t.Errorf("upper φ of χ² 7 on 7 degrees of freedom: %v, want 3.24889", got)
	}
	if got := (UnitDispersion{DOF: 2, ChiSquare: 7}).upperPhi(); got != 1 {
		t.Errorf("upper φ of an estimate not known: %v, want 1", got)
	}
}

func TestHarmReasonNamesTheEdgeItIsAbout(t *testing.T) {
	// Control: 1,000 requests a look, 6% slower than 250 ms (the p95
	// slot, which a check that does not fail shows) and 0.8% than 500 ms
	// (the p99 slot). Treatment, 100 a look, matches control at 250 ms
	// and is 1.25 times as slow at 500 ms, where it has one slow request a
	// look: the 250 ms interval soon lies below the harm bound of 3, the
	// 500 ms one long after. A reason about the 500 ms interval beside the
	// 250 ms figures must say so, or the verdict reads as "CI 0.7 to 1.4
	// ... reaches up to 3.4".
	cfg := Config{Metrics: []MetricConfig{{Name: "latency", Kind: KindLatency, Tolerance: 1.2, MaxRatio: 3}}}
	obs := steadyLatency(40, 100, map[float64]float64{0.25: 6, 0.5: 1}, 1000, map[float64]float64{0.25: 60, 0.5: 8})
	_, vs := judgeAll(t, cfg, obs, StepProgress{})
	seen := 0
	for i, v := range vs {
		c := v.Checks[0]
		if !strings.Contains(c.Reason, "not yet below the harm bound") || c.Edge != 0.25 || !(c.CIHigh < 3) {
			continue
		}
		seen++
		if !strings.Contains(c.Reason, "its interval at 500ms reaches up to") {
			t.Errorf("look %d shows 250 ms with the interval %.2f to %.2f and holds on another: %q", i+1, c.CILow, c.CIHigh, c.Reason)
		}
	}
	if seen == 0 {
		t.Errorf("no look held on the 500 ms interval while showing 250 ms: %s", vs[len(vs)-1].Explanation)
	}
}
