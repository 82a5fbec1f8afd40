package analysis

import (
	"errors"
	"reflect"
	"strings"
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

func TestValidateFlags(t *testing.T) {
	plan := func(metrics ...flag.MetricSpec) *flag.Rollout {
		return &flag.Rollout{Plan: &flag.Plan{Metrics: metrics}}
	}
	good := `sum by (feature_flag_result_variant) (increase(refunds_total{feature_flag_key="{{flag}}"}[{{window}}]))`
	flags := []flag.Flag{
		{Key: "no-plan"},
		{Key: "defaults", Rollout: &flag.Rollout{Plan: &flag.Plan{}}},
		{Key: "fine", Rollout: plan(flag.MetricSpec{Name: "error-rate"}, flag.MetricSpec{Name: "refunds", Query: good})},
		{Key: "checkout", Rollout: plan(
			flag.MetricSpec{Name: "error-rate", Direction: "lower-is-worse"},
			flag.MetricSpec{Name: "refunds", Query: `sum(increase(refunds_total[{{window}}])`},
			flag.MetricSpec{Name: "signups", Query: `signups_total{feature_flag_key="{{flag}}"}[{{window}}]`},
			flag.MetricSpec{Name: "carts", Query: `sum(increase(carts_total[{{since}}]))`},
			flag.MetricSpec{Name: "views"},
		)},
	}
	err := ValidateFlags(flags)
	var got []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var fe *flag.FieldError
		if !errors.As(e, &fe) || fe.Flag != "checkout" {
			t.Fatalf("%v: want a *flag.FieldError for flag checkout", e)
		}
		got = append(got, fe.Field+": "+fe.Message)
	}
	want := []string{
		"rollout.plan.metrics[0].direction: lower-is-worse applies to custom metrics only",
		"rollout.plan.metrics[1].query: custom metric \"refunds\": query",
		"rollout.plan.metrics[2].query: custom metric \"signups\": query",
		"rollout.plan.metrics[3].query: custom metric \"carts\": unknown placeholder {{since}}",
		"rollout.plan.metrics[4].query: custom metric \"views\" needs a query",
	}
	if len(got) != len(want) {
		t.Fatalf("problems:\n%s\nwant %d", strings.Join(got, "\n"), len(want))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("problem %d: %q, want it to start with %q", i, got[i], want[i])
		}
	}
	// The parser's own words say what is wrong with the PromQL.
	if !strings.Contains(got[1], "unclosed left parenthesis") || !strings.Contains(got[2], "want an instant vector") {
		t.Errorf("messages do not say what is wrong:\n%s\n%s", got[1], got[2])
	}
	if err := ValidateFlags(flags[:3]); err != nil {
		t.Errorf("valid flags: %v", err)
	}
}
