package rollout

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/vigil-dev/vigil/sdk/flag"
)

// zeroAsUnset lists the plan fields whose zero ResolvePlan reads as not set,
// with what to write instead of an explicit zero.
var zeroAsUnset = []struct {
	path     []string
	duration bool
	hint     string
}{
	{[]string{"interval"}, true, "the shortest interval is 1s"},
	{[]string{"warmup"}, true, "write 1s for practically no warm-up"},
	{[]string{"minStepDuration"}, true, "write 1s for practically no bake time (a step is never judged before its warm-up anyway)"},
	{[]string{"maxStepDuration"}, true, "give the longest a step may last, at least minStepDuration"},
	{[]string{"minRequests"}, false, "the least is 1, since a step must never pass on no data"},
	{[]string{"alpha"}, false, "alpha must be above 0 and below 0.5"},
	{[]string{"onProviderError", "after"}, false, "the least is 1"},
}

// metricZeroAsUnset is zeroAsUnset for the fields of each entry of metrics.
var metricZeroAsUnset = []struct {
	field    string
	duration bool
	hint     string
}{
	{"tolerance", false, "a tolerance is a ratio treatment/control above 0, such as 1.2"},
	{"max", false, "a bound must be above 0; leave it out for none"},
	{"maxP99", true, "a bound must be above 0; leave it out for none"},
}

// CheckExplicitZeros checks a plan as written, JSON or YAML decoded into
// maps (map[string]any), for fields given as zero where a plan reads zero as
// not set: left alone, `minStepDuration: 0s` would silently become the
// default 5m, and `minRequests: 0` 500. Each such field is a *PlanError,
// joined together, saying what to write instead. Values of the wrong type
// are left to the strict decoder that reads the plan; nil (no plan) passes.
func CheckExplicitZeros(written any) error {
	var errs []error
	for _, pe := range explicitZeros(written) {
		errs = append(errs, pe)
	}
	return errors.Join(errs...)
}

// CheckFlagZeros is CheckExplicitZeros for the rollout plan of one flag as
// written, decoded into maps: each explicit zero is a *flag.FieldError of
// key, its field "rollout.plan." and the plan field.
func CheckFlagZeros(key string, written any) error {
	var plan any
	if f, ok := written.(map[string]any); ok {
		if r, ok := f["rollout"].(map[string]any); ok {
			plan = r["plan"]
		}
	}
	var errs []error
	for _, pe := range explicitZeros(plan) {
		errs = append(errs, &flag.FieldError{Flag: key, Field: "rollout.plan." + pe.Field, Message: pe.Message})
	}
	return errors.Join(errs...)
}

// CheckFileZeros is CheckFlagZeros for every flag of a flags file, YAML or
// JSON. A flag without a key is named by its position, "#2".
func CheckFileZeros(data []byte) error {
	var doc struct {
		Flags []any `yaml:"flags"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("parse flags: %w", err)
	}
	var errs []error
	for i, f := range doc.Flags {
		key := fmt.Sprintf("#%d", i)
		if m, ok := f.(map[string]any); ok {
			if k, ok := m["key"].(string); ok && k != "" {
				key = k
			}
		}
		if err := CheckFlagZeros(key, f); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// explicitZeros returns the fields of a written plan given as zero where
// the plan reads zero as not set.
func explicitZeros(written any) []*PlanError {
	var out []*PlanError
	check := func(field string, v any, duration bool, hint string) {
		if isZero(v, duration) {
			out = append(out, &PlanError{Field: field, Message: fmt.Sprintf(
				"%v would be read as not set, leaving the flag's plan or the default in force; %s", v, hint)})
		}
	}
	for _, z := range zeroAsUnset {
		if v, ok := lookup(written, z.path); ok {
			check(strings.Join(z.path, "."), v, z.duration, z.hint)
		}
	}
	if metrics, ok := lookup(written, []string{"metrics"}); ok {
		list, _ := metrics.([]any)
		for i, m := range list {
			for _, z := range metricZeroAsUnset {
				if v, ok := lookup(m, []string{z.field}); ok {
					check(fmt.Sprintf("metrics[%d].%s", i, z.field), v, z.duration, z.hint)
				}
			}
		}
	}
	return out
}

// isZero reports whether a written value is a zero number, or with duration
// a zero duration. Null, "" and values of other types are not: they are the
// strict decoder's to judge.
func isZero(v any, duration bool) bool {
	if v == nil || v == "" {
		return false
	}
	js, err := json.Marshal(v)
	if err != nil {
		return false
	}
	if duration {
		var d flag.Duration
		return json.Unmarshal(js, &d) == nil && d == 0
	}
	var n float64
	return json.Unmarshal(js, &n) == nil && n == 0
}

// lookup follows path through nested maps.
func lookup(doc any, path []string) (any, bool) {
	for _, k := range path {
		m, ok := doc.(map[string]any)
		if !ok {
			return nil, false
		}
		if doc, ok = m[k]; !ok {
			return nil, false
		}
	}
	return doc, true
}
