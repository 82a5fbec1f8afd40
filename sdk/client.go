// Package sdk is Vigil's Go SDK: it keeps an in-memory copy of the flags a
// controller serves (or a flags file), evaluates them without locks,
// allocation or I/O, tags traces with the result, pins variants across
// services through OpenTelemetry baggage, and records the cohort metrics
// that rollouts are judged on.
//
// See docs/sdk.md for the metric and span contract.
package sdk

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/vigil-dev/vigil/sdk/flag"
)

// Version is the SDK's version, reported as the instrumentation scope
// version of its metrics.
const Version = "0.1.0"

// ScopeName is the instrumentation scope of the SDK's metrics.
const ScopeName = "github.com/vigil-dev/vigil/sdk"

// EvalContext is what a flag is evaluated for: the unit key (targeting key)
// and attributes that rules test.
type EvalContext = flag.Context

// Detail is the full result of an evaluation.
type Detail = flag.Detail

// ReasonPinned is Detail.Reason when the variant was pinned by an upstream
// service through baggage. The cohort metrics carry the reason the pinning
// service evaluated instead, so that pinned requests count in their cohort.
const ReasonPinned flag.Reason = "pinned"

// Client evaluates flags. It is safe for concurrent use; create one per
// process and Close it on shutdown.
type Client struct {
	cfg     Config
	log     *slog.Logger
	store   *store
	pinning bool

	// unregister stops reporting the observable request counter.
	unregister metric.Registration
	duration   metric.Float64Histogram
	events     metric.Int64Counter
	cohorts    cohortCache

	// epoch is the origin of scope timestamps: a duration since it reads
	// only the monotonic clock, where time.Now also reads the wall clock.
	epoch time.Time

	cancel    context.CancelFunc
	wg        sync.WaitGroup
	fresh     chan struct{}
	freshOnce sync.Once
	closeOnce sync.Once
}

// New starts a client. With Config.FlagsFile it loads the file and fails if
// the file is invalid. Otherwise it connects to the controller in the
// background and waits up to Config.InitTimeout for the first snapshot; a
// client that got none serves callers' defaults until data arrives. New
// returns an error only for a bad configuration, a bad flags file, or ctx
// ending while it waits.
func New(ctx context.Context, cfg Config) (*Client, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	c := &Client{cfg: cfg, log: cfg.Logger, store: newStore(), pinning: !cfg.DisablePinning, fresh: make(chan struct{})}
	c.store.cohorts = &c.cohorts
	c.epoch = time.Now()
	if err := c.initMetrics(); err != nil {
		return nil, err
	}
	bg, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	if cfg.FlagsFile != "" {
		if err := c.startFile(bg); err != nil {
			c.Close()
			return nil, err
		}
		return c, nil
	}
	c.startRemote(bg)
	if cfg.InitTimeout < 0 {
		return c, nil
	}
	wait, stop := context.WithTimeout(ctx, cfg.InitTimeout)
	defer stop()
	select {
	case <-c.fresh:
	case <-wait.Done():
		if ctx.Err() != nil {
			c.Close()
			return nil, fmt.Errorf("sdk: waiting for the first snapshot: %w", ctx.Err())
		}
		c.log.Warn("vigil: no snapshot from the controller yet; serving defaults until one arrives",
			"server", cfg.ServerURL, "waited", cfg.InitTimeout, "from_cache", c.store.load() != nil)
	}
	return c, nil
}

// Close stops delivery and stops reporting feature_flag.requests; call it
// when the service shuts down. Evaluation keeps serving the last snapshot.
func (c *Client) Close() error {
	var err error
	c.closeOnce.Do(func() {
		c.cancel()
		c.wg.Wait()
		if uerr := c.unregister.Unregister(); uerr != nil {
			err = fmt.Errorf("sdk: close: %w", uerr)
		}
	})
	return err
}

// markFresh records that data from the source (not the cache) arrived.
func (c *Client) markFresh() {
	c.freshOnce.Do(func() { close(c.fresh) })
}

// Ready reports whether the client has received data from its source since
// it started (the controller or the flags file; the disk cache does not
// count).
func (c *Client) Ready() bool {
	select {
	case <-c.fresh:
		return true
	default:
		return false
	}
}

// Snapshot returns the flags the client evaluates now, nil before any data
// arrived. The snapshot is immutable.
func (c *Client) Snapshot() *flag.Snapshot {
	if st := c.store.load(); st != nil {
		return st.snap
	}
	return nil
}

