package main

import (
	"context"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/vigil-dev/vigil/analysis/cohort"
	"github.com/vigil-dev/vigil/analysis/metricstore"
)

// promScenarioNamed returns a PromQL scenario by name.
func promScenarioNamed(t *testing.T, name string) (promScenario, int) {
	t.Helper()
	return named(t, promScenarios(), func(s promScenario) string { return s.name }, name)
}

// TestPromReadFollowsTruth scrapes a run with a pod restart into a real
// embedded store and checks that what the controller's read returns at
// every look follows what the pods counted: the series carry the SDK's
// names and labels, and the restart (counters back to zero, staleness
// markers while the pod is down) reads as a counter reset, not as lost
// traffic.
func TestPromReadFollowsTruth(t *testing.T) {
	s, _ := promScenarioNamed(t, "A/A, 4 pods, scrape 15 s, look 10 s, a pod restarts at 30 min")
	s.horizon = 20 * time.Minute // the restart comes at 10 min
	store, err := metricstore.Open(context.Background(), metricstore.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	run := newPromRun(s, rand.New(rand.NewPCG(1, 2)), store, "checkout")
	reader := cohort.NewReader(store)
	ctx := context.Background()
	for look := promEpoch.Add(s.look); !look.After(promEpoch.Add(s.horizon)); look = look.Add(s.look) {
		if err := run.until(ctx, look); err != nil {
			t.Fatal(err)
		}
		read, err := readRuns(ctx, reader, look, []*promRun{run})
		if err != nil {
			t.Fatal(err)
		}
		got := read[0]
		// A read is exact as of each pod's last scrape: it never leads
		// the truth, and lags it by one scrape interval's traffic at
		// most, plus what the restarted pod lost: within 10% once a
		// scrape interval is a small part of the run, errors included.
		for _, c := range []struct {
			name       string
			read, true float64
		}{
			{"treatment requests", got.Treatment.Requests, run.truth.Treatment.Requests},
			{"control requests", got.Control.Requests, run.truth.Control.Requests},
			{"control errors", got.Control.Errors, run.truth.Control.Errors},
		} {
			if c.read > c.true {
				t.Fatalf("at %v: %s read %.1f, more than the pods counted (%.0f)", look.Sub(promEpoch), c.name, c.read, c.true)
			}
			if look.Sub(promEpoch) < 3*time.Minute {
				continue
			}
			if !(math.Abs(c.read-c.true) <= 0.1*c.true) {
				t.Fatalf("at %v: %s read %.1f, the pods counted %.0f", look.Sub(promEpoch), c.name, c.read, c.true)
			}
		}
	}
	if !run.restarted {
		t.Fatal("the pod never restarted")
	}
	if run.pods[0].count[controlOK] >= int(run.truth.Control.Requests)/8 {
		t.Errorf("the restarted pod's counter is %d of %.0f control requests: it did not start again from zero",
			run.pods[0].count[controlOK], run.truth.Control.Requests)
	}
}

func TestPromRunsAreReproducible(t *testing.T) {
	s, i := promScenarioNamed(t, "errors ×2, 1 pod, scrape 15 s, look 10 s")
	s.pods, s.restart, s.horizon = 4, true, 20*time.Minute
	one, err := runPromScenario(context.Background(), s, 7, i, promBatch+2, 1)
	if err != nil {
		t.Fatal(err)
	}
	two, err := runPromScenario(context.Background(), s, 7, i, promBatch+2, 2)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(one, two) {
		t.Errorf("the same seed gave different results on 1 and 2 workers: %v and %v", one, two)
	}
	if rw := summarize(one, 0); rw.rollbacks < 2 || rw.medianReq == rw.p90Req {
		t.Fatalf("%d rollbacks, median and p90 of requests %d and %d: too few to compare", rw.rollbacks, rw.medianReq, rw.p90Req)
	}
	// A run's outcome does not depend on the runs that share its store.
	alone, err := runPromBatch(context.Background(), s, 7, i, promBatch+1, 1, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(alone[0], one[promBatch+1]) {
		t.Errorf("run %d alone: %v; beside run %d: %v", promBatch+1, alone[0], promBatch, one[promBatch+1])
	}
}

// TestPromDetectsRegression runs a few short runs of the regression read
// through PromQL: the judge still sees a doubled error rate.
func TestPromDetectsRegression(t *testing.T) {
	s, i := promScenarioNamed(t, "errors ×2, 1 pod, scrape 15 s, look 10 s")
	s.horizon = 30 * time.Minute
	res, err := runPromScenario(context.Background(), s, 1, i, 10, 2)
	if err != nil {
		t.Fatal(err)
	}
	if got := summarize(res, 0); got.rollbacks < 8 {
		t.Errorf("errors ×2 through PromQL: detected in %d of 10 runs within 30 minutes, want 8 or more", got.rollbacks)
	}
}

func TestWilson(t *testing.T) {
	// Reference values: the Wilson score interval at z = 1.96.
	for _, c := range []struct {
		k, n   int
		lo, hi float64
	}{
		{0, 1000, 0, 0.0038268},
		{10, 1000, 0.0054408, 0.0183095},
		{415, 1000, 0.3848434, 0.4458072},
	} {
		lo, hi := wilson(c.k, c.n)
		if math.Abs(lo-c.lo) > 1e-6 || math.Abs(hi-c.hi) > 1e-6 {
			t.Errorf("wilson(%d, %d) = %.7f, %.7f, want %.7f, %.7f", c.k, c.n, lo, hi, c.lo, c.hi)
		}
	}
}

// TestPromAAHoldsAlpha runs short A/A runs through PromQL in the regime
// where increase()'s re-extrapolation misled the judge most (one pod,
// scrape 15 s, look 10 s): a judge that re-based a count that read lower
// on the lower value rolled back 6 of these 20 healthy rollouts within
// 30 minutes.
func TestPromAAHoldsAlpha(t *testing.T) {
	s, i := promScenarioNamed(t, "A/A, 1 pod, scrape 15 s, look 10 s")
	s.horizon = 30 * time.Minute
	res, err := runPromScenario(context.Background(), s, 1, i, 20, 2)
	if err != nil {
		t.Fatal(err)
	}
	if got := summarize(res, 0); got.rollbacks > 1 {
		t.Errorf("A/A through PromQL: %d of 20 runs rolled back within 30 minutes, want at most 1", got.rollbacks)
	}
}
