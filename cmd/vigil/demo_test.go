// The demo's tests put a fleet under load and judge latencies measured on
// loopback; under the race detector on two cores the same load starves the
// services, so `make test` runs them in its test-e2e step, without it.

//go:build !race

package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-dev/vigil/controller/rollout"
	"github.com/vigil-dev/vigil/internal/demo"
	"github.com/vigil-dev/vigil/internal/fleet"
	"github.com/vigil-dev/vigil/internal/promtest"
)

// checkDemoOutput asserts what a person reading the demo's output must see.
func checkDemoOutput(t *testing.T, out, dir string) {
	t.Helper()
	for _, want := range []string{
		"new-checkout: promoted at 100%",
		"fast-payments: rolled_back at 0%",
		"the judge found the treatment worse than control",
		"0 of them saw different variants in one request",
		"Both rollouts ended as expected",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	for _, f := range []string{"dashboards/vigil-flag-new-checkout.json", "dashboards/vigil-flag-fast-payments.json", "alerts.yaml"} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Size() == 0 {
			t.Errorf("demo did not write %s: %v", f, err)
		}
	}
}

// checkRolledBackEarly asserts that the harmful rollout was rolled back by
// the controller before it passed 25%, and that the healthy one went
// through every step.
func checkRolledBackEarly(t *testing.T, o demo.Outcome) {
	t.Helper()
	fp := o.Rollouts[fleet.FastPayments]
	highest, rolledBack := 0.0, false
	for _, tr := range fp.History {
		highest = max(highest, tr.Percent)
		if tr.To == rollout.RolledBack {
			rolledBack = tr.Actor == rollout.ControllerActor
		}
	}
	if !rolledBack || highest > 25 {
		t.Errorf("%s: rolled back by the controller %v, highest percent %v; want a rollback by the controller at 25%% or less", fleet.FastPayments, rolledBack, highest)
	}
	nc := o.Rollouts[fleet.NewCheckout]
	if len(nc.History) < len(nc.Plan.Steps) {
		t.Errorf("%s: %d transitions for %d steps", fleet.NewCheckout, len(nc.History), len(nc.Plan.Steps))
	}
}

// TestDemo runs `vigil demo` as `make demo` does, with the embedded store
// and the embedded metric store, and asserts the story's outcomes: the
// healthy rollout promoted, the harmful one rolled back before it passed
// 25%, and no request served two variants of a flag.
func TestDemo(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	outcome, err := runDemo(context.Background(), &out, demo.Options{Timeout: 150 * time.Second}, demoSetup{dir: dir})
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	checkDemoOutput(t, out.String(), dir)
	checkRolledBackEarly(t, outcome)
	t.Log(out.String())
}

// TestDemoAgainstPrometheus runs the same story with the judge reading a
// real Prometheus server that scrapes the fleet, as a team with Prometheus
// runs Vigil.
func TestDemoAgainstPrometheus(t *testing.T) {
	dir := t.TempDir()
	targets := filepath.Join(dir, "targets.json")
	if err := os.WriteFile(targets, []byte("[]"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Prometheus starts before the fleet exists, so it finds the fleet's
	// targets through file discovery; the idle target only gives its
	// readiness check something to scrape.
	idle := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	t.Cleanup(idle.Close)
	prom := promtest.Start(t, promtest.Options{Targets: []string{idle.URL + "/metrics"}, Jobs: []string{fmt.Sprintf(`- job_name: fleet
  file_sd_configs:
    - files: [%q]
      refresh_interval: 1s`, targets)}})
	var out bytes.Buffer
	opts := demo.Options{Timeout: 150 * time.Second,
		Fleet: func(ctx context.Context, addrs []string) error {
			tmp := targets + ".tmp"
			body := fmt.Sprintf(`[{"targets": ["%s"]}]`, strings.Join(addrs, `", "`))
			if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
				return err
			}
			return os.Rename(tmp, targets)
		}}
	outcome, err := runDemo(context.Background(), &out, opts, demoSetup{dir: dir, serveArgs: []string{"--prometheus-url", prom.URL}})
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	checkDemoOutput(t, out.String(), dir)
	checkRolledBackEarly(t, outcome)
	t.Log(out.String())
}
