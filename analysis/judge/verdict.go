package judge

import "fmt"

// Outcome is a judge's answer at one tick.
type Outcome string

// Outcomes. Fail means roll back; Pass means no harm was found with at least
// the minimum evidence the plan asks for; Inconclusive means hold: too little
// data, or data that could not be read. Missing data is never a pass.
const (
	Fail         Outcome = "fail"
	Pass         Outcome = "pass"
	Inconclusive Outcome = "inconclusive"
)

// Verdict is the judge's answer for one flag at one tick, with the evidence
// behind it. All numbers are finite, so it has a JSON form.
type Verdict struct {
	// Outcome is Fail if any check fails or the checks' mean e-value reached
	// Threshold, Pass if every check passes, else Inconclusive.
	Outcome Outcome `json:"outcome"`
	// Flag is the flag judged.
	Flag string `json:"flag"`
	// Checks are the verdicts of each test, in configuration order.
	Checks []CheckVerdict `json:"checks"`
	// EValue is the mean of the checks' e-values. The mean of e-values is
	// an e-value, so comparing it with 1/α tests all checks at once with no
	// split of α.
	EValue float64 `json:"eValue"`
	// Threshold is 1/α.
	Threshold float64 `json:"threshold"`
	// Explanation is one line a person can read.
	Explanation string `json:"explanation"`
	// SampleRatio is the check of the traffic split; nil when the step's
	// percent was not given.
	SampleRatio *SampleRatio `json:"sampleRatio,omitempty"`
}

// CheckVerdict is the verdict of one test.
type CheckVerdict struct {
	// Check names the test: the metric name, or the metric name with ":max"
	// or ":maxP99" for an absolute bound.
	Check string `json:"check"`
	// Metric is the metric tested.
	Metric string `json:"metric"`
	// Kind is what the metric counts.
	Kind Kind `json:"kind"`
	// Outcome is the test's answer.
	Outcome Outcome `json:"outcome"`
	// Treatment and Control are the counts since the rollout began.
	Treatment CohortEvidence `json:"treatment"`
	// Control: see Treatment.
	Control CohortEvidence `json:"control"`
	// StepRequests is the requests per cohort since the current step began,
	// which the minimum sample applies to.
	StepRequests RequestCounts `json:"stepRequests"`
	// Edge is the latency edge in seconds the counts refer to (for the
	// ratio test, the edge of the slot with the most evidence); 0 if none.
	Edge float64 `json:"edge,omitempty"`
	// Ratio is the ratio estimate. With an interval it is the most likely
	// ratio given every look, each look's split weighed under its own share
	// and baseline (the interval's centre, within it); without one,
	// treatment's rate over control's since the rollout began, 0 when
	// control's rate is 0. The two differ when traffic or load change with
	// the steps: the cohorts' rates since the start then mix the steps in
	// different proportions.
	Ratio float64 `json:"ratio"`
	// CILow and CIHigh bound the always-valid confidence interval for the
	// ratio at level CILevel, clamped to [1/256, 256]; all 0 when there is
	// none (absolute bounds, or no events yet).
	CILow float64 `json:"ciLow"`
	// CIHigh: see CILow.
	CIHigh float64 `json:"ciHigh"`
	// CILevel is 1-α.
	CILevel float64 `json:"ciLevel"`
	// Tolerance is the ratio tested against (ratio tests), or Bound the
	// rate (absolute bounds).
	Tolerance float64 `json:"tolerance,omitempty"`
	// HarmBound is the ratio the interval must lie below (above, for
	// lower-is-worse metrics) before the check passes; 0 when the metric
	// sets none and the check passes on the absence of evidence of harm.
	HarmBound float64 `json:"harmBound,omitempty"`
	// FloorRatio is the ratio at which the difference between the cohorts
	// reaches the metric's practical floor at control's current rate; 0
	// when the metric sets no floor. The check fails only on evidence
	// beyond it, and passes once its interval lies short of it.
	FloorRatio float64 `json:"floorRatio,omitempty"`
	// FloorDifference is the practical floor as a difference of rates at
	// the check's edge, and TreatmentHigh the upper bound on treatment's
	// rate it is compared with: a check whose TreatmentHigh less control's
	// rate is below FloorDifference is shown safe whatever its ratio's
	// interval. Both 0 when the metric sets no floor.
	FloorDifference float64 `json:"floorDifference,omitempty"`
	TreatmentHigh   float64 `json:"treatmentHigh,omitempty"`
	// Bound is the largest tolerated rate of treatment's bad events, for
	// absolute bounds (Max, or 1% above MaxP99).
	Bound float64 `json:"bound,omitempty"`
	// EValue is the test's current e-value, tempered for over-dispersion.
	EValue float64 `json:"eValue"`
	// PValue is the always-valid p-value, 1 over the largest e-value seen.
	PValue float64 `json:"pValue"`
	// Threshold is the e-value at which this test alone fails: the number
	// of tests over α, since they share α through their mean.
	Threshold float64 `json:"threshold"`
	// Dispersion is the over-dispersion the evidence was divided by.
	Dispersion float64 `json:"dispersion"`
	// Reason says why the test is inconclusive; empty otherwise.
	Reason string `json:"reason,omitempty"`
	// Explanation is one line a person can read.
	Explanation string `json:"explanation"`
}

