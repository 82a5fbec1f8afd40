package rollout

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vigil-dev/vigil/analysis/judge"
)

func TestStep(t *testing.T) {
	enough := judge.RequestCounts{Treatment: 500, Control: 20000}
	gated := spec(t, `{"gates": [25]}`)
	gatedFull := spec(t, `{"gates": [100]}`)
	timeoutRollback := spec(t, `{"onTimeout": "rollback"}`)
	for _, tc := range []struct {
		name  string
		state func(t *testing.T) State
		obs   Observation
		now   time.Duration
		// what should follow
		phase   Phase
		percent float64
		step    int
		actions string
		reason  string // a substring of the last history entry's reason
	}{
		{
			name:  "pass during warm-up holds",
			state: func(t *testing.T) State { return started(t, spec(t, `{"minStepDuration": "1s"}`)) },
			obs:   Observation{Requests: enough, Verdict: pass()},
			now:   29 * time.Second,
			phase: Progressing, percent: 1, step: 0,
		},
		{
			name:  "pass with the minimums advances",
			state: func(t *testing.T) State { return started(t, nil) },
			obs:   Observation{Requests: enough, Verdict: pass()},
			now:   5 * time.Minute,
			phase: Progressing, percent: 5, step: 1,
			actions: "percent=5 audit notify ",
			reason:  "step 1 (1%) passed with 500 treatment and 20000 control requests; now at 5%",
		},
		{
			name:  "inconclusive with the minimums holds",
			state: func(t *testing.T) State { return started(t, nil) },
			obs:   Observation{Requests: enough, Verdict: inconclusive()},
			now:   10 * time.Minute,
			phase: Progressing, percent: 1, step: 0,
		},
		{
			name:  "no verdict (warm-up) holds",
			state: func(t *testing.T) State { return started(t, nil) },
			obs:   Observation{Requests: enough},
			now:   10 * time.Second,
			phase: Progressing, percent: 1, step: 0,
		},
		{
			name:  "fail rolls back",
			state: func(t *testing.T) State { return atStep(t, nil, 2, judge.RequestCounts{}) },
			obs:   Observation{Requests: judge.RequestCounts{Treatment: 40, Control: 400}, Verdict: fail()},
			now:   2 * time.Minute,
			phase: RolledBack, percent: 0, step: 2,
			actions: "percent=0 tracked=false audit notify ",
			reason:  "the judge found the treatment worse than control: treatment error rate 2.0%",
		},
		{
			name:  "fail during warm-up still rolls back",
			state: func(t *testing.T) State { return started(t, nil) },
			obs:   Observation{Verdict: fail()},
			now:   time.Second,
			phase: RolledBack, percent: 0, step: 0,
			actions: "percent=0 tracked=false audit notify ",
		},
		{
			name:  "pass into a gate pauses before the step",
			state: func(t *testing.T) State { return atStep(t, gated, 2, judge.RequestCounts{}) },
			obs:   Observation{Requests: enough, Verdict: pass()},
			now:   6 * time.Minute,
			phase: Paused, percent: 10, step: 2,
			actions: "audit notify ",
			reason:  "gate: waiting for approval (resume) to go to 25%",
		},
		{
			name:  "pass at the last step before 100 promotes",
			state: func(t *testing.T) State { return atStep(t, nil, 4, judge.RequestCounts{}) },
			obs:   Observation{Requests: enough, Verdict: pass()},
			now:   5 * time.Minute,
			phase: Promoted, percent: 100, step: 5,
			actions: "percent=100 tracked=false audit notify ",
			reason:  "promoted to 100%",
		},
		{
			name:  "a gate at 100 pauses before promotion",
			state: func(t *testing.T) State { return atStep(t, gatedFull, 4, judge.RequestCounts{}) },
			obs:   Observation{Requests: enough, Verdict: pass()},
			now:   5 * time.Minute,
			phase: Paused, percent: 50, step: 4,
			actions: "audit notify ",
			reason:  "to go to 100%",
		},
		{
			name:  "inconclusive past maxStepDuration pauses",
			state: func(t *testing.T) State { return atStep(t, nil, 1, judge.RequestCounts{}) },
			obs:   Observation{Requests: judge.RequestCounts{Treatment: 100, Control: 100}, Verdict: inconclusive()},
			now:   time.Hour,
			phase: Paused, percent: 5, step: 1,
			actions: "audit notify ",
			reason:  "step 2 (5%) undecided after maxStepDuration 1h0m0s (onTimeout: pause)",
		},
		{
			name:  "inconclusive just before maxStepDuration holds",
			state: func(t *testing.T) State { return atStep(t, nil, 1, judge.RequestCounts{}) },
			obs:   Observation{Requests: judge.RequestCounts{Treatment: 100, Control: 100}, Verdict: inconclusive()},
			now:   time.Hour - time.Nanosecond,
			phase: Progressing, percent: 5, step: 1,
		},
		{
			name:  "timeout with onTimeout rollback rolls back",
			state: func(t *testing.T) State { return atStep(t, timeoutRollback, 1, judge.RequestCounts{}) },
			obs:   Observation{Verdict: inconclusive()},
			now:   2 * time.Hour,
			phase: RolledBack, percent: 0, step: 1,
			actions: "percent=0 tracked=false audit notify ",
			reason:  "onTimeout: rollback",
		},
		{
			name:  "a provider error holds",
			state: func(t *testing.T) State { return started(t, nil) },
			obs:   Observation{Requests: enough, Verdict: pass(), Err: errors.New("prometheus: connection refused")},
			now:   10 * time.Minute,
			phase: Progressing, percent: 1, step: 0,
		},
		{
			name: "the fifth provider error in a row pauses",
			state: func(t *testing.T) State {
				s := started(t, nil)
				s.ProviderErrors = 4
				return s
			},
			obs:   Observation{Err: errors.New("prometheus: connection refused")},
			now:   10 * time.Minute,
			phase: Paused, percent: 1, step: 0,
			actions: "audit notify ",
			reason:  "metrics unreadable for 5 ticks in a row (onProviderError after 5: pause): prometheus: connection refused",
		},
		{
			name: "provider errors with action rollback roll back",
			state: func(t *testing.T) State {
				s := started(t, spec(t, `{"onProviderError": {"after": 2, "action": "rollback"}}`))
				s.ProviderErrors = 1
				return s
			},
			obs:   Observation{Err: errors.New("timeout")},
			now:   time.Minute,
			phase: RolledBack, percent: 0, step: 0,
			actions: "percent=0 tracked=false audit notify ",
			reason:  "onProviderError after 2: rollback",
		},
		{
			name:  "a provider error past maxStepDuration times out",
			state: func(t *testing.T) State { return started(t, nil) },
			obs:   Observation{Err: errors.New("timeout")},
			now:   time.Hour,
			phase: Paused, percent: 1, step: 0,
			actions: "audit notify ",
			reason:  "maxStepDuration",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.state(t)
			before, _ := json.Marshal(in)
			got, acts := Step(in, tc.obs, at(tc.now))
			if after, _ := json.Marshal(in); string(after) != string(before) {
				t.Error("Step changed its input state")
			}
			if got.Phase != tc.phase || got.Percent != tc.percent || got.Step != tc.step {
				t.Errorf("got %s at %v%% step %d, want %s at %v%% step %d",
					got.Phase, got.Percent, got.Step, tc.phase, tc.percent, tc.step)
			}
			if k := kinds(acts); k != tc.actions {
				t.Errorf("actions %q, want %q", k, tc.actions)
			}
			if got.Revision != in.Revision+1 || !got.UpdatedAt.Equal(at(tc.now)) {
				t.Errorf("revision %d updatedAt %v, want %d and %v", got.Revision, got.UpdatedAt, in.Revision+1, at(tc.now))
			}
			if tc.actions == "" {
				if len(got.History) != len(in.History) {
					t.Errorf("a hold added history: %+v", got.History[len(in.History):])
				}
				return
			}
			if len(got.History) != len(in.History)+1 {
				t.Fatalf("history has %d entries, want %d", len(got.History), len(in.History)+1)
			}
			last := got.History[len(got.History)-1]
			if !strings.Contains(last.Reason, tc.reason) {
				t.Errorf("reason %q does not contain %q", last.Reason, tc.reason)
			}
			want := Transition{At: at(tc.now), From: in.Phase, To: tc.phase, Percent: tc.percent, Step: tc.step, Actor: ControllerActor, Reason: last.Reason, Evidence: got.Verdict}
			if !reflect.DeepEqual(last, want) {
				t.Errorf("transition %+v, want %+v", last, want)
			}
			n, ok := acts[len(acts)-1].(Notify)
			if !ok || !reflect.DeepEqual(n.Transition, last) || n.Key != "checkout" {
				t.Errorf("last action %+v, want Notify of %+v", acts[len(acts)-1], last)
			}
			if a, ok := acts[len(acts)-2].(Audit); !ok || a.Actor != ControllerActor || !strings.Contains(a.Message, tc.reason) {
				t.Errorf("audit action %+v does not carry the reason", acts[len(acts)-2])
			}
		})
	}
}

