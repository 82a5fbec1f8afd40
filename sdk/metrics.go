package sdk

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/vigil-dev/vigil/sdk/flag"
	"github.com/vigil-dev/vigil/sdk/semconv"
)

// The cohort metrics: the contract that rollout analysis, dashboards and
// alerts read, named once in package semconv.
const (
	MetricRequests        = semconv.MetricRequests
	MetricRequestDuration = semconv.MetricRequestDuration
	MetricEvents          = semconv.MetricEvents
)

// Attribute keys of the cohort metrics.
const (
	AttrKey       = semconv.AttrKey
	AttrVariant   = semconv.AttrVariant
	AttrReason    = semconv.AttrReason
	AttrErrorType = semconv.AttrErrorType
	AttrEventName = semconv.AttrEventName
	// AttrUnitBucket is the unit's bucket (flag.UnitBucket), on the cohort
	// metrics of units the split placed only.
	AttrUnitBucket = semconv.AttrUnitBucket
)

// The span event an evaluation adds to a recording span, and the attributes
// it carries besides AttrKey, AttrVariant, AttrReason and AttrErrorType
// (OpenTelemetry's feature-flag semantic conventions).
const (
	SpanEventEvaluation = "feature_flag.evaluation"
	AttrProviderName    = "feature_flag.provider.name"
	AttrVersion         = "feature_flag.version"
	// AttrContextID carries the unit key, only with Config.RecordUnitKey.
	AttrContextID = "feature_flag.context.id"
	// ProviderName is the value of AttrProviderName.
	ProviderName = "vigil"
)

// DurationBuckets are the boundaries, in seconds, of the
// feature_flag.request.duration histogram (semconv.DurationBuckets).
var DurationBuckets = semconv.DurationBuckets

func (c *Client) initMetrics() error {
	mp := c.cfg.MeterProvider
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	m := mp.Meter(ScopeName, metric.WithInstrumentationVersion(Version))
	var err error
	// The request counter is observable: requests are counted with one
	// atomic add per cohort and reported at collection. A synchronous
	// counter would cost as much per request as the histogram does, and the
	// middleware has a budget of 1 µs for three tracked flags.
	requests, err := m.Int64ObservableCounter(MetricRequests,
		metric.WithUnit("{request}"),
		metric.WithDescription("Requests that evaluated a tracked feature flag, by flag, variant and reason."))
	if err != nil {
		return fmt.Errorf("sdk: create %s: %w", MetricRequests, err)
	}
	if c.unregister, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		c.cohorts.observe(o, requests)
		return nil
	}, requests); err != nil {
		return fmt.Errorf("sdk: register %s: %w", MetricRequests, err)
	}
	if c.duration, err = m.Float64Histogram(MetricRequestDuration,
		metric.WithUnit("s"),
		metric.WithDescription("Duration of requests that evaluated a tracked feature flag, by flag, variant and reason."),
		metric.WithExplicitBucketBoundaries(DurationBuckets...)); err != nil {
		return fmt.Errorf("sdk: create %s: %w", MetricRequestDuration, err)
	}
	if c.events, err = m.Int64Counter(MetricEvents,
		metric.WithUnit("{event}"),
		metric.WithDescription("Business events in requests that evaluated a tracked feature flag, by event name, flag, variant and reason.")); err != nil {
		return fmt.Errorf("sdk: create %s: %w", MetricEvents, err)
	}
	return nil
}

// cohortKey identifies one attribute set of the cohort metrics.
type cohortKey struct {
	key, variant string
	reason       flag.Reason
	// bucket is the unit bucket's label, "" for cohorts without one.
	bucket  string
	errType string
	event   string
}

// unitBucketLabels are the values of AttrUnitBucket, by unit bucket, made
// once so that labelling a request does not format a number.
var unitBucketLabels = func() (l [flag.UnitBuckets]string) {
	for i := range l {
		l[i] = strconv.Itoa(i)
	}
	return l
}()

// cohortOpts are the measurement options of one attribute set, built once:
// building an attribute set and boxing it in an option allocates, which the
// per-request path must not do.
type cohortOpts struct {
	add     []metric.AddOption
	record  []metric.RecordOption
	observe []metric.ObserveOption
	// requests counts the cohort's requests for the observable counter.
	requests atomic.Int64
}

type cohortCache struct {
	mu sync.RWMutex
	m  map[cohortKey]*cohortOpts
}

func (cc *cohortCache) get(k cohortKey) *cohortOpts {
	cc.mu.RLock()
	o := cc.m[k]
	cc.mu.RUnlock()
	if o != nil {
		return o
	}
	attrs := make([]attribute.KeyValue, 0, 6)
	attrs = append(attrs,
		attribute.String(AttrKey, k.key),
		attribute.String(AttrVariant, k.variant),
		attribute.String(AttrReason, string(k.reason)))
	if k.bucket != "" {
		attrs = append(attrs, attribute.String(AttrUnitBucket, k.bucket))
	}
	if k.errType != "" {
		attrs = append(attrs, attribute.String(AttrErrorType, k.errType))
	}
	if k.event != "" {
		attrs = append(attrs, attribute.String(AttrEventName, k.event))
	}
	opt := metric.WithAttributeSet(attribute.NewSet(attrs...))
	o = &cohortOpts{add: []metric.AddOption{opt}, record: []metric.RecordOption{opt}, observe: []metric.ObserveOption{opt}}
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.m == nil {
		cc.m = make(map[cohortKey]*cohortOpts)
	}
	// Another goroutine may have added the cohort meanwhile; its counter
	// must be the only one. The cache is not bounded: its size is that of
	// the cohorts' attribute sets, which the metrics keep anyway.
	if prev := cc.m[k]; prev != nil {
		return prev
	}
	cc.m[k] = o
	return o
}

// observe reports every request cohort's count.
func (cc *cohortCache) observe(o metric.Observer, counter metric.Int64Observable) {
	cc.mu.RLock()
	defer cc.mu.RUnlock()
	for k, c := range cc.m {
		if n := c.requests.Load(); n > 0 && k.event == "" {
			o.ObserveInt64(counter, n, c.observe...)
		}
	}
}
