package rolloutview

import (
	"testing"

	"github.com/vigil-dev/vigil/controller/rollout"
	"github.com/vigil-dev/vigil/sdk/flag"
)

func TestProgress(t *testing.T) {
	plan := flag.Plan{Steps: []float64{1, 5, 50, 100}, Gates: []float64{50}}
	for _, tc := range []struct {
		phase rollout.Phase
		step  int
		want  string
	}{
		{rollout.Progressing, 1, "● 1% ─ ◉ 5% ─ ‖○ 50% ─ ○ 100%"},
		{rollout.RolledBack, 1, "● 1% ─ ○ 5% ─ ‖○ 50% ─ ○ 100%"},
		{rollout.Promoted, 3, "● 1% ─ ● 5% ─ ‖● 50% ─ ● 100%"},
	} {
		if got := Progress(rollout.State{Phase: tc.phase, Step: tc.step, Plan: plan}); got != tc.want {
			t.Errorf("%s at step %d: %q, want %q", tc.phase, tc.step, got, tc.want)
		}
	}
}