func TestDue(t *testing.T) {
	s := started(t, spec(t, `{"interval": "30s"}`)) // updated at t0
	paused := s
	paused.Phase = Paused
	for _, tc := range []struct {
		name string
		s    State
		now  time.Duration
		want bool
	}{
		{"before the interval", s, 29 * time.Second, false},
		{"a moment before the interval", s, 30*time.Second - time.Millisecond, false},
		{"at the interval", s, 30 * time.Second, true},
		{"after the interval", s, time.Minute, true},
		{"paused, however late", paused, time.Hour, false},
	} {
		if got := Due(tc.s, at(tc.now)); got != tc.want {
			t.Errorf("%s: Due at +%v = %v, want %v", tc.name, tc.now, got, tc.want)
		}
	}
}

// Looks keep to the step's clock: a loop late by a few seconds at each look
// still looks at the step's minimum duration (30 s, every 10 s) when it
// comes, not one late look after another past 40 s.
func TestNextLookKeepsToTheStepsClock(t *testing.T) {
	s := started(t, spec(t, `{"interval": "10s"}`)) // step started and updated at t0
	for _, tc := range []struct {
		name    string
		updated time.Duration
		want    time.Duration
	}{
		{"the step just started", 0, 10 * time.Second},
		{"a look 4 s late", 14 * time.Second, 20 * time.Second},
		{"a look 8 s late", 28 * time.Second, 30 * time.Second},
		{"a look exactly on time", 20 * time.Second, 30 * time.Second},
		{"a look a whole interval late", 31 * time.Second, 40 * time.Second},
		{"a look a moment before its time", 20*time.Second - time.Millisecond, 20 * time.Second},
	} {
		u := s
		u.UpdatedAt = at(tc.updated)
		if got := u.NextLook(); !got.Equal(at(tc.want)) {
			t.Errorf("%s (updated at +%v): next look at +%v, want +%v", tc.name, tc.updated, got.Sub(at(0)), tc.want)
		}
	}
	paused := s
	paused.Phase = Paused
	if got := paused.NextLook(); !got.IsZero() {
		t.Errorf("paused: next look %v, want none", got)
	}
}

