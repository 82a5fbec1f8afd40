package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/storage"

	"github.com/vigil-dev/vigil/analysis/cohort"
	"github.com/vigil-dev/vigil/analysis/judge"
	"github.com/vigil-dev/vigil/analysis/metricstore"
	"github.com/vigil-dev/vigil/sdk"
	"github.com/vigil-dev/vigil/sdk/semconv"
)

// promScenario is a rollout whose counts reach the judge the way they do in
// production: simulated pods keep the SDK's cumulative counters, an
// embedded metric store (metricstore, the Prometheus TSDB and PromQL engine)
// takes a sample of every pod's counters at each scrape, and at each look
// the judge reads what cohort.Reader.Read returns, the controller's own
// read: the counters' raw samples, counted exactly since the rollout began.
type promScenario struct {
	// name is the scenario's name in the report's PromQL section; -only
	// matches it as filterName does.
	name string
	// effect is false for A/A scenarios, where every rollback is false.
	effect bool
	// ratio is treatment's error rate over control's.
	ratio float64
	// pods share the traffic evenly; each is scraped at its own phase.
	pods int
	// scrape is the scrape interval, look the judge's, horizon how long
	// the rollout is watched.
	scrape, look, horizon time.Duration
	// restart restarts one pod halfway through: its counters start again
	// from zero after restartDown, during which its scrapes fail and the
	// other pods take its traffic.
	restart bool
}

// The traffic of every PromQL scenario: the base case of the exact-count
// scenarios (100 requests per second, a 5% treatment share, 1% control
// errors), split evenly across the pods.
const (
	promRPS      = 100.0
	promShare    = 0.05
	promBaseline = 0.01
	// restartDown is how long a restarted pod serves nothing.
	restartDown = 20 * time.Second
	// promTreatment and promControl are the variants compared.
	promTreatment, promControl = "on", "off"
	// promBatch is how many runs share a store, each as its own flag,
	// read together as the controller reads all its rollouts: with one
	// query per metric. A flag's counts do not depend on the other flags'
	// series, so a run's outcome does not depend on its batch.
	promBatch = 10
)

// promEpoch is when every simulated rollout begins. The store keeps sample
// timestamps as given, so any fixed time serves.
var promEpoch = time.UnixMilli(1_800_000_000_000).UTC()

// promScenarios are the scenarios read through PromQL.
func promScenarios() []promScenario {
	base := promScenario{ratio: 1, pods: 1, scrape: 15 * time.Second, look: 10 * time.Second, horizon: time.Hour}
	with := func(name string, f func(*promScenario)) promScenario {
		s := base
		s.name = name
		f(&s)
		return s
	}
	return []promScenario{
		with("A/A, 1 pod, scrape 15 s, look 10 s", func(s *promScenario) {}),
		with("A/A, 4 pods, scrape 15 s, look 10 s", func(s *promScenario) { s.pods = 4 }),
		with("A/A, 1 pod, scrape 60 s, look 30 s (defaults)", func(s *promScenario) {
			s.scrape, s.look = time.Minute, 30*time.Second
		}),
		with("A/A, 4 pods, scrape 60 s, look 30 s (defaults)", func(s *promScenario) {
			s.pods, s.scrape, s.look = 4, time.Minute, 30*time.Second
		}),
		with("A/A, 4 pods, scrape 15 s, look 10 s, a pod restarts at 30 min", func(s *promScenario) {
			s.pods, s.restart = 4, true
		}),
		with("errors ×2, 1 pod, scrape 15 s, look 10 s", func(s *promScenario) { s.effect, s.ratio = true, 2 }),
	}
}

// filterName is the name -only matches, which tells the scenario from the
// exact-count scenarios: "PromQL: " and its name.
func (s promScenario) filterName() string { return "PromQL: " + s.name }

// promJudgeNames are the judges of a PromQL scenario, in table order: the
// same judge on the counts read through PromQL and on the exact counts of
// the same traffic.
var promJudgeNames = []string{"Vigil, through PromQL", "Vigil, exact counts"}

