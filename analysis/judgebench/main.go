// Command judgebench replays seeded synthetic rollouts with known effects
// through Vigil's sequential judge, one look per tick, side by side with a
// naive z-test checked at every look and a Flagger-style threshold judge,
// and writes the results as a markdown report (docs/judge-benchmark.md).
// Run it with `make bench-judge`.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"
)

func main() {
	runs := flag.Int("runs", 2000, "runs per scenario")
	seed := flag.Uint64("seed", 20261125, "seed of every run")
	out := flag.String("out", "", "write the markdown report to this file instead of stdout")
	only := flag.String("only", "", "run only the scenarios whose name contains this, or any of several separated by |")
	flag.Parse()
	if err := run(*runs, *seed, *out, *only); err != nil {
		fmt.Fprintln(os.Stderr, "judgebench:", err)
		os.Exit(1)
	}
}

func run(runs int, seed uint64, out, only string) error {
	if runs < 1 {
		return fmt.Errorf("-runs %d: need at least one run", runs)
	}
	scs, idx := pick(only)
	if len(scs) == 0 {
		return fmt.Errorf("-only %q matches no scenario", only)
	}
	start := time.Now()
	all := make([][][]outcome, len(scs))
	for i, s := range scs {
		t0 := time.Now()
		all[i] = runScenario(s, seed, idx[i], runs, runtime.GOMAXPROCS(0))
		fmt.Fprintf(os.Stderr, "%-55s %v\n", s.name, time.Since(t0).Round(time.Millisecond))
	}
	m := meta{runs: runs, seed: seed, elapsed: time.Since(start), machine: machine()}
	w := os.Stdout
	if out != "" {
		f, err := os.Create(out)
		if err != nil {
			return fmt.Errorf("write report: %w", err)
		}
		defer f.Close()
		w = f
	}
	writeReport(w, m, scs, all)
	return nil
}

// pick returns the scenarios whose name contains only, or any of several
// filters separated by "|" (scenario names contain commas), with their
// indices among all scenarios. A scenario's index seeds its runs, so a
// filtered run gives the same numbers as the full benchmark.
func pick(only string) (scs []scenario, idx []int) {
	for i, s := range scenarios() {
		for _, part := range strings.Split(only, "|") {
			if strings.Contains(s.name, part) {
				scs = append(scs, s)
				idx = append(idx, i)
				break
			}
		}
	}
	return scs, idx
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
