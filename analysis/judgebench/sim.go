package main

import (
	"math/rand/v2"
	"sync"
	"time"
)

// judgeNames are the judges compared, in table order.
var judgeNames = []string{"Vigil", "naive z-test", "Flagger-style", "oracle SPRT"}

// oracleIndex is the oracle's index among judgeNames.
const oracleIndex = 3

// outcome is one judge's result on one run.
type outcome struct {
	rolledBack bool
	// requests and events are treatment's requests and bad events (errors,
	// or requests slower than the p99 edge for latency) up to and including
	// the look that rolled back.
	requests, events int
	// breaches are the verdicts that broke the pass invariant; Vigil's
	// judge only.
	breaches breaches
}

// runOnce replays one seeded run of a scenario through every judge.
func runOnce(s scenario, seed uint64, index int, run int) []outcome {
	r := rand.New(rand.NewPCG(seed, uint64(index)<<32|uint64(run)))
	vigil := newVigilJudge(s)
	lat := s.durations()
	p99 := lat.p99Edge()
	judges := []rule{vigil, newZJudge(s, p99), newFlaggerJudge(s, lat), newOracleJudge(s, lat, p99)}
	out := make([]outcome, len(judges))
	done := 0
	perTick := int(s.rps * s.tick.Seconds())
	var nT, eT int
	stepStart := 0
	for k := 0; k < s.ticks && done < len(judges); k++ {
		if k > 0 && s.step(k) != s.step(k-1) {
			stepStart = k
		}
		t := tick{elapsed: time.Duration(k-stepStart+1) * s.tick}
		t.nT = binomial(r, perTick, s.share(k))
		t.nC = perTick - t.nT
		p := s.baseline(k)
		t.eT = badEvents(r, t.nT, min(1, p*s.ratio), s.cluster)
		t.eC = badEvents(r, t.nC, p, s.cluster)
		var bad int
		if s.latency {
			at := time.Duration(k) * s.tick
			t.slowT = slowCounts(r, t.nT, func(x float64) float64 { return lat.treatment(x, at) })
			t.slowC = slowCounts(r, t.nC, func(x float64) float64 { return lat.control(x, at) })
			bad = t.slowT[p99]
		} else {
			bad = t.eT
		}
		nT += t.nT
		eT += bad
		for i, j := range judges {
			if out[i].rolledBack {
				continue
			}
			if j.observe(t) {
				out[i] = outcome{rolledBack: true, requests: nT, events: eT}
				done++
			}
		}
	}
	out[0].breaches = vigil.breaches
	return out
}

// runScenario runs a scenario runs times on workers goroutines; the result
// depends only on the seed, never on scheduling.
func runScenario(s scenario, seed uint64, index, runs, workers int) [][]outcome {
	results := make([][]outcome, runs)
	forEach(runs, workers, func(run int) { results[run] = runOnce(s, seed, index, run) })
	return results
}

// forEach calls do for 0 to n-1 on workers goroutines and returns when
// every call has.
func forEach(n, workers int, do func(i int)) {
	next := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				do(i)
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}
