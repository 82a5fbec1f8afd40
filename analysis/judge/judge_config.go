package judge

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/vigil-dev/vigil/sdk/flag"
)

// DefaultAlpha is the judge's false-rollback budget when none is set: the
// chance that a rollout whose treatment is no worse than tolerated is ever
// rolled back, however often it is checked.
const DefaultAlpha = 0.01

// DefaultTolerance is the ratio treatment/control tolerated when a metric
// sets none: any evidence that treatment is worse than control fails.
const DefaultTolerance = 1.0

// p99Share is the share of requests allowed above MaxP99: a p99 at most Y
// means at most 1% of requests slower than Y.
const p99Share = 0.01

// Kind says what a metric counts.
type Kind string

// Metric kinds. Error rate and latency read the SDK's built-in cohort
// metrics; a custom metric reads CohortCounts.Custom under its name.
const (
	KindErrorRate Kind = "error-rate"
	KindLatency   Kind = "latency"
	KindCustom    Kind = "custom"
)

// Direction says which way a metric gets worse.
type Direction string

// Directions. Lower-is-worse is for good events (conversions, successful
// checkouts): the judge tests their ratio against a tolerance below 1.
const (
	HigherIsWorse Direction = "higher-is-worse"
	LowerIsWorse  Direction = "lower-is-worse"
)

// Config is what the judge tests for one flag.
type Config struct {
	// Alpha bounds the chance of any false rollback across all metrics
	// (0 means DefaultAlpha).
	Alpha float64 `json:"alpha,omitempty"`
	// Metrics are the metrics tested; at least one.
	Metrics []MetricConfig `json:"metrics"`
	// DisableTempering turns off the over-dispersion correction. It exists
	// for the judge benchmark, which shows what tempering buys; rollouts
	// should leave it off.
	DisableTempering bool `json:"disableTempering,omitempty"`
}

// MetricConfig is one metric under test.
type MetricConfig struct {
	// Name identifies the metric; for KindCustom it is also the key of
	// CohortCounts.Custom.
	Name string `json:"name"`
	// Kind is what the metric counts.
	Kind Kind `json:"kind"`
	// Direction is HigherIsWorse (the default) or, for custom metrics only,
	// LowerIsWorse.
	Direction Direction `json:"direction,omitempty"`
	// Tolerance is the ratio of treatment's rate to control's that is still
	// acceptable (0 means DefaultTolerance). Higher-is-worse metrics fail
	// above it, so it must be at least 1; lower-is-worse metrics fail below
	// it, and a value above 1 is read as its inverse (1.1 means 1/1.1).
	Tolerance float64 `json:"tolerance,omitempty"`
	// Max is an absolute bound on treatment's rate of bad events per request
	// (errors, or custom higher-is-worse events); 0 means none.
	Max float64 `json:"max,omitempty"`
	// MaxP99 bounds treatment's p99 latency (latency only); 0 means none.
	MaxP99 time.Duration `json:"maxP99,omitempty"`
	// Edges are latency bucket edges in seconds to test (latency only);
	// empty means the edges nearest control's p95 and p99, chosen before
	// each tick from control's counts so far.
	Edges []float64 `json:"edges,omitempty"`
	// MaxRatio is the harm bound: the ratio check passes only once its
	// always-valid interval lies below it (above it for lower-is-worse
	// metrics, where a value above 1 is read as its inverse, like
	// Tolerance), that is, on evidence that treatment is no worse than
	// MaxRatio times control. 0 means no harm bound: the check passes on
	// the absence of evidence of harm.
	MaxRatio float64 `json:"maxRatio,omitempty"`
	// MinDifference is the practical floor of an error-rate or custom
	// metric, a difference in rate per request (0.001 is 0.1 percentage
	// points): a treatment whose rate differs from control's by less is
	// not harmed, whatever the ratio. A check fails only on evidence that
	// the difference exceeds it, and passes once the difference is shown
	// to be below it even if the ratio's interval is still wide.
	MinDifference float64 `json:"minDifference,omitempty"`
	// MinSlowdown is the practical floor of a latency metric: a slowdown
	// at the judged edge smaller than this is not harm. It is converted to
	// a share of requests through control's histogram, as the share of
	// control requests between edge−MinSlowdown and the edge.
	MinSlowdown time.Duration `json:"minSlowdown,omitempty"`
}

