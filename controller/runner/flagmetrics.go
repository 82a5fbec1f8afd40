package runner

import (
	"math"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-dev/vigil/analysis/judge"
	"github.com/vigil-dev/vigil/controller/rollout"
	"github.com/vigil-dev/vigil/controller/rolloutmetrics"
)

// flagMetrics are the metrics with series per flag: its rollout's percent
// and state, its transitions, and the judge's verdicts and evidence, about
// 35 series a flag. A client_golang vector keeps each series as a metric
// of its own (about 600 bytes: 200 MB at 10,000 flags), so these are kept
// as a few numbers a flag and made into series when they are collected.
// The series are those the vectors gave: the same names, help, labels and
// values.
type flagMetrics struct {
	mu    sync.Mutex
	flags map[string]*flagSeries

	percent, state, transitions, verdicts, evidence, threshold *prometheus.Desc
	// The judge's latest findings per ratio check, in the order of
	// checkSeries.values, and on the split.
	checks                                      [checkGauges]*prometheus.Desc
	cohortRate                                  *prometheus.Desc
	splitExpected, splitObserved, splitMismatch *prometheus.Desc
}

// The gauges of a ratio check, indexes into checkSeries.values.
const (
	gaugeEdge = iota
	gaugeRatio
	gaugeRatioLow
	gaugeRatioHigh
	gaugeTolerance
	gaugeHarmBound
	gaugeFloorRatio
	gaugeDispersion
	checkGauges
)

// flagSeries is what one flag's series show. An absent gauge is NaN.
type flagSeries struct {
	// percent and phase are set once the rollout's state was observed.
	stated      bool
	percent     float64
	phase       rollout.Phase
	transitions map[rollout.Phase]float64
	verdicts    map[verdictKey]float64
	evidence    map[string]float64
	threshold   float64
	checks      map[string]*checkSeries
	// The split check's shares and mismatch.
	splitExpected, splitObserved, splitMismatch float64
}

type verdictKey struct {
	check   string
	outcome judge.Outcome
}

// checkSeries are one ratio check's gauges.
type checkSeries struct {
	values             [checkGauges]float64
	treatment, control float64
}

func newFlagMetrics() *flagMetrics {
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, append([]string{"flag"}, labels...), nil)
	}
	m := &flagMetrics{
		flags:         map[string]*flagSeries{},
		percent:       desc(rolloutmetrics.Percent, "Treatment percentage of each flag under a rollout."),
		state:         desc(rolloutmetrics.State, "1 for the rollout's current state, 0 for the others.", "state"),
		transitions:   desc(rolloutmetrics.Transitions, "Rollout transitions by the state they led to (step advances count as progressing).", "to"),
		verdicts:      desc(rolloutmetrics.Verdicts, "Judge verdicts per metric check; metric \"all\" is the overall verdict.", "metric", "verdict"),
		evidence:      desc(rolloutmetrics.Evidence, "Latest e-value per metric check; metric \"all\" is the mean that the threshold applies to.", "metric"),
		threshold:     desc(rolloutmetrics.EvidenceThreshold, "E-value at which the overall verdict fails (1/alpha)."),
		cohortRate:    desc(rolloutmetrics.CohortRate, "Bad events per request of each cohort since the rollout began, per ratio check.", "metric", rolloutmetrics.CohortLabel),
		splitExpected: desc(rolloutmetrics.SplitExpected, "Treatment's share of the split's requests that the flag should give."),
		splitObserved: desc(rolloutmetrics.SplitObserved, "Treatment's share of the split's requests that it got."),
		splitMismatch: desc(rolloutmetrics.SplitMismatch, "1 once treatment's share differs from the flag's beyond chance: the rollout holds."),
	}
	m.checks = [checkGauges]*prometheus.Desc{
		gaugeEdge:       desc(rolloutmetrics.Edge, "Latency edge in seconds that each latency check's counts and interval refer to.", "metric"),
		gaugeRatio:      desc(rolloutmetrics.Ratio, "The ratio estimate of treatment's rate over control's, look by look where the check has an interval, per ratio check.", "metric"),
		gaugeRatioLow:   desc(rolloutmetrics.RatioLow, "Low end of the ratio's always-valid confidence interval at level 1-alpha.", "metric"),
		gaugeRatioHigh:  desc(rolloutmetrics.RatioHigh, "High end of the ratio's always-valid confidence interval at level 1-alpha.", "metric"),
		gaugeTolerance:  desc(rolloutmetrics.Tolerance, "Ratio each check tests against: evidence above it fails the rollout.", "metric"),
		gaugeHarmBound:  desc(rolloutmetrics.HarmBound, "Ratio the interval must lie below before the check passes.", "metric"),
		gaugeFloorRatio: desc(rolloutmetrics.FloorRatio, "Ratio at which the difference reaches the metric's practical floor.", "metric"),
		gaugeDispersion: desc(rolloutmetrics.Dispersion, "Over-dispersion the check's evidence was divided by.", "metric"),
	}
	return m
}

// flag returns key's series, created empty. The caller holds mu.
func (m *flagMetrics) flag(key string) *flagSeries {
	f := m.flags[key]
	if f == nil {
		nan := math.NaN()
		f = &flagSeries{threshold: nan, splitExpected: nan, splitObserved: nan, splitMismatch: nan}
		m.flags[key] = f
	}
	return f
}

