package rollout

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/vigil-dev/vigil/analysis/judge"
	"github.com/vigil-dev/vigil/controller/plan"
)

// Observation is what the loop learned about one progressing rollout at one
// tick.
type Observation struct {
	// judge.RequestCounts are the cumulative counts of each cohort since the rollout
	// began. The state keeps their value at the start of each step, so the
	// step's minimum counts only the step's own traffic.
	Requests judge.RequestCounts
	// Verdict is the judge's answer, whose pass already includes the plan's
	// minimums for the step; nil while the step warms up and the judge was
	// not asked.
	Verdict *judge.Verdict
	// Judge is the judge's state after this tick; nil keeps the old one.
	Judge json.RawMessage
	// Err reports that the metrics could not be read. The rest of the
	// observation is then ignored: an unreadable tick never counts as a
	// pass, nor moves the step's counts.
	Err error
}

// Due reports whether a rollout takes a look at now: it is progressing and
// its next look (NextLook) has come.
func Due(s State, now time.Time) bool {
	next := s.NextLook()
	return !next.IsZero() && !now.Before(next)
}

// NextLook is when the loop should next look at the rollout while it
// progresses, zero otherwise: the first point of the step's clock (every
// plan interval from the step's start) after the rollout last changed.
// Looks keep to the step's clock rather than following one interval after
// the other, so that a loop that is late by a moment at every look does not
// add the moments up: the look at the step's minimum duration comes when it
// is due, late by the loop's delay only, and a step is held at most one
// interval past its minimum as long as that delay is under an interval.
// A late look is never scheduled in the past: the next one is after it.
func (s *State) NextLook() time.Time {
	if s.Phase != Progressing {
		return time.Time{}
	}
	every := s.Plan.Interval.Std()
	if every <= 0 || s.StepStartedAt.IsZero() || s.UpdatedAt.Before(s.StepStartedAt) {
		return s.UpdatedAt.Add(every)
	}
	looks := int64(s.UpdatedAt.Sub(s.StepStartedAt) / every)
	return s.StepStartedAt.Add(time.Duration(looks+1) * every)
}

// Step decides what one tick's observation does to a progressing rollout:
//
//   - metrics unreadable: hold; after onProviderError.after such ticks in a
//     row, onProviderError.action;
//   - fail: roll back to 0%, even during a warm-up;
//   - pass, after the warm-up: the next step, a pause before it if it is a
//     gate, or promotion when it is 100. The judge passes a step only once
//     minStepDuration has elapsed and each cohort has minRequests within the
//     step (it reads them from StepProgress), so they are checked there, once;
//   - anything else: hold; and once maxStepDuration has elapsed in the
//     step, onTimeout.
//
// A state that is not progressing is returned unchanged with no actions.
func Step(s State, obs Observation, now time.Time) (State, []Action) {
	if s.Phase != Progressing {
		return s, nil
	}
	s = s.clone()
	s.Revision++
	s.UpdatedAt = now
	if obs.Err != nil {
		s.ProviderErrors++
		if pe := s.Plan.OnProviderError; s.ProviderErrors >= pe.After {
			reason := fmt.Sprintf("metrics unreadable for %d ticks in a row (onProviderError after %d: %s): %v",
				s.ProviderErrors, pe.After, pe.Action, obs.Err)
			return s, s.policy(pe.Action, reason, now)
		}
		return s, s.checkTimeout(now)
	}
	s.ProviderErrors = 0
	s.observeRequests(obs.Requests)
	if obs.Judge != nil {
		s.Judge = obs.Judge
	}
	if obs.Verdict == nil {
		return s, s.checkTimeout(now)
	}
	v := verdictOf(*obs.Verdict, now)
	s.Verdict = v
	switch v.Outcome {
	case judge.Fail:
		return s, s.rollback(ControllerActor, "the judge found the treatment worse than control: "+v.Summary, now)
	case judge.Pass:
		if s.Analyzing(now) {
			return s, s.advance(obs.Requests, now)
		}
	}
	return s, s.checkTimeout(now)
}

// observeRequests records a tick's cumulative counts and derives the
// step's. Counts below the step's baseline mean the provider lost history
// (a counter reset it could not see through, a retention cut): the step
// then counts afresh from here rather than never reaching its minimum.
func (s *State) observeRequests(total judge.RequestCounts) {
	b := s.StepBaseline
	if b == nil || total.Treatment < b.Treatment || total.Control < b.Control {
		b = &judge.RequestCounts{Treatment: total.Treatment, Control: total.Control}
		s.StepBaseline = b
	}
	s.Cohorts = Cohorts{
		Total: total,
		Step:  judge.RequestCounts{Treatment: total.Treatment - b.Treatment, Control: total.Control - b.Control},
	}
}

