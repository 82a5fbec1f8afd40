package judge

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// StepProgress is where the rollout stands within its current step, and the
// minimum evidence the plan asks of a pass. The judge is the one place that
// checks these minimums; the rollout state machine advances on its pass.
type StepProgress struct {
	// Baseline is the cumulative request counts when the step began (zero
	// for the first step): the rollout state's step baseline, the one the
	// step's counts are shown from.
	Baseline RequestCounts `json:"baseline"`
	// Elapsed is the time since the step began.
	Elapsed time.Duration `json:"elapsed"`
	// MinRequests is the requests each cohort needs within the step before
	// a pass; below 1 it is taken as 1.
	MinRequests float64 `json:"minRequests"`
	// MinDuration is how long the step must have run before a pass.
	MinDuration time.Duration `json:"minDuration"`
	// Percent is the share of split-placed units the flag sends to
	// treatment at this step, in percent; 0 leaves the traffic split
	// unchecked (see SampleRatio).
	Percent float64 `json:"percent,omitempty"`
	// SplitSettle is how long after the step began its looks are left out
	// of the split's check, while counts of the previous percent still
	// arrive; 0 means DefaultSplitSettle.
	SplitSettle time.Duration `json:"splitSettle,omitempty"`
}

// maxLogEValue keeps reported e-values finite (exp(700) is about 1e304).
const maxLogEValue = 700

// Judge folds one observation into a rollout's judge state and returns the
// new state with the verdict. cum holds the flag's counts since the rollout
// began (the judge differences them against the previous observation, so a
// scrape that arrives late is counted at the next tick); step says where the
// rollout stands. prev is the state Judge returned last time, or the zero
// State for a new rollout. Judge is a pure function: it never changes prev.
//
// Each count is the highest value read so far: a reading below it
// (increase() extrapolating less than at the last look, or a window that
// lost data) adds nothing for that count, and the next reading above it adds
// only what lies above. A count that cannot be read (NaN, missing) makes its
// tests inconclusive and is picked up at the next readable tick. No test
// fails before its over-dispersion estimate exists (see Dispersion); the
// evidence of the ticks before it is judged once it does. A Fail is final:
// it stays a Fail at every later tick of the rollout.
//
// A ratio check passes only when, beyond the step's minimums, nothing
// points to harm and, if its metric sets a harm bound (MaxRatio), the
// always-valid interval shows the ratio below it, or shows the difference
// below the metric's practical floor. A sample ratio mismatch holds every
// pass (see SampleRatio).
//
// cfg must pass Validate, which Judge does not call at every look: the
// rollout plan validates it once, when it is resolved. The error reports a
// state written by another version; prev is then returned unchanged.
func Judge(cfg Config, prev State, cum FlagCounts, step StepProgress) (State, Verdict, error) {
	if prev.Version > stateVersion {
		return prev, Verdict{}, fmt.Errorf("judge state version %d: this judge reads version %d", prev.Version, stateVersion)
	}
	if prev.Version != 0 && prev.Version < firstEvidenceVersion {
		prev = State{}
	}
	alpha := cfg.alpha()
	checks := cfg.checks()
	next := prev.clone()
	next.Version = stateVersion
	kept := next.Checks
	next.Checks = make([]CheckState, len(checks))
	for i, c := range checks {
		next.Checks[i] = newCheckState(c)
		if j := indexOf(kept, c.name); j >= 0 && sameTest(kept[j], next.Checks[i]) {
			next.Checks[i] = kept[j]
		}
	}

	cur := snapshot(prev.Last, cum)
	stepReq := RequestCounts{
		Treatment: cur.Treatment.Requests - step.Baseline.Treatment,
		Control:   cur.Control.Requests - step.Baseline.Control,
	}
	if stepReq.Treatment < 0 || stepReq.Control < 0 {
		// Request counters went below the step's baseline: the rollout
		// state starts the step's counts again from here.
		stepReq = RequestCounts{}
	}

	v := Verdict{Flag: cum.Flag, Threshold: 1 / alpha}
	checkThreshold := math.Log(float64(len(checks)) / alpha)
	logEs := make([]float64, len(checks))
	beyondFloor := false
	units := unitSnapshots(cum)
	for i, c := range checks {
		cs := &next.Checks[i]
		reason := unreadable(c, cum)
		before := cs.evidenceTicks()
		if !update(cs, c, prev.Last, cur, prev.choice()) {
			cs.Skipped++
			if reason == "" {
				reason = noEvidenceReason(c)
			}
		}
		cs.estimateUnits(c, units)
		held := !cfg.DisableTempering && cs.holds()
		if reason == "" && held {
			reason = holdReason(cs)
		}
		if reason == "" {
			reason = gate(stepReq, step)
		}
		cv := assess(cs, c, cur, alpha, cfg.DisableTempering, held, cs.evidenceTicks() > before)
		logEs[i] = cv.logE
		cv.StepRequests = stepReq
		cv.Threshold = float64(len(checks)) / alpha
		floored := cv.belowFloor(c)
		if !floored {
			beyondFloor = true
		}
		if reason == "" {
			reason = cv.beyondTolerance(c)
		}
		if reason == "" {
			reason = cv.unsafe(c)
		}
		switch {
		case cs.MaxLogE >= checkThreshold && !floored:
			cv.Outcome = Fail
		case reason != "":
			cv.Outcome, cv.Reason = Inconclusive, reason
		default:
			cv.Outcome = Pass
		}
		if cv.Outcome != Fail && c.kind == checkRatio {
			cv.show(cv.harm)
		}
		cv.Explanation = explainCheck(cv.CheckVerdict, c)
		v.Checks = append(v.Checks, cv.CheckVerdict)
	}
	logMean := logSumExp(logEs) - math.Log(float64(len(logEs)))
	next.MaxLogMean = max(next.MaxLogMean, logMean)
	v.SampleRatio = next.SampleRatio.update(cur, cum, step, alpha, cfg.DisableTempering)
	next.Recent = discount(prev.Recent, prev.Last.Control, cur.Control)
	next.Last = cur
	next.Ticks++
	v.EValue = math.Exp(min(logMean, maxLogEValue))
	combinedFail := next.MaxLogMean >= math.Log(1/alpha) && beyondFloor
	v.Outcome, v.Explanation = overall(v.Checks, combinedFail, v.EValue, v.Threshold, v.SampleRatio)
	return next, v, nil
}