// TestPassFrom: a pass can move a step on once both its minimum duration
// and its warm-up are over, whichever ends later.
func TestPassFrom(t *testing.T) {
	for _, tc := range []struct {
		plan string
		want time.Duration
	}{
		{`{"interval": "10s", "minStepDuration": "30s"}`, 30 * time.Second},
		{`{"interval": "10s", "minStepDuration": "30s", "warmup": "45s"}`, 45 * time.Second},
	} {
		s := started(t, spec(t, tc.plan))
		if got := s.PassFrom(); !got.Equal(at(tc.want)) {
			t.Errorf("%s: a pass from +%v, want +%v", tc.plan, got.Sub(at(0)), tc.want)
		}
	}
}

func TestStepAdvanceStartsTheNextStep(t *testing.T) {
	s := started(t, nil)
	total := judge.RequestCounts{Treatment: 600, Control: 60000}
	s, _ = Step(s, Observation{Requests: total, Verdict: pass()}, at(6*time.Minute))
	if s.Step != 1 || !s.StepStartedAt.Equal(at(6*time.Minute)) || !s.AnalysisStartsAt.Equal(at(6*time.Minute+30*time.Second)) {
		t.Fatalf("step %d started %v analysis %v", s.Step, s.StepStartedAt, s.AnalysisStartsAt)
	}
	if s.StepBaseline == nil || *s.StepBaseline != total {
		t.Fatalf("step baseline %+v, want %+v", s.StepBaseline, total)
	}
	if s.Analyzing(at(6*time.Minute+29*time.Second)) || !s.Analyzing(at(6*time.Minute+30*time.Second)) {
		t.Error("Analyzing does not follow the warm-up")
	}
	// 5 minutes later with 499 more treatment requests, which the judge
	// finds too few (inconclusive): the step holds and counts them.
	s, acts := Step(s, Observation{Requests: judge.RequestCounts{Treatment: 1099, Control: 90000}, Verdict: inconclusive()}, at(11*time.Minute))
	if s.Step != 1 || len(acts) != 0 {
		t.Fatalf("advanced on %v step requests: step %d", s.Cohorts.Step, s.Step)
	}
	want := judge.StepProgress{Baseline: total, Elapsed: 5 * time.Minute, MinRequests: 500, MinDuration: 5 * time.Minute, Percent: s.Percent, SplitSettle: 90 * time.Second}
	if got := s.StepProgress(at(11 * time.Minute)); got != want {
		t.Errorf("StepProgress = %+v, want %+v", got, want)
	}
	if want := (Cohorts{Total: judge.RequestCounts{Treatment: 1099, Control: 90000}, Step: judge.RequestCounts{Treatment: 499, Control: 30000}}); s.Cohorts != want {
		t.Errorf("cohorts %+v, want %+v", s.Cohorts, want)
	}
	s, _ = Step(s, Observation{Requests: judge.RequestCounts{Treatment: 1100, Control: 90000}, Verdict: pass()}, at(11*time.Minute+30*time.Second))
	if s.Step != 2 || s.Percent != 10 {
		t.Fatalf("step %d at %v%%, want step 2 at 10%%", s.Step, s.Percent)
	}
}