// Updated returns a channel that is closed when the client next installs new
// flags, whether from the stream, a poll, the cache or the flags file. To
// follow every change, take the channel before reading Snapshot:
//
//	for {
//		next := client.Updated()
//		use(client.Snapshot())
//		<-next
//	}
func (c *Client) Updated() <-chan struct{} { return c.store.next() }

// Bool evaluates a flag whose variants are booleans.
func (c *Client) Bool(ctx context.Context, key string, ec EvalContext, def bool) bool {
	var r result
	c.resolve(ctx, key, ec, &r)
	v, ok := r.d.Value.(bool)
	if !ok {
		r.fail()
		v = def
	}
	c.observe(ctx, &r, ec.Key)
	return v
}

// BoolDetail is Bool with the evaluation detail.
func (c *Client) BoolDetail(ctx context.Context, key string, ec EvalContext, def bool) (bool, Detail) {
	var r result
	c.resolve(ctx, key, ec, &r)
	v, ok := r.d.Value.(bool)
	if !ok {
		r.fail()
		v = def
		r.d.Value = def
	}
	c.observe(ctx, &r, ec.Key)
	return v, r.d
}

// String evaluates a flag whose variants are strings.
func (c *Client) String(ctx context.Context, key string, ec EvalContext, def string) string {
	var r result
	c.resolve(ctx, key, ec, &r)
	v, ok := r.d.Value.(string)
	if !ok {
		r.fail()
		v = def
	}
	c.observe(ctx, &r, ec.Key)
	return v
}

// StringDetail is String with the evaluation detail.
func (c *Client) StringDetail(ctx context.Context, key string, ec EvalContext, def string) (string, Detail) {
	var r result
	c.resolve(ctx, key, ec, &r)
	v, ok := r.d.Value.(string)
	if !ok {
		r.fail()
		v = def
		r.d.Value = def
	}
	c.observe(ctx, &r, ec.Key)
	return v, r.d
}

// Float evaluates a flag whose variants are numbers.
func (c *Client) Float(ctx context.Context, key string, ec EvalContext, def float64) float64 {
	var r result
	c.resolve(ctx, key, ec, &r)
	v, ok := r.d.Value.(float64)
	if !ok {
		r.fail()
		v = def
	}
	c.observe(ctx, &r, ec.Key)
	return v
}

// FloatDetail is Float with the evaluation detail.
func (c *Client) FloatDetail(ctx context.Context, key string, ec EvalContext, def float64) (float64, Detail) {
	var r result
	c.resolve(ctx, key, ec, &r)
	v, ok := r.d.Value.(float64)
	if !ok {
		r.fail()
		v = def
		r.d.Value = def
	}
	c.observe(ctx, &r, ec.Key)
	return v, r.d
}

// Int evaluates a flag whose variants are whole numbers. A variant with a
// fraction, or out of the int64 range, is a type mismatch.
func (c *Client) Int(ctx context.Context, key string, ec EvalContext, def int64) int64 {
	var r result
	c.resolve(ctx, key, ec, &r)
	v, ok := asInt(r.d.Value)
	if !ok {
		r.fail()
		v = def
	}
	c.observe(ctx, &r, ec.Key)
	return v
}

// IntDetail is Int with the evaluation detail. Detail.Value is what the
// variant holds, a float64 in JSON's number model, or def as an int64 when
// the variant is not a whole number.
func (c *Client) IntDetail(ctx context.Context, key string, ec EvalContext, def int64) (int64, Detail) {
	var r result
	c.resolve(ctx, key, ec, &r)
	v, ok := asInt(r.d.Value)
	if !ok {
		r.fail()
		v = def
		r.d.Value = def
	}
	c.observe(ctx, &r, ec.Key)
	return v, r.d
}

// JSON evaluates a flag with any JSON variants. The value is nil, bool,
// float64, string, []any or map[string]any, shared with other callers: do
// not modify it.
func (c *Client) JSON(ctx context.Context, key string, ec EvalContext, def any) any {
	v, _ := c.JSONDetail(ctx, key, ec, def)
	return v
}

// JSONDetail is JSON with the evaluation detail.
func (c *Client) JSONDetail(ctx context.Context, key string, ec EvalContext, def any) (any, Detail) {
	var r result
	c.resolve(ctx, key, ec, &r)
	if r.d.Variant == "" {
		r.d.Value = def
	}
	c.observe(ctx, &r, ec.Key)
	return r.d.Value, r.d
}

func asInt(v any) (int64, bool) {
	f, ok := v.(float64)
	if !ok || f != math.Trunc(f) || f < math.MinInt64 || f >= math.MaxInt64 {
		return 0, false
	}
	return int64(f), true
}