// Validate reports every problem with the configuration, each a
// *flag.FieldError whose Field is the path of the setting at fault (such as
// "metrics[1].tolerance"), joined with errors.Join. Judge trusts its
// configuration and does not call it: the rollout plan validates it once,
// when the plan is resolved (controller/plan).
func (c Config) Validate() error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, &flag.FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	if c.Alpha != 0 && !(c.Alpha > 0 && c.Alpha < 0.5) {
		add("alpha", "%v must be between 0 and 0.5", c.Alpha)
	}
	if len(c.Metrics) == 0 {
		add("metrics", "at least one metric is needed")
	}
	names := map[string]bool{}
	for i, m := range c.Metrics {
		field := fmt.Sprintf("metrics[%d]", i)
		if m.Name == "" {
			add(field+".name", "is required")
		} else if names[m.Name] {
			add(field+".name", "duplicate metric %q", m.Name)
		}
		names[m.Name] = true
		switch m.Kind {
		case KindErrorRate, KindLatency, KindCustom:
		default:
			add(field+".kind", "%q must be error-rate, latency or custom", m.Kind)
		}
		switch m.Direction {
		case "", HigherIsWorse:
		case LowerIsWorse:
			if m.Kind != KindCustom {
				add(field+".direction", "lower-is-worse applies to custom metrics only")
			}
		default:
			add(field+".direction", "%q must be higher-is-worse or lower-is-worse", m.Direction)
		}
		lower := m.Direction == LowerIsWorse
		switch {
		case m.Tolerance < 0 || math.IsNaN(m.Tolerance) || math.IsInf(m.Tolerance, 0):
			add(field+".tolerance", "%v must be a positive number", m.Tolerance)
		case !lower && m.Tolerance != 0 && m.Tolerance < 1:
			add(field+".tolerance", "%v is below 1, so a treatment identical to control would fail", m.Tolerance)
		}
		if m.Max < 0 || math.IsNaN(m.Max) || math.IsInf(m.Max, 0) {
			add(field+".max", "%v must be a non-negative number", m.Max)
		} else if m.Max > 0 && (m.Kind == KindLatency || lower) {
			add(field+".max", "applies to error-rate and higher-is-worse custom metrics only")
		}
		if m.MaxP99 < 0 {
			add(field+".maxP99", "%v must not be negative", m.MaxP99)
		} else if m.MaxP99 > 0 && m.Kind != KindLatency {
			add(field+".maxP99", "applies to latency only")
		}
		if len(m.Edges) > 0 && m.Kind != KindLatency {
			add(field+".edges", "apply to latency only")
		}
		switch {
		case m.MaxRatio < 0 || math.IsNaN(m.MaxRatio) || math.IsInf(m.MaxRatio, 0):
			add(field+".maxRatio", "%v must be a positive number", m.MaxRatio)
		case m.MaxRatio > 0 && !lower && m.MaxRatio <= m.null():
			add(field+".maxRatio", "%v must be above the tolerance %v: a harm bound at or below it would hold every treatment the tolerance accepts", m.MaxRatio, m.null())
		case m.MaxRatio > 0 && lower && harmRatio(m) >= m.null():
			add(field+".maxRatio", "%v must be further from 1 than the tolerance %v", m.MaxRatio, m.Tolerance)
		}
		if m.MinDifference < 0 || math.IsNaN(m.MinDifference) || m.MinDifference >= 1 {
			add(field+".minDifference", "%v must be a rate difference from 0 up to 1", m.MinDifference)
		} else if m.MinDifference > 0 && m.Kind == KindLatency {
			add(field+".minDifference", "applies to error-rate and custom metrics; latency sets minSlowdown")
		}
		if m.MinSlowdown < 0 {
			add(field+".minSlowdown", "%v must not be negative", m.MinSlowdown)
		} else if m.MinSlowdown > 0 && m.Kind != KindLatency {
			add(field+".minSlowdown", "applies to latency only")
		}
		for j, e := range m.Edges {
			if !(e > 0) || math.IsInf(e, 0) {
				add(fmt.Sprintf("%s.edges[%d]", field, j), "%v must be a positive number of seconds", e)
			}
		}
	}
	return errors.Join(errs...)
}

// alpha is the configured alpha or the default.
func (c Config) alpha() float64 {
	if c.Alpha == 0 {
		return DefaultAlpha
	}
	return c.Alpha
}

// null is the ratio the metric's relative test takes as its null hypothesis.
func (m MetricConfig) null() float64 {
	t := m.Tolerance
	if t == 0 {
		t = DefaultTolerance
	}
	if m.Direction == LowerIsWorse && t > 1 {
		return 1 / t
	}
	return t
}

// harmRatio is the harm bound as a ratio on the metric's scale (below 1 for
// lower-is-worse metrics), or 0 when there is none.
func harmRatio(m MetricConfig) float64 {
	if m.MaxRatio > 0 && m.Direction == LowerIsWorse && m.MaxRatio > 1 {
		return 1 / m.MaxRatio
	}
	return m.MaxRatio
}

// checkKind is one of the tests run for a metric.
type checkKind int

const (
	// checkRatio compares treatment with control.
	checkRatio checkKind = iota
	// checkMax bounds treatment's rate of bad events.
	checkMax
	// checkMaxP99 bounds treatment's share of requests slower than MaxP99.
	checkMaxP99
)

// check is one test: every metric has a ratio test, and each absolute bound
// it sets adds one more.
type check struct {
	name   string
	metric MetricConfig
	kind   checkKind
}

// checks lists the tests in a fixed order; their names key the state.
func (c Config) checks() []check {
	var out []check
	for _, m := range c.Metrics {
		out = append(out, check{name: m.Name, metric: m, kind: checkRatio})
		if m.Max > 0 {
			out = append(out, check{name: m.Name + ":max", metric: m, kind: checkMax})
		}
		if m.MaxP99 > 0 {
			out = append(out, check{name: m.Name + ":maxP99", metric: m, kind: checkMaxP99})
		}
	}
	return out
}
