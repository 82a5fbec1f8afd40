package rollout

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/vigil-dev/vigil/sdk/flag"
)

// Plan actions for onTimeout and onProviderError.
const (
	ActionPause    = "pause"
	ActionRollback = "rollback"
)

// Names of the built-in metrics.
const (
	MetricErrorRate = "error-rate"
	MetricLatency   = "latency"
)

// DefaultPlan returns the plan a rollout follows when neither the flags file
// nor the start command says otherwise. Its warm-up is one interval.
func DefaultPlan() flag.Plan {
	return flag.Plan{
		Steps:           []float64{1, 5, 10, 25, 50, 100},
		Interval:        flag.Duration(30 * time.Second),
		MinStepDuration: flag.Duration(5 * time.Minute),
		MinRequests:     500,
		MaxStepDuration: flag.Duration(time.Hour),
		OnTimeout:       ActionPause,
		OnProviderError: &flag.ProviderErrorPolicy{After: 5, Action: ActionPause},
		Alpha:           0.01,
		Metrics: []flag.MetricSpec{
			{Name: MetricErrorRate, Tolerance: 1.2},
			{Name: MetricLatency, Tolerance: 1.2},
		},
		Gates: []float64{},
	}
}

// defaultTolerance is the ratio tolerated for a built-in metric whose spec
// names none.
const defaultTolerance = 1.2

// PlanError reports one invalid field of a rollout plan.
type PlanError struct {
	Field   string // a path such as "steps[2]"
	Message string
}

// Error describes the problem in one line.
func (e *PlanError) Error() string {
	return fmt.Sprintf("plan: %s: %s", e.Field, e.Message)
}

// ResolvePlan merges plans, each over the ones before it, over the defaults:
// usually the flag's own plan, then the overrides given on start. A set field
// (one that is not zero: a flag.Plan cannot tell an explicit zero from a
// missing field, so the edges that read plans refuse an explicit zero with
// CheckExplicitZeros) replaces the one below it; Metrics and Steps replace whole lists; Gates
// replaces the list whenever it is given, so an empty list clears the gates.
// Steps that do not end at 100 get 100 appended: reaching it is promotion.
// The result is validated; errors are *PlanError values joined together.
func ResolvePlan(plans ...*flag.Plan) (flag.Plan, error) {
	out := DefaultPlan()
	out.Warmup = 0
	for _, p := range plans {
		if p == nil {
			continue
		}
		if len(p.Steps) > 0 {
			out.Steps = slices.Clone(p.Steps)
		}
		if p.Interval != 0 {
			out.Interval = p.Interval
		}
		if p.MinStepDuration != 0 {
			out.MinStepDuration = p.MinStepDuration
		}
		if p.MinRequests != 0 {
			out.MinRequests = p.MinRequests
		}
		if p.MaxStepDuration != 0 {
			out.MaxStepDuration = p.MaxStepDuration
		}
		if p.OnTimeout != "" {
			out.OnTimeout = p.OnTimeout
		}
		if pe := p.OnProviderError; pe != nil {
			merged := *out.OnProviderError
			if pe.After != 0 {
				merged.After = pe.After
			}
			if pe.Action != "" {
				merged.Action = pe.Action
			}
			out.OnProviderError = &merged
		}
		if p.Alpha != 0 {
			out.Alpha = p.Alpha
		}
		if len(p.Metrics) > 0 {
			out.Metrics = slices.Clone(p.Metrics)
		}
		if p.Gates != nil {
			out.Gates = slices.Clone(p.Gates)
		}
		if p.Warmup != 0 {
			out.Warmup = p.Warmup
		}
	}
	if out.Warmup == 0 {
		out.Warmup = out.Interval
	}
	if n := len(out.Steps); n > 0 && out.Steps[n-1] < 100 {
		out.Steps = append(out.Steps, 100)
	}
	for i := range out.Metrics {
		m := &out.Metrics[i]
		if m.Tolerance == 0 && (m.Name == MetricErrorRate || m.Name == MetricLatency) {
			m.Tolerance = defaultTolerance
		}
	}
	if err := validatePlan(&out); err != nil {
		return flag.Plan{}, err
	}
	return out, nil
}

// validatePlan checks a resolved plan: every field is set, so the rules are
// stricter than for a partial plan in a flags file.
func validatePlan(p *flag.Plan) error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, &PlanError{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	if len(p.Steps) < 2 {
		add("steps", "%v needs at least one step below 100: going straight to 100%% is a flag change, not a rollout", p.Steps)
	}
	prev := 0.0
	for i, s := range p.Steps {
		if _, err := flag.Millipercent(s); err != nil || s == 0 {
			add(fmt.Sprintf("steps[%d]", i), "%v must be a percentage above 0 and at most 100 with up to 3 decimals", s)
		} else if s <= prev {
			add(fmt.Sprintf("steps[%d]", i), "%v must be greater than the step before it (%v)", s, prev)
		}
		prev = s
	}
	if p.Interval.Std() < time.Second {
		add("interval", "%v is shorter than the minimum of 1s", p.Interval.Std())
	}
	if p.MinStepDuration < 0 {
		add("minStepDuration", "%v must not be negative", p.MinStepDuration.Std())
	}
	if p.Warmup < 0 {
		add("warmup", "%v must not be negative", p.Warmup.Std())
	}
	if p.MaxStepDuration < p.MinStepDuration {
		add("maxStepDuration", "%v must not be shorter than minStepDuration (%v)", p.MaxStepDuration.Std(), p.MinStepDuration.Std())
	}
	if p.MinRequests < 1 {
		add("minRequests", "%d must be at least 1: a step must never pass on no data", p.MinRequests)
	}
	if p.OnTimeout != ActionPause && p.OnTimeout != ActionRollback {
		add("onTimeout", "%q must be pause or rollback", p.OnTimeout)
	}
	if pe := p.OnProviderError; pe.After < 1 {
		add("onProviderError.after", "%d must be at least 1", pe.After)
	}
	if a := p.OnProviderError.Action; a != ActionPause && a != ActionRollback {
		add("onProviderError.action", "%q must be pause or rollback", a)
	}
	if !(p.Alpha > 0 && p.Alpha < 0.5) {
		add("alpha", "%v must be between 0 and 0.5", p.Alpha)
	}
	if len(p.Metrics) == 0 {
		add("metrics", "at least one metric is required")
	}
	seen := map[string]bool{}
	for i, m := range p.Metrics {
		field := fmt.Sprintf("metrics[%d]", i)
		switch {
		case m.Name == "":
			add(field+".name", "is required")
		case seen[m.Name]:
			add(field+".name", "duplicate metric %q", m.Name)
		case m.Name != MetricErrorRate && m.Name != MetricLatency && m.Query == "":
			add(field+".query", "metric %q is not built in (error-rate, latency), so it needs a query", m.Name)
		}
		seen[m.Name] = true
		if m.Tolerance < 0 || math.IsNaN(m.Tolerance) || math.IsInf(m.Tolerance, 0) {
			add(field+".tolerance", "%v must be a positive ratio", m.Tolerance)
		}
	}
	for i, g := range p.Gates {
		if !slices.Contains(p.Steps, g) {
			add(fmt.Sprintf("gates[%d]", i), "%v is not one of the steps %v", g, p.Steps)
		}
	}
	return errors.Join(errs...)
}
