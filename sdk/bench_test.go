package sdk

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/vigil-dev/vigil/sdk/flag"
)

// staticClient is a client in file mode over flags, with its metrics going
// to a real SDK MeterProvider.
func staticClient(tb testing.TB, mp *sdkmetric.MeterProvider, flags ...flag.Flag) *Client {
	tb.Helper()
	return staticClientWith(tb, func(cfg *Config) {
		if mp != nil {
			cfg.MeterProvider = mp
		}
	}, flags...)
}

// staticClientWith is staticClient with a configuration hook.
func staticClientWith(tb testing.TB, mod func(*Config), flags ...flag.Flag) *Client {
	tb.Helper()
	data, err := json.Marshal(flag.File{Flags: flags})
	if err != nil {
		tb.Fatal(err)
	}
	path := filepath.Join(tb.TempDir(), "flags.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		tb.Fatal(err)
	}
	cfg := Config{FlagsFile: path, Logger: (&logBuffer{}).logger()}
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(bg, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

func benchUnits(n int) []EvalContext {
	out := make([]EvalContext, n)
	for i := range out {
		out[i] = EvalContext{Key: fmt.Sprintf("user-%d", i)}
	}
	return out
}

func BenchmarkBoolRollout(b *testing.B) {
	c := staticClient(b, nil, rollout("new-checkout", 37.5, true))
	units := benchUnits(1024)
	b.ReportAllocs()
	clk := startCPU(b)
	defer clk.stop()
	i := 0
	for b.Loop() {
		c.Bool(bg, "new-checkout", units[i&1023], false)
		i++
	}
}

func BenchmarkSnapshotEvaluateRollout(b *testing.B) {
	c := staticClient(b, nil, rollout("new-checkout", 37.5, true))
	s := c.Snapshot()
	units := benchUnits(1024)
	b.ReportAllocs()
	clk := startCPU(b)
	defer clk.stop()
	i := 0
	for b.Loop() {
		s.Evaluate("new-checkout", units[i&1023])
		i++
	}
}

// rules20 is a rollout flag behind 20 attribute rules that do not match the
// benchmark's units, two of them semver rules when withSemver is set (the
// other operators take their place otherwise).
func rules20(withSemver bool) flag.Flag {
	f := rollout("pricing", 50, true)
	ops := []struct {
		attr string
		op   flag.Op
		vals flag.Values
	}{
		{"plan", flag.OpIn, flag.Values{"enterprise", "beta"}},
		{"country", flag.OpNotIn, flag.Values{"FR", "DE", "US"}},
		{"email", flag.OpEndsWith, flag.Values{"@example.com"}},
		{"email", flag.OpStartsWith, flag.Values{"qa+"}},
		{"age", flag.OpGT, flag.Values{"99"}},
		{"app_version", flag.OpSemverLT, flag.Values{"1.0.0"}}, // index 5

		{"email", flag.OpContains, flag.Values{"internal"}},
		{"email", flag.OpMatches, flag.Values{`^test-\d+@`}},
		{"age", flag.OpLT, flag.Values{"1"}},
		{"plan", flag.OpIn, flag.Values{"staff"}},
	}
	for i := range 20 {
		o := ops[i%len(ops)]
		if !withSemver && o.op == flag.OpSemverLT {
			o = ops[0]
		}
		f.Rules = append(f.Rules, flag.Rule{Variant: "on", When: []flag.Clause{{Attribute: o.attr, Op: o.op, Values: o.vals}}})
	}
	return f
}

func BenchmarkBool20RulesThenRollout(b *testing.B) { bench20Rules(b, false) }

// BenchmarkBool20RulesWithSemverThenRollout has two semver_lt rules among
// the 20: the flag package parses the attribute as a version on every
// evaluation.
func BenchmarkBool20RulesWithSemverThenRollout(b *testing.B) { bench20Rules(b, true) }

func bench20Rules(b *testing.B, withSemver bool) {
	c := staticClient(b, nil, rules20(withSemver))
	attrs := map[string]any{"plan": "free", "country": "FR", "email": "someone@mail.org", "age": 42.0, "app_version": "2.3.1"}
	units := benchUnits(1024)
	for i := range units {
		units[i].Attributes = attrs
	}
	if _, d := c.BoolDetail(bg, "pricing", units[0], false); d.Reason != flag.ReasonSplit {
		b.Fatalf("a rule matched: %+v", d)
	}
	b.ReportAllocs()
	clk := startCPU(b)
	defer clk.stop()
	i := 0
	for b.Loop() {
		c.Bool(bg, "pricing", units[i&1023], false)
		i++
	}
}

func BenchmarkBoolRolloutParallel(b *testing.B) {
	c := staticClient(b, nil, rollout("new-checkout", 37.5, true))
	units := benchUnits(1024)
	b.ReportAllocs()
	clk := startCPU(b)
	defer clk.stop()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			c.Bool(bg, "new-checkout", units[i&1023], false)
			i++
		}
	})
}

// discardWriter is a ResponseWriter that keeps nothing, so that the
// benchmark measures the middleware and not a recorder.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(int)             {}