func TestStepCountsAfterProviderLostHistory(t *testing.T) {
	s := atStep(t, spec(t, `{"minStepDuration": "1m"}`), 1, judge.RequestCounts{Treatment: 1000, Control: 1000})
	s, _ = Step(s, Observation{Requests: judge.RequestCounts{Treatment: 200, Control: 200}, Verdict: inconclusive()}, at(2*time.Minute))
	if s.Step != 1 || *s.StepBaseline != (judge.RequestCounts{Treatment: 200, Control: 200}) || s.Cohorts.Step != (judge.RequestCounts{}) {
		t.Fatalf("after counts fell: step %d baseline %+v step counts %+v", s.Step, s.StepBaseline, s.Cohorts.Step)
	}
	s, _ = Step(s, Observation{Requests: judge.RequestCounts{Treatment: 700, Control: 700}, Verdict: pass()}, at(3*time.Minute))
	if s.Step != 2 {
		t.Fatalf("step %d, want 2 once 500 requests came after the rebase", s.Step)
	}
}

func TestStepProviderErrorsCountConsecutiveTicks(t *testing.T) {
	s := started(t, nil)
	boom := Observation{Err: errors.New("query failed")}
	for i := 1; i <= 4; i++ {
		s, _ = Step(s, boom, at(time.Duration(i)*time.Minute))
		if s.ProviderErrors != i || s.Phase != Progressing {
			t.Fatalf("after %d errors: %d counted, %s", i, s.ProviderErrors, s.Phase)
		}
	}
	s, _ = Step(s, Observation{Verdict: inconclusive()}, at(5*time.Minute))
	if s.ProviderErrors != 0 {
		t.Fatalf("a readable tick left %d errors counted", s.ProviderErrors)
	}
	for i := 1; i <= 4; i++ {
		s, _ = Step(s, boom, at(time.Duration(5+i)*time.Minute))
	}
	if s.Phase != Progressing {
		t.Fatalf("paused after 4 errors since the last readable tick")
	}
	s, _ = Step(s, boom, at(10*time.Minute))
	if s.Phase != Paused {
		t.Fatalf("phase %s after 5 errors in a row, want paused", s.Phase)
	}
}

func TestStepKeepsJudgeState(t *testing.T) {
	s := started(t, nil)
	s, _ = Step(s, Observation{Verdict: inconclusive(), Judge: json.RawMessage(`{"ticks":1}`)}, at(time.Minute))
	s, _ = Step(s, Observation{Verdict: inconclusive()}, at(2*time.Minute))
	s, _ = Step(s, Observation{Err: errors.New("down"), Judge: json.RawMessage(`{"ticks":9}`)}, at(3*time.Minute))
	if string(s.Judge) != `{"ticks":1}` {
		t.Errorf("judge state %s, want the last one a readable tick gave", s.Judge)
	}
	if s.Verdict == nil || s.Verdict.Outcome != judge.Inconclusive || !s.Verdict.At.Equal(at(2*time.Minute)) {
		t.Errorf("verdict %+v, want the inconclusive one of minute 2", s.Verdict)
	}
}