// indexOf returns the index of the named check state.
func indexOf(cs []CheckState, name string) int {
	for i := range cs {
		if cs[i].Name == name {
			return i
		}
	}
	return -1
}

// sameTest reports whether a stored check state tests what a fresh one
// would. A plan edited mid-rollout (another tolerance, other edges) starts
// that check's evidence afresh rather than mixing two hypotheses.
func sameTest(stored, fresh CheckState) bool {
	if len(stored.Slots) != len(fresh.Slots) {
		return false
	}
	for i, s := range stored.Slots {
		f := fresh.Slots[i]
		if s.Target != f.Target || s.Evidence.Null != f.Evidence.Null || s.Evidence.Below != f.Evidence.Below ||
			len(s.Evidence.LogLR) != len(f.Evidence.LogLR) || len(s.Evidence.Interval) != len(f.Evidence.Interval) ||
			(f.Edge != 0 && s.Edge != f.Edge) {
			return false
		}
	}
	return true
}

// noEvidenceReason says why a readable tick added nothing.
func noEvidenceReason(c check) string {
	switch {
	case c.kind == checkMaxP99:
		return fmt.Sprintf("no latency bucket edge at or above %v", c.metric.MaxP99)
	case c.metric.Kind == KindLatency && len(c.metric.Edges) > 0:
		return fmt.Sprintf("none of the edges %v (seconds) is in the latency histogram", c.metric.Edges)
	case c.metric.Kind == KindLatency:
		return "no latency edge to test yet (control has no slow requests so far)"
	}
	return "a count missing at the last look came back, so this look only set its baseline"
}

// gate returns why the step does not yet allow a pass, or "".
func gate(req RequestCounts, step StepProgress) string {
	need := max(step.MinRequests, 1)
	switch {
	case req.Treatment < need || req.Control < need:
		return fmt.Sprintf("needs %s requests per cohort in this step, has %s treatment and %s control",
			count(need), count(req.Treatment), count(req.Control))
	case step.Elapsed < step.MinDuration:
		return fmt.Sprintf("step has run %v of the %v needed", step.Elapsed.Round(time.Second), step.MinDuration)
	}
	return ""
}

