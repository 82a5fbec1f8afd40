package rollout

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/vigil-dev/vigil/sdk/flag"
)

// TestResolvePlanReadsZeroAsUnset documents why CheckExplicitZeros exists:
// once decoded, an explicit zero is the same as a missing field.
func TestResolvePlanReadsZeroAsUnset(t *testing.T) {
	var p flag.Plan
	if err := flag.DecodeStrict([]byte(`{"minRequests": 0, "minStepDuration": "0s"}`), &p); err != nil {
		t.Fatal(err)
	}
	got, err := ResolvePlan(&p)
	if err != nil {
		t.Fatal(err)
	}
	if got.MinRequests != 500 || got.MinStepDuration.Std() != 5*time.Minute {
		t.Fatalf("minRequests %d, minStepDuration %v: want the defaults", got.MinRequests, got.MinStepDuration.Std())
	}
}

func TestCheckExplicitZeros(t *testing.T) {
	for _, tc := range []struct {
		name, doc string
		fields    []string // the fields refused, in order
	}{
		{"none", `{}`, nil},
		{"no plan", `null`, nil},
		{"nonzero", `{"interval": "1s", "minStepDuration": "1s", "minRequests": 1, "alpha": 0.05, "onProviderError": {"after": 1}}`, nil},
		{"minRequests", `{"minRequests": 0}`, []string{"minRequests"}},
		{"minStepDuration", `{"minStepDuration": "0s"}`, []string{"minStepDuration"}},
		{"duration as a number", `{"minStepDuration": 0}`, []string{"minStepDuration"}},
		{"every one", `{"interval": "0s", "warmup": "0m", "minStepDuration": "0", "maxStepDuration": "0h", "minRequests": 0,
			"alpha": 0.0, "onProviderError": {"after": 0, "action": "pause"}}`,
			[]string{"interval", "warmup", "minStepDuration", "maxStepDuration", "minRequests", "alpha", "onProviderError.after"}},
		{"yaml", "steps: [1, 50]\nminStepDuration: 0s\nminRequests: 0\n", []string{"minStepDuration", "minRequests"}},
		{"wrong type is the decoder's", `{"minRequests": "many", "onProviderError": 3}`, nil},
		{"empty duration", `{"minStepDuration": ""}`, nil},
		{"metric bounds", `{"metrics": [{"name": "error-rate", "tolerance": 1.5, "max": 0.01}, {"name": "latency", "tolerance": 0, "maxP99": "0s"},
			{"name": "conversion", "max": 0}]}`, []string{"metrics[1].tolerance", "metrics[1].maxP99", "metrics[2].max"}},
		{"metrics not a list is the decoder's", `{"metrics": {"tolerance": 0}}`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var doc any
			if err := yaml.Unmarshal([]byte(tc.doc), &doc); err != nil {
				t.Fatal(err)
			}
			if strings.HasPrefix(tc.doc, "{") {
				// JSON decodes numbers differently from YAML: check both.
				var js any
				if err := json.Unmarshal([]byte(tc.doc), &js); err != nil {
					t.Fatal(err)
				}
				checkZeros(t, js, tc.fields)
			}
			checkZeros(t, doc, tc.fields)
		})
	}
}

func checkZeros(t *testing.T, doc any, want []string) {
	t.Helper()
	err := CheckExplicitZeros(doc)
	var got []string
	for _, e := range flatten(err) {
		var pe *PlanError
		if !errors.As(e, &pe) {
			t.Fatalf("%v is not a *PlanError", e)
		}
		if !strings.Contains(pe.Message, "would be read as not set") {
			t.Errorf("unclear message %q", pe.Message)
		}
		got = append(got, pe.Field)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("refused %v (%v), want %v", got, err, want)
	}
	if len(want) > 0 && !strings.Contains(err.Error(), "plan: "+want[0]+": ") {
		t.Errorf("error %q does not name the field", err)
	}
}

func flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