// CohortEvidence is one cohort's counts behind a verdict.
type CohortEvidence struct {
	// Requests is the cohort's requests.
	Requests float64 `json:"requests"`
	// Events is its bad events (good events for lower-is-worse metrics).
	Events float64 `json:"events"`
	// Rate is Events per request, 0 without requests.
	Rate float64 `json:"rate"`
}

// newCohortEvidence fills in the rate.
func newCohortEvidence(requests, events float64) CohortEvidence {
	e := CohortEvidence{Requests: requests, Events: events}
	if requests > 0 {
		e.Rate = events / requests
	}
	return e
}

// Violation says how a check's verdict breaks what a verdict promises, or
// "": a pass never stands beside an always-valid interval that lies wholly
// beyond what is tolerated (the tolerance, or the practical floor's ratio
// where that reaches further), and a check with a harm bound passes only
// with its interval short of the bound (or of the floor's ratio). The judge
// benchmark checks every verdict it gets with it.
func (c CheckVerdict) Violation() string {
	if c.Outcome != Pass || c.CIHigh <= 0 || c.Tolerance <= 0 {
		return ""
	}
	if c.Kind == KindCustom && c.Tolerance < 1 {
		tol, bound := c.Tolerance, c.HarmBound
		if c.FloorRatio > 0 {
			tol, bound = min(tol, c.FloorRatio), min(bound, c.FloorRatio)
		}
		switch {
		case c.CIHigh < tol:
			return fmt.Sprintf("passed beside the interval %v to %v, below %v", c.CILow, c.CIHigh, tol)
		case c.HarmBound > 0 && c.CILow <= bound:
			return fmt.Sprintf("passed with the interval %v to %v reaching the harm bound %v", c.CILow, c.CIHigh, bound)
		}
		return ""
	}
	tol, bound := max(c.Tolerance, c.FloorRatio), max(c.HarmBound, c.FloorRatio)
	safeByFloor := c.FloorDifference > 0 && c.TreatmentHigh-c.Control.Rate < c.FloorDifference
	switch {
	case c.CILow > tol:
		return fmt.Sprintf("passed beside the interval %v to %v, above %v", c.CILow, c.CIHigh, tol)
	case c.HarmBound > 0 && c.CIHigh >= bound && !safeByFloor:
		return fmt.Sprintf("passed with the interval %v to %v reaching the harm bound %v", c.CILow, c.CIHigh, bound)
	}
	return ""
}
