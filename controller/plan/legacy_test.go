package plan

// Tests moved here from analysis (judge_config_test.go, query_test.go) when
// the plan's conversion to the judge's configuration, its metrics'
// validation and the parsing of its custom queries moved from analysis
// (ConfigFromPlan, ValidateFlags, CustomTemplates) to this package
// (Plan.JudgeConfig, ValidateFlags, Prepare).

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vigil-dev/vigil/analysis/judge"
	"github.com/vigil-dev/vigil/sdk/flag"
)

// TestConfigFromPlan: a plan's metrics become the judge's configuration,
// error-rate and latency built in and any other custom, each setting carried
// over; a plan that resolved gives a configuration the judge accepts.
func TestConfigFromPlan(t *testing.T) {
	p := Plan{Alpha: 0.05, Metrics: []Metric{
		{Name: MetricErrorRate, Tolerance: 1.2, Max: 0.02},
		{Name: MetricLatency, MaxP99: Duration(time.Second), Edges: []float64{0.25}},
		{Name: "checkouts", Query: "sum(x)", Direction: "lower-is-worse", Tolerance: 0.95},
	}}
	want := judge.Config{Alpha: 0.05, Metrics: []judge.MetricConfig{
		{Name: "error-rate", Kind: judge.KindErrorRate, Tolerance: 1.2, Max: 0.02},
		{Name: "latency", Kind: judge.KindLatency, MaxP99: time.Second, Edges: []float64{0.25}},
		{Name: "checkouts", Kind: judge.KindCustom, Direction: judge.LowerIsWorse, Tolerance: 0.95},
	}}
	got := p.JudgeConfig()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("JudgeConfig:\n got %+v\nwant %+v", got, want)
	}

	// The same plan as written, resolved: the latency tolerance left out
	// is the default, and the judge accepts the result.
	s := spec(t, `{"alpha": 0.05, "metrics": [
		{"name": "error-rate", "tolerance": 1.2, "max": 0.02},
		{"name": "latency", "maxP99": "1s", "edges": [0.25]},
		{"name": "checkouts", "query": "sum by (feature_flag_result_variant) (increase(checkouts_total{feature_flag_key=\"{{flag}}\"}[{{window}}]))", "direction": "lower-is-worse", "tolerance": 0.95}]}`)
	resolved, err := Resolve(s)
	if err != nil {
		t.Fatalf("a valid plan was refused: %v", err)
	}
	got = resolved.JudgeConfig()
	want.Metrics[1].Tolerance = DefaultTolerance
	// Built-in metrics get the default harm bound, latency its floor; the
	// custom metric has neither unless written.
	want.Metrics[0].MaxRatio, want.Metrics[1].MaxRatio = 1.5, 1.5
	want.Metrics[1].MinSlowdown = time.Millisecond
	want.Metrics[0].MinDifference = 0.0005
	if !reflect.DeepEqual(got, want) {
		t.Errorf("JudgeConfig of the resolved plan:\n got %+v\nwant %+v", got, want)
	}
	if err := got.Validate(); err != nil {
		t.Errorf("a valid plan gave an invalid config: %v", err)
	}
}

