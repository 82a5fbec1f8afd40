// Package plan is the rollout plan. A plan is written in three places (a
// flag's rollout.plan, the file given to `vigil rollout start --plan`, and
// the body of the API's start request), always as a Spec; Resolve lays the
// written specs over the defaults, validates the result once and returns
// the Plan the rollout follows, which Prepare turns into what the loop
// needs at every look. Every plan field is declared, defaulted and
// validated in this package and nowhere else.
package plan

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/vigil-dev/vigil/sdk/flag"
)

// Spec is a plan as written. Every field is optional, and a field left out
// (nil) differs from one written as zero: Resolve keeps the value below it
// (the defaults, or the flag's own plan) for the first and validates the
// second. An empty list is written, too: `gates: []` clears the gates.
type Spec struct {
	Steps           *[]float64         `json:"steps,omitempty"`
	Interval        *Duration          `json:"interval,omitempty"`
	MinStepDuration *Duration          `json:"minStepDuration,omitempty"`
	MinRequests     *int64             `json:"minRequests,omitempty"`
	MaxStepDuration *Duration          `json:"maxStepDuration,omitempty"`
	OnTimeout       *Action            `json:"onTimeout,omitempty"`
	OnProviderError *ProviderErrorSpec `json:"onProviderError,omitempty"`
	Alpha           *float64           `json:"alpha,omitempty"`
	Metrics         *[]MetricSpec      `json:"metrics,omitempty"`
	Gates           *[]float64         `json:"gates,omitempty"`
	Warmup          *Duration          `json:"warmup,omitempty"`
}

// ProviderErrorSpec is onProviderError as written.
type ProviderErrorSpec struct {
	After  *int    `json:"after,omitempty"`
	Action *Action `json:"action,omitempty"`
}

// MetricSpec is one metric of a plan as written. A list of metrics replaces
// the list below it as a whole, so each entry stands on its own.
type MetricSpec struct {
	// Name is "error-rate", "latency", or a custom metric's name.
	Name string `json:"name"`
	// Query is the PromQL template of a custom metric.
	Query string `json:"query,omitempty"`
	// Direction is "higher-is-worse" or, for custom metrics,
	// "lower-is-worse".
	Direction string `json:"direction,omitempty"`
	// Tolerance is the ratio treatment/control tolerated before failing.
	Tolerance *float64 `json:"tolerance,omitempty"`
	// Max bounds the treatment's rate of bad events per request.
	Max *float64 `json:"max,omitempty"`
	// MaxP99 bounds the treatment's p99 latency.
	MaxP99 *Duration `json:"maxP99,omitempty"`
	// Edges are latency bucket edges in seconds to test; empty means the
	// edges nearest control's p95 and p99.
	Edges []float64 `json:"edges,omitempty"`
	// MaxRatio is the harm bound: a step passes only once the ratio's
	// always-valid interval lies below it; 0 turns it off.
	MaxRatio *float64 `json:"maxRatio,omitempty"`
	// MinDifference is the practical floor of an error-rate or custom
	// metric, in percentage points.
	MinDifference *float64 `json:"minDifference,omitempty"`
	// MinSlowdown is the practical floor of the latency metric.
	MinSlowdown *Duration `json:"minSlowdown,omitempty"`
}

// Decode reads a Spec from JSON, strictly: an unknown field is an error,
// not a default. YAML is decoded to JSON before it gets here (flag.Parse
// and the CLI do), so one decoder serves every place a plan is written.
func Decode(data []byte) (*Spec, error) {
	var s Spec
	if err := flag.DecodeStrict(data, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// OfFlag returns the plan written in a flag's definition, or nil when it
// has none. Its error is a *flag.FieldError naming the flag and the field
// rollout.plan.
func OfFlag(f flag.Flag) (*Spec, error) {
	if f.Rollout == nil || len(f.Rollout.Plan) == 0 || string(f.Rollout.Plan) == "null" {
		return nil, nil
	}
	s, err := Decode(f.Rollout.Plan)
	if err != nil {
		return nil, &flag.FieldError{Flag: f.Key, Field: "rollout.plan", Message: err.Error()}
	}
	return s, nil
}

// Metric returns the metric named name as written, if s lists it.
func (s *Spec) Metric(name string) (MetricSpec, bool) {
	if s == nil || s.Metrics == nil {
		return MetricSpec{}, false
	}
	for _, m := range *s.Metrics {
		if m.Name == name {
			return m, true
		}
	}
	return MetricSpec{}, false
}

// Raw encodes s for a flag's rollout.plan.
func (s Spec) Raw() json.RawMessage {
	// A Spec holds only numbers, strings and lists of them: it always
	// encodes.
	b, _ := json.Marshal(s)
	return b
}

// Duration is a time.Duration written in Go syntax ("30s", "5m") in files and
// JSON; a bare number is read as seconds.
type Duration time.Duration

// Std returns d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// MarshalJSON writes the duration in Go syntax.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads a Go duration string, or a number of seconds.
func (d *Duration) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		var secs float64
		if err := json.Unmarshal(data, &secs); err != nil {
			return fmt.Errorf("duration: want a string like \"30s\", got %s", data)
		}
		*d = Duration(secs * float64(time.Second))
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		if n, nerr := strconv.ParseFloat(s, 64); nerr == nil {
			*d = Duration(n * float64(time.Second))
			return nil
		}
		return fmt.Errorf("duration %q: want Go syntax like \"30s\" or \"5m\"", s)
	}
	*d = Duration(v)
	return nil
}
