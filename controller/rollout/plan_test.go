package rollout

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vigil-dev/vigil/sdk/flag"
)

func TestResolvePlanDefaults(t *testing.T) {
	p, err := ResolvePlan()
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultPlan()
	want.Warmup = want.Interval
	if !reflect.DeepEqual(p, want) {
		t.Fatalf("ResolvePlan() = %+v, want %+v", p, want)
	}
	if p.Warmup.Std() != 30*time.Second {
		t.Errorf("warmup = %v, want one interval (30s)", p.Warmup.Std())
	}
}

func TestResolvePlanMerge(t *testing.T) {
	fromFlag := &flag.Plan{
		Steps:           []float64{2, 20},
		Interval:        flag.Duration(10 * time.Second),
		OnProviderError: &flag.ProviderErrorPolicy{Action: ActionRollback},
		Gates:           []float64{20},
		Metrics:         []flag.MetricSpec{{Name: MetricErrorRate}},
	}
	override := &flag.Plan{
		Interval:        flag.Duration(time.Second),
		MinStepDuration: flag.Duration(3 * time.Second),
		MaxStepDuration: flag.Duration(time.Minute),
		MinRequests:     50,
		OnTimeout:       ActionRollback,
		OnProviderError: &flag.ProviderErrorPolicy{After: 2},
		Alpha:           0.05,
		Gates:           []float64{},
	}
	p, err := ResolvePlan(fromFlag, nil, override)
	if err != nil {
		t.Fatal(err)
	}
	want := flag.Plan{
		Steps:           []float64{2, 20, 100},
		Interval:        flag.Duration(time.Second),
		MinStepDuration: flag.Duration(3 * time.Second),
		MinRequests:     50,
		MaxStepDuration: flag.Duration(time.Minute),
		OnTimeout:       ActionRollback,
		OnProviderError: &flag.ProviderErrorPolicy{After: 2, Action: ActionRollback},
		Alpha:           0.05,
		Metrics:         []flag.MetricSpec{{Name: MetricErrorRate, Tolerance: 1.2}},
		Gates:           []float64{},
		Warmup:          flag.Duration(time.Second),
	}
	if !reflect.DeepEqual(p, want) {
		t.Fatalf("merged plan\n got %+v\nwant %+v", p, want)
	}
	if fromFlag.OnProviderError.After != 0 || len(fromFlag.Steps) != 2 {
		t.Errorf("ResolvePlan changed its input: %+v", fromFlag)
	}
}

func TestResolvePlanKeepsGatesWhenNotGiven(t *testing.T) {
	p, err := ResolvePlan(&flag.Plan{Gates: []float64{50}}, &flag.Plan{MinRequests: 10})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(p.Gates, []float64{50}) {
		t.Errorf("gates = %v, want [50]", p.Gates)
	}
}

func TestResolvePlanInvalid(t *testing.T) {
	for _, tc := range []struct {
		name  string
		plan  flag.Plan
		field string
	}{
		{"descending steps", flag.Plan{Steps: []float64{10, 5}}, "steps[1]"},
		{"step above 100", flag.Plan{Steps: []float64{1, 150}}, "steps[1]"},
		{"only 100", flag.Plan{Steps: []float64{100}}, "steps"},
		{"short interval", flag.Plan{Interval: flag.Duration(500 * time.Millisecond)}, "interval"},
		{"max below min", flag.Plan{MaxStepDuration: flag.Duration(time.Minute)}, "maxStepDuration"},
		{"negative min step", flag.Plan{MinStepDuration: flag.Duration(-time.Second)}, "minStepDuration"},
		{"negative warmup", flag.Plan{Warmup: flag.Duration(-time.Second)}, "warmup"},
		{"negative requests", flag.Plan{MinRequests: -1}, "minRequests"},
		{"bad timeout action", flag.Plan{OnTimeout: "explode"}, "onTimeout"},
		{"bad provider after", flag.Plan{OnProviderError: &flag.ProviderErrorPolicy{After: -1}}, "onProviderError.after"},
		{"bad provider action", flag.Plan{OnProviderError: &flag.ProviderErrorPolicy{Action: "ignore"}}, "onProviderError.action"},
		{"alpha too big", flag.Plan{Alpha: 0.7}, "alpha"},
		{"custom metric without query", flag.Plan{Metrics: []flag.MetricSpec{{Name: "conversion"}}}, "metrics[0].query"},
		{"duplicate metric", flag.Plan{Metrics: []flag.MetricSpec{{Name: "latency"}, {Name: "latency"}}}, "metrics[1].name"},
		{"unnamed metric", flag.Plan{Metrics: []flag.MetricSpec{{Tolerance: 2}}}, "metrics[0].name"},
		{"negative tolerance", flag.Plan{Metrics: []flag.MetricSpec{{Name: "latency", Tolerance: -1}}}, "metrics[0].tolerance"},
		{"gate not a step", flag.Plan{Gates: []float64{30}}, "gates[0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ResolvePlan(&tc.plan)
			var pe *PlanError
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v, want a *PlanError", err)
			}
			if pe.Field != tc.field {
				t.Errorf("field = %q, want %q (error %v)", pe.Field, tc.field, err)
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Errorf("error %q does not name the field %q", err, tc.field)
			}
		})
	}
}