func (m *flagMetrics) observeState(s rollout.State) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f := m.flag(s.Key)
	f.stated, f.percent, f.phase = true, s.Percent, s.Phase
}

func (m *flagMetrics) observeTransition(key string, to rollout.Phase) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f := m.flag(key)
	if f.transitions == nil {
		f.transitions = map[rollout.Phase]float64{}
	}
	f.transitions[to]++
}

// observeVerdict records a verdict. The judge writes 0 for a quantity it
// does not have (no events yet, no harm bound, no floor); its gauge is then
// absent rather than 0, so that a panel or an alert never reads a missing
// bound as a ratio of 0. So is a cohort's rate before it has requests, and
// the split's shares before the split was checked.
func (m *flagMetrics) observeVerdict(key string, v judge.Verdict) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f := m.flag(key)
	if f.verdicts == nil {
		f.verdicts, f.evidence = map[verdictKey]float64{}, map[string]float64{}
	}
	f.verdicts[verdictKey{rolloutmetrics.OverallCheck, v.Outcome}]++
	f.evidence[rolloutmetrics.OverallCheck] = v.EValue
	f.threshold = v.Threshold
	for _, c := range v.Checks {
		f.verdicts[verdictKey{c.Check, c.Outcome}]++
		f.evidence[c.Check] = c.EValue
		if c.Bound == 0 { // a ratio check: only absolute bounds set Bound
			f.observeRatioCheck(c)
		}
	}
	s := v.SampleRatio
	counted := s != nil && s.Checked
	f.splitExpected, f.splitObserved, f.splitMismatch = math.NaN(), math.NaN(), math.NaN()
	if counted {
		f.splitExpected, f.splitObserved = s.Expected, s.Observed
	}
	if s != nil {
		f.splitMismatch = 0
		if s.Mismatch {
			f.splitMismatch = 1
		}
	}
}

func (f *flagSeries) observeRatioCheck(c judge.CheckVerdict) {
	if f.checks == nil {
		f.checks = map[string]*checkSeries{}
	}
	cs := f.checks[c.Check]
	if cs == nil {
		cs = &checkSeries{}
		f.checks[c.Check] = cs
	}
	positive := func(v float64) float64 {
		if v > 0 {
			return v
		}
		return math.NaN()
	}
	cs.values = [checkGauges]float64{
		gaugeEdge: positive(c.Edge), gaugeRatio: positive(c.Ratio), gaugeRatioLow: positive(c.CILow), gaugeRatioHigh: positive(c.CIHigh),
		gaugeTolerance: positive(c.Tolerance), gaugeHarmBound: positive(c.HarmBound), gaugeFloorRatio: positive(c.FloorRatio), gaugeDispersion: positive(c.Dispersion),
	}
	cs.treatment, cs.control = math.NaN(), math.NaN()
	if c.Treatment.Requests > 0 {
		cs.treatment = c.Treatment.Rate
	}
	if c.Control.Requests > 0 {
		cs.control = c.Control.Rate
	}
}

// Describe sends every descriptor.
func (m *flagMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.percent, m.state, m.transitions, m.verdicts, m.evidence, m.threshold,
		m.cohortRate, m.splitExpected, m.splitObserved, m.splitMismatch} {
		ch <- d
	}
	for _, d := range m.checks {
		ch <- d
	}
}

// Collect sends every flag's series. It holds the lock one flag at a time,
// so that a scrape of thousands of flags, which takes seconds, does not
// hold up the loop's recording.
func (m *flagMetrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	keys := make([]string, 0, len(m.flags))
	for k := range m.flags {
		keys = append(keys, k)
	}
	m.mu.Unlock()
	var batch []prometheus.Metric
	for _, key := range keys {
		m.mu.Lock()
		if f := m.flags[key]; f != nil {
			batch = m.series(batch[:0], key, f)
		}
		m.mu.Unlock()
		for _, mt := range batch {
			ch <- mt
		}
	}
}

// series appends key's series to out. The caller holds mu.
func (m *flagMetrics) series(out []prometheus.Metric, key string, f *flagSeries) []prometheus.Metric {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		if !math.IsNaN(v) {
			out = append(out, prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...))
		}
	}
	if f.stated {
		gauge(m.percent, f.percent, key)
		for _, p := range rollout.Phases {
			v := 0.0
			if p == f.phase {
				v = 1
			}
			gauge(m.state, v, key, string(p))
		}
	}
	for to, n := range f.transitions {
		out = append(out, prometheus.MustNewConstMetric(m.transitions, prometheus.CounterValue, n, key, string(to)))
	}
	for k, n := range f.verdicts {
		out = append(out, prometheus.MustNewConstMetric(m.verdicts, prometheus.CounterValue, n, key, k.check, string(k.outcome)))
	}
	for check, e := range f.evidence {
		out = append(out, prometheus.MustNewConstMetric(m.evidence, prometheus.GaugeValue, e, key, check))
	}
	gauge(m.threshold, f.threshold, key)
	for check, cs := range f.checks {
		for i, d := range m.checks {
			gauge(d, cs.values[i], key, check)
		}
		gauge(m.cohortRate, cs.treatment, key, check, rolloutmetrics.Treatment)
		gauge(m.cohortRate, cs.control, key, check, rolloutmetrics.Control)
	}
	gauge(m.splitExpected, f.splitExpected, key)
	gauge(m.splitObserved, f.splitObserved, key)
	gauge(m.splitMismatch, f.splitMismatch, key)
	return out
}
