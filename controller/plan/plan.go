package plan

import (
	"slices"
	"time"

	"github.com/vigil-dev/vigil/analysis/judge"
)

// Action is what a rollout does on a timeout or after repeated provider
// errors.
type Action string

// The two actions.
const (
	Pause    Action = "pause"
	Rollback Action = "rollback"
)

// Names of the built-in metrics, which are the judge's kinds; any other
// name is a custom metric with a query.
const (
	MetricErrorRate = string(judge.KindErrorRate)
	MetricLatency   = string(judge.KindLatency)
)

// Plan is a resolved plan: every field set and the whole validated. A
// rollout keeps the Plan it started with in its state, so Plan is stored as
// JSON; its encoding is the Spec's, with every field present.
type Plan struct {
	// Steps are the treatment percentages in order; the last is 100, and
	// reaching it is promotion.
	Steps []float64 `json:"steps,omitempty"`
	// Interval is the time between two looks at a step.
	Interval Duration `json:"interval,omitempty"`
	// MinStepDuration is the least time a step lasts before it may pass.
	MinStepDuration Duration `json:"minStepDuration,omitempty"`
	// MinRequests is what each cohort needs within a step before it may
	// pass.
	MinRequests int64 `json:"minRequests,omitempty"`
	// MaxStepDuration is the longest an undecided step lasts before
	// OnTimeout.
	MaxStepDuration Duration `json:"maxStepDuration,omitempty"`
	OnTimeout       Action   `json:"onTimeout,omitempty"`
	// OnProviderError acts after that many consecutive looks whose metrics
	// could not be read.
	OnProviderError ProviderErrorPolicy `json:"onProviderError"`
	// Alpha bounds the chance of a false rollback over the whole rollout.
	Alpha   float64  `json:"alpha,omitempty"`
	Metrics []Metric `json:"metrics,omitempty"`
	// Gates are steps a person approves (resume) before the rollout moves
	// to them.
	Gates []float64 `json:"gates,omitempty"`
	// Warmup is how long after a step begins its looks start counting.
	Warmup Duration `json:"warmup,omitempty"`
}

// ProviderErrorPolicy says what a rollout does after After consecutive looks
// whose metrics could not be read.
type ProviderErrorPolicy struct {
	After  int    `json:"after,omitempty"`
	Action Action `json:"action,omitempty"`
}

// Metric is a resolved metric of a plan: what the judge tests.
type Metric struct {
	Name      string    `json:"name"`
	Query     string    `json:"query,omitempty"`
	Direction string    `json:"direction,omitempty"`
	Tolerance float64   `json:"tolerance,omitempty"`
	Max       float64   `json:"max,omitempty"`
	MaxP99    Duration  `json:"maxP99,omitempty"`
	Edges     []float64 `json:"edges,omitempty"`
	// MaxRatio is the harm bound; 0 means none (a plan stored before
	// harm bounds existed reads as none, as it was judged).
	MaxRatio float64 `json:"maxRatio,omitempty"`
	// MinDifference is the practical floor in percentage points.
	MinDifference float64 `json:"minDifference,omitempty"`
	// MinSlowdown is the latency metric's practical floor.
	MinSlowdown Duration `json:"minSlowdown,omitempty"`
}

// BuiltIn reports whether m is one of the metrics the SDKs record.
func (m Metric) BuiltIn() bool { return m.Name == MetricErrorRate || m.Name == MetricLatency }

// The defaults, one per field. docs/rollouts.md lists them from here; a new
// field's default goes here and into that table.
const (
	// DefaultTolerance is the ratio tolerated for a built-in metric whose
	// spec names none.
	DefaultTolerance = 1.2
	// DefaultCustomTolerance is the ratio tolerated for a custom metric
	// whose spec names none: any evidence of harm fails.
	DefaultCustomTolerance = 1.0
	// DefaultHarmFactor sets a built-in metric's harm bound when its spec
	// names none: maxRatio is this times the tolerance (1.5 at the default
	// tolerance). A step then passes only on evidence that treatment is
	// less than 1.5 times worse than control, and a treatment 1.5 times
	// worse is promoted with a chance of at most about α. Custom metrics
	// have no harm bound unless they set one: their events are often too
	// sparse to bound within a step.
	DefaultHarmFactor = 1.25
	// DefaultMinDifference is the error-rate metric's practical floor, in
	// percentage points, when its spec names none: a difference below 0.05
	// points is not harm. It is also what lets a service without errors
	// pass its steps at all: with no errors in either cohort no ratio can
	// be bounded below the harm bound, but treatment's rate can be shown
	// below 0.05% (after about 9,200 treatment requests at α = 0.01).
	DefaultMinDifference = 0.05
	// DefaultMinSlowdown is the latency metric's practical floor when its
	// spec names none: a slowdown below a millisecond at the judged edge
	// is not harm, so a 0.5 ms slowdown of a 5 ms service is no rollback
	// unless the plan asks for it (minSlowdown: 0s).
	DefaultMinSlowdown = Duration(time.Millisecond)
)

// Defaults returns the plan a rollout follows where nothing is written. Its
// warm-up is 0 here and one interval once resolved: a warm-up that is not
// written follows the interval that is.
func Defaults() Plan {
	return Plan{
		Steps:           []float64{1, 5, 10, 25, 50, 100},
		Interval:        Duration(30 * time.Second),
		MinStepDuration: Duration(5 * time.Minute),
		MinRequests:     500,
		MaxStepDuration: Duration(time.Hour),
		OnTimeout:       Pause,
		OnProviderError: ProviderErrorPolicy{After: 5, Action: Pause},
		Alpha:           0.01,
		Metrics: []Metric{
			{Name: MetricErrorRate, Tolerance: DefaultTolerance, MaxRatio: DefaultHarmFactor * DefaultTolerance, MinDifference: DefaultMinDifference},
			{Name: MetricLatency, Tolerance: DefaultTolerance, MaxRatio: DefaultHarmFactor * DefaultTolerance, MinSlowdown: DefaultMinSlowdown},
		},
		Gates: []float64{},
	}
}

// Clone returns a copy of p that shares no slices with it, for states that
// are copied before they change.
func (p Plan) Clone() Plan {
	p.Steps = slices.Clone(p.Steps)
	p.Gates = slices.Clone(p.Gates)
	p.Metrics = slices.Clone(p.Metrics)
	for i := range p.Metrics {
		p.Metrics[i].Edges = slices.Clone(p.Metrics[i].Edges)
	}
	return p
}
