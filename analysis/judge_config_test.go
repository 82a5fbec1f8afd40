package analysis

import (
	"reflect"
	"testing"
	"time"

	"github.com/vigil-dev/vigil/sdk/flag"
)

func TestConfigFromPlan(t *testing.T) {
	p := flag.Plan{Alpha: 0.05, Metrics: []flag.MetricSpec{
		{Name: "error-rate", Tolerance: 1.2, Max: 0.02},
		{Name: "latency", MaxP99: flag.Duration(time.Second), Edges: []float64{0.25}},
		{Name: "checkouts", Query: "sum(x)", Direction: "lower-is-worse", Tolerance: 0.95},
	}}
	want := Config{Alpha: 0.05, Metrics: []MetricConfig{
		{Name: "error-rate", Kind: KindErrorRate, Tolerance: 1.2, Max: 0.02},
		{Name: "latency", Kind: KindLatency, MaxP99: time.Second, Edges: []float64{0.25}},
		{Name: "checkouts", Kind: KindCustom, Direction: LowerIsWorse, Tolerance: 0.95},
	}}
	got := ConfigFromPlan(p)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ConfigFromPlan:\n got %+v\nwant %+v", got, want)
	}
	if err := got.Validate(); err != nil {
		t.Errorf("a valid plan gave an invalid config: %v", err)
	}
}

func TestNullOfLowerIsWorse(t *testing.T) {
	cases := []struct {
		m    MetricConfig
		want float64
	}{
		{MetricConfig{}, 1},
		{MetricConfig{Tolerance: 1.2}, 1.2},
		{MetricConfig{Direction: LowerIsWorse, Tolerance: 0.8}, 0.8},
		{MetricConfig{Direction: LowerIsWorse, Tolerance: 1.25}, 0.8},
	}
	for _, tc := range cases {
		if got := tc.m.null(); got != tc.want {
			t.Errorf("%+v: null %v, want %v", tc.m, got, tc.want)
		}
	}
}
