package rollout

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/vigil-dev/vigil/analysis/judge"
	"github.com/vigil-dev/vigil/controller/plan"
)

// Phase is where a rollout is in its life.
type Phase string

// The six phases of a rollout.
const (
	// Pending: known to the controller, not started.
	Pending Phase = "pending"
	// Progressing: judged at every interval and advanced step by step.
	Progressing Phase = "progressing"
	// Paused: held at its percentage until a person resumes it.
	Paused Phase = "paused"
	// Promoted: at 100%, no longer judged or tracked; it stays there until a
	// rollback or a new start.
	Promoted Phase = "promoted"
	// RolledBack: at 0% because the treatment hurt or a person said so; it
	// stays there until a new start.
	RolledBack Phase = "rolled_back"
	// Aborted: stopped at 0% by a person without a judgement; it stays
	// there until a new start.
	Aborted Phase = "aborted"
)

// Phases lists every phase, in the order of a rollout's life.
var Phases = []Phase{Pending, Progressing, Paused, Promoted, RolledBack, Aborted}

// Verdict is the judge's latest answer with the evidence behind it, in the
// form kept in the state and shown to people (see verdictOf).
type Verdict struct {
	At      time.Time     `json:"at"`
	Outcome judge.Outcome `json:"outcome"`
	// Summary is one line a person can read, for example "treatment error
	// rate 2.1% vs control 1.0% (ratio 2.1) exceeds tolerance 1.2: fail".
	Summary string          `json:"summary"`
	Metrics []MetricVerdict `json:"metrics,omitempty"`
	// Detail is the judge's full evidence.
	Detail *judge.Verdict `json:"detail,omitempty"`
}

// MetricVerdict is the evidence for one metric of the plan.
type MetricVerdict struct {
	Name    string        `json:"name"`
	Outcome judge.Outcome `json:"outcome"`
	// EValue is the sequential test's evidence against "no harm"; the
	// metric fails when it reaches Threshold (1/alpha).
	EValue    float64 `json:"evalue"`
	Threshold float64 `json:"threshold"`
	Summary   string  `json:"summary"`
}

// Cohorts are the request counts last observed for a rollout.
type Cohorts struct {
	// Total counts since the rollout began.
	Total judge.RequestCounts `json:"total"`
	// Step counts since the current step began.
	Step judge.RequestCounts `json:"step"`
}

// Transition is one entry of a rollout's history.
type Transition struct {
	At      time.Time `json:"at"`
	From    Phase     `json:"from"`
	To      Phase     `json:"to"`
	Percent float64   `json:"percent"`
	Step    int       `json:"step"`
	// Actor is who caused it: "controller" or the name of a person's token.
	Actor    string   `json:"actor"`
	Reason   string   `json:"reason"`
	Evidence *Verdict `json:"evidence,omitempty"`
}

// ControllerActor is the actor of transitions the loop decides.
const ControllerActor = "controller"

// State is everything the controller keeps about one flag's rollout. It is
// stored as JSON; every timer is derived from its timestamps, so a restarted
// controller carries on where the last one stopped.
type State struct {
	Key   string `json:"key"`
	Phase Phase  `json:"state"`
	// Percent is the treatment share the SDKs serve: the rollout's own from
	// the first start on; while pending, the flag's definition decides it,
	// and the controller reports the flag's.
	Percent float64 `json:"percent"`
	// Step indexes Plan.Steps; -1 before the first start.
	Step int `json:"step"`
	// Plan is the resolved plan of the current rollout.
	Plan plan.Plan `json:"plan"`
	// Revision grows with every change, so a writer can refuse to store a
	// decision taken on a state that changed meanwhile.
	Revision      int64     `json:"revision"`
	StartedAt     time.Time `json:"startedAt,omitzero"`
	StepStartedAt time.Time `json:"stepStartedAt,omitzero"`
	UpdatedAt     time.Time `json:"updatedAt,omitzero"`
	// AnalysisStartsAt ends the current step's warm-up: verdicts before it
	// cannot pass the step.
	AnalysisStartsAt time.Time `json:"analysisStartsAt,omitzero"`
	// ProviderErrors counts consecutive ticks whose metrics were unreadable.
	ProviderErrors int `json:"providerErrors"`
	// PausedReason says why a paused rollout waits.
	PausedReason string `json:"pausedReason,omitempty"`
	// AwaitingGate is the step percentage a person must approve (resume)
	// before the rollout moves to it.
	AwaitingGate *float64 `json:"awaitingGate,omitempty"`
	// StepBaseline is the cumulative request counts when the current step
	// began; nil until the first observation of the step sets it.
	StepBaseline *judge.RequestCounts `json:"stepBaseline,omitempty"`
	Cohorts      Cohorts              `json:"cohorts"`
	Verdict      *Verdict             `json:"verdict"`
	History      []Transition         `json:"history"`
	// Judge is the judge's own state, opaque here, carried between ticks.
	Judge json.RawMessage `json:"judge,omitempty"`
}

