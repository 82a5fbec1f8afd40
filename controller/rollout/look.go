package rollout

import (
	"time"

	"github.com/vigil-dev/vigil/analysis/judge"
)

// Look is the judge's verdict at one look at a rollout, with where the
// rollout stood when it was given: what a chart of the rollout's evidence
// draws. The loop stores every look apart from the state, so that every
// replica, and one restarted, charts the same looks.
type Look struct {
	At        time.Time     `json:"at"`
	State     Phase         `json:"state"`
	Percent   float64       `json:"percent"`
	Step      int           `json:"step"`
	Outcome   judge.Outcome `json:"outcome"`
	Summary   string        `json:"summary"`
	EValue    float64       `json:"eValue"`
	Threshold float64       `json:"threshold"`
	// Checks are the judge's verdicts per check, as in the rollout's
	// verdict detail.
	Checks      []judge.CheckVerdict `json:"checks"`
	SampleRatio *judge.SampleRatio   `json:"sampleRatio,omitempty"`
}

// LookOf is verdict v given at the rollout's place: in phase p, at
// percent, in step.
func LookOf(v Verdict, p Phase, percent float64, step int) Look {
	l := Look{At: v.At, State: p, Percent: percent, Step: step, Outcome: v.Outcome, Summary: v.Summary}
	if d := v.Detail; d != nil {
		l.EValue, l.Threshold, l.Checks, l.SampleRatio = d.EValue, d.Threshold, d.Checks, d.SampleRatio
	}
	return l
}

// NewLook returns the look that a decision from s to next records: the
// verdict next carries, if the judge gave it in this decision, at the
// place s stood when the judge looked.
func NewLook(s, next State) (Look, bool) {
	v := next.Verdict
	if v == nil || (s.Verdict != nil && !v.At.After(s.Verdict.At)) {
		return Look{}, false
	}
	return LookOf(*v, s.Phase, s.Percent, s.Step), true
}