// holds reports whether the check holds its fail: it has evidence, but not
// yet the looks or unit buckets its over-dispersion estimate needs (see
// minDispersionTicks). The hold ends after that many ticks of evidence even
// without them (a control with no traffic never gives an estimate), so it
// lasts at most minDispersionTicks-1 ticks of evidence and Slot.Held stays
// that short. A check without evidence holds nothing.
func (c *CheckState) holds() bool {
	for _, d := range c.Dispersion {
		if d.Known() {
			return false
		}
	}
	n := c.evidenceTicks()
	return n > 0 && n < minDispersionTicks
}

// evidenceTicks is the most ticks of evidence any of the check's slots has.
func (c *CheckState) evidenceTicks() int {
	n := 0
	for _, s := range c.Slots {
		n = max(n, s.Evidence.Ticks)
	}
	return n
}

// beyondTolerance says why a ratio check with an always-valid interval (of
// any of its slots) wholly on the harmful side of what is tolerated cannot
// pass, or "". What is tolerated is the tolerance, or the floor ratio where
// the practical floor reaches further (a difference below the floor is not
// harm). The e-process may not have reached its threshold yet (tempering,
// a hold), but a pass beside such an interval would promote a treatment the
// evidence already places beyond what is tolerated.
func (a assessed) beyondTolerance(c check) string {
	if c.kind != checkRatio {
		return ""
	}
	for _, si := range a.slots {
		if si.hi <= 0 {
			continue
		}
		cv := a.CheckVerdict
		cv.CILow, cv.CIHigh, cv.Edge = si.lo, si.hi, si.edge
		tol := cv.Tolerance
		if c.metric.Direction == LowerIsWorse {
			if cv.FloorRatio > 0 {
				tol = min(tol, cv.FloorRatio)
			}
			if cv.CIHigh < tol {
				return fmt.Sprintf("its interval%s %s to %s lies below %s", atEdge(cv.Edge, a.Edge), ciEnd(cv.CILow), ciEnd(cv.CIHigh), toleranceName(cv, tol))
			}
			continue
		}
		tol = max(tol, cv.FloorRatio)
		if cv.CILow > tol {
			return fmt.Sprintf("its interval%s %s to %s lies above %s", atEdge(cv.Edge, a.Edge), ciEnd(cv.CILow), ciEnd(cv.CIHigh), toleranceName(cv, tol))
		}
	}
	return ""
}

// atEdge names a slot's edge when it is not the one the verdict shows.
func atEdge(edge, shown float64) string {
	if edge == shown || edge == 0 {
		return ""
	}
	return " at " + seconds(edge)
}

// toleranceName names what an interval was compared with.
func toleranceName(cv CheckVerdict, tol float64) string {
	if tol != cv.Tolerance {
		return "the practical floor's ratio " + number(tol)
	}
	return "the tolerance " + number(tol)
}

// belowFloor reports whether a ratio check's difference may still lie below
// its practical floor, which keeps it from failing: its interval does not
// lie wholly beyond the floor ratio. A check without a floor, or an
// absolute bound, is never below it.
func (a assessed) belowFloor(c check) bool {
	if c.kind != checkRatio || a.floorDiff == 0 {
		return false
	}
	if a.FloorRatio == 0 {
		// Control has no events: the difference is treatment's own rate.
		return a.Treatment.Rate <= a.floorDiff
	}
	if a.CIHigh == 0 {
		return true
	}
	if c.metric.Direction == LowerIsWorse {
		return a.CIHigh >= a.FloorRatio
	}
	return a.CILow <= a.FloorRatio
}

// unsafe says why a ratio check has no evidence of safety yet, or "": its
// metric sets a harm bound and its interval does not yet lie on the safe
// side of the bound, nor of the floor ratio (a difference shown to be below
// the practical floor is safe whatever the ratio).
func (a assessed) unsafe(c check) string {
	if c.kind != checkRatio || a.HarmBound == 0 {
		return ""
	}
	// Every slot must show it: harm in latency's far tail (the p99 edge)
	// is harm even where the p95 edge shows none.
	for i := range a.slots {
		if why := a.unsafeAt(c, i); why != "" {
			return why
		}
	}
	return ""
}

