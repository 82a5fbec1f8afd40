package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-dev/vigil/controller/plan"
	"github.com/vigil-dev/vigil/controller/rollout"
	"github.com/vigil-dev/vigil/internal/client"
)

// TestPlanPathsAgree writes the same plan fields through the three places
// a plan is written (a flags file applied with `vigil apply`, `vigil
// rollout start --plan FILE`, and the API's start) and checks that each
// path ends in the same plan, or refuses it naming the same field: explicit
// zeros are values, and `gates: []` clears the flag's gates everywhere.
func TestPlanPathsAgree(t *testing.T) {
	for _, tc := range []struct {
		written string
		field   string // the plan field refused, or "" when accepted
		check   func(plan.Plan) bool
	}{
		{`{"gates": []}`, "", func(p plan.Plan) bool { return len(p.Gates) == 0 }},
		{`{"minStepDuration": "0s", "warmup": "0s"}`, "", func(p plan.Plan) bool { return p.MinStepDuration == 0 && p.Warmup == 0 }},
		{`{"steps": [2, 50], "minRequests": 1}`, "", func(p plan.Plan) bool { return fmt.Sprint(p.Steps) == "[2 50 100]" && p.MinRequests == 1 }},
		{`{"minRequests": 0}`, "minRequests", nil},
		{`{"interval": "0s"}`, "interval", nil},
		{`{"metrics": [{"name": "latency", "tolerance": 0}]}`, "metrics[0].tolerance", nil},
		{`{"gates": [30]}`, "gates[0]", nil},
	} {
		t.Run(tc.written, func(t *testing.T) {
			for _, path := range []string{"flags file", "rollout start --plan", "API"} {
				p, err := startThrough(t, path, tc.written)
				if tc.field == "" {
					if err != nil || !tc.check(p) {
						t.Errorf("%s: plan %+v, %v", path, p, err)
					}
					continue
				}
				want := "plan." + tc.field + ":"
				if path == "flags file" {
					want = "rollout." + want
				}
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("%s: err = %v, want one naming %s", path, err, want)
				}
			}
		})
	}
}

// startThrough writes plan fields through one path and returns the plan
// the started rollout follows. The flag's own plan has a gate at 50%, which
// the start's fields override.
func startThrough(t *testing.T, path, written string) (plan.Plan, error) {
	t.Helper()
	url := startController(t)
	conn := []string{"--server", url, "--token", cliToken}
	flagPlan := `{"gates": [50]}`
	if path == "flags file" {
		flagPlan = written
	}
	file := filepath.Join(t.TempDir(), "flags.yaml")
	flags := "flags:\n  - key: checkout\n    variants: {\"on\": true, \"off\": false}\n    control: \"off\"\n    treatment: \"on\"\n" +
		"    enabled: true\n    rollout:\n      percent: 0\n      plan: " + flagPlan + "\n"
	if err := os.WriteFile(file, []byte(flags), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := vigil(t, append([]string{"apply", "-f", file}, conn...)...); err != nil {
		return plan.Plan{}, err
	}
	c, err := client.New(url, cliToken)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	switch path {
	case "flags file":
		_, err = vigil(t, append([]string{"rollout", "start", "checkout"}, conn...)...)
	case "rollout start --plan":
		planFile := filepath.Join(t.TempDir(), "plan.yaml")
		if err := os.WriteFile(planFile, []byte(written), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err = vigil(t, append([]string{"rollout", "start", "checkout", "--plan", planFile}, conn...)...)
	case "API":
		err = c.Do(ctx, client.Request{Method: "POST", Path: "/api/v1/rollouts/checkout/start",
			Body: []byte(`{"plan": ` + written + `}`)}, nil)
	default:
		t.Fatalf("no path %q", path)
	}
	if err != nil {
		return plan.Plan{}, err
	}
	var s rollout.State
	if err := c.Do(ctx, client.Request{Method: "GET", Path: "/api/v1/rollouts/checkout"}, &s); err != nil {
		t.Fatal(err)
	}
	if s.Phase != rollout.Progressing {
		return s.Plan, errors.New("rollout is " + string(s.Phase))
	}
	return s.Plan, nil
}
