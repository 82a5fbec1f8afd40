package plan

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/vigil-dev/vigil/analysis/cohort"
	"github.com/vigil-dev/vigil/sdk/flag"
)

// Resolve lays specs over the defaults, each over the ones before it
// (usually the flag's own plan, then the overrides given on start), and
// validates the result. A field a spec writes replaces the one below it,
// zero included; a list (steps, metrics, gates) replaces the whole list
// below it. Steps that do not end at 100 get 100 appended: reaching it is
// promotion. A warm-up left out everywhere is one interval.
//
// Every problem is a *flag.FieldError whose Field is the path within the
// plan, such as "metrics[1].tolerance", joined with errors.Join; Within
// places them in the flag or request they were written in.
func Resolve(specs ...*Spec) (Plan, error) {
	out := Defaults()
	warmup := false
	var zeros []error
	for _, s := range specs {
		if s == nil {
			continue
		}
		if s.Steps != nil {
			out.Steps = slices.Clone(*s.Steps)
		}
		set(&out.Interval, s.Interval)
		set(&out.MinStepDuration, s.MinStepDuration)
		set(&out.MinRequests, s.MinRequests)
		set(&out.MaxStepDuration, s.MaxStepDuration)
		set(&out.OnTimeout, s.OnTimeout)
		if pe := s.OnProviderError; pe != nil {
			set(&out.OnProviderError.After, pe.After)
			set(&out.OnProviderError.Action, pe.Action)
		}
		set(&out.Alpha, s.Alpha)
		if s.Metrics != nil {
			out.Metrics = make([]Metric, len(*s.Metrics))
			zeros = nil
			for i, m := range *s.Metrics {
				out.Metrics[i] = resolveMetric(m)
				zeros = append(zeros, writtenZeros(i, m)...)
			}
		}
		if s.Gates != nil {
			out.Gates = slices.Clone(*s.Gates)
		}
		if s.Warmup != nil {
			out.Warmup, warmup = *s.Warmup, true
		}
	}
	if !warmup {
		out.Warmup = out.Interval
	}
	if n := len(out.Steps); n > 0 && out.Steps[n-1] < 100 {
		out.Steps = append(out.Steps, 100)
	}
	if err := errors.Join(append(zeros, out.problems()...)...); err != nil {
		return Plan{}, err
	}
	return out, nil
}

// set replaces *dst with *v when v is written.
func set[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}

// resolveMetric fills in a metric's defaults. A bound (max, maxP99) left
// out is no bound.
func resolveMetric(s MetricSpec) Metric {
	m := Metric{Name: s.Name, Query: s.Query, Direction: s.Direction, Edges: slices.Clone(s.Edges)}
	switch {
	case s.Tolerance != nil:
		m.Tolerance = *s.Tolerance
	case m.BuiltIn():
		m.Tolerance = DefaultTolerance
	default:
		m.Tolerance = DefaultCustomTolerance
	}
	set(&m.Max, s.Max)
	set(&m.MaxP99, s.MaxP99)
	switch {
	case s.MaxRatio != nil:
		m.MaxRatio = *s.MaxRatio
	case m.BuiltIn():
		m.MaxRatio = DefaultHarmFactor * m.Tolerance
	}
	switch {
	case s.MinDifference != nil:
		m.MinDifference = *s.MinDifference
	case m.Name == MetricErrorRate:
		m.MinDifference = DefaultMinDifference
	}
	switch {
	case s.MinSlowdown != nil:
		m.MinSlowdown = *s.MinSlowdown
	case m.Name == MetricLatency:
		m.MinSlowdown = DefaultMinSlowdown
	}
	return m
}

// writtenZeros refuses the metric fields written as zero that the judge
// would read as not set: a tolerance of 0 as its default, a bound of 0 as
// no bound.
func writtenZeros(i int, s MetricSpec) []error {
	var errs []error
	add := func(field, message string) {
		errs = append(errs, &flag.FieldError{Field: fmt.Sprintf("metrics[%d].%s", i, field), Message: message})
	}
	if s.Tolerance != nil && *s.Tolerance == 0 {
		add("tolerance", "0 must be a positive ratio, such as 1.2")
	}
	if s.Max != nil && *s.Max == 0 {
		add("max", "0 must be above 0; leave it out for no bound")
	}
	if s.MaxP99 != nil && *s.MaxP99 == 0 {
		add("maxP99", "0s must be above 0; leave it out for no bound")
	}
	return errs
}