// unsafeAt says why slot i shows no evidence of safety yet, or "". The
// reason goes with a verdict that shows the harm slot (see Judge), so it
// names slot i's edge when that is another.
func (a assessed) unsafeAt(c check, i int) string {
	where := atEdge(a.slots[i].edge, a.slots[a.harm].edge)
	a.show(i) // a is a copy: the bound and floor at slot i
	if a.safeByFloor(c) {
		return ""
	}
	if a.CIHigh == 0 {
		return fmt.Sprintf("no bad events yet to bound the ratio%s below the harm bound %s", where, number(a.HarmBound))
	}
	if c.metric.Direction == LowerIsWorse {
		bound := a.HarmBound
		if a.FloorRatio > 0 {
			bound = min(bound, a.FloorRatio)
		}
		if a.CILow > bound {
			return ""
		}
		return fmt.Sprintf("its interval%s reaches down to %s, not yet above the harm bound %s", where, ciEnd(a.CILow), number(bound))
	}
	bound := max(a.HarmBound, a.FloorRatio)
	if a.CIHigh < bound {
		return ""
	}
	return fmt.Sprintf("its interval%s reaches up to %s, not yet below the harm bound %s", where, ciEnd(a.CIHigh), number(bound))
}

// safeByFloor reports whether treatment's rate is shown to exceed control's
// by less than the practical floor: its upper bound (TreatmentHigh, see
// show) less control's rate is below the floor. This is what lets a check pass when
// neither cohort has bad events, where no ratio can be bounded. Only
// higher-is-worse metrics take this route.
func (a assessed) safeByFloor(c check) bool {
	// FloorDifference is set only for higher-is-worse metrics with a
	// floor and treatment requests.
	return a.FloorDifference > 0 && a.TreatmentHigh-a.Control.Rate < a.FloorDifference
}

// floorDifference is the metric's practical floor as a difference between
// the cohorts' rates; 0 when it sets none. For latency the floor is a
// slowdown: the share of control requests slower than edge−MinSlowdown but
// not than edge, read off control's histogram by linear interpolation
// between its edges, is the extra share that slowdown would put above the
// edge.
func floorDifference(m MetricConfig, control CohortEvidence, ctl CohortSnapshot, edge float64) float64 {
	if m.Kind != KindLatency {
		return m.MinDifference
	}
	if m.MinSlowdown <= 0 || edge <= 0 || control.Requests <= 0 {
		return 0
	}
	return max(0, (slowerAt(ctl, edge-m.MinSlowdown.Seconds())-control.Events)/control.Requests)
}

// rateUpper is an upper confidence bound at level 1−alpha on a rate of
// which events were seen in requests: the Chernoff bound of a Poisson
// count, the λ·n above events where events·log(events/(λn)) + λn − events
// reaches log(1/α). With no events it is log(1/α)/n, which holds at every
// look at once, since a count of zero now was zero at every earlier look.
func rateUpper(events, requests, alpha float64) float64 {
	if requests <= 0 {
		return math.Inf(1)
	}
	l := math.Log(1 / alpha)
	if events <= 0 {
		return l / requests
	}
	// f(μ) = events·log(events/μ) + μ − events − log(1/α) is convex and
	// increasing above events, so Newton's steps from a point above its
	// root stay above it and close in fast: the bound stays conservative
	// at every step.
	f := func(mu float64) float64 { return events*math.Log(events/mu) + mu - events - l }
	mu := events + l + math.Sqrt(2*events*l) + l
	for f(mu) < 0 {
		mu *= 2
	}
	for range 100 {
		next := mu - f(mu)/(1-events/mu)
		if !(next < mu) || mu-next <= 1e-12*mu {
			break
		}
		mu = next
	}
	return mu / requests
}

// slowerAt is the number of requests slower than x seconds, interpolated
// linearly between the histogram's edges (every request is slower than 0).
func slowerAt(c CohortSnapshot, x float64) float64 {
	lo, loCount := 0.0, c.Requests
	for _, ec := range c.Slower {
		if ec.Edge >= x {
			if ec.Edge == lo {
				return ec.Count
			}
			return loCount + (ec.Count-loCount)*(max(x, lo)-lo)/(ec.Edge-lo)
		}
		lo, loCount = ec.Edge, ec.Count
	}
	return loCount
}

