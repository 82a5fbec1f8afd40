package sdk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/vigil-dev/vigil/sdk/flag"
)

// collect reads the SDK's metrics from reader, by name.
func collect(t *testing.T, reader *sdkmetric.ManualReader) map[string]metricdata.Metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]metricdata.Metrics{}
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != ScopeName || sm.Scope.Version != Version {
			t.Errorf("scope %s@%s, want %s@%s", sm.Scope.Name, sm.Scope.Version, ScopeName, Version)
		}
		for _, m := range sm.Metrics {
			out[m.Name] = m
		}
	}
	return out
}

func encode(s attribute.Set) string { return s.Encoded(attribute.DefaultEncoder()) }

// bucketAttr is unit's vigil.unit_bucket as encode renders it at the end of
// a split cohort's attributes.
func bucketAttr(unit string) string {
	return fmt.Sprintf(",vigil.unit_bucket=%d", flag.UnitBucket(unit))
}

// counts renders an int64 sum's points as "attributes => value", sorted.
func counts(t *testing.T, m metricdata.Metrics) []string {
	t.Helper()
	sum, ok := m.Data.(metricdata.Sum[int64])
	if !ok {
		t.Fatalf("%s is %T, want an int64 sum", m.Name, m.Data)
	}
	if !sum.IsMonotonic || sum.Temporality != metricdata.CumulativeTemporality {
		t.Errorf("%s: monotonic %v, temporality %v", m.Name, sum.IsMonotonic, sum.Temporality)
	}
	var out []string
	for _, p := range sum.DataPoints {
		out = append(out, fmt.Sprintf("%s => %d", encode(p.Attributes), p.Value))
	}
	slices.Sort(out)
	return out
}

// histCounts renders a histogram's points as "attributes => count", sorted,
// and checks the bucket boundaries.
func histCounts(t *testing.T, m metricdata.Metrics) []string {
	t.Helper()
	h, ok := m.Data.(metricdata.Histogram[float64])
	if !ok {
		t.Fatalf("%s is %T, want a float64 histogram", m.Name, m.Data)
	}
	var out []string
	for _, p := range h.DataPoints {
		if !slices.Equal(p.Bounds, DurationBuckets) {
			t.Errorf("%s bounds = %v, want %v", m.Name, p.Bounds, DurationBuckets)
		}
		out = append(out, fmt.Sprintf("%s => %d", encode(p.Attributes), p.Count))
	}
	slices.Sort(out)
	return out
}

func equal(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s:\n got  %q\n want %q", what, got, want)
	}
}

type quotaError struct{}

func (quotaError) Error() string     { return "quota exceeded" }
func (quotaError) ErrorType() string { return "quota" }

func metricClient(t *testing.T) (*Client, *sdkmetric.ManualReader) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { mp.Shutdown(context.Background()) })
	c := staticClient(t, mp, rollout("a", 100, true), rollout("b", 0, true), rollout("untracked", 100, false))
	return c, reader
}

