package server

import (
	"context"
	"encoding/json"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/vigil-dev/vigil/controller/store"
	"github.com/vigil-dev/vigil/sdk/flag"
)

type metrics struct {
	requests      *prometheus.CounterVec
	sseClients    prometheus.Gauge
	storeDuration *prometheus.HistogramVec
	revision      prometheus.Gauge
	connsRefused  prometheus.Counter
}

// NewRegistry returns the registry a server uses when Config.Registry is
// nil: empty but for the Go runtime and process collectors. Callers that must
// register metrics before New (a metric provider's, say) create it with this.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_http_requests_total",
			Help: "HTTP requests answered by the controller, by route pattern and status code.",
		}, []string{"route", "code"}),
		sseClients: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vigil_sse_clients",
			Help: "SDK clients connected to the event stream.",
		}),
		storeDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "vigil_store_duration_seconds",
			Help:    "Latency of store operations, by operation.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"op"}),
		revision: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vigil_flags_revision",
			Help: "The flag revision this controller serves to SDKs.",
		}),
		connsRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_http_connections_refused_total",
			Help: "Connections closed on arrival because their client, or the controller, held its maximum of open connections.",
		}),
	}
	reg.MustRegister(m.requests, m.sseClients, m.storeDuration, m.revision, m.connsRefused)
	return m
}

// countRequests records every answered request by its route pattern, so that
// keys in paths do not make new series.
func (m *metrics) countRequests(c *gin.Context) {
	c.Next()
	route := c.FullPath()
	if route == "" {
		route = "unmatched"
	}
	m.requests.WithLabelValues(route, strconv.Itoa(c.Writer.Status())).Inc()
}

// instrumented times the operations of a store.
type instrumented struct {
	store.Store
	d *prometheus.HistogramVec
}

func instrument(s store.Store, d *prometheus.HistogramVec) store.Store {
	return &instrumented{Store: s, d: d}
}

func (s *instrumented) observe(op string, start time.Time) {
	s.d.WithLabelValues(op).Observe(time.Since(start).Seconds())
}

func (s *instrumented) Snapshot(ctx context.Context) (store.Snapshot, error) {
	defer s.observe("snapshot", time.Now())
	return s.Store.Snapshot(ctx)
}

func (s *instrumented) Flag(ctx context.Context, key string) (flag.Flag, error) {
	defer s.observe("flag", time.Now())
	return s.Store.Flag(ctx, key)
}

func (s *instrumented) FlagsPage(ctx context.Context, after string, limit int) ([]flag.Flag, error) {
	defer s.observe("flags_page", time.Now())
	return s.Store.FlagsPage(ctx, after, limit)
}

func (s *instrumented) Changes(ctx context.Context, since int64) (int64, []store.Change, error) {
	defer s.observe("changes", time.Now())
	return s.Store.Changes(ctx, since)
}

func (s *instrumented) Update(ctx context.Context, a store.Actor, fn func(tx store.Tx) error) error {
	defer s.observe("update", time.Now())
	return s.Store.Update(ctx, a, fn)
}

func (s *instrumented) Audit(ctx context.Context, q store.AuditQuery) ([]store.AuditEntry, error) {
	defer s.observe("audit", time.Now())
	return s.Store.Audit(ctx, q)
}

func (s *instrumented) TokenByHash(ctx context.Context, hash string) (store.Token, error) {
	defer s.observe("token", time.Now())
	return s.Store.TokenByHash(ctx, hash)
}

func (s *instrumented) Tokens(ctx context.Context) ([]store.Token, error) {
	defer s.observe("tokens", time.Now())
	return s.Store.Tokens(ctx)
}

func (s *instrumented) Rollout(ctx context.Context, key string) (store.Rollout, error) {
	defer s.observe("rollout", time.Now())
	return s.Store.Rollout(ctx, key)
}

func (s *instrumented) Rollouts(ctx context.Context) ([]store.Rollout, error) {
	defer s.observe("rollouts", time.Now())
	return s.Store.Rollouts(ctx)
}

func (s *instrumented) RolloutsPage(ctx context.Context, after string, limit int) ([]store.Rollout, error) {
	defer s.observe("rollouts_page", time.Now())
	return s.Store.RolloutsPage(ctx, after, limit)
}

func (s *instrumented) FlagsOf(ctx context.Context, keys []string) ([]flag.Flag, error) {
	defer s.observe("flags_of", time.Now())
	return s.Store.FlagsOf(ctx, keys)
}

func (s *instrumented) RolloutsOf(ctx context.Context, keys []string) ([]store.Rollout, error) {
	defer s.observe("rollouts_of", time.Now())
	return s.Store.RolloutsOf(ctx, keys)
}

func (s *instrumented) RolloutDueTimes(ctx context.Context) (map[string]time.Time, error) {
	defer s.observe("rollout_due_times", time.Now())
	return s.Store.RolloutDueTimes(ctx)
}

func (s *instrumented) RolloutHistory(ctx context.Context, keys []string) (map[string][]json.RawMessage, error) {
	defer s.observe("rollout_history", time.Now())
	return s.Store.RolloutHistory(ctx, keys)
}

func (s *instrumented) RolloutLooks(ctx context.Context, key string, since time.Time) ([]json.RawMessage, error) {
	defer s.observe("rollout_looks", time.Now())
	return s.Store.RolloutLooks(ctx, key, since)
}

func (s *instrumented) Lease(ctx context.Context, name string) (store.Lease, error) {
	defer s.observe("lease", time.Now())
	return s.Store.Lease(ctx, name)
}

func (s *instrumented) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	defer s.observe("lease", time.Now())
	return s.Store.AcquireLease(ctx, name, holder, ttl)
}
