package main

import (
	"math"
	"time"

	"github.com/vigil-dev/vigil/analysis/judge"
)

// tick is one look's counts, for this tick only.
type tick struct {
	elapsed      time.Duration
	nT, nC       int
	eT, eC       int   // errors
	slowT, slowC []int // requests slower than each histogram edge
}

// rule is a rollback rule fed one tick at a time.
type rule interface {
	// observe takes a tick and reports whether to roll back now.
	observe(t tick) bool
}

// vigilJudge runs judge.Judge on cumulative counts, as the rollout
// controller does, persisting nothing but the returned state.
type vigilJudge struct {
	cfg      judge.Config
	state    judge.State
	cum      judge.FlagCounts
	breaches breaches
}

func newVigilJudge(s scenario) *vigilJudge {
	m := judge.MetricConfig{Name: "error-rate", Kind: judge.KindErrorRate}
	if s.latency {
		m = judge.MetricConfig{Name: "latency", Kind: judge.KindLatency}
	}
	return &vigilJudge{cfg: judge.Config{Metrics: []judge.MetricConfig{m}, DisableTempering: s.noTempering}}
}

func (j *vigilJudge) observe(t tick) bool {
	add := func(c *judge.CohortCounts, n, e int, slow []int) {
		c.Requests += float64(n)
		c.Errors += float64(e)
		if slow == nil {
			return
		}
		if c.Slower == nil {
			c.Slower = map[float64]float64{}
		}
		for i, edge := range histogramEdges {
			c.Slower[edge] += float64(slow[i])
		}
	}
	add(&j.cum.Treatment, t.nT, t.eT, t.slowT)
	add(&j.cum.Control, t.nC, t.eC, t.slowC)
	next, v, err := judge.Judge(j.cfg, j.state, j.cum, judge.StepProgress{Elapsed: t.elapsed})
	if err != nil {
		panic(err) // the benchmark's own configuration is fixed and valid
	}
	j.state = next
	j.breaches.check(v)
	return v.Outcome == judge.Fail
}

// flaggerJudge is a Flagger-style threshold judge: at each look it compares
// treatment alone, over the last minute, with a fixed bound (an error rate
// above twice the true baseline, or an interpolated p99 above 1.25 times
// control's true p99: generous settings an operator could not know this
// well) and rolls back after 5 failed checks.
type flaggerJudge struct {
	latency bool
	maxRate float64
	maxP99  float64
	window  int    // looks per minute
	recent  []tick // the last window looks
	failed  int
}

// flaggerFailedChecks is how many failed checks roll back.
const flaggerFailedChecks = 5

// newFlaggerJudge is the Flagger-style judge of s, whose latencies are
// lat (s.durations).
func newFlaggerJudge(s scenario, lat latencyModel) *flaggerJudge {
	return &flaggerJudge{
		latency: s.latency,
		maxRate: 2 * s.baseline(0),
		maxP99:  1.25 * lat.p99,
		window:  max(1, int(time.Minute/s.tick)),
	}
}

func (j *flaggerJudge) observe(t tick) bool {
	j.recent = append(j.recent, t)
	if len(j.recent) > j.window {
		j.recent = j.recent[1:]
	}
	n, e := 0, 0
	slow := make([]int, len(histogramEdges))
	for _, r := range j.recent {
		n += r.nT
		e += r.eT
		for i := range r.slowT {
			slow[i] += r.slowT[i]
		}
	}
	if n == 0 {
		return false
	}
	bad := float64(e)/float64(n) > j.maxRate
	if j.latency {
		bad = histogramQuantile(0.99, n, slow) > j.maxP99
	}
	if bad {
		j.failed++
	}
	return j.failed >= flaggerFailedChecks
}

// histogramQuantile interpolates a quantile linearly within its bucket, as
// PromQL's histogram_quantile does.
func histogramQuantile(q float64, n int, slow []int) float64 {
	rank := q * float64(n)
	lower, below := 0.0, 0.0
	for i, edge := range histogramEdges {
		le := float64(n - slow[i])
		if le >= rank {
			if le == below {
				return edge
			}
			return lower + (edge-lower)*(rank-below)/(le-below)
		}
		lower, below = edge, le
	}
	return histogramEdges[len(histogramEdges)-1]
}

// zJudge is a naive one-sided two-proportion z-test on the counts since the
// start, checked at every look at α = 0.01 as if each look were the only
// one. For latency it tests the share slower than the edge nearest
// control's true p99.
type zJudge struct {
	edge           int
	latency        bool
	nT, nC, eT, eC float64
}

// newZJudge is the z-test of s; for latency it reads p99Edge, lat's edge
// nearest control's p99.
func newZJudge(s scenario, p99Edge int) *zJudge {
	return &zJudge{latency: s.latency, edge: p99Edge}
}

// zCritical is the one-sided 99% normal quantile.
const zCritical = 2.3263478740408408

func (j *zJudge) observe(t tick) bool {
	j.nT += float64(t.nT)
	j.nC += float64(t.nC)
	if j.latency {
		j.eT += float64(t.slowT[j.edge])
		j.eC += float64(t.slowC[j.edge])
	} else {
		j.eT += float64(t.eT)
		j.eC += float64(t.eC)
	}
	if j.nT == 0 || j.nC == 0 {
		return false
	}
	p := (j.eT + j.eC) / (j.nT + j.nC)
	se := math.Sqrt(p * (1 - p) * (1/j.nT + 1/j.nC))
	if se == 0 {
		return false
	}
	return (j.eT/j.nT-j.eC/j.nC)/se > zCritical
}

// oracleJudge is a sequential probability ratio test that knows the true
// ratio r of treatment's rate of bad events to control's: at each look the
// conditional binomial likelihood of treatment's bad events given both
// cohorts', under r against the tolerance r0, multiplies its running
// likelihood ratio, which rolls back on reaching 1/α. No test of "r above
// r0" can do much better on this traffic, so it is the reference for how
// fast a valid sequential judge can be. It needs r > r0: in A/A scenarios
// it never rolls back.
type oracleJudge struct {
	r, r0   float64
	latency bool
	edge    int
	logLR   float64
}

// oracleApplies reports whether the oracle has an effect to find: a true
// ratio above the tolerance.
func (j *oracleJudge) applies() bool { return j.r > j.r0 }

// newOracleJudge is the oracle for an exact-count scenario: its error
// ratio, or for latency the ratio of the shares slower than the edge
// nearest control's p99 (the edge the z-test reads), p99Edge of lat.
func newOracleJudge(s scenario, lat latencyModel, p99Edge int) *oracleJudge {
	j := &oracleJudge{r: s.ratio, r0: judge.DefaultTolerance, latency: s.latency}
	if s.latency {
		j.edge = p99Edge
		e := histogramEdges[j.edge]
		j.r = lat.treatment(e, steady) / lat.control(e, steady)
	}
	return j
}

func (j *oracleJudge) observe(t tick) bool {
	if !j.applies() || t.nT == 0 || t.nC == 0 {
		return false
	}
	eT, eC := t.eT, t.eC
	if j.latency {
		eT, eC = t.slowT[j.edge], t.slowC[j.edge]
	}
	nT, nC := float64(t.nT), float64(t.nC)
	pi := func(r float64) float64 { return r * nT / (r*nT + nC) }
	p1, p0 := pi(j.r), pi(j.r0)
	j.logLR += float64(eT)*math.Log(p1/p0) + float64(eC)*math.Log((1-p1)/(1-p0))
	return j.logLR >= math.Log(1/judge.DefaultAlpha)
}
