package plan

import (
	"fmt"

	"github.com/vigil-dev/vigil/analysis/cohort"
	"github.com/vigil-dev/vigil/analysis/judge"
)

// JudgeConfig is the judge's configuration for p: metrics named error-rate
// and latency are built in, any other is custom. It is a conversion, with no
// parsing and no validation: Resolve validated p.
func (p Plan) JudgeConfig() judge.Config {
	cfg := judge.Config{Alpha: p.Alpha, Metrics: make([]judge.MetricConfig, len(p.Metrics))}
	for i, m := range p.Metrics {
		kind := judge.KindCustom
		switch m.Name {
		case MetricErrorRate:
			kind = judge.KindErrorRate
		case MetricLatency:
			kind = judge.KindLatency
		}
		cfg.Metrics[i] = judge.MetricConfig{
			Name:      m.Name,
			Kind:      kind,
			Direction: judge.Direction(m.Direction),
			Tolerance: m.Tolerance,
			Max:       m.Max,
			MaxP99:    m.MaxP99.Std(),
			Edges:     m.Edges,
			MaxRatio:  m.MaxRatio,
			// The plan writes the floor in percentage points, the judge
			// reads a rate.
			MinDifference: m.MinDifference / 100,
			MinSlowdown:   m.MinSlowdown.Std(),
		}
	}
	return cfg
}

// Prepared is a plan with what the rollout loop needs at every look made
// once: the judge's configuration and the custom metrics' parsed queries.
type Prepared struct {
	Plan   Plan
	Judge  judge.Config
	Custom []*cohort.QueryTemplate
}

// Prepare makes the parts of p the loop reads at every look. p has been
// resolved, so the error only reports a plan stored by a version of Vigil
// that accepted what this one refuses.
func Prepare(p Plan) (*Prepared, error) {
	out := &Prepared{Plan: p, Judge: p.JudgeConfig()}
	for _, m := range p.Metrics {
		if m.BuiltIn() {
			continue
		}
		t, err := cohort.ParseQueryTemplate(m.Name, m.Query)
		if err != nil {
			return nil, fmt.Errorf("plan metric %s: %w", m.Name, err)
		}
		out.Custom = append(out.Custom, t)
	}
	return out, nil
}
