package plan

import (
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vigil-dev/vigil/sdk/flag"
)

// spec decodes a plan as written.
func spec(t *testing.T, js string) *Spec {
	t.Helper()
	s, err := Decode([]byte(js))
	if err != nil {
		t.Fatalf("decode %s: %v", js, err)
	}
	return s
}

func TestResolveDefaults(t *testing.T) {
	p, err := Resolve()
	if err != nil {
		t.Fatal(err)
	}
	want := Defaults()
	want.Warmup = want.Interval
	if !reflect.DeepEqual(p, want) {
		t.Fatalf("Resolve() = %+v, want %+v", p, want)
	}
	if p.Warmup.Std() != 30*time.Second {
		t.Errorf("warmup = %v, want one interval (30s)", p.Warmup.Std())
	}
}

func TestResolveMerge(t *testing.T) {
	fromFlag := spec(t, `{"steps": [2, 20], "interval": "10s", "onProviderError": {"action": "rollback"},
		"gates": [20], "metrics": [{"name": "error-rate"}]}`)
	override := spec(t, `{"interval": "1s", "minStepDuration": "3s", "maxStepDuration": "1m", "minRequests": 50,
		"onTimeout": "rollback", "onProviderError": {"after": 2}, "alpha": 0.05, "gates": []}`)
	p, err := Resolve(fromFlag, nil, override)
	if err != nil {
		t.Fatal(err)
	}
	want := Plan{
		Steps:           []float64{2, 20, 100},
		Interval:        Duration(time.Second),
		MinStepDuration: Duration(3 * time.Second),
		MinRequests:     50,
		MaxStepDuration: Duration(time.Minute),
		OnTimeout:       Rollback,
		OnProviderError: ProviderErrorPolicy{After: 2, Action: Rollback},
		Alpha:           0.05,
		Metrics:         []Metric{{Name: MetricErrorRate, Tolerance: DefaultTolerance, MaxRatio: 1.5, MinDifference: 0.05}},
		Gates:           []float64{},
		Warmup:          Duration(time.Second),
	}
	if !reflect.DeepEqual(p, want) {
		t.Fatalf("merged plan\n got %+v\nwant %+v", p, want)
	}
	if fromFlag.OnProviderError.After != nil || len(*fromFlag.Steps) != 2 {
		t.Errorf("Resolve changed its input: %+v", fromFlag)
	}
}

func TestResolveKeepsGatesWhenNotGiven(t *testing.T) {
	p, err := Resolve(spec(t, `{"gates": [50]}`), spec(t, `{"minRequests": 10}`))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(p.Gates, []float64{50}) {
		t.Errorf("gates = %v, want [50]", p.Gates)
	}
}