// problems lists every rule a resolved plan breaks, each a *flag.FieldError
// with the field's path within the plan.
func (p Plan) problems() []error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, &flag.FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
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
	if p.Interval.Std() < 1e9 {
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
	if p.OnTimeout != Pause && p.OnTimeout != Rollback {
		add("onTimeout", "%q must be pause or rollback", p.OnTimeout)
	}
	if p.OnProviderError.After < 1 {
		add("onProviderError.after", "%d must be at least 1", p.OnProviderError.After)
	}
	if a := p.OnProviderError.Action; a != Pause && a != Rollback {
		add("onProviderError.action", "%q must be pause or rollback", a)
	}
	for i, m := range p.Metrics {
		if !(m.MinDifference >= 0 && m.MinDifference < 100) {
			add(fmt.Sprintf("metrics[%d].minDifference", i), "%v must be percentage points from 0 up to 100", m.MinDifference)
		}
		switch {
		case m.Name == "" || m.BuiltIn():
		case m.Query == "":
			add(fmt.Sprintf("metrics[%d].query", i), "metric %q is not built in (error-rate, latency), so it needs a query", m.Name)
		default:
			if _, err := cohort.ParseQueryTemplate(m.Name, m.Query); err != nil {
				add(fmt.Sprintf("metrics[%d].query", i), "%v", err)
			}
		}
	}
	// The judge's own rules on its configuration (at least one metric,
	// names, which bounds apply to which metric, tolerances, edges, alpha's
	// range), with the same paths.
	for _, e := range flag.Errors(p.JudgeConfig().Validate()) {
		// The judge reads the floor as a rate; the plan checked it in
		// percentage points above.
		if fe := (*flag.FieldError)(nil); errors.As(e, &fe) && strings.HasSuffix(fe.Field, ".minDifference") && strings.Contains(fe.Message, "rate difference") {
			continue
		}
		errs = append(errs, e)
	}
	for i, g := range p.Gates {
		if !slices.Contains(p.Steps, g) {
			add(fmt.Sprintf("gates[%d]", i), "%v is not one of the steps %v", g, p.Steps)
		}
	}
	// The judge checks alpha's range but reads 0 as its own default; in a
	// plan, 0 is written, so it is refused here.
	if p.Alpha == 0 {
		add("alpha", "0 must be between 0 and 0.5")
	}
	return errs
}

// Within returns the problems of Resolve placed where the plan was
// written: in flag key (empty for none) under prefix, such as
// "rollout.plan" or "plan". Other errors are returned as they are.
func Within(err error, key, prefix string) error {
	if err == nil {
		return nil
	}
	parts := flag.Errors(err)
	out := make([]error, len(parts))
	for i, e := range parts {
		var fe *flag.FieldError
		if !errors.As(e, &fe) {
			out[i] = e
			continue
		}
		field := prefix
		if fe.Field != "" {
			field = strings.TrimPrefix(prefix+"."+fe.Field, ".")
		}
		out[i] = &flag.FieldError{Flag: key, Field: field, Message: fe.Message}
	}
	return errors.Join(out...)
}

// ValidateFlags checks the plan of every flag that has one, resolved over
// the defaults as a start without overrides would resolve it, so that a plan
// is refused when it is written rather than when its rollout starts. It
// runs where flags are written (the API's PUT and apply, `vigil apply`),
// after flag.Validate. Every problem is a *flag.FieldError naming the flag
// (its key, or "#i" without one) and the field, such as
// "rollout.plan.metrics[1].query".
func ValidateFlags(flags []flag.Flag) error {
	var errs []error
	for i, f := range flags {
		key := f.Key
		if key == "" {
			key = fmt.Sprintf("#%d", i)
		}
		spec, err := OfFlag(f)
		var fe *flag.FieldError
		if errors.As(err, &fe) {
			fe.Flag = key
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if spec == nil {
			continue
		}
		if _, err := Resolve(spec); err != nil {
			errs = append(errs, Within(err, key, "rollout.plan"))
		}
	}
	return errors.Join(errs...)
}
