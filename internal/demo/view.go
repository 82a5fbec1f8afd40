package demo

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/vigil-dev/vigil/analysis"
	"github.com/vigil-dev/vigil/controller/rollout"
	"github.com/vigil-dev/vigil/internal/rolloutview"
)

// liveView shows the rollouts while they run: redrawn in place on a
// terminal, or one line per change otherwise.
type liveView struct {
	out   io.Writer
	live  bool
	lines int               // lines drawn last time, to move back over
	last  map[string]string // last line printed per rollout, when not live
}

func (v *liveView) draw(states map[string]rollout.State) {
	var b strings.Builder
	for _, key := range slices.Sorted(maps.Keys(states)) {
		b.WriteString(describe(states[key]))
	}
	text := b.String()
	if v.live {
		if v.lines > 0 {
			fmt.Fprintf(v.out, "\x1b[%dA\x1b[J", v.lines)
		}
		fmt.Fprint(v.out, text)
		v.lines = strings.Count(text, "\n")
		return
	}
	if v.last == nil {
		v.last = map[string]string{}
	}
	for _, key := range slices.Sorted(maps.Keys(states)) {
		s := states[key]
		line := fmt.Sprintf("%-13s %-11s %6s%%  %s", key, s.Phase, formatPercent(s.Percent), rolloutview.Progress(s))
		if v.last[key] != line {
			v.last[key] = line
			fmt.Fprintln(v.out, line)
		}
	}
}

// describe renders one rollout in a few lines: its progress through the
// steps, each cohort's numbers and the latest verdict.
func describe(s rollout.State) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-13s %-11s %6s%%  %s\n", s.Key, s.Phase, formatPercent(s.Percent), rolloutview.Progress(s))
	if v := judgeVerdict(s); v != nil {
		for _, c := range v.Checks {
			fmt.Fprintf(&b, "   %-14s treatment %s  control %s  %s\n", c.Check,
				cohortLine(c.Kind, c.Treatment), cohortLine(c.Kind, c.Control), c.Outcome)
		}
	}
	if s.Verdict != nil {
		fmt.Fprintf(&b, "   verdict: %s\n", s.Verdict.Summary)
	}
	return b.String()
}

func cohortLine(kind analysis.Kind, c analysis.CohortEvidence) string {
	what := "errors"
	if kind == analysis.KindLatency {
		what = "slow"
	}
	return fmt.Sprintf("%7.0f req %5.0f %s (%5.2f%%)", c.Requests, c.Events, what, 100*c.Rate)
}

// judgeVerdict decodes the judge's evidence kept with the latest verdict.
func judgeVerdict(s rollout.State) *analysis.Verdict {
	if s.Verdict == nil || len(s.Verdict.Detail) == 0 {
		return nil
	}
	var v analysis.Verdict
	if err := json.Unmarshal(s.Verdict.Detail, &v); err != nil {
		return nil
	}
	return &v
}
