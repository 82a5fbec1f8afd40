package runner

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-dev/vigil/analysis/judge"
	"github.com/vigil-dev/vigil/controller/rollout"
	"github.com/vigil-dev/vigil/controller/rolloutmetrics"
)

// Metrics are the rollout controller's Prometheus metrics. A nil *Metrics
// records nothing.
type Metrics struct {
	percent     *prometheus.GaugeVec
	state       *prometheus.GaugeVec
	transitions *prometheus.CounterVec
	verdicts    *prometheus.CounterVec
	evidence    *prometheus.GaugeVec
	threshold   *prometheus.GaugeVec
	provErrors  prometheus.Counter
	queryTime   prometheus.Histogram
	leader      prometheus.Gauge
	// The loop's own cost; see package rolloutmetrics.
	tickTime     prometheus.Histogram
	overruns     prometheus.Counter
	looksDue     prometheus.Counter
	looksJudged  prometheus.Counter
	readRollouts prometheus.Histogram
	// The judge's latest findings per ratio check and on the split; see
	// package rolloutmetrics.
	edge, cohortRate, ratio, ratioLow, ratioHigh *prometheus.GaugeVec
	tolerance, harmBound, floorRatio, dispersion *prometheus.GaugeVec
	splitExpected, splitObserved, splitMismatch  *prometheus.GaugeVec
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		percent: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: rolloutmetrics.Percent,
			Help: "Treatment percentage of each flag under a rollout.",
		}, []string{"flag"}),
		state: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: rolloutmetrics.State,
			Help: "1 for the rollout's current state, 0 for the others.",
		}, []string{"flag", "state"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: rolloutmetrics.Transitions,
			Help: "Rollout transitions by the state they led to (step advances count as progressing).",
		}, []string{"flag", "to"}),
		verdicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: rolloutmetrics.Verdicts,
			Help: "Judge verdicts per metric check; metric \"all\" is the overall verdict.",
		}, []string{"flag", "metric", "verdict"}),
		evidence: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: rolloutmetrics.Evidence,
			Help: "Latest e-value per metric check; metric \"all\" is the mean that the threshold applies to.",
		}, []string{"flag", "metric"}),
		threshold: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: rolloutmetrics.EvidenceThreshold,
			Help: "E-value at which the overall verdict fails (1/alpha).",
		}, []string{"flag"}),
		provErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: rolloutmetrics.ProviderErrors,
			Help: "Batched cohort reads in which a query failed.",
		}),
		queryTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    rolloutmetrics.ProviderQueryDuration,
			Help:    "Time to read the cohort counts of all due rollouts.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
		}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: rolloutmetrics.Leader,
			Help: "1 while this replica holds the rollout loop's lease, else 0.",
		}),
	}
	m.tickTime = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    rolloutmetrics.TickDuration,
		Help:    "Time of one tick of the rollout loop on the replica that holds its lease.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
	})
	m.overruns = prometheus.NewCounter(prometheus.CounterOpts{
		Name: rolloutmetrics.TickOverruns,
		Help: "Ticks that took longer than the loop's tick interval.",
	})
	m.looksDue = prometheus.NewCounter(prometheus.CounterOpts{
		Name: rolloutmetrics.LooksDue,
		Help: "Rollouts found due, summed over ticks.",
	})
	m.looksJudged = prometheus.NewCounter(prometheus.CounterOpts{
		Name: rolloutmetrics.LooksJudged,
		Help: "Due rollouts the judge weighed, summed over ticks.",
	})
	m.readRollouts = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    rolloutmetrics.ProviderQueryRollouts,
		Help:    "Rollouts whose counts one batched read of the metric source asked for.",
		Buckets: prometheus.ExponentialBuckets(1, 4, 9),
	})
	check := func(name, help string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, []string{"flag", "metric"})
	}
	m.edge = check(rolloutmetrics.Edge, "Latency edge in seconds that each latency check's counts and interval refer to.")
	m.cohortRate = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: rolloutmetrics.CohortRate,
		Help: "Bad events per request of each cohort since the rollout began, per ratio check.",
	}, []string{"flag", "metric", rolloutmetrics.CohortLabel})
	m.ratio = check(rolloutmetrics.Ratio, "The ratio estimate of treatment's rate over control's, look by look where the check has an interval, per ratio check.")
	m.ratioLow = check(rolloutmetrics.RatioLow, "Low end of the ratio's always-valid confidence interval at level 1-alpha.")
	m.ratioHigh = check(rolloutmetrics.RatioHigh, "High end of the ratio's always-valid confidence interval at level 1-alpha.")
	m.tolerance = check(rolloutmetrics.Tolerance, "Ratio each check tests against: evidence above it fails the rollout.")
	m.harmBound = check(rolloutmetrics.HarmBound, "Ratio the interval must lie below before the check passes.")
	m.floorRatio = check(rolloutmetrics.FloorRatio, "Ratio at which the difference reaches the metric's practical floor.")
	m.dispersion = check(rolloutmetrics.Dispersion, "Over-dispersion the check's evidence was divided by.")
	split := func(name, help string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, []string{"flag"})
	}
	m.splitExpected = split(rolloutmetrics.SplitExpected, "Treatment's share of the split's requests that the flag should give.")
	m.splitObserved = split(rolloutmetrics.SplitObserved, "Treatment's share of the split's requests that it got.")
	m.splitMismatch = split(rolloutmetrics.SplitMismatch, "1 once treatment's share differs from the flag's beyond chance: the rollout holds.")
	for _, c := range []prometheus.Collector{m.percent, m.state, m.transitions, m.verdicts, m.evidence, m.threshold, m.provErrors, m.queryTime, m.leader,
		m.tickTime, m.overruns, m.looksDue, m.looksJudged, m.readRollouts,
		m.edge, m.cohortRate, m.ratio, m.ratioLow, m.ratioHigh, m.tolerance, m.harmBound, m.floorRatio, m.dispersion,
		m.splitExpected, m.splitObserved, m.splitMismatch} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *Metrics) observeStates(ss []rollout.State) {
	if m == nil {
		return
	}
	for _, s := range ss {
		m.percent.WithLabelValues(s.Key).Set(s.Percent)
		for _, p := range rollout.Phases {
			v := 0.0
			if p == s.Phase {
				v = 1
			}
			m.state.WithLabelValues(s.Key, string(p)).Set(v)
		}
	}
}