func TestMiddlewareCohortMetrics(t *testing.T) {
	c, reader := metricClient(t)
	h := c.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		ec := EvalContext{Key: "user-" + r.URL.Query().Get("u")}
		c.Bool(ctx, "a", ec, false)
		c.Bool(ctx, "a", ec, false) // twice in one request: counted once
		c.Bool(ctx, "b", ec, false)
		c.Bool(ctx, "untracked", ec, false)
		c.Bool(ctx, "missing", ec, false)
		switch r.URL.Path {
		case "/fail":
			http.Error(w, "boom", http.StatusServiceUnavailable)
		case "/quota":
			ReportError(ctx, fmt.Errorf("handler: %w", quotaError{}))
			w.WriteHeader(http.StatusTooManyRequests)
		case "/plain-error":
			ReportError(ctx, errors.New("plain"))
		case "/client-error":
			w.WriteHeader(http.StatusNotFound)
		default:
			io.WriteString(w, "ok")
		}
	}))
	srv := httptest.NewServer(h)
	defer srv.Close()
	for _, path := range []string{"/ok?u=1", "/ok?u=2", "/fail?u=3", "/quota?u=4", "/plain-error?u=5", "/client-error?u=6"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}

	ms := collect(t, reader)
	req, ok := ms["feature_flag.requests"]
	if !ok {
		t.Fatalf("no feature_flag.requests in %v", ms)
	}
	if req.Unit != "{request}" {
		t.Errorf("requests unit = %q", req.Unit)
	}
	// Every request is one unit, placed by the split, so each counts in its
	// unit's bucket.
	n := map[string]int{}
	for _, f := range []string{"feature_flag.key=a,feature_flag.result.reason=split,feature_flag.result.variant=on", "feature_flag.key=b,feature_flag.result.reason=split,feature_flag.result.variant=off"} {
		for u, errType := range map[string]string{"1": "", "2": "", "3": "error.type=503,", "4": "error.type=quota,", "5": "error.type=error,", "6": ""} {
			n[errType+f+bucketAttr("user-"+u)]++
		}
	}
	want := []string{}
	for k, v := range n {
		want = append(want, fmt.Sprintf("%s => %d", k, v))
	}
	slices.Sort(want)
	equal(t, "feature_flag.requests", counts(t, req), want)

	dur, ok := ms["feature_flag.request.duration"]
	if !ok {
		t.Fatal("no feature_flag.request.duration")
	}
	if dur.Unit != "s" {
		t.Errorf("duration unit = %q", dur.Unit)
	}
	equal(t, "feature_flag.request.duration", histCounts(t, dur), want)
	if _, ok := ms["feature_flag.events"]; ok {
		t.Error("events recorded without Track")
	}
}

func TestScopeObserveAndTrack(t *testing.T) {
	c, reader := metricClient(t)
	ctx, scope := c.StartScope(context.Background())
	c.Bool(ctx, "a", unit("job-1"), false)
	c.Track(ctx, "order.placed")
	c.Track(ctx, "order.placed")
	c.Observe(ctx, errors.New("failed"), 250*time.Millisecond)
	scope.End(nil) // already ended by Observe: records nothing

	ctx2, scope2 := c.StartScope(context.Background())
	c.Bool(ctx2, "b", unit("job-2"), false)
	scope2.End(nil)
	scope2.End(errors.New("late")) // second End records nothing

	ms := collect(t, reader)
	equal(t, "requests", counts(t, ms["feature_flag.requests"]), []string{
		"error.type=error,feature_flag.key=a,feature_flag.result.reason=split,feature_flag.result.variant=on" + bucketAttr("job-1") + " => 1",
		"feature_flag.key=b,feature_flag.result.reason=split,feature_flag.result.variant=off" + bucketAttr("job-2") + " => 1",
	})
	h := ms["feature_flag.request.duration"].Data.(metricdata.Histogram[float64])
	for _, p := range h.DataPoints {
		if v, _ := p.Attributes.Value("feature_flag.key"); v.AsString() == "a" && p.Sum != 0.25 {
			t.Errorf("observed duration sum = %v, want 0.25", p.Sum)
		}
	}
	ev := ms["feature_flag.events"]
	if ev.Unit != "{event}" {
		t.Errorf("events unit = %q", ev.Unit)
	}
	equal(t, "events", counts(t, ev), []string{
		"feature_flag.event.name=order.placed,feature_flag.key=a,feature_flag.result.reason=split,feature_flag.result.variant=on" + bucketAttr("job-1") + " => 2",
	})
}

func TestNoScopeRecordsNothing(t *testing.T) {
	c, reader := metricClient(t)
	c.Bool(context.Background(), "a", unit("u"), false)
	c.Observe(context.Background(), nil, time.Second)
	ReportError(context.Background(), errors.New("x"))
	c.Track(context.Background(), "e")
	if ms := collect(t, reader); len(ms) != 0 {
		t.Errorf("metrics without a scope: %v", ms)
	}
}

func spanEvents(t *testing.T, c *Client, eval func(ctx context.Context)) ([]sdktrace.Event, []attribute.KeyValue) {
	t.Helper()
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	ctx, span := tp.Tracer("test").Start(context.Background(), "request")
	eval(ctx)
	span.End()
	spans := sr.Ended()
	if len(spans) != 1 {
		t.Fatalf("%d spans", len(spans))
	}
	return spans[0].Events(), spans[0].Attributes()
}