// The series of one pod, in the order of simPod.count.
const (
	treatmentOK = iota
	treatmentErr
	controlOK
	controlErr
	numSeries
)

// simPod is one service replica with the SDK's counters.
type simPod struct {
	labels [numSeries]labels.Labels
	// phase is when, within each scrape interval, the pod is scraped.
	phase time.Duration
	// count is each series' counter since the pod (re)started; a series
	// is exposed once it is above zero, as the OpenTelemetry exporter
	// creates it at its first increment.
	count [numSeries]int
	// shown is whether each series was in the last successful scrape.
	shown [numSeries]bool
	// drawn is how far the pod's traffic has been simulated; arrivals is
	// its requests up to drawn, fractional: requests arrive evenly.
	drawn    time.Time
	arrivals float64
}

// promRun is one seeded run of a PromQL scenario: one flag's rollout.
type promRun struct {
	s     promScenario
	r     *rand.Rand
	flag  string
	store *metricstore.Store
	pods  []*simPod
	// next is each pod's next scrape.
	next []time.Time
	// downFrom and downTo bound the restarted pod's (pod 0's) outage.
	downFrom, downTo time.Time
	restarted        bool
	// truth is every request and error the pods counted, across restarts.
	truth judge.FlagCounts
}

// newPromRun starts a run of flag that scrapes into store.
func newPromRun(s promScenario, r *rand.Rand, store *metricstore.Store, flag string) *promRun {
	run := &promRun{s: s, r: r, flag: flag, store: store, downFrom: promEpoch.Add(s.horizon / 2)}
	run.downTo = run.downFrom.Add(restartDown)
	if !s.restart {
		run.downFrom, run.downTo = time.Time{}, time.Time{}
	}
	for i := range s.pods {
		p := &simPod{drawn: promEpoch}
		// Prometheus spreads targets over the interval by a hash of
		// each; any phase relative to the rollout start is as likely.
		p.phase = time.Duration(r.Int64N(s.scrape.Milliseconds())) * time.Millisecond
		series := func(variant string, errType string) labels.Labels {
			b := labels.NewScratchBuilder(10)
			b.Add(labels.MetricName, semconv.PromRequests)
			b.Add("instance", fmt.Sprintf("pod-%d:9464", i))
			b.Add("job", "checkout")
			b.Add("otel_scope_name", sdk.ScopeName)
			b.Add("otel_scope_version", sdk.Version)
			b.Add(semconv.LabelKey, flag)
			b.Add(semconv.LabelVariant, variant)
			b.Add(semconv.LabelReason, semconv.ReasonSplit)
			if errType != "" {
				b.Add(semconv.LabelErrorType, errType)
			}
			b.Sort()
			return b.Labels()
		}
		p.labels = [numSeries]labels.Labels{
			series(promTreatment, ""), series(promTreatment, "500"),
			series(promControl, ""), series(promControl, "500"),
		}
		run.pods = append(run.pods, p)
		run.next = append(run.next, promEpoch.Add(p.phase))
	}
	return run
}

// down reports whether pod i is down at t.
func (run *promRun) down(i int, t time.Time) bool {
	return run.s.restart && i == 0 && !t.Before(run.downFrom) && t.Before(run.downTo)
}

// arrivals is pod i's requests over (from, to], fractional: the traffic is
// split evenly over the pods that are up.
func (run *promRun) arrivals(i int, from, to time.Time) float64 {
	each := promRPS / float64(run.s.pods)
	total := each * to.Sub(from).Seconds()
	if !run.s.restart {
		return total
	}
	// During the outage pod 0 takes nothing and the others share its part.
	lo, hi := maxTime(from, run.downFrom), minTime(to, run.downTo)
	if !lo.Before(hi) {
		return total
	}
	during := hi.Sub(lo).Seconds()
	if i == 0 {
		return total - each*during
	}
	return total + each/float64(run.s.pods-1)*during
}

