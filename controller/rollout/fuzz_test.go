package rollout

import (
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

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
		var override flag.Plan
		if err := flag.DecodeStrict(planJSON, &override); err != nil {
			return
		}
		s, _, err := Apply(New("f"), Command{Kind: Start, Plan: &override}, t0)
		var pe *PlanError
		if err != nil {
			if !errors.As(err, &pe) {
				t.Fatalf("start failed without a *PlanError: %v", err)
			}
			return
		}
		now := t0
		var total Requests
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
				s, _, err = Apply(s, Command{Kind: Commands[int(op)%len(Commands)], Plan: &override}, now)
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

// FuzzCheckExplicitZeros feeds written plans to CheckExplicitZeros: it never
// panics, and refuses only fields whose zero a plan reads as unset.
func FuzzCheckExplicitZeros(f *testing.F) {
	f.Add([]byte(`{"minRequests": 0, "minStepDuration": "0s"}`))
	f.Add([]byte(`{"onProviderError": {"after": 0}, "alpha": 0}`))
	f.Add([]byte(`{"interval": "1s", "minRequests": 1}`))
	f.Add([]byte(`[0, {"minRequests": null}]`))
	f.Add([]byte(`{"metrics": [{"name": "latency", "tolerance": 0, "maxP99": "0s"}, 3]}`))
	known := map[string]bool{}
	for _, z := range zeroAsUnset {
		known[strings.Join(z.path, ".")] = true
	}
	metricField := regexp.MustCompile(`^metrics\[[0-9]+\]\.(.+)$`)
	for _, z := range metricZeroAsUnset {
		known["metrics[]."+z.field] = true
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var doc any
		if json.Unmarshal(data, &doc) != nil {
			return
		}
		err := CheckExplicitZeros(doc)
		if err == nil {
			return
		}
		for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
			var pe *PlanError
			if !errors.As(e, &pe) {
				t.Fatalf("%v is not a *PlanError", e)
			}
			field := pe.Field
			if m := metricField.FindStringSubmatch(field); m != nil {
				field = "metrics[]." + m[1]
			}
			if !known[field] {
				t.Fatalf("refused %v, not a zero-as-unset field", e)
			}
		}
	})
}

// FuzzCheckFileZeros feeds flags files to CheckFileZeros: it never panics,
// and whatever it refuses in a file it can read is a *flag.FieldError of a
// rollout plan field.
func FuzzCheckFileZeros(f *testing.F) {
	f.Add([]byte("flags:\n  - key: a\n    rollout: {percent: 5, plan: {minRequests: 0}}\n"))
	f.Add([]byte(`{"flags": [{"rollout": {"plan": {"metrics": [{"max": 0}]}}}, 7]}`))
	f.Add([]byte("flags: nope\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		err := CheckFileZeros(data)
		if err == nil || strings.HasPrefix(err.Error(), "parse flags: ") {
			return
		}
		var walk func(error)
		walk = func(err error) {
			if j, ok := err.(interface{ Unwrap() []error }); ok {
				for _, e := range j.Unwrap() {
					walk(e)
				}
				return
			}
			var fe *flag.FieldError
			if !errors.As(err, &fe) || !strings.HasPrefix(fe.Field, "rollout.plan.") {
				t.Fatalf("refused %v, not a plan field of a flag", err)
			}
		}
		walk(err)
	})
}