func attrMap(kvs []attribute.KeyValue) map[string]string {
	m := map[string]string{}
	for _, kv := range kvs {
		m[string(kv.Key)] = kv.Value.Emit()
	}
	return m
}

func TestSpanEvents(t *testing.T) {
	c := staticClient(t, nil, rollout("a", 100, true))
	events, attrs := spanEvents(t, c, func(ctx context.Context) {
		c.Bool(ctx, "a", unit("user-1"), false)
		c.Bool(ctx, "missing", unit("user-1"), false)
		c.String(ctx, "a", unit("user-1"), "x")
	})
	if len(events) != 3 {
		t.Fatalf("%d events, want 3", len(events))
	}
	for _, e := range events {
		if e.Name != "feature_flag.evaluation" {
			t.Errorf("event name %q", e.Name)
		}
	}
	wants := []map[string]string{
		{"feature_flag.key": "a", "feature_flag.provider.name": "vigil", "feature_flag.result.reason": "split", "feature_flag.result.variant": "on", "feature_flag.version": "0"},
		{"feature_flag.key": "missing", "feature_flag.provider.name": "vigil", "feature_flag.result.reason": "error", "error.type": "flag_not_found"},
		{"feature_flag.key": "a", "feature_flag.provider.name": "vigil", "feature_flag.result.reason": "error", "error.type": "type_mismatch", "feature_flag.version": "0"},
	}
	for i, want := range wants {
		got := attrMap(events[i].Attributes)
		// File mode has no versions; the attribute is present only with one.
		if got["feature_flag.version"] == "" {
			delete(want, "feature_flag.version")
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("event %d attributes:\n got  %v\n want %v", i, got, want)
		}
	}
	if got := attrMap(attrs); got["vigil.flag.a"] != "on" || len(got) != 1 {
		t.Errorf("span attributes = %v, want vigil.flag.a=on only", got)
	}
}

func TestSpanEventVersionAndUnitKey(t *testing.T) {
	f := newFakeController(t, rollout("a", 100, true))
	c, _ := newTestClient(t, f, func(cfg *Config) { cfg.RecordUnitKey = true })
	events, _ := spanEvents(t, c, func(ctx context.Context) { c.Bool(ctx, "a", unit("user-1"), false) })
	got := attrMap(events[0].Attributes)
	if got["feature_flag.version"] != "1" || got["feature_flag.context.id"] != "user-1" {
		t.Errorf("attributes = %v, want version 1 and context id user-1", got)
	}
	c2, _ := newTestClient(t, f, nil)
	events, _ = spanEvents(t, c2, func(ctx context.Context) { c2.Bool(ctx, "a", unit("user-1"), false) })
	for _, kv := range events[0].Attributes {
		if kv.Key == "feature_flag.context.id" || strings.Contains(kv.Value.Emit(), "user-1") {
			t.Errorf("unit key recorded without opting in: %v", kv)
		}
	}
}

