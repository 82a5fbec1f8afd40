package rollout

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vigil-dev/vigil/analysis/judge"
	"github.com/vigil-dev/vigil/sdk/flag"
)

// inPhase returns a rollout of "checkout" in the given phase, reached the
// way a real one would be.
func inPhase(t *testing.T, p Phase) State {
	t.Helper()
	if p == Pending {
		return New("checkout")
	}
	s := atStep(t, nil, 2, judge.RequestCounts{})
	var kind CommandKind
	switch p {
	case Progressing:
		return s
	case Paused:
		kind = Pause
	case Promoted:
		kind = Promote
	case RolledBack:
		kind = Rollback
	case Aborted:
		kind = Abort
	}
	s, _, err := Apply(s, Command{Kind: kind, Actor: "setup"}, at(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestApplyInEveryPhase(t *testing.T) {
	type want struct {
		phase   Phase   // "" means refused
		percent float64 // after the command
		actions string
	}
	refused := want{}
	table := map[CommandKind]map[Phase]want{
		Start: {
			Pending:     {Progressing, 1, "percent=1 tracked=true audit notify "},
			Progressing: refused,
			Paused:      refused,
			Promoted:    {Progressing, 1, "percent=1 tracked=true audit notify "},
			RolledBack:  {Progressing, 1, "percent=1 tracked=true audit notify "},
			Aborted:     {Progressing, 1, "percent=1 tracked=true audit notify "},
		},
		Pause: {
			Pending:     refused,
			Progressing: {Paused, 10, "audit notify "},
			Paused:      refused,
			Promoted:    refused,
			RolledBack:  refused,
			Aborted:     refused,
		},
		Resume: {
			Pending:     refused,
			Progressing: refused,
			Paused:      {Progressing, 10, "audit notify "},
			Promoted:    refused,
			RolledBack:  refused,
			Aborted:     refused,
		},
		Promote: {
			Pending:     refused,
			Progressing: {Promoted, 100, "percent=100 tracked=false audit notify "},
			Paused:      {Promoted, 100, "percent=100 tracked=false audit notify "},
			Promoted:    refused,
			RolledBack:  refused,
			Aborted:     refused,
		},
		Rollback: {
			Pending:     refused,
			Progressing: {RolledBack, 0, "percent=0 tracked=false audit notify "},
			Paused:      {RolledBack, 0, "percent=0 tracked=false audit notify "},
			Promoted:    {RolledBack, 0, "percent=0 audit notify "},
			RolledBack:  refused,
			Aborted:     refused,
		},
		Abort: {
			// A pending rollout's flag may serve any percentage its
			// definition gives it: abort sets 0 whatever the state says.
			Pending:     {Aborted, 0, "percent=0 audit notify "},
			Progressing: {Aborted, 0, "percent=0 tracked=false audit notify "},
			Paused:      {Aborted, 0, "percent=0 tracked=false audit notify "},
			Promoted:    refused,
			RolledBack:  refused,
			Aborted:     refused,
		},
	}
	for _, kind := range Commands {
		for _, phase := range Phases {
			w := table[kind][phase]
			t.Run(string(kind)+" when "+string(phase), func(t *testing.T) {
				in := inPhase(t, phase)
				before, _ := json.Marshal(in)
				now := at(2 * time.Minute)
				got, acts, err := Apply(in, Command{Kind: kind, Actor: "carol", Reason: "  on call  "}, now)
				if after, _ := json.Marshal(in); string(after) != string(before) {
					t.Error("Apply changed its input state")
				}
				if w.phase == "" {
					var re *RefusedError
					if !errors.As(err, &re) {
						t.Fatalf("err = %v, want a *RefusedError", err)
					}
					if re.Phase != phase || re.Command != kind || re.Key != "checkout" {
						t.Errorf("refusal %+v names the wrong phase, command or key", re)
					}
					msg := err.Error()
					if !strings.Contains(msg, "cannot "+string(kind)+" rollout checkout: it is "+string(phase)+";") || re.Hint == "" {
						t.Errorf("unclear refusal %q", msg)
					}
					if !reflect.DeepEqual(got, in) || acts != nil {
						t.Errorf("a refused command changed the state or acted: %v", kinds(acts))
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if got.Phase != w.phase || got.Percent != w.percent {
					t.Errorf("got %s at %v%%, want %s at %v%%", got.Phase, got.Percent, w.phase, w.percent)
				}
				if k := kinds(acts); k != w.actions {
					t.Errorf("actions %q, want %q", k, w.actions)
				}
				if got.Revision <= in.Revision || !got.UpdatedAt.Equal(now) {
					t.Errorf("revision %d -> %d, updatedAt %v", in.Revision, got.Revision, got.UpdatedAt)
				}
				last := got.History[len(got.History)-1]
				if len(got.History) != len(in.History)+1 || last.From != phase || last.To != w.phase || last.Actor != "carol" || !last.At.Equal(now) {
					t.Errorf("history entry %+v", last)
				}
				if !strings.Contains(last.Reason, "by carol: on call") {
					t.Errorf("reason %q lacks the actor and message", last.Reason)
				}
				if a := acts[len(acts)-2].(Audit); a.Actor != "carol" || !strings.Contains(a.Message, "rollout checkout: "+string(phase)+" -> "+string(w.phase)) {
					t.Errorf("audit %+v", a)
				}
			})
		}
	}
}

func TestApplyStart(t *testing.T) {
	flagPlan := spec(t, `{"steps": [10, 50], "interval": "1m"}`)
	s := inPhase(t, RolledBack)
	s.Verdict, s.Judge, s.ProviderErrors = verdictOf(*fail(), t0), json.RawMessage(`{"old":true}`), 3
	got, _, err := Apply(s, Command{Kind: Start, Actor: "dan", FlagPlan: flagPlan, Plan: spec(t, `{"minRequests": 100}`)}, at(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if got.Percent != 10 || got.Step != 0 || !reflect.DeepEqual(got.Plan.Steps, []float64{10, 50, 100}) || got.Plan.MinRequests != 100 {
		t.Errorf("start used plan %+v at %v%%", got.Plan, got.Percent)
	}
	if !got.StartedAt.Equal(at(time.Hour)) || !got.StepStartedAt.Equal(at(time.Hour)) || !got.AnalysisStartsAt.Equal(at(time.Hour+time.Minute)) {
		t.Errorf("timers started %v step %v analysis %v", got.StartedAt, got.StepStartedAt, got.AnalysisStartsAt)
	}
	if got.Verdict != nil || got.Judge != nil || got.ProviderErrors != 0 || got.Cohorts != (Cohorts{}) || *got.StepBaseline != (judge.RequestCounts{}) {
		t.Errorf("a new start kept the old rollout's evidence: %+v", got)
	}
	if len(got.History) != len(s.History)+1 {
		t.Errorf("history %d entries, want the old %d and one more", len(got.History), len(s.History))
	}
}

func TestApplyStartWithGateOnFirstStep(t *testing.T) {
	s, _, err := Apply(New("checkout"), Command{Kind: Start, Plan: spec(t, `{"gates": [1]}`)}, t0)
	if err != nil || s.Phase != Progressing || s.Percent != 1 {
		t.Fatalf("start with a gate on step 1: %s at %v%%, err %v", s.Phase, s.Percent, err)
	}
}

func TestApplyStartBadPlan(t *testing.T) {
	in := New("checkout")
	got, acts, err := Apply(in, Command{Kind: Start, Plan: spec(t, `{"steps": [50, 20]}`)}, t0)
	var fe *flag.FieldError
	if !errors.As(err, &fe) || fe.Field != "plan.steps[1]" || fe.Flag != "checkout" {
		t.Fatalf("err = %v, want a *flag.FieldError of checkout on plan.steps[1]", err)
	}
	if !strings.Contains(err.Error(), "flag checkout: plan.steps[1]") {
		t.Errorf("error %q does not say where", err)
	}
	var re *RefusedError
	if errors.As(err, &re) {
		t.Error("a bad plan is not a refusal")
	}
	if !reflect.DeepEqual(got, in) || acts != nil {
		t.Error("a bad plan changed the state")
	}
}

func TestApplyResumeAtGate(t *testing.T) {
	s := atStep(t, spec(t, `{"gates": [25]}`), 2, judge.RequestCounts{})
	s, _ = Step(s, Observation{Requests: judge.RequestCounts{Treatment: 1000, Control: 1000}, Verdict: pass()}, at(10*time.Minute))
	if s.Phase != Paused || s.AwaitingGate == nil {
		t.Fatalf("not at the gate: %s", s.Phase)
	}
	s, acts, err := Apply(s, Command{Kind: Resume, Actor: "erin"}, at(20*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if s.Phase != Progressing || s.Step != 3 || s.Percent != 25 || s.AwaitingGate != nil || s.PausedReason != "" {
		t.Errorf("after approval: %s step %d at %v%% gate %v reason %q", s.Phase, s.Step, s.Percent, s.AwaitingGate, s.PausedReason)
	}
	if k := kinds(acts); k != "percent=25 audit notify " {
		t.Errorf("actions %q", k)
	}
	if !s.StepStartedAt.Equal(at(20*time.Minute)) || !s.AnalysisStartsAt.Equal(at(20*time.Minute+30*time.Second)) || s.StepBaseline != nil {
		t.Errorf("the gated step's clocks: started %v analysis %v baseline %v", s.StepStartedAt, s.AnalysisStartsAt, s.StepBaseline)
	}
	if !strings.Contains(s.History[len(s.History)-1].Reason, "gate approved; now at 25% by erin") {
		t.Errorf("reason %q", s.History[len(s.History)-1].Reason)
	}
	// The first observation of the approved step sets its baseline.
	s, _ = Step(s, Observation{Requests: judge.RequestCounts{Treatment: 1200, Control: 1500}, Verdict: inconclusive()}, at(21*time.Minute))
	if *s.StepBaseline != (judge.RequestCounts{Treatment: 1200, Control: 1500}) || s.Cohorts.Step != (judge.RequestCounts{}) {
		t.Errorf("baseline %+v step counts %+v", s.StepBaseline, s.Cohorts.Step)
	}
}

func TestApplyResumeAtGateTo100Promotes(t *testing.T) {
	s := atStep(t, spec(t, `{"gates": [100]}`), 4, judge.RequestCounts{})
	s, _ = Step(s, Observation{Requests: judge.RequestCounts{Treatment: 1000, Control: 1000}, Verdict: pass()}, at(10*time.Minute))
	s, acts, err := Apply(s, Command{Kind: Resume}, at(11*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if s.Phase != Promoted || s.Percent != 100 || kinds(acts) != "percent=100 tracked=false audit notify " {
		t.Errorf("%s at %v%%, actions %q", s.Phase, s.Percent, kinds(acts))
	}
}

func TestApplyResumeRestartsTheStep(t *testing.T) {
	s := atStep(t, nil, 1, judge.RequestCounts{})
	s, _ = Step(s, Observation{Requests: judge.RequestCounts{Treatment: 10, Control: 10}, Verdict: inconclusive()}, at(time.Hour))
	if s.Phase != Paused {
		t.Fatalf("phase %s, want paused by the timeout", s.Phase)
	}
	s, acts, err := Apply(s, Command{Kind: Resume}, at(2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if s.Phase != Progressing || s.Step != 1 || s.Percent != 5 || kinds(acts) != "audit notify " {
		t.Fatalf("%s step %d at %v%%, actions %q", s.Phase, s.Step, s.Percent, kinds(acts))
	}
	if !s.StepStartedAt.Equal(at(2*time.Hour)) || !s.AnalysisStartsAt.Equal(at(2*time.Hour)) || s.StepBaseline != nil {
		t.Errorf("clocks not restarted: step %v analysis %v baseline %v", s.StepStartedAt, s.AnalysisStartsAt, s.StepBaseline)
	}
	// The restarted step does not time out at once.
	s, _ = Step(s, Observation{Requests: judge.RequestCounts{Treatment: 20, Control: 20}, Verdict: inconclusive()}, at(2*time.Hour+time.Minute))
	if s.Phase != Progressing {
		t.Errorf("phase %s right after resuming", s.Phase)
	}
}

func TestApplyPauseKeepsTheReason(t *testing.T) {
	s, _, err := Apply(inPhase(t, Progressing), Command{Kind: Pause, Actor: "fay", Reason: "deploy freeze"}, at(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if s.PausedReason != "paused by fay: deploy freeze" {
		t.Errorf("paused reason %q", s.PausedReason)
	}
	_, _, err = Apply(s, Command{Kind: Pause}, at(2*time.Minute))
	if err == nil || !strings.Contains(err.Error(), "already paused (paused by fay: deploy freeze)") {
		t.Errorf("second pause: %v", err)
	}
}

func TestApplyUnknownCommand(t *testing.T) {
	in := inPhase(t, Progressing)
	got, acts, err := Apply(in, Command{Kind: "restart"}, t0)
	var re *RefusedError
	if err == nil || errors.As(err, &re) || !strings.Contains(err.Error(), `unknown command "restart"`) {
		t.Errorf("err = %v", err)
	}
	if !reflect.DeepEqual(got, in) || acts != nil {
		t.Error("an unknown command changed the state")
	}
}
