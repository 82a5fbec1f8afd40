package rollout

import (
	"testing"
	"time"

	"github.com/vigil-dev/vigil/analysis/judge"
)

// BenchmarkStep is one tick's decision for a rollout with a long history.
func BenchmarkStep(b *testing.B) {
	s, _, err := Apply(New("checkout"), Command{Kind: Start, Actor: "bench"}, t0)
	if err != nil {
		b.Fatal(err)
	}
	for i := range 50 {
		s.History = append(s.History, Transition{At: t0, From: Progressing, To: Progressing, Percent: float64(i)})
	}
	obs := Observation{Requests: judge.RequestCounts{Treatment: 100, Control: 10000}, Verdict: inconclusive()}
	now := t0.Add(time.Minute)
	b.ReportAllocs()
	for b.Loop() {
		Step(s, obs, now)
	}
}
