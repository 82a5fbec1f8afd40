package rollout

import (
	"errors"
	"testing"
	"time"

	"github.com/vigil-dev/vigil/analysis/judge"
	"github.com/vigil-dev/vigil/controller/plan"
	"github.com/vigil-dev/vigil/sdk/flag"
)

// FuzzRollout starts a rollout with a plan override decoded from JSON and
// drives it with a script of ticks and commands, checking after every move
// that the state is one the SDKs can serve.
func FuzzRollout(f *testing.F) {
	f.Add([]byte(`{}`), []byte{0, 1, 1, 2, 3, 1, 4, 5})
	f.Add([]byte(`{"steps":[10,50],"gates":[50],"interval":"1s","minStepDuration":"2s","minRequests":1}`), []byte{1, 1, 1, 1, 6, 1, 1, 1})
	f.Add([]byte(`{"onTimeout":"rollback","maxStepDuration":"5m"}`), []byte{2, 2, 2, 2, 9, 10, 11})
	f.Add([]byte(`{"steps":[5,1]}`), []byte{1})
	f.Add([]byte(`{"onProviderError":{"after":1,"action":"rollback"}}`), []byte{3, 8, 7, 12})
	f.Fuzz(func(t *testing.T, planJSON, script []byte) {
		override, err := plan.Decode(planJSON)
		if err != nil {
			return
		}
		s, _, err := Apply(New("f"), Command{Kind: Start, Plan: override}, t0)
		var fe *flag.FieldError
		if err != nil {
			if !errors.As(err, &fe) {
				t.Fatalf("start failed without a *flag.FieldError: %v", err)
			}
			return
		}
		now := t0
		var total judge.RequestCounts
		for _, op := range script {
			now = now.Add(time.Duration(op%16) * time.Minute)
			total.Treatment += float64(op) * 10
			total.Control += float64(op) * 100
			switch op % 13 {
			case 0:
				s, _ = Step(s, Observation{Requests: total}, now)
			case 1:
				s, _ = Step(s, Observation{Requests: total, Verdict: pass()}, now)
			case 2:
				s, _ = Step(s, Observation{Requests: total, Verdict: inconclusive()}, now)
			case 3:
				s, _ = Step(s, Observation{Err: errors.New("down")}, now)
			case 4:
				s, _ = Step(s, Observation{Requests: total, Verdict: fail()}, now)
			default:
				var err error
				s, _, err = Apply(s, Command{Kind: Commands[int(op)%len(Commands)], Plan: override}, now)
				var re *RefusedError
				if err != nil && !errors.As(err, &re) {
					t.Fatalf("command failed without a refusal: %v", err)
				}
			}
			switch s.Phase {
			case RolledBack, Aborted:
				if s.Percent != 0 {
					t.Fatalf("%s at %v%%", s.Phase, s.Percent)
				}
			case Promoted:
				if s.Percent != 100 {
					t.Fatalf("promoted at %v%%", s.Percent)
				}
			case Progressing, Paused:
				if s.Step < 0 || s.Step >= len(s.Plan.Steps)-1 || s.Percent != s.Plan.Steps[s.Step] {
					t.Fatalf("%s at %v%% on step %d of %v", s.Phase, s.Percent, s.Step, s.Plan.Steps)
				}
			default:
				t.Fatalf("phase %q", s.Phase)
			}
		}
	})
}