func TestErrorType(t *testing.T) {
	opErr := &net.OpError{Op: "dial", Err: errors.New("refused")}
	tests := []struct {
		err  error
		want string
	}{
		{nil, ""},
		{errors.New("plain"), "error"},
		{fmt.Errorf("wrapped: %w", errors.New("plain")), "error"},
		{opErr, "*net.OpError"},
		{fmt.Errorf("call payments: %w", opErr), "*net.OpError"},
		{fmt.Errorf("a: %w", fmt.Errorf("b: %w", quotaError{})), "quota"},
		{errors.Join(opErr, errors.New("x")), "error"},
		{context.DeadlineExceeded, "context.deadlineExceededError"},
	}
	for _, tt := range tests {
		if got := errorType(tt.err); got != tt.want {
			t.Errorf("errorType(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

// TestUnitBucketOnSplitCohortsOnly: the cohorts of units the split placed
// carry their unit's bucket, on every cohort metric; targeted, default and
// disabled cohorts carry none, and untracked flags record nothing.
func TestUnitBucketOnSplitCohortsOnly(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { mp.Shutdown(context.Background()) })
	split := rollout("split", 50, true)
	split.Targets = []flag.Target{{Variant: "on", Units: []string{"user-3", "user-4"}}}
	split.Rules = []flag.Rule{{Variant: "off", When: []flag.Clause{{Attribute: "plan", Op: flag.OpIn, Values: flag.Values{"gold"}}}}}
	noRollout := rollout("no-rollout", 0, true)
	noRollout.Rollout = nil
	disabled := rollout("disabled", 100, true)
	disabled.Enabled = false
	flags := []flag.Flag{split, noRollout, disabled, rollout("untracked", 100, false)}
	c := staticClient(t, mp, flags...)
	snap, err := flag.NewSnapshot(1, flags)
	if err != nil {
		t.Fatal(err)
	}

	requests, events := map[string]int{}, map[string]int{}
	reasons := map[flag.Reason]bool{}
	buckets := map[int]bool{}
	for i := range 200 {
		ec := EvalContext{Key: fmt.Sprintf("user-%d", i)}
		if i%10 == 0 {
			ec.Attributes = map[string]any{"plan": "gold"}
		}
		ctx, s := c.StartScope(context.Background())
		for _, f := range flags {
			c.Bool(ctx, f.Key, ec, false)
			if !f.Tracked {
				continue
			}
			d := snap.Evaluate(f.Key, ec)
			reasons[d.Reason] = true
			cohort := fmt.Sprintf("feature_flag.key=%s,feature_flag.result.reason=%s,feature_flag.result.variant=%s", f.Key, d.Reason, d.Variant)
			if d.Reason == flag.ReasonSplit {
				cohort += bucketAttr(ec.Key)
				buckets[flag.UnitBucket(ec.Key)] = true
			}
			requests[cohort]++
			events["feature_flag.event.name=paid,"+cohort]++
		}
		c.Track(ctx, "paid")
		s.End(nil)
	}
	// The population must reach every reason and every bucket, or the
	// comparison below would prove less than it claims.
	for _, r := range []flag.Reason{flag.ReasonSplit, flag.ReasonTargetingMatch, flag.ReasonDefault, flag.ReasonDisabled} {
		if !reasons[r] {
			t.Fatalf("no evaluation with reason %s", r)
		}
	}
	if len(buckets) != flag.UnitBuckets {
		t.Fatalf("split units in %d buckets, want all %d", len(buckets), flag.UnitBuckets)
	}
	render := func(m map[string]int) []string {
		var out []string
		for k, v := range m {
			out = append(out, fmt.Sprintf("%s => %d", k, v))
		}
		slices.Sort(out)
		return out
	}
	ms := collect(t, reader)
	equal(t, "requests", counts(t, ms[MetricRequests]), render(requests))
	equal(t, "durations", histCounts(t, ms[MetricRequestDuration]), render(requests))
	equal(t, "events", counts(t, ms[MetricEvents]), render(events))
}

// TestUnitBucketPerUnitInOneScope: flags evaluated for different units in
// one scope each count in their own unit's bucket.
func TestUnitBucketPerUnitInOneScope(t *testing.T) {
	c, reader := metricClient(t)
	u1, u2 := "user-1", "user-2"
	for i := 3; flag.UnitBucket(u1) == flag.UnitBucket(u2); i++ {
		u2 = fmt.Sprintf("user-%d", i)
	}
	ctx, s := c.StartScope(context.Background())
	c.Bool(ctx, "a", unit(u1), false)
	c.Bool(ctx, "b", unit(u2), false)
	c.Bool(ctx, "a", unit(u2), false) // the first result of a flag counts
	s.End(nil)
	equal(t, "requests", counts(t, collect(t, reader)[MetricRequests]), []string{
		"feature_flag.key=a,feature_flag.result.reason=split,feature_flag.result.variant=on" + bucketAttr(u1) + " => 1",
		"feature_flag.key=b,feature_flag.result.reason=split,feature_flag.result.variant=off" + bucketAttr(u2) + " => 1",
	})
}
