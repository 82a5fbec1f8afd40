// Command judgebench replays seeded synthetic rollouts with known effects
// through Vigil's sequential judge, one look per tick, side by side with a
// naive z-test checked at every look and a Flagger-style threshold judge,
// and writes the results as a markdown report (docs/judge-benchmark.md).
// Run it with `make bench-judge`.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"
)

func main() {
	runs := flag.Int("runs", 2000, "runs per scenario with exact counts")
	promRuns := flag.Int("prom-runs", defaultPromRuns, "runs per scenario read through PromQL (0 skips them)")
	seed := flag.Uint64("seed", 20261125, "seed of every run")
	out := flag.String("out", "", "write the markdown report to this file instead of stdout")
	only := flag.String("only", "", "run only the scenarios whose name contains this, or any of several separated by |; those read through PromQL are named \"PromQL: \" and those over user populations \"users: \", then their name in the report")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile to this file")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "judgebench: -cpuprofile:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	if err := run(context.Background(), *runs, *promRuns, *seed, *out, *only); err != nil {
		fmt.Fprintln(os.Stderr, "judgebench:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

// defaultPromRuns is as many runs as the exact-count scenarios have. A run
// through PromQL costs about a hundred times one with exact counts (every
// look evaluates three PromQL queries over the whole rollout's samples):
// about 0.3 s of CPU for one run of each of them, so 2,000 runs take about
// 5 of make bench-judge's minutes on 2 cores.
const defaultPromRuns = 2000

func run(ctx context.Context, runs, promRuns int, seed uint64, out, only string) error {
	if runs < 1 {
		return fmt.Errorf("-runs %d: need at least one run", runs)
	}
	if promRuns < 0 {
		return fmt.Errorf("-prom-runs %d: need zero or more runs", promRuns)
	}
	scs, idx := pick(only)
	pscs, pidx := pickProm(only)
	if promRuns == 0 {
		pscs, pidx = nil, nil
	}
	uscs, uidx := pickPop(only)
	if len(scs) == 0 && len(pscs) == 0 && len(uscs) == 0 {
		return fmt.Errorf("-only %q matches no scenario", only)
	}
	workers := runtime.GOMAXPROCS(0)
	start := time.Now()
	timed := func(name string, t0 time.Time) {
		fmt.Fprintf(os.Stderr, "%-75s %v\n", name, time.Since(t0).Round(time.Millisecond))
	}
	all := make([][][]outcome, len(scs))
	plans := make([][]planOutcome, len(scs))
	for i, s := range scs {
		t0 := time.Now()
		all[i] = runScenario(s, seed, idx[i], runs, workers)
		if s.planToo() {
			var err error
			if plans[i], err = runScenarioPlans(s, seed, idx[i], runs, workers); err != nil {
				return err
			}
		}
		timed(s.name, t0)
	}
	uall := make([][][]outcome, len(uscs))
	uplans := make([][]planOutcome, len(uscs))
	for i, s := range uscs {
		t0 := time.Now()
		uall[i] = runPopScenario(s, seed, uidx[i], runs, workers)
		if s.plan {
			var err error
			if uplans[i], err = runPopPlans(s, seed, uidx[i], runs, workers); err != nil {
				return err
			}
		}
		timed(s.filterName(), t0)
	}
	pall := make([][][]outcome, len(pscs))
	for i, s := range pscs {
		t0 := time.Now()
		var err error
		if pall[i], err = runPromScenario(ctx, s, seed, pidx[i], promRuns, workers); err != nil {
			return err
		}
		timed(s.filterName(), t0)
	}
	m := meta{runs: runs, promRuns: promRuns, seed: seed, elapsed: time.Since(start), cpu: cpuTime(), machine: machine()}
	w := os.Stdout
	if out != "" {
		f, err := os.Create(out)
		if err != nil {
			return fmt.Errorf("write report: %w", err)
		}
		defer f.Close()
		w = f
	}
	res := results{scs: scs, all: all, plans: plans, uscs: uscs, uall: uall, uplans: uplans, pscs: pscs, pall: pall}
	writeReport(w, m, res)
	if n := res.violations(); n > 0 {
		return fmt.Errorf("%d verdicts passed beside a ratio interval wholly beyond the tolerance (see the report's invariant section)", n)
	}
	return nil
}

// pick returns the scenarios whose name contains only, or any of several
// filters separated by "|" (scenario names contain commas), with their
// indices among all scenarios. A scenario's index seeds its runs, so a
// filtered run gives the same numbers as the full benchmark.
func pick(only string) (scs []scenario, idx []int) {
	for i, s := range scenarios() {
		if matches(s.name, only) {
			scs = append(scs, s)
			idx = append(idx, i)
		}
	}
	return scs, idx
}

// pickProm is pick for the scenarios read through PromQL.
func pickProm(only string) (scs []promScenario, idx []int) {
	for i, s := range promScenarios() {
		if matches(s.filterName(), only) {
			scs = append(scs, s)
			idx = append(idx, i)
		}
	}
	return scs, idx
}

// pickPop is pick for the scenarios over user populations.
func pickPop(only string) (scs []popScenario, idx []int) {
	for i, s := range popScenarios() {
		if matches(s.filterName(), only) {
			scs = append(scs, s)
			idx = append(idx, i)
		}
	}
	return scs, idx
}

// matches reports whether name contains any of the "|"-separated filters in
// only; an empty filter matches every name.
func matches(name, only string) bool {
	for _, part := range strings.Split(only, "|") {
		if strings.Contains(name, part) {
			return true
		}
	}
	return false
}

// machine describes the computer the benchmark ran on.
func machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	load := "unknown"
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 0 {
			load = f[0]
		}
	}
	// The load shows whether the machine was shared, which stretches the
	// wall time (never the results, which depend only on the seed).
	return fmt.Sprintf("%s, %d CPUs, GOMAXPROCS=%d, %s %s/%s, load average %s at start", model, runtime.NumCPU(),
		runtime.GOMAXPROCS(0), runtime.Version(), runtime.GOOS, runtime.GOARCH, load)
}

// cpuTime is the user and system time the process has used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