// holdReason says why a held check is inconclusive.
func holdReason(c *CheckState) string {
	ticks := 0
	for _, d := range c.Dispersion {
		ticks = max(ticks, d.Dispersion.Ticks)
	}
	return fmt.Sprintf("the cohorts have %d of the %d looks with bad events (or %d unit buckets) needed to tell clustered bad events from independent ones; a rollback waits for them",
		ticks, minDispersionTicks, minUnitBuckets)
}

// assessed is a check verdict with its current log e-value.
type assessed struct {
	CheckVerdict
	logE float64
	// floorDiff is the practical floor as a difference of rates at the
	// check's edge; 0 without a floor.
	floorDiff float64
	// alpha is the judge's α, for the bound on treatment's rate.
	alpha float64
	// cur and metric are what the slots' counts are read from.
	cur    Snapshot
	metric MetricConfig
	// slots are the intervals of every slot of a ratio check (the verdict
	// shows the one with the most evidence of harm), and harm the index of
	// the one a check that does not fail shows: the slot with the most bad
	// events in control (for latency's default edges, the one nearest
	// control's p95). The harm bound holds at every slot.
	slots []slotInterval
	harm  int
}

// slotInterval is one slot's always-valid interval (hi is 0 without one),
// with its edge, null and dispersion.
type slotInterval struct {
	edge, lo, hi, null, phi float64
	ratio                   float64 // the estimate; 0 without one
}

// assess computes a check's current evidence and updates its running
// maximum. The latency ratio test averages its slots' e-values (the mean of
// e-values is an e-value) and reports the slot with the most evidence.
//
// A held check (see CheckState.holds) counts as e-value 1, the e-value of
// no evidence, and records its slots' evidence after each tick that added
// some. The first tick after the hold judges those ticks as well, under
// the dispersion now estimated: the running maximum is taken over the
// whole path of the tempered e-process, as it would have been had the
// estimate existed from the start. A burst in the first ticks therefore
// meets the dispersion the split shows once it is estimated, and a large
// effect found at the second tick is still rolled back when the hold ends
// even if that tick's own count was low.
func assess(cs *CheckState, c check, cur Snapshot, alpha float64, noTempering, held, added bool) assessed {
	a := assessed{CheckVerdict: CheckVerdict{Check: c.name, Metric: c.metric.Name, Kind: c.metric.Kind, CILevel: 1 - alpha}}
	slotLogE := make([]float64, len(cs.Slots))
	best := 0
	phis := make([]float64, len(cs.Slots))
	for i, s := range cs.Slots {
		phis[i] = 1
		if !noTempering {
			phis[i] = cs.phi(s.Edge)
		}
		slotLogE[i] = s.Evidence.logE(phis[i])
		if slotLogE[i] > slotLogE[best] {
			best = i
		}
	}
	a.logE = logSumExp(slotLogE) - math.Log(float64(len(slotLogE)))
	switch {
	case held:
		if added {
			for i := range cs.Slots {
				s := &cs.Slots[i]
				s.Held = append(s.Held, slices.Clone(s.Evidence.LogLR))
			}
		}
		a.logE = 0
	case len(cs.Slots[0].Held) > 0:
		for t := range cs.Slots[0].Held {
			past := make([]float64, len(cs.Slots))
			for i, s := range cs.Slots {
				past[i] = Evidence{LogLR: s.Held[t]}.logE(phis[i])
			}
			cs.MaxLogE = max(cs.MaxLogE, logSumExp(past)-math.Log(float64(len(past))))
		}
		for i := range cs.Slots {
			cs.Slots[i].Held = nil
		}
	}
	cs.MaxLogE = max(cs.MaxLogE, a.logE)
	a.EValue = math.Exp(min(a.logE, maxLogEValue))
	a.PValue = math.Min(1, math.Exp(-cs.MaxLogE))
	if c.kind != checkRatio {
		a.slots = []slotInterval{{edge: cs.Slots[0].Edge, phi: phis[0]}}
		a.cur, a.metric = cur, c.metric
		a.show(0)
		a.Bound = cs.Slots[0].Evidence.Null
		a.Tolerance, a.HarmBound, a.FloorRatio, a.Ratio, a.CILow, a.CIHigh = 0, 0, 0, 0, 0, 0
		a.FloorDifference, a.TreatmentHigh = 0, 0
		return a
	}
	a.cur, a.metric, a.alpha = cur, c.metric, alpha
	mostEvents := -1.0
	for i, sl := range cs.Slots {
		si := slotInterval{edge: sl.Edge, phi: phis[i], null: sl.Evidence.Null}
		if lo, hi, ok := sl.Evidence.interval(phis[i], alpha); ok {
			si.lo, si.hi = lo, hi
			si.ratio, _ = sl.Evidence.estimate()
		}
		a.slots = append(a.slots, si)
		if ce, _ := a.events(sl.Edge)(cur.Control); ce > mostEvents {
			a.harm, mostEvents = i, ce
		}
	}
	a.show(best)
	return a
}