// StepProgress is what the judge needs to know of the current step at now:
// the step's baseline, how long it has run, the plan's minimums, which the
// judge is the one to check before it passes a step, and the percent it
// checks the traffic split against.
func (s State) StepProgress(now time.Time) judge.StepProgress {
	p := judge.StepProgress{
		Elapsed:     now.Sub(s.StepStartedAt),
		MinRequests: float64(s.Plan.MinRequests),
		MinDuration: s.Plan.MinStepDuration.Std(),
		Percent:     s.Percent,
		// The split is checked from two looks after the warm-up, when
		// counts of the previous percent have arrived.
		SplitSettle: s.Plan.Warmup.Std() + 2*s.Plan.Interval.Std(),
	}
	if s.StepBaseline != nil {
		p.Baseline = *s.StepBaseline
	}
	return p
}

// advance leaves a passed step for the next one, a gate or promotion.
func (s *State) advance(total judge.RequestCounts, now time.Time) []Action {
	from := s.Plan.Steps[s.Step]
	next := s.Plan.Steps[s.Step+1]
	passed := fmt.Sprintf("step %d (%v%%) passed with %.0f treatment and %.0f control requests",
		s.Step+1, from, s.Cohorts.Step.Treatment, s.Cohorts.Step.Control)
	if slices.Contains(s.Plan.Gates, next) {
		s.AwaitingGate = &next
		s.PausedReason = fmt.Sprintf("gate: waiting for approval (resume) to go to %v%%", next)
		return s.transition(Paused, s.Percent, ControllerActor, passed+"; "+s.PausedReason, now)
	}
	if next >= 100 {
		return s.promote(ControllerActor, passed+"; promoted to 100%", now)
	}
	s.enterStep(s.Step+1, now, s.Plan.Warmup.Std())
	s.StepBaseline = &judge.RequestCounts{Treatment: total.Treatment, Control: total.Control}
	return s.transition(Progressing, next, ControllerActor, fmt.Sprintf("%s; now at %v%%", passed, next), now)
}

// checkTimeout applies onTimeout to a step that stayed inconclusive too long.
func (s *State) checkTimeout(now time.Time) []Action {
	limit := s.Plan.MaxStepDuration.Std()
	if s.Phase != Progressing || now.Sub(s.StepStartedAt) < limit {
		return nil
	}
	reason := fmt.Sprintf("step %d (%v%%) undecided after maxStepDuration %v (onTimeout: %s)",
		s.Step+1, s.Percent, limit, s.Plan.OnTimeout)
	return s.policy(s.Plan.OnTimeout, reason, now)
}

// policy carries out a plan's pause-or-rollback setting.
func (s *State) policy(action plan.Action, reason string, now time.Time) []Action {
	if action == plan.Rollback {
		return s.rollback(ControllerActor, reason, now)
	}
	s.PausedReason = reason
	return s.transition(Paused, s.Percent, ControllerActor, reason, now)
}

// enterStep starts step i; analysis waits for warmup so that the SDKs have
// seen the new percentage before its traffic is judged.
func (s *State) enterStep(i int, now time.Time, warmup time.Duration) {
	s.Step = i
	s.StepStartedAt = now
	s.AnalysisStartsAt = now.Add(warmup)
	s.StepBaseline = nil
	s.ProviderErrors = 0
}

func (s *State) rollback(actor, reason string, now time.Time) []Action {
	s.AwaitingGate = nil
	s.PausedReason = ""
	return s.transition(RolledBack, 0, actor, reason, now)
}

func (s *State) promote(actor, reason string, now time.Time) []Action {
	s.AwaitingGate = nil
	s.PausedReason = ""
	s.Step = len(s.Plan.Steps) - 1
	return s.transition(Promoted, 100, actor, reason, now)
}

// transition moves the state to phase `to` at percent, records it in the
// history and returns the actions that carry it out.
func (s *State) transition(to Phase, percent float64, actor, reason string, now time.Time) []Action {
	from := s.Phase
	var acts []Action
	// Rollback and abort set 0 even when the state already says 0: a
	// pending rollout's percentage is the flag's own, which may be anything
	// its definition says, and 0 must hold whatever it was.
	if percent != s.Percent || to == RolledBack || to == Aborted {
		acts = append(acts, SetPercent{Percent: percent})
	}
	wasTracked := s.Active()
	s.Phase, s.Percent, s.UpdatedAt = to, percent, now
	if to != Paused {
		s.PausedReason = ""
	}
	if tracked := s.Active(); tracked != wasTracked {
		acts = append(acts, SetTracked{Tracked: tracked})
	}
	t := Transition{At: now, From: from, To: to, Percent: percent, Step: s.Step, Actor: actor, Reason: reason}
	if s.Verdict != nil {
		v := *s.Verdict
		t.Evidence = &v
	}
	s.History = append(s.History, t)
	return append(acts,
		Audit{Actor: actor, Message: fmt.Sprintf("rollout %s: %s -> %s at %v%%: %s", s.Key, from, to, percent, reason)},
		Notify{Key: s.Key, Transition: t},
	)
}