func (m *Metrics) observeLeader(held bool) {
	if m == nil {
		return
	}
	v := 0.0
	if held {
		v = 1
	}
	m.leader.Set(v)
}

func (m *Metrics) observeTransition(key string, t rollout.Transition) {
	if m == nil {
		return
	}
	m.transitions.WithLabelValues(key, string(t.To)).Inc()
}

func (m *Metrics) observeTick(d time.Duration, due, judged int) {
	if m == nil {
		return
	}
	m.tickTime.Observe(d.Seconds())
	m.looksDue.Add(float64(due))
	m.looksJudged.Add(float64(judged))
}

func (m *Metrics) observeOverrun() {
	if m == nil {
		return
	}
	m.overruns.Inc()
}

func (m *Metrics) observeQuery(d time.Duration, rollouts int, err error) {
	if m == nil {
		return
	}
	m.queryTime.Observe(d.Seconds())
	m.readRollouts.Observe(float64(rollouts))
	if err != nil {
		m.provErrors.Inc()
	}
}

func (m *Metrics) observeVerdict(key string, v judge.Verdict) {
	if m == nil {
		return
	}
	m.verdicts.WithLabelValues(key, rolloutmetrics.OverallCheck, string(v.Outcome)).Inc()
	m.evidence.WithLabelValues(key, rolloutmetrics.OverallCheck).Set(v.EValue)
	m.threshold.WithLabelValues(key).Set(v.Threshold)
	for _, c := range v.Checks {
		m.verdicts.WithLabelValues(key, c.Check, string(c.Outcome)).Inc()
		m.evidence.WithLabelValues(key, c.Check).Set(c.EValue)
		if c.Bound == 0 { // a ratio check: only absolute bounds set Bound
			m.observeRatioCheck(key, c)
		}
	}
	m.observeSplit(key, v.SampleRatio)
}

// observeRatioCheck records the evidence behind a ratio check. The judge
// writes 0 for a quantity it does not have (no events yet, no harm bound,
// no floor); its series is deleted rather than set, so that a panel or an
// alert never reads a missing bound as a ratio of 0.
func (m *Metrics) observeRatioCheck(key string, c judge.CheckVerdict) {
	for _, g := range []struct {
		vec *prometheus.GaugeVec
		v   float64
	}{
		{m.edge, c.Edge}, {m.ratio, c.Ratio}, {m.ratioLow, c.CILow}, {m.ratioHigh, c.CIHigh},
		{m.tolerance, c.Tolerance}, {m.harmBound, c.HarmBound}, {m.floorRatio, c.FloorRatio}, {m.dispersion, c.Dispersion},
	} {
		setOrDelete(g.vec, g.v > 0, g.v, key, c.Check)
	}
	setOrDelete(m.cohortRate, c.Treatment.Requests > 0, c.Treatment.Rate, key, c.Check, rolloutmetrics.Treatment)
	setOrDelete(m.cohortRate, c.Control.Requests > 0, c.Control.Rate, key, c.Check, rolloutmetrics.Control)
}

// observeSplit records the traffic split's check; a verdict without one
// (the step's percent unknown) leaves no series, and one not checked yet
// no shares.
func (m *Metrics) observeSplit(key string, s *judge.SampleRatio) {
	counted := s != nil && s.Checked
	var expected, observed, mismatch float64
	if s != nil {
		expected, observed = s.Expected, s.Observed
		if s.Mismatch {
			mismatch = 1
		}
	}
	setOrDelete(m.splitExpected, counted, expected, key)
	setOrDelete(m.splitObserved, counted, observed, key)
	setOrDelete(m.splitMismatch, s != nil, mismatch, key)
}

// setOrDelete sets the gauge of labels to v if ok, else deletes it.
func setOrDelete(g *prometheus.GaugeVec, ok bool, v float64, labels ...string) {
	if ok {
		g.WithLabelValues(labels...).Set(v)
	} else {
		g.DeleteLabelValues(labels...)
	}
}