func TestResolveCustomMetricTolerance(t *testing.T) {
	p, err := Resolve(spec(t, `{"metrics": [{"name": "signups", "query": "sum by (feature_flag_result_variant) (increase(x{feature_flag_key=\"{{flag}}\"}[{{window}}]))"}, {"name": "latency"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if p.Metrics[0].Tolerance != DefaultCustomTolerance || p.Metrics[1].Tolerance != DefaultTolerance {
		t.Errorf("tolerances %v and %v, want %v for a custom metric and %v for latency",
			p.Metrics[0].Tolerance, p.Metrics[1].Tolerance, DefaultCustomTolerance, DefaultTolerance)
	}
}

// TestResolveHarmBoundsAndFloors: a built-in metric's harm bound follows its
// tolerance unless written; a custom metric has none; the floor in
// percentage points reaches the judge as a rate.
func TestResolveHarmBoundsAndFloors(t *testing.T) {
	p, err := Resolve(spec(t, `{"metrics": [
		{"name": "error-rate", "tolerance": 2, "minDifference": 0.5},
		{"name": "latency", "maxRatio": 3, "minSlowdown": "5ms"},
		{"name": "refunds", "query": "sum by (feature_flag_result_variant) (increase(refunds_total{feature_flag_key=\"{{flag}}\"}[{{window}}]))"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	cfg := p.JudgeConfig()
	errs, lat, custom := cfg.Metrics[0], cfg.Metrics[1], cfg.Metrics[2]
	if errs.MaxRatio != 2.5 || errs.MinDifference != 0.005 {
		t.Errorf("error-rate: maxRatio %v, minDifference %v; want 2.5 (1.25 × tolerance 2) and 0.005 (0.5 points)", errs.MaxRatio, errs.MinDifference)
	}
	if lat.MaxRatio != 3 || lat.MinSlowdown != 5*time.Millisecond {
		t.Errorf("latency: maxRatio %v, minSlowdown %v; want 3 and 5ms as written", lat.MaxRatio, lat.MinSlowdown)
	}
	if custom.MaxRatio != 0 || custom.MinDifference != 0 {
		t.Errorf("custom: maxRatio %v, minDifference %v; want none", custom.MaxRatio, custom.MinDifference)
	}
}

func TestResolveInvalid(t *testing.T) {
	for _, tc := range []struct {
		name, spec, field string
	}{
		{"descending steps", `{"steps": [10, 5]}`, "steps[1]"},
		{"step above 100", `{"steps": [1, 150]}`, "steps[1]"},
		{"only 100", `{"steps": [100]}`, "steps"},
		{"no steps", `{"steps": []}`, "steps"},
		{"short interval", `{"interval": "500ms"}`, "interval"},
		{"max below min", `{"maxStepDuration": "1m"}`, "maxStepDuration"},
		{"negative min step", `{"minStepDuration": "-1s"}`, "minStepDuration"},
		{"negative warmup", `{"warmup": "-1s"}`, "warmup"},
		{"negative requests", `{"minRequests": -1}`, "minRequests"},
		{"bad timeout action", `{"onTimeout": "explode"}`, "onTimeout"},
		{"bad provider after", `{"onProviderError": {"after": -1}}`, "onProviderError.after"},
		{"bad provider action", `{"onProviderError": {"action": "ignore"}}`, "onProviderError.action"},
		{"alpha too big", `{"alpha": 0.7}`, "alpha"},
		{"no metrics", `{"metrics": []}`, "metrics"},
		{"custom metric without query", `{"metrics": [{"name": "conversion"}]}`, "metrics[0].query"},
		{"custom metric with a bad query", `{"metrics": [{"name": "conversion", "query": "sum("}]}`, "metrics[0].query"},
		{"duplicate metric", `{"metrics": [{"name": "latency"}, {"name": "latency"}]}`, "metrics[1].name"},
		{"unnamed metric", `{"metrics": [{"tolerance": 2}]}`, "metrics[0].name"},
		{"negative tolerance", `{"metrics": [{"name": "latency", "tolerance": -1}]}`, "metrics[0].tolerance"},
		{"tolerance below 1", `{"metrics": [{"name": "error-rate", "tolerance": 0.5}]}`, "metrics[0].tolerance"},
		{"max on latency", `{"metrics": [{"name": "latency", "max": 0.1}]}`, "metrics[0].max"},
		{"maxP99 on errors", `{"metrics": [{"name": "error-rate", "maxP99": "1s"}]}`, "metrics[0].maxP99"},
		{"edge not positive", `{"metrics": [{"name": "latency", "edges": [0]}]}`, "metrics[0].edges[0]"},
		{"gate not a step", `{"gates": [30]}`, "gates[0]"},
		{"harm bound at the tolerance", `{"metrics": [{"name": "error-rate", "tolerance": 1.5, "maxRatio": 1.5}]}`, "metrics[0].maxRatio"},
		{"harm bound below the tolerance", `{"metrics": [{"name": "error-rate", "maxRatio": 1.1}]}`, "metrics[0].maxRatio"},
		{"negative harm bound", `{"metrics": [{"name": "latency", "maxRatio": -2}]}`, "metrics[0].maxRatio"},
		{"floor of 100 points", `{"metrics": [{"name": "error-rate", "minDifference": 100}]}`, "metrics[0].minDifference"},
		{"negative floor", `{"metrics": [{"name": "error-rate", "minDifference": -0.1}]}`, "metrics[0].minDifference"},
		{"difference floor on latency", `{"metrics": [{"name": "latency", "minDifference": 0.1}]}`, "metrics[0].minDifference"},
		{"slowdown floor on errors", `{"metrics": [{"name": "error-rate", "minSlowdown": "2ms"}]}`, "metrics[0].minSlowdown"},
		{"negative slowdown floor", `{"metrics": [{"name": "latency", "minSlowdown": "-1ms"}]}`, "metrics[0].minSlowdown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Resolve(spec(t, tc.spec))
			var fe *flag.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("err = %v, want a *flag.FieldError", err)
			}
			if fe.Field != tc.field {
				t.Errorf("field = %q, want %q (error %v)", fe.Field, tc.field, err)
			}
		})
	}
}

// TestExplicitZeros: a field written as zero is that value, never "not
// set": it is validated like any other value, and where zero makes sense
// (no bake time, no warm-up, no gates) it is what the rollout follows.
func TestExplicitZeros(t *testing.T) {
	for _, tc := range []struct {
		spec  string
		field string // refused on this field, or "" for accepted
		check func(Plan) bool
	}{
		{`{"interval": "0s"}`, "interval", nil},
		{`{"minRequests": 0}`, "minRequests", nil},
		{`{"alpha": 0}`, "alpha", nil},
		{`{"onProviderError": {"after": 0}}`, "onProviderError.after", nil},
		{`{"metrics": [{"name": "latency", "tolerance": 0}]}`, "metrics[0].tolerance", nil},
		{`{"metrics": [{"name": "error-rate", "max": 0}]}`, "metrics[0].max", nil},
		{`{"metrics": [{"name": "latency", "maxP99": "0s"}]}`, "metrics[0].maxP99", nil},
		{`{"minStepDuration": "0s"}`, "", func(p Plan) bool { return p.MinStepDuration == 0 }},
		{`{"warmup": "0s"}`, "", func(p Plan) bool { return p.Warmup == 0 }},
		{`{"gates": []}`, "", func(p Plan) bool { return p.Gates != nil && len(p.Gates) == 0 }},
		{`{"metrics": [{"name": "error-rate", "maxRatio": 0}]}`, "", func(p Plan) bool { return p.Metrics[0].MaxRatio == 0 }},
		{`{"metrics": [{"name": "latency", "minSlowdown": "0s"}]}`, "", func(p Plan) bool { return p.Metrics[0].MinSlowdown == 0 }},
	} {
		t.Run(tc.spec, func(t *testing.T) {
			p, err := Resolve(spec(t, `{"gates": [50]}`), spec(t, tc.spec))
			if tc.field == "" {
				if err != nil || !tc.check(p) {
					t.Fatalf("Resolve = %+v, %v", p, err)
				}
				return
			}
			var fe *flag.FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field {
				t.Fatalf("err = %v, want one on %s", err, tc.field)
			}
		})
	}
}

func TestWithin(t *testing.T) {
	_, err := Resolve(spec(t, `{"steps": [5, 1], "alpha": 2}`))
	err = Within(err, "checkout", "rollout.plan")
	var fields []string
	for _, e := range flag.Errors(err) {
		var fe *flag.FieldError
		if !errors.As(e, &fe) || fe.Flag != "checkout" {
			t.Fatalf("%v is not a field error of checkout", e)
		}
		fields = append(fields, fe.Field)
	}
	if !reflect.DeepEqual(fields, []string{"rollout.plan.steps[1]", "rollout.plan.alpha"}) {
		t.Errorf("fields %v", fields)
	}
}

func TestValidateFlags(t *testing.T) {
	flags := []flag.Flag{
		{Key: "ok", Rollout: &flag.Rollout{Plan: json.RawMessage(`{"steps": [1, 50]}`)}},
		{Key: "none"},
		{Key: "typo", Rollout: &flag.Rollout{Plan: json.RawMessage(`{"intervall": "1s"}`)}},
		{Rollout: &flag.Rollout{Plan: json.RawMessage(`{"metrics": [{"name": "conv"}]}`)}},
	}
	err := ValidateFlags(flags)
	want := []string{"flag typo: rollout.plan: ", "flag #3: rollout.plan.metrics[0].query: "}
	got := flag.Errors(err)
	if len(got) != len(want) {
		t.Fatalf("errors %v, want %d", err, len(want))
	}
	for i, w := range want {
		if !strings.HasPrefix(got[i].Error(), w) {
			t.Errorf("error %d = %q, want it to start %q", i, got[i], w)
		}
	}
	if err := ValidateFlags(flags[:2]); err != nil {
		t.Errorf("valid flags: %v", err)
	}
}

// TestSpecRoundTrip: a spec encodes what was written, explicit zeros and
// empty lists included, so the CLI sends the API what the file said.
func TestSpecRoundTrip(t *testing.T) {
	in := `{"steps":[1,50],"minStepDuration":"0s","minRequests":0,"metrics":[{"name":"latency","tolerance":1.5}],"gates":[]}`
	s := spec(t, in)
	if got := string(s.Raw()); got != in {
		t.Errorf("Raw = %s, want %s", got, in)
	}
}

// FuzzResolve: any written plan either resolves to one the loop can follow
// or is refused with field errors only; never a panic.
func FuzzResolve(f *testing.F) {
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"steps":[10,50],"gates":[50],"interval":"1s","minStepDuration":"0s","minRequests":1}`))
	f.Add([]byte(`{"metrics":[{"name":"x","query":"sum(rate(y[{{window}}]))"},{"name":"latency","maxP99":"0s"}]}`))
	f.Add([]byte(`{"onProviderError":{"after":0},"alpha":0,"warmup":"-1s"}`))
	f.Add([]byte(`{"metrics":[{"name":"latency","tolerance":-1,"max":0,"maxP99":"0s"},{"name":"latency"},{"tolerance":0}]}`))
	f.Add([]byte(`{"metrics":[]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Decode(data)
		if err != nil {
			return
		}
		p, err := Resolve(s)
		if err != nil {
			seen := map[string]bool{}
			for _, e := range flag.Errors(err) {
				var fe *flag.FieldError
				if !errors.As(e, &fe) || fe.Field == "" {
					t.Fatalf("%v is not a field error", e)
				}
				if seen[fe.Field] {
					t.Fatalf("%s is reported twice: %v", fe.Field, err)
				}
				seen[fe.Field] = true
			}
			return
		}
		if len(p.Steps) < 2 || p.Steps[len(p.Steps)-1] != 100 || p.Interval.Std() < time.Second || p.MinRequests < 1 {
			t.Fatalf("resolved an unusable plan %+v", p)
		}
		if _, err := Prepare(p); err != nil {
			t.Fatalf("a resolved plan does not prepare: %v", err)
		}
	})
}

// TestDocumentedDefaults keeps the plan in docs/rollouts.md, which says it
// shows every default, equal to Defaults.
func TestDocumentedDefaults(t *testing.T) {
	doc, err := os.ReadFile("../../docs/rollouts.md")
	if err != nil {
		t.Fatal(err)
	}
	block := regexp.MustCompile("(?s)```yaml\n(rollout:.*?)```").FindSubmatch(doc)
	if block == nil {
		t.Fatal("docs/rollouts.md has no yaml block with the plan")
	}
	f, err := flag.Parse([]byte("flags:\n  - key: k\n    variants: {a: 1, b: 2}\n    control: a\n    treatment: b\n" +
		indent(string(block[1]), "    ")))
	if err != nil {
		t.Fatal(err)
	}
	written, err := OfFlag(f.Flags[0])
	if err != nil {
		t.Fatal(err)
	}
	got, err := Resolve(written)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := Resolve()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("docs/rollouts.md shows\n%+v\nthe defaults are\n%+v", got, want)
	}
}

func indent(s, by string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i := range lines {
		lines[i] = by + lines[i]
	}
	return strings.Join(lines, "\n") + "\n"
}