// draw simulates pod i's traffic up to t, restarting pod 0 on the way if
// the scenario restarts it.
func (run *promRun) draw(i int, t time.Time) {
	p := run.pods[i]
	if !t.After(p.drawn) {
		return
	}
	if i == 0 && run.s.restart && !run.restarted && t.After(run.downFrom) {
		// What the pod counted since its last scrape is lost to the
		// store (the services counted it, so truth keeps it), and its
		// counters start again from zero.
		run.draw(0, run.downFrom)
		p.count = [numSeries]int{}
		run.restarted = true
	}
	next := p.arrivals + run.arrivals(i, p.drawn, t)
	n := int(math.Floor(next) - math.Floor(p.arrivals))
	p.drawn, p.arrivals = t, next
	nT := binomial(run.r, n, promShare)
	eT := binomial(run.r, nT, min(1, promBaseline*run.s.ratio))
	eC := binomial(run.r, n-nT, promBaseline)
	p.count[treatmentOK] += nT - eT
	p.count[treatmentErr] += eT
	p.count[controlOK] += n - nT - eC
	p.count[controlErr] += eC
	run.truth.Treatment.Requests += float64(nT)
	run.truth.Treatment.Errors += float64(eT)
	run.truth.Control.Requests += float64(n - nT)
	run.truth.Control.Errors += float64(eC)
}

// scrape appends pod i's exposition at t, as a Prometheus scrape does: the
// value of every series it shows, and a staleness marker for every series
// it showed last time but no longer does (all of them when the scrape
// fails).
func (run *promRun) scrape(app storage.Appender, i int, t time.Time) error {
	run.draw(i, t)
	p := run.pods[i]
	up := !run.down(i, t)
	for k := range numSeries {
		show := up && p.count[k] > 0
		var v float64
		switch {
		case show:
			v = float64(p.count[k])
		case p.shown[k]:
			v = math.Float64frombits(value.StaleNaN)
		default:
			continue
		}
		if _, err := app.Append(0, p.labels[k], t.UnixMilli(), v); err != nil {
			return fmt.Errorf("append %s at %s: %w", p.labels[k], t.Format(time.RFC3339Nano), err)
		}
		p.shown[k] = show
	}
	return nil
}

// promJudge is judge.Judge fed as the rollout controller feeds it: the
// state it returned last time and the step's progress. (The controller
// stores the state as JSON between looks; Go's JSON round-trips every
// float64 exactly, so the bench keeps it in memory.)
type promJudge struct {
	cfg      judge.Config
	state    judge.State
	breaches breaches
}

func (j *promJudge) observe(cum judge.FlagCounts, elapsed time.Duration) (bool, error) {
	next, v, err := judge.Judge(j.cfg, j.state, cum, judge.StepProgress{Elapsed: elapsed})
	if err != nil {
		return false, err
	}
	j.state = next
	j.breaches.check(v)
	return v.Outcome == judge.Fail, nil
}

// runPromBatch replays runs first to first+n-1 of a PromQL scenario in one
// fresh store under dir and returns each run's outcome for each of
// promJudgeNames.
func runPromBatch(ctx context.Context, s promScenario, seed uint64, index, first, n int, dir string) ([][]outcome, error) {
	store, err := metricstore.Open(ctx, metricstore.Options{Dir: dir})
	if err != nil {
		return nil, err
	}
	defer store.Close()
	reader := cohort.NewReader(store)
	cfg := judge.Config{Metrics: []judge.MetricConfig{{Name: "error-rate", Kind: judge.KindErrorRate}}}
	runs := make([]*promRun, n)
	judges := make([][]*promJudge, n)
	out := make([][]outcome, n)
	for k := range runs {
		// The top bit keeps these streams apart from the exact-count
		// scenarios' of the same index.
		r := rand.New(rand.NewPCG(seed, 1<<63|uint64(index)<<32|uint64(first+k)))
		runs[k] = newPromRun(s, r, store, fmt.Sprintf("flag-%d", first+k))
		judges[k] = []*promJudge{{cfg: cfg}, {cfg: cfg}}
		out[k] = make([]outcome, len(promJudgeNames))
	}
	live := slices.Clone(runs)
	for look := promEpoch.Add(s.look); !look.After(promEpoch.Add(s.horizon)) && len(live) > 0; look = look.Add(s.look) {
		for _, run := range live {
			if err := run.until(ctx, look); err != nil {
				return nil, err
			}
		}
		read, err := readRuns(ctx, reader, look, live)
		if err != nil {
			return nil, err
		}
		still := live[:0]
		for i, run := range live {
			k := slices.Index(runs, run)
			for j, cum := range []judge.FlagCounts{read[i], run.truth} {
				if out[k][j].rolledBack {
					continue
				}
				failed, err := judges[k][j].observe(cum, look.Sub(promEpoch))
				if err != nil {
					return nil, fmt.Errorf("run %d: %s at %v: %w", first+k, promJudgeNames[j], look.Sub(promEpoch), err)
				}
				if failed {
					out[k][j] = outcome{rolledBack: true, requests: int(run.truth.Treatment.Requests), events: int(run.truth.Treatment.Errors)}
				}
			}
			if !out[k][0].rolledBack || !out[k][1].rolledBack {
				still = append(still, run)
			}
		}
		live = still
	}
	for k := range out {
		for j := range out[k] {
			out[k][j].breaches = judges[k][j].breaches
		}
	}
	return out, store.Close()
}

