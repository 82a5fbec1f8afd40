package analysis

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
)

// Provider evaluates PromQL instant queries. The Prometheus HTTP API
// (HTTPProvider, for Prometheus, Thanos, Mimir, VictoriaMetrics) and the
// embedded store (metricstore.Store) implement it.
type Provider interface {
	// Query evaluates query at ts. A scalar result is one sample with no
	// labels; a matrix or string result is an error.
	Query(ctx context.Context, query string, ts time.Time) (model.Vector, error)
}

// ErrNoData marks a read that returned nothing usable: no series, or a value
// that is NaN or infinite. It is never a pass: the judge reads the affected
// counts as unreadable, and the tick is inconclusive. Test with errors.Is.
var ErrNoData = errors.New("no data")

// QueryError is a query that failed at the provider. It names the metric and
// the query, so that an inconclusive verdict can say what could not be read.
type QueryError struct {
	// Metric is what the query reads: "requests", "errors", "latency" or a
	// custom metric's name.
	Metric string
	// Query is the PromQL sent.
	Query string
	// Err is the provider's error.
	Err error
}

func (e *QueryError) Error() string {
	return fmt.Sprintf("read %s: query %s: %v", e.Metric, e.Query, e.Err)
}

// Unwrap returns the provider's error.
func (e *QueryError) Unwrap() error { return e.Err }

// finite reports whether a sample value can be used as a count.
func finite(v model.SampleValue) bool {
	f := float64(v)
	return !math.IsNaN(f) && !math.IsInf(f, 0)
}

// InstrumentedProvider counts a provider's failures and times its queries
// as vigil_provider_errors_total and vigil_provider_query_duration_seconds.
type InstrumentedProvider struct {
	next     Provider
	errors   prometheus.Counter
	duration prometheus.Histogram
}

// NewInstrumentedProvider wraps p and registers its metrics with reg. Wrap
// the controller's one provider once: a second registration with the same
// reg fails.
func NewInstrumentedProvider(p Provider, reg prometheus.Registerer) (*InstrumentedProvider, error) {
	ip := &InstrumentedProvider{
		next: p,
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_provider_errors_total",
			Help: "Metric provider queries that failed: query errors, timeouts and unreachable servers.",
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "vigil_provider_query_duration_seconds",
			Help:    "Time taken by metric provider queries, retries included.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 9),
		}),
	}
	for _, c := range []prometheus.Collector{ip.errors, ip.duration} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register provider metrics: %w", err)
		}
	}
	return ip, nil
}

// Query runs the wrapped provider's query and records it.
func (p *InstrumentedProvider) Query(ctx context.Context, query string, ts time.Time) (model.Vector, error) {
	start := time.Now()
	v, err := p.next.Query(ctx, query, ts)
	p.duration.Observe(time.Since(start).Seconds())
	if err != nil {
		p.errors.Inc()
	}
	return v, err
}
