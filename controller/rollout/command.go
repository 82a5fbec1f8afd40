package rollout

import (
	"fmt"
	"strings"
	"time"

	"github.com/vigil-dev/vigil/analysis/judge"
	"github.com/vigil-dev/vigil/controller/plan"
)

// CommandKind names a person's command.
type CommandKind string

// The commands a person can give a rollout.
const (
	Start    CommandKind = "start"
	Pause    CommandKind = "pause"
	Resume   CommandKind = "resume"
	Promote  CommandKind = "promote"
	Rollback CommandKind = "rollback"
	Abort    CommandKind = "abort"
)

// Commands lists every command kind.
var Commands = []CommandKind{Start, Pause, Resume, Promote, Rollback, Abort}

// Command is a person's instruction to a rollout.
type Command struct {
	Kind CommandKind
	// Actor is who gave it, the name of their token.
	Actor string
	// Reason is an optional message kept in the history and audit log.
	Reason string
	// FlagPlan is the plan in the flag's definition and Plan the overrides
	// given with the command; both only matter to Start.
	FlagPlan *plan.Spec
	Plan     *plan.Spec
}

// RefusedError is returned for a command that makes no sense in the
// rollout's current phase. The API answers it with 409 Conflict.
type RefusedError struct {
	Key     string
	Command CommandKind
	Phase   Phase
	// Hint says what would make sense instead.
	Hint string
}

// Error describes the problem in one line.
func (e *RefusedError) Error() string {
	return fmt.Sprintf("cannot %s rollout %s: it is %s; %s", e.Command, e.Key, e.Phase, e.Hint)
}

// Apply carries out a person's command. A command the current phase does not
// allow returns a *RefusedError, and a start whose plan does not resolve the
// problems of plan.Resolve, *flag.FieldError values under "plan"; either way s is returned unchanged.
//
//   - start: from pending, rolled_back, aborted or promoted, a new rollout
//     at the first step, with a fresh judge. A gate on the first step is
//     approved by the start itself.
//   - pause: a progressing rollout holds its percentage.
//   - resume: a paused rollout at a gate moves to the gated step (or is
//     promoted if that step is 100); otherwise it carries on at its step,
//     whose bake time and counts start again.
//   - promote: a progressing or paused rollout goes to 100% at once.
//   - rollback: a progressing, paused or promoted rollout goes to 0%.
//   - abort: a pending, progressing or paused rollout stops at 0%.
func Apply(s State, cmd Command, now time.Time) (State, []Action, error) {
	refuse := func(hint string) (State, []Action, error) {
		return s, nil, &RefusedError{Key: s.Key, Command: cmd.Kind, Phase: s.Phase, Hint: hint}
	}
	actor := cmd.Actor
	if actor == "" {
		actor = "unknown"
	}
	why := func(done string) string {
		done += " by " + actor
		if r := strings.TrimSpace(cmd.Reason); r != "" {
			done += ": " + r
		}
		return done
	}
	switch cmd.Kind {
	case Start:
		if s.Active() {
			return refuse("pause it, promote it, roll it back or abort it first")
		}
		p, err := plan.Resolve(cmd.FlagPlan, cmd.Plan)
		if err != nil {
			return s, nil, plan.Within(err, s.Key, "plan")
		}
		n := s.clone()
		n.Revision++
		n.Plan = p
		n.StartedAt = now
		n.Judge, n.Verdict, n.AwaitingGate = nil, nil, nil
		n.Cohorts = Cohorts{}
		n.enterStep(0, now, p.Warmup.Std())
		n.StepBaseline = &judge.RequestCounts{}
		acts := n.transition(Progressing, p.Steps[0], actor, why(fmt.Sprintf("started at %v%%", p.Steps[0])), now)
		return n, acts, nil
	case Pause:
		switch s.Phase {
		case Paused:
			return refuse("it is already paused (" + s.PausedReason + "); resume it to carry on")
		case Progressing:
		default:
			return refuse("only a progressing rollout can be paused")
		}
		n := s.clone()
		n.Revision++
		n.PausedReason = why("paused")
		return n, n.transition(Paused, n.Percent, actor, n.PausedReason, now), nil
	case Resume:
		if s.Phase != Paused {
			return refuse("only a paused rollout can be resumed")
		}
		n := s.clone()
		n.Revision++
		if g := n.AwaitingGate; g != nil {
			n.AwaitingGate = nil
			if *g >= 100 {
				return n, n.promote(actor, why("gate to 100% approved; promoted"), now), nil
			}
			n.enterStep(n.Step+1, now, n.Plan.Warmup.Std())
			return n, n.transition(Progressing, *g, actor, why(fmt.Sprintf("gate approved; now at %v%%", *g)), now), nil
		}
		// The percentage did not change while paused, so there is nothing
		// to warm up; the step's bake time and minimums start again.
		n.enterStep(n.Step, now, 0)
		return n, n.transition(Progressing, n.Percent, actor, why(fmt.Sprintf("resumed at %v%%", n.Percent)), now), nil
	case Promote:
		if !s.Active() {
			return refuse("only a progressing or paused rollout can be promoted; start a new rollout instead")
		}
		n := s.clone()
		n.Revision++
		return n, n.promote(actor, why("promoted to 100%"), now), nil
	case Rollback:
		switch s.Phase {
		case Progressing, Paused, Promoted:
		case RolledBack:
			return refuse("it is already rolled back at 0%")
		default:
			return refuse("only a progressing, paused or promoted rollout can be rolled back")
		}
		n := s.clone()
		n.Revision++
		return n, n.rollback(actor, why("rolled back to 0%"), now), nil
	case Abort:
		switch s.Phase {
		case Pending, Progressing, Paused:
		default:
			return refuse("it has already finished; start a new rollout instead")
		}
		n := s.clone()
		n.Revision++
		n.AwaitingGate = nil
		return n, n.transition(Aborted, 0, actor, why("aborted"), now), nil
	}
	return s, nil, fmt.Errorf("rollout %s: unknown command %q, want one of %v", s.Key, cmd.Kind, Commands)
}