func TestStepIgnoresStoppedRollouts(t *testing.T) {
	for _, phase := range []Phase{Pending, Paused, Promoted, RolledBack, Aborted} {
		s := started(t, nil)
		s.Phase = phase
		got, acts := Step(s, Observation{Verdict: fail()}, at(time.Hour))
		if !reflect.DeepEqual(got, s) || acts != nil {
			t.Errorf("%s: Step changed the state or acted: %v", phase, kinds(acts))
		}
	}
}

// TestStepWholeRollout drives a healthy rollout tick by tick through every
// step and a gate with the real judge, as the loop does: the judge checks
// the plan's minimums from the state's StepProgress, and the state machine
// follows its pass.
func TestStepWholeRollout(t *testing.T) {
	s := started(t, spec(t, `{"gates": [50], "metrics": [{"name": "error-rate"}]}`))
	var total judge.RequestCounts
	var judged judge.State
	cfg := s.Plan.JudgeConfig()
	now := t0
	var percents []float64
	for tick := 0; tick < 500 && s.Phase != Promoted; tick++ {
		now = now.Add(30 * time.Second)
		if s.Phase == Paused {
			if s.AwaitingGate == nil || *s.AwaitingGate != 50 {
				t.Fatalf("paused without the 50%% gate: %s", s.PausedReason)
			}
			var err error
			s, _, err = Apply(s, Command{Kind: Resume, Actor: "bob"}, now)
			if err != nil {
				t.Fatal(err)
			}
			continue
		}
		// 10,000 requests a second, split by the current percentage:
		// enough errors at 1% to bound the ratio below the default harm
		// bound within a few looks.
		total.Treatment += 300000 * s.Percent / 100
		total.Control += 300000 * (100 - s.Percent) / 100
		obs := Observation{Requests: total}
		if s.Analyzing(now) {
			// Healthy: both cohorts fail 1 request in 100.
			counts := judge.FlagCounts{Flag: s.Key,
				Treatment: judge.CohortCounts{Requests: total.Treatment, Errors: total.Treatment / 100},
				Control:   judge.CohortCounts{Requests: total.Control, Errors: total.Control / 100}}
			next, v, err := judge.Judge(cfg, judged, counts, s.StepProgress(now))
			if err != nil {
				t.Fatal(err)
			}
			judged, obs.Verdict = next, &v
		}
		var acts []Action
		s, acts = Step(s, obs, now)
		for _, a := range acts {
			if p, ok := a.(SetPercent); ok {
				percents = append(percents, p.Percent)
			}
		}
	}
	if s.Phase != Promoted {
		t.Fatalf("ended %s at %v%%", s.Phase, s.Percent)
	}
	if want := []float64{5, 10, 25, 100}; !reflect.DeepEqual(percents, want) {
		t.Errorf("the loop set percents %v, want %v (50 is set by the approval)", percents, want)
	}
	var tos []string
	for _, h := range s.History {
		tos = append(tos, fmt.Sprintf("%s@%v", h.To, h.Percent))
	}
	want := "progressing@1 progressing@5 progressing@10 progressing@25 paused@25 progressing@50 promoted@100"
	if got := strings.Join(tos, " "); got != want {
		t.Errorf("history %s\n         want %s", got, want)
	}
	for i := 1; i < len(s.History); i++ {
		if d := s.History[i].At.Sub(s.History[i-1].At); s.History[i-1].To == Progressing && d < 5*time.Minute {
			t.Errorf("step at %v%% lasted %v, under minStepDuration", s.History[i-1].Percent, d)
		}
	}
}

func TestStateJSONRoundTrip(t *testing.T) {
	s := started(t, spec(t, `{"gates": [25]}`))
	s, _ = Step(s, Observation{Requests: judge.RequestCounts{Treatment: 600, Control: 9000}, Verdict: pass(), Judge: json.RawMessage(`{"e":[1.5,2]}`)}, at(6*time.Minute))
	data, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var back State
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, s) {
		t.Errorf("round trip changed the state\n got %+v\nwant %+v", back, s)
	}
	for _, field := range []string{`"key":"checkout"`, `"state":"progressing"`, `"percent":5`, `"step":1`, `"startedAt":`, `"updatedAt":`, `"verdict":`, `"history":`, `"interval":"30s"`} {
		if !strings.Contains(string(data), field) {
			t.Errorf("state JSON lacks %s: %s", field, data)
		}
	}
}
