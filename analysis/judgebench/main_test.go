package main

import (
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
)

// scenarioNamed returns a benchmark scenario by name.
func scenarioNamed(t *testing.T, name string) (scenario, int) {
	t.Helper()
	return named(t, scenarios(), func(s scenario) string { return s.name }, name)
}

// named returns the scenario of all called name, with its index.
func named[S any](t *testing.T, all []S, nameOf func(S) string, name string) (S, int) {
	t.Helper()
	for i, s := range all {
		if nameOf(s) == name {
			return s, i
		}
	}
	t.Fatalf("no scenario %q", name)
	var zero S
	return zero, 0
}

// TestSmoke runs a few hundred short runs and asserts only properties that
// hold with a wide margin; the real numbers come from make bench-judge.
func TestSmoke(t *testing.T) {
	aa, i := scenarioNamed(t, "A/A, 1% errors")
	aa.ticks = 120
	if got := summarize(runScenario(aa, 1, i, 200, 2), 0).rate; got >= 0.05 {
		t.Errorf("A/A: %.1f%% false rollbacks, want under 5%%", 100*got)
	}
	x5, i := scenarioNamed(t, "errors ×5")
	x5.ticks = 40
	if got := summarize(runScenario(x5, 1, i, 200, 2), 0).rate; got <= 0.9 {
		t.Errorf("errors ×5: detected in %.1f%% of runs, want over 90%%", 100*got)
	}
}

func TestRunsAreReproducible(t *testing.T) {
	s, i := scenarioNamed(t, "errors ×2")
	s.ticks = 30
	one, two := runScenario(s, 7, i, 20, 1), runScenario(s, 7, i, 20, 2)
	if !reflect.DeepEqual(one, two) {
		t.Error("the same seed gave different results on 1 and 2 workers")
	}
}

func TestBinomialMean(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	for _, p := range []float64{0.01, 0.3, 0.9} {
		const n, draws = 1000, 4000
		sum := 0
		for range draws {
			sum += binomial(r, n, p)
		}
		mean := float64(sum) / draws
		// Standard error of the mean is sqrt(n·p·(1-p)/draws) <= 0.25.
		if math.Abs(mean-n*p) > 1.5 {
			t.Errorf("Binomial(%d, %v): mean %v, want %v", n, p, mean, n*p)
		}
	}
}

func TestHistogramQuantile(t *testing.T) {
	// 100 requests, 10 slower than 0.25 s, none slower than 0.5 s: the 99th
	// request by rank lies in (0.25, 0.5], 9 of the 10 into it, so
	// 0.25 + 0.25·9/10 = 0.475 s.
	slow := make([]int, len(histogramEdges))
	for i, e := range histogramEdges {
		switch {
		case e < 0.25:
			slow[i] = 100
		case e == 0.25:
			slow[i] = 10
		}
	}
	if got := histogramQuantile(0.99, 100, slow); math.Abs(got-0.475) > 1e-9 {
		t.Errorf("p99 = %v, want 0.475", got)
	}
}

func TestPickKeepsIndices(t *testing.T) {
	scs, idx := pick("clustered errors (mean 3), tempered|errors ×5")
	var names []string
	for _, s := range scs {
		names = append(names, s.name)
	}
	want := []string{"A/A, clustered errors (mean 3), tempered", "errors ×5"}
	if !reflect.DeepEqual(names, want) {
		t.Fatalf("picked %q, want %q", names, want)
	}
	for i, s := range scs {
		if all := scenarios(); all[idx[i]].name != s.name {
			t.Errorf("%s: index %d is %q among all scenarios", s.name, idx[i], all[idx[i]].name)
		}
	}
	if scs, _ := pick(""); len(scs) != len(scenarios()) {
		t.Errorf("an empty filter picked %d of %d scenarios", len(scs), len(scenarios()))
	}
}