// events reads the check's count at edge (for latency) from a snapshot.
func (a assessed) events(edge float64) func(CohortSnapshot) (float64, bool) {
	if a.metric.Kind == KindLatency {
		return slowerOf(edge)
	}
	return eventsOf(a.metric)
}

// show fills the verdict's fields that describe one slot: its edge, the
// cohorts' counts at it, the ratio, its interval, the floor at it and the
// dispersion. A check shows the slot with the most evidence of harm, and,
// unless it fails, the slot its harm bound was checked on (see Judge).
func (a *assessed) show(i int) {
	si := a.slots[i]
	a.Edge, a.Dispersion = si.edge, si.phi
	ev := a.events(si.edge)
	te, _ := ev(a.cur.Treatment)
	ce, _ := ev(a.cur.Control)
	a.Treatment = newCohortEvidence(a.cur.Treatment.Requests, te)
	a.Control = newCohortEvidence(a.cur.Control.Requests, ce)
	a.Tolerance = si.null
	a.HarmBound = harmRatio(a.metric)
	a.floorDiff = floorDifference(a.metric, a.Control, a.cur.Control, si.edge)
	a.FloorRatio, a.Ratio, a.FloorDifference, a.TreatmentHigh = 0, 0, 0, 0
	if a.floorDiff > 0 && a.metric.Direction != LowerIsWorse && a.Treatment.Requests > 0 {
		// Clustered events make a count φ times as variable as a Poisson
		// one: the bound is taken on φ times fewer events and requests.
		a.FloorDifference = a.floorDiff
		a.TreatmentHigh = rateUpper(a.Treatment.Events/si.phi, a.Treatment.Requests/si.phi, a.alpha)
	}
	if a.floorDiff > 0 && a.Control.Rate > 0 {
		a.FloorRatio = 1 + a.floorDiff/a.Control.Rate
		if a.metric.Direction == LowerIsWorse {
			a.FloorRatio = max(0, 1-a.floorDiff/a.Control.Rate)
		}
	}
	switch {
	case si.ratio > 0:
		a.Ratio = si.ratio
	case a.Control.Rate > 0:
		a.Ratio = a.Treatment.Rate / a.Control.Rate
	}
	a.CILow, a.CIHigh = si.lo, si.hi
}

// phi is the over-dispersion of the count at edge; see EdgeDispersion.Phi.
func (c *CheckState) phi(edge float64) float64 {
	for _, d := range c.Dispersion {
		if d.Edge == edge {
			return d.Phi()
		}
	}
	return 1
}

// estimateUnits replaces the unit estimate of every count the check has
// followed with one from the look's unit buckets; without unit buckets the
// estimates stay unknown and the estimate across ticks is used.
func (c *CheckState) estimateUnits(chk check, units unitBuckets) {
	for i := range c.Dispersion {
		d := &c.Dispersion[i]
		events := eventsOf(chk.metric)
		if d.Edge > 0 {
			events = slowerOf(d.Edge)
		}
		t, ctl, ok := units.counts(events)
		if !ok {
			d.Units = UnitDispersion{}
			continue
		}
		d.Units = unitDispersion(t, ctl)
	}
}