// readRuns returns each run's counts as the controller reads them at t:
// what cohort.Reader.Read returns for every run's flag, in one read. A
// failed query is an error; a missing series (no traffic yet; with no
// custom metrics, the only other error a reading can carry) leaves the NaN
// counts the judge takes as unreadable, as in the controller.
func readRuns(ctx context.Context, reader *cohort.Reader, t time.Time, runs []*promRun) ([]judge.FlagCounts, error) {
	qs := make([]cohort.FlagQuery, len(runs))
	for i, run := range runs {
		qs[i] = cohort.FlagQuery{Flag: run.flag, Treatment: promTreatment, Control: promControl, Since: promEpoch}
	}
	readings, err := reader.Read(ctx, t, qs)
	if err != nil {
		return nil, fmt.Errorf("read at %v: %w", t.Sub(promEpoch), err)
	}
	out := make([]judge.FlagCounts, len(runs))
	for i, run := range runs {
		out[i] = readings[run.flag].Counts
	}
	return out, nil
}

// until appends every scrape before t to the store and simulates the
// traffic up to t. A look at t sees those scrapes; a scrape at the same
// millisecond is not in the store yet (a scrape takes time).
func (run *promRun) until(ctx context.Context, t time.Time) error {
	for {
		i := 0
		for j := range run.next {
			if run.next[j].Before(run.next[i]) {
				i = j
			}
		}
		at := run.next[i]
		if !at.Before(t) {
			break
		}
		app := run.store.Appender(ctx)
		if err := run.scrape(app, i, at); err != nil {
			app.Rollback()
			return err
		}
		if err := app.Commit(); err != nil {
			return fmt.Errorf("commit the scrape at %v: %w", at.Sub(promEpoch), err)
		}
		run.next[i] = at.Add(run.s.scrape)
	}
	for i := range run.pods {
		run.draw(i, t)
	}
	return nil
}

// runPromScenario runs a PromQL scenario runs times, in batches of
// promBatch on workers goroutines, each batch in a fresh store in a
// directory under os.TempDir; the result depends only on the seed, never
// on scheduling.
func runPromScenario(ctx context.Context, s promScenario, seed uint64, index, runs, workers int) ([][]outcome, error) {
	base, err := os.MkdirTemp("", "judgebench-")
	if err != nil {
		return nil, fmt.Errorf("store directory: %w", err)
	}
	defer os.RemoveAll(base)
	results := make([][]outcome, runs)
	batches := (runs + promBatch - 1) / promBatch
	errs := make([]error, batches)
	forEach(batches, workers, func(b int) {
		first := b * promBatch
		dir := filepath.Join(base, strconv.Itoa(b))
		out, err := runPromBatch(ctx, s, seed, index, first, min(promBatch, runs-first), dir)
		if err == nil {
			copy(results[first:], out)
			err = os.RemoveAll(dir)
		}
		if err != nil {
			errs[b] = fmt.Errorf("%s: %w", s.name, err)
		}
	})
	return results, errors.Join(errs...)
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
