package rollout

import (
	"fmt"
	"testing"
	"time"

	"github.com/vigil-dev/vigil/analysis/judge"
	"github.com/vigil-dev/vigil/controller/plan"
)

// t0 is the fake clock's start; tests move time by adding to it.
var t0 = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

// at returns the fake clock d after t0.
func at(d time.Duration) time.Time { return t0.Add(d) }

// started returns a rollout of "checkout" started at t0 with the default
// plan under overrides.
func started(t *testing.T, override *plan.Spec) State {
	t.Helper()
	s, _, err := Apply(New("checkout"), Command{Kind: Start, Actor: "alice", Plan: override}, t0)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// atStep returns a rollout moved to step i of its plan, entered at t0.
func atStep(t *testing.T, override *plan.Spec, i int, base judge.RequestCounts) State {
	t.Helper()
	s := started(t, override)
	s.Step, s.Percent = i, s.Plan.Steps[i]
	s.StepBaseline = &base
	return s
}

// spec decodes a plan as written.
func spec(t *testing.T, js string) *plan.Spec {
	t.Helper()
	s, err := plan.Decode([]byte(js))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func pass() *judge.Verdict { return &judge.Verdict{Outcome: judge.Pass, Explanation: "no harm found"} }
func fail() *judge.Verdict {
	return &judge.Verdict{Outcome: judge.Fail, Explanation: "treatment error rate 2.0% vs control 1.0%: fail"}
}
func inconclusive() *judge.Verdict {
	return &judge.Verdict{Outcome: judge.Inconclusive, Explanation: "too little data"}
}

// kinds names the actions in order, for compact comparisons.
func kinds(acts []Action) string {
	s := ""
	for _, a := range acts {
		switch a := a.(type) {
		case SetPercent:
			s += fmt.Sprintf("percent=%v ", a.Percent)
		case SetTracked:
			s += fmt.Sprintf("tracked=%v ", a.Tracked)
		case Audit:
			s += "audit "
		case Notify:
			s += "notify "
		}
	}
	return s
}
