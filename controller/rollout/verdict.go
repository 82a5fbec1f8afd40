package rollout

import (
	"time"

	"github.com/vigil-dev/vigil/analysis/judge"
)

// verdictOf keeps the judge's verdict in the rollout's form: the outcome,
// the one-line explanation, each metric's e-value against its threshold,
// and the judge's full evidence as Detail.
func verdictOf(v judge.Verdict, now time.Time) *Verdict {
	out := &Verdict{At: now, Outcome: v.Outcome, Summary: v.Explanation, Detail: &v}
	for _, c := range v.Checks {
		out.Metrics = append(out.Metrics, MetricVerdict{
			Name:      c.Check,
			Outcome:   c.Outcome,
			EValue:    c.EValue,
			Threshold: c.Threshold,
			Summary:   c.Explanation,
		})
	}
	return out
}
