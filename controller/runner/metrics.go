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
	// flags are the series per flag: percent, state, transitions, and the
	// judge's verdicts and findings; see package rolloutmetrics.
	flags      *flagMetrics
	provErrors prometheus.Counter
	// queryTime and readRollouts are by rolloutmetrics.LabelRead.
	queryTime *prometheus.HistogramVec
	leader    prometheus.Gauge
	// The loop's own cost; see package rolloutmetrics.
	tickTime     prometheus.Histogram
	overruns     prometheus.Counter
	looksDue     prometheus.Counter
	looksJudged  prometheus.Counter
	readRollouts *prometheus.HistogramVec
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		flags: newFlagMetrics(),
		provErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: rolloutmetrics.ProviderErrors,
			Help: "Batched cohort reads in which a query failed.",
		}),
		queryTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    rolloutmetrics.ProviderQueryDuration,
			Help:    "Time of one batched read of rollouts' cohort counts: read=look for the due rollouts' looks, read=catch-up for new rollouts before their first looks.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
		}, []string{rolloutmetrics.LabelRead}),
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
	m.readRollouts = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    rolloutmetrics.ProviderQueryRollouts,
		Help:    "Rollouts whose counts one batched read of the metric source asked for, by read as in " + rolloutmetrics.ProviderQueryDuration + ".",
		Buckets: prometheus.ExponentialBuckets(1, 4, 9),
	}, []string{rolloutmetrics.LabelRead})
	for _, read := range []string{rolloutmetrics.ReadLook, rolloutmetrics.ReadCatchUp} {
		m.queryTime.WithLabelValues(read)
		m.readRollouts.WithLabelValues(read)
	}
	for _, c := range []prometheus.Collector{m.flags, m.provErrors, m.queryTime, m.leader,
		m.tickTime, m.overruns, m.looksDue, m.looksJudged, m.readRollouts} {
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
		m.flags.observeState(s)
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
	m.flags.observeTransition(key, t.To)
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

// observeRead records one batched read of the metric source; read is
// rolloutmetrics.ReadLook or ReadCatchUp. Only a look's failure counts as a
// provider error (see rolloutmetrics.LabelRead).
func (m *Metrics) observeRead(read string, d time.Duration, rollouts int, err error) {
	if m == nil {
		return
	}
	m.queryTime.WithLabelValues(read).Observe(d.Seconds())
	m.readRollouts.WithLabelValues(read).Observe(float64(rollouts))
	if err != nil && read == rolloutmetrics.ReadLook {
		m.provErrors.Inc()
	}
}

func (m *Metrics) observeVerdict(key string, v judge.Verdict) {
	if m == nil {
		return
	}
	m.flags.observeVerdict(key, v)
}
