package cohort

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
)

// Provider evaluates PromQL instant queries. The Prometheus HTTP API
// (HTTPProvider, for Prometheus, Thanos, Mimir, VictoriaMetrics) and the
// embedded store (metricstore.Store) implement it. Its methods must be safe
// for concurrent use: the Reader sends its queries for different metrics
// together.
type Provider interface {
	// Query evaluates query at ts. A scalar result is one sample with no
	// labels; a matrix or string result is an error.
	Query(ctx context.Context, query string, ts time.Time) (model.Vector, error)
	// QueryMatrix evaluates query, a range vector selector such as
	// x{a="b"}[5m], at ts and calls fn with every series' labels and raw
	// float samples in the range, oldest first: what the Reader counts
	// exactly from. fn must not keep samples, which the provider may
	// reuse. Any other result type is an error; fn may have been called
	// for some series before one.
	QueryMatrix(ctx context.Context, query string, ts time.Time, fn func(labels.Labels, []model.SamplePair)) error
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

// shownQuery is how much of a query Error shows. One read asks about every
// rollout due, so its query names each of their keys (tens of kilobytes
// at thousands of rollouts), and the error becomes every rollout's paused
// reason: the whole query is in Query, and in the controller's log.
const shownQuery = 200

// Error describes the problem in one line, with the start of the query.
func (e *QueryError) Error() string {
	q := e.Query
	if len(q) > shownQuery {
		q = fmt.Sprintf("%s… (%d bytes)", strings.ToValidUTF8(q[:shownQuery], ""), len(q))
	}
	return fmt.Sprintf("read %s: query %s: %v", e.Metric, q, e.Err)
}

// Unwrap returns the provider's error.
func (e *QueryError) Unwrap() error { return e.Err }

// finite reports whether a sample value can be used as a count.
func finite(f float64) bool {
	return !math.IsNaN(f) && !math.IsInf(f, 0)
}
