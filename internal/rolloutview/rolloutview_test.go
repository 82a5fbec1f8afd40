package rolloutview

import (
	"testing"

	"github.com/vigil-dev/vigil/controller/plan"
	"github.com/vigil-dev/vigil/controller/rollout"
)

func TestProgress(t *testing.T) {
	p := plan.Plan{Steps: []float64{1, 5, 50, 100}, Gates: []float64{50}}
	for _, tc := range []struct {
		phase rollout.Phase
		step  int
		want  string
	}{
		{rollout.Progressing, 1, "● 1% ─ ◉ 5% ─ ‖○ 50% ─ ○ 100%"},
		{rollout.RolledBack, 1, "● 1% ─ ○ 5% ─ ‖○ 50% ─ ○ 100%"},
		{rollout.Promoted, 3, "● 1% ─ ● 5% ─ ‖● 50% ─ ● 100%"},
	} {
		if got := Progress(rollout.State{Phase: tc.phase, Step: tc.step, Plan: p}); got != tc.want {
			t.Errorf("%s at step %d: %q, want %q", tc.phase, tc.step, got, tc.want)
		}
	}
}
