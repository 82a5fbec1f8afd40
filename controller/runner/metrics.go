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
	for _, c := range []prometheus.Collector{m.percent, m.state, m.transitions, m.verdicts, m.evidence, m.threshold, m.provErrors, m.queryTime, m.leader} {
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

func (m *Metrics) observeQuery(d time.Duration, err error) {
	if m == nil {
		return
	}
	m.queryTime.Observe(d.Seconds())
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
	}
}