func threeTracked(c *Client) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ec := EvalContext{Key: r.Header.Get("X-User")}
		ctx := r.Context()
		c.Bool(ctx, "a", ec, false)
		c.Bool(ctx, "b", ec, false)
		c.Bool(ctx, "c", ec, false)
		w.WriteHeader(http.StatusOK)
	})
}

func benchHandler(b *testing.B, withMiddleware, evaluate bool) {
	benchHandlerWith(b, sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader())), withMiddleware, evaluate)
}

func benchHandlerWith(b *testing.B, mp metric.MeterProvider, withMiddleware, evaluate bool) {
	c := staticClientWith(b, func(cfg *Config) { cfg.MeterProvider = mp }, rollout("a", 10, true), rollout("b", 50, true), rollout("c", 90, true))
	h := threeTracked(c)
	if !evaluate {
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	}
	if withMiddleware {
		h = c.Middleware(h)
	}
	reqs := make([]*http.Request, 64)
	for i := range reqs {
		reqs[i] = httptest.NewRequest(http.MethodGet, "/", nil)
		reqs[i].Header.Set("X-User", fmt.Sprintf("user-%d", i))
	}
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	clk := startCPU(b)
	defer clk.stop()
	i := 0
	for b.Loop() {
		h.ServeHTTP(w, reqs[i&63])
		i++
	}
}

// BenchmarkHandler3Tracked is the baseline: a handler evaluating three
// tracked flags without the middleware.
func BenchmarkHandler3Tracked(b *testing.B) { benchHandler(b, false, true) }

// BenchmarkMiddleware3Tracked is the same handler behind the middleware,
// recording three cohorts into a real SDK MeterProvider.
func BenchmarkMiddleware3Tracked(b *testing.B) { benchHandler(b, true, true) }

// BenchmarkMiddleware3TrackedNoopMeter is BenchmarkMiddleware3Tracked with
// OpenTelemetry's no-op MeterProvider: the middleware's cost without the
// metric SDK's, which the service's choice of SDK version sets.
func BenchmarkMiddleware3TrackedNoopMeter(b *testing.B) {
	benchHandlerWith(b, noop.NewMeterProvider(), true, true)
}

// BenchmarkMiddlewareNoFlags is the middleware around a handler that
// evaluates nothing: the fixed cost of a request scope.
func BenchmarkMiddlewareNoFlags(b *testing.B) { benchHandler(b, true, false) }

// BenchmarkOTelHistogramRecord is the floor under the middleware's cost: one
// Record of the OpenTelemetry SDK's histogram with a prebuilt attribute set
// of a cohort, which the middleware makes once per tracked flag per request.
func BenchmarkOTelHistogramRecord(b *testing.B) {
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	h, err := mp.Meter(ScopeName).Float64Histogram(MetricRequestDuration, metric.WithExplicitBucketBoundaries(DurationBuckets...))
	if err != nil {
		b.Fatal(err)
	}
	opts := []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(
		attribute.String(AttrKey, "new-checkout"), attribute.String(AttrVariant, "on"), attribute.String(AttrReason, "split")))}
	b.ReportAllocs()
	clk := startCPU(b)
	defer clk.stop()
	for b.Loop() {
		h.Record(bg, 0.123, opts...)
	}
}

// cpuClock reports, besides wall time, the process CPU time per operation
// ("cpu-ns/op"): the machine these benchmarks run on is shared, and time
// spent descheduled inflates ns/op but not CPU time.
type cpuClock struct {
	b     *testing.B
	start time.Duration
}

func startCPU(b *testing.B) *cpuClock { return &cpuClock{b: b, start: processCPU()} }

func (c *cpuClock) stop() {
	if c.b.N > 0 {
		c.b.ReportMetric(float64(processCPU()-c.start)/float64(c.b.N), "cpu-ns/op")
	}
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkStreamBatch applies a batch of 10,000 puts, all read at once, to
// a client holding 10,000 tracked flags: what every service does when the
// controller moves 10,000 rollouts a step at the same tick. The batch goes
// through the stream's reader from memory, so the figure is the SDK's work
// without the network's. installs/op counts the snapshots installed.
func BenchmarkStreamBatch(b *testing.B) {
	const n = 10000
	base := make([]flag.Flag, n)
	var batch bytes.Buffer
	for i := range base {
		base[i] = rollout(fmt.Sprintf("service-%05d.new-path", i), 5, true)
		base[i].Version = int64(i + 1)
		batch.WriteString(putFrame(rollout(base[i].Key, 10, true), int64(n+i+1)))
	}
	c := &Client{log: (&logBuffer{}).logger(), store: newStore(), fresh: make(chan struct{})}
	c.store.cohorts = &c.cohorts
	installs := 0
	c.store.changed = func(*flag.Snapshot) { installs++ }
	var cpu time.Duration
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		if err := c.store.replace(n, base); err != nil {
			b.Fatal(err)
		}
		installs--
		r := &remote{c: c}
		rd, stop := newStreamReader(bytes.NewReader(batch.Bytes()))
		start := processCPU()
		b.StartTimer()
		r.read(rd)
		b.StopTimer()
		stop()
		cpu += processCPU() - start
		if got := c.Snapshot().Revision(); got != 2*n {
			b.Fatalf("revision after the batch = %d, want %d", got, 2*n)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
	b.ReportMetric(float64(installs)/float64(b.N), "installs/op")
}