// TestValidateFlagsMetrics: a flag's plan metrics are checked as the judge
// and the metrics reader will read them when the flag is written: each
// problem names the flag and the field, and the PromQL parser's own words
// say what is wrong with a query. (Formerly analysis.TestValidateFlags.)
func TestValidateFlagsMetrics(t *testing.T) {
	good := `sum by (feature_flag_result_variant) (increase(refunds_total{feature_flag_key="{{flag}}"}[{{window}}]))`
	withMetrics := func(metrics ...MetricSpec) *flag.Rollout {
		return &flag.Rollout{Plan: Spec{Metrics: &metrics}.Raw()}
	}
	flags := []flag.Flag{
		{Key: "no-plan"},
		{Key: "defaults", Rollout: &flag.Rollout{Plan: Spec{}.Raw()}},
		{Key: "fine", Rollout: withMetrics(MetricSpec{Name: "error-rate"}, MetricSpec{Name: "refunds", Query: good})},
		{Key: "checkout", Rollout: withMetrics(
			MetricSpec{Name: "error-rate", Direction: "lower-is-worse"},
			MetricSpec{Name: "refunds", Query: `sum(increase(refunds_total[{{window}}])`},
			MetricSpec{Name: "signups", Query: `signups_total{feature_flag_key="{{flag}}"}[{{window}}]`},
			MetricSpec{Name: "carts", Query: `sum(increase(carts_total[{{since}}]))`},
			MetricSpec{Name: "views"},
		)},
	}
	err := ValidateFlags(flags)
	var got []string
	for _, e := range flag.Errors(err) {
		var fe *flag.FieldError
		if !errors.As(e, &fe) || fe.Flag != "checkout" {
			t.Fatalf("%v: want a *flag.FieldError for flag checkout", e)
		}
		got = append(got, fe.Field+": "+fe.Message)
	}
	// The plan's own rules come first, metric by metric; the judge's rules
	// on its configuration (such as which metric may be lower-is-worse)
	// after them.
	want := []string{
		"rollout.plan.metrics[1].query: custom metric \"refunds\": query",
		"rollout.plan.metrics[2].query: custom metric \"signups\": query",
		"rollout.plan.metrics[3].query: custom metric \"carts\": unknown placeholder {{since}}",
		"rollout.plan.metrics[4].query: metric \"views\" is not built in (error-rate, latency), so it needs a query",
		"rollout.plan.metrics[0].direction: lower-is-worse applies to custom metrics only",
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
	if !strings.Contains(got[0], "unclosed left parenthesis") || !strings.Contains(got[1], "want an instant vector") {
		t.Errorf("messages do not say what is wrong:\n%s\n%s", got[0], got[1])
	}
	if err := ValidateFlags(flags[:3]); err != nil {
		t.Errorf("valid flags: %v", err)
	}
}

// TestCustomTemplatesFromPlan: preparing a plan parses its custom metrics'
// queries, and only theirs; a custom metric without a query or with a bad
// one is refused, naming it. (Formerly analysis.TestCustomTemplatesFromPlan,
// on CustomTemplates; Resolve now refuses such a plan, and Prepare refuses
// a stored plan that slipped past it.)
func TestCustomTemplatesFromPlan(t *testing.T) {
	s := spec(t, `{"metrics": [{"name": "error-rate"}, {"name": "latency"},
		{"name": "signups", "query": "sum by (feature_flag_result_variant) (increase(signups_total{feature_flag_key=\"{{flag}}\"}[{{window}}]))"}]}`)
	p, err := Resolve(s)
	if err != nil {
		t.Fatal(err)
	}
	prep, err := Prepare(p)
	if err != nil || len(prep.Custom) != 1 || prep.Custom[0].Name != "signups" {
		t.Fatalf("Prepare = %+v, %v; want the one custom metric", prep, err)
	}

	for _, tc := range []struct {
		metric MetricSpec
		field  string
		want   string
	}{
		{MetricSpec{Name: "signups"}, "metrics[0].query", `metric "signups" is not built in (error-rate, latency), so it needs a query`},
		{MetricSpec{Name: "bad", Query: "sum("}, "metrics[0].query", `custom metric "bad"`},
	} {
		_, err := Resolve(&Spec{Metrics: &[]MetricSpec{tc.metric}})
		var fe *flag.FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field || !strings.Contains(fe.Message, tc.want) {
			t.Errorf("Resolve of %+v: %v; want %s: ...%s...", tc.metric, err, tc.field, tc.want)
		}
		// A stored plan that was never resolved by this version.
		bad := Defaults()
		bad.Metrics = []Metric{{Name: tc.metric.Name, Query: tc.metric.Query, Tolerance: DefaultCustomTolerance}}
		if _, err := Prepare(bad); err == nil || !strings.Contains(err.Error(), `"`+tc.metric.Name+`"`) {
			t.Errorf("Prepare of %+v: %v; want an error naming the metric", tc.metric, err)
		}
	}
}