// New returns the pending state of a flag that has never been rolled out.
func New(key string) State {
	return State{Key: key, Phase: Pending, Step: -1, History: []Transition{}}
}

// Analyzing reports whether the judge should run at now: the rollout
// progresses and its step's warm-up is over.
func (s *State) Analyzing(now time.Time) bool {
	return s.Phase == Progressing && !now.Before(s.AnalysisStartsAt)
}

// PassFrom is when a pass can first move the current step on: once the
// step has run its minimum duration and its warm-up is over. A look from
// then on may pass on counts a look before it read (see Step).
func (s *State) PassFrom() time.Time {
	from := s.StepStartedAt.Add(s.Plan.MinStepDuration.Std())
	if s.AnalysisStartsAt.After(from) {
		return s.AnalysisStartsAt
	}
	return from
}

// Active reports whether the rollout holds a treatment share that a person
// or the loop may still change: progressing or paused.
func (s *State) Active() bool {
	return s.Phase == Progressing || s.Phase == Paused
}

// OwnsPercent reports whether a rollout in phase p owns its flag's
// treatment percentage: in every phase after the first start. Only the
// rollout's commands and loop change the percentage then, and an edit of
// the flag (PUT, apply) keeps the stored one whatever it says, so that a
// flags file never fights the rollout: it cannot ramp a progressing one,
// bring back a treatment that was rolled back or aborted at 0%, or take a
// promoted flag back from 100% by being applied again. A new start is how a
// person changes the percentage of such a flag.
func (p Phase) OwnsPercent() bool {
	return p != Pending && p != ""
}

// Hold is what a rollout decides of its flag: the fields that a person's
// edit of the flag keeps.
type Hold struct {
	// Owned reports that the rollout owns the flag's percentage, which is
	// then Percent.
	Owned   bool
	Percent float64
	// Tracked is whether the SDKs record the flag's cohort metrics: while
	// the rollout is progressing or paused.
	Tracked bool
}

// Hold returns what s decides of its flag.
func (s *State) Hold() Hold {
	return Hold{Owned: s.Phase.OwnsPercent(), Percent: s.Percent, Tracked: s.Active()}
}

// DecodeState reads a state as stored (the JSON of State).
func DecodeState(key string, data []byte) (State, error) {
	var s State
	if err := json.Unmarshal(data, &s); err != nil {
		return State{}, fmt.Errorf("decode rollout %s: %w", key, err)
	}
	return s, nil
}

// DecodeHistory reads a rollout's history entries as stored (the JSON of
// each Transition, oldest first).
func DecodeHistory(key string, entries []json.RawMessage) ([]Transition, error) {
	out := make([]Transition, len(entries))
	for i, e := range entries {
		if err := json.Unmarshal(e, &out[i]); err != nil {
			return nil, fmt.Errorf("decode history entry %d of rollout %s: %w", i+1, key, err)
		}
	}
	return out, nil
}

// clone copies s deeply enough that changing the copy's slices and
// pointers leaves s alone: decisions never alter their input.
func (s State) clone() State {
	s.Plan = s.Plan.Clone()
	s.History = slices.Clone(s.History)
	if s.AwaitingGate != nil {
		g := *s.AwaitingGate
		s.AwaitingGate = &g
	}
	if s.StepBaseline != nil {
		b := *s.StepBaseline
		s.StepBaseline = &b
	}
	return s
}
