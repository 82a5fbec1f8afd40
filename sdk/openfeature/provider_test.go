package openfeature

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	of "github.com/open-feature/go-sdk/openfeature"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/vigil-dev/vigil/sdk"
	"github.com/vigil-dev/vigil/sdk/flag"
)

const token = "sdk-token"

// controller serves the SDK delivery protocol (docs/sdk-protocol.md) on
// loopback, and can be stopped and started again on the same address to
// make the controller unreachable.
type controller struct {
	t    *testing.T
	addr string
	// down makes the controller unreachable while it keeps its port:
	// connections are cut and new ones closed at once.
	down atomic.Bool

	mu      sync.Mutex
	rev     int64
	flags   map[string]flag.Flag
	streams map[chan string]bool
	conns   map[net.Conn]bool
	srv     *http.Server
}

// refusingListener closes the connections it accepts while the controller
// is down.
type refusingListener struct {
	net.Listener
	c *controller
}

func (l refusingListener) Accept() (net.Conn, error) {
	for {
		conn, err := l.Listener.Accept()
		if err != nil || !l.c.down.Load() {
			return conn, err
		}
		conn.Close()
	}
}

func newController(t *testing.T, flags ...flag.Flag) *controller {
	c := &controller{t: t, flags: map[string]flag.Flag{}, streams: map[chan string]bool{}, conns: map[net.Conn]bool{}}
	for _, f := range flags {
		c.rev++
		f.Version = c.rev
		c.flags[f.Key] = f
	}
	c.start("127.0.0.1:0")
	t.Cleanup(c.stop)
	return c
}

func (c *controller) url() string { return "http://" + c.addr }

func (c *controller) start(addr string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		c.t.Fatal(err)
	}
	c.mu.Lock()
	c.addr = ln.Addr().String()
	c.srv = &http.Server{Handler: http.HandlerFunc(c.serve), ConnState: func(conn net.Conn, s http.ConnState) {
		c.mu.Lock()
		defer c.mu.Unlock()
		switch s {
		case http.StateNew:
			c.conns[conn] = true
		case http.StateClosed, http.StateHijacked:
			delete(c.conns, conn)
		}
	}}
	srv := c.srv
	c.mu.Unlock()
	go srv.Serve(refusingListener{ln, c})
}

// goDown makes the controller unreachable: open connections are cut and
// new ones closed. comeBack undoes it.
func (c *controller) goDown() {
	c.down.Store(true)
	c.mu.Lock()
	defer c.mu.Unlock()
	for conn := range c.conns {
		conn.Close()
	}
}

func (c *controller) comeBack() { c.down.Store(false) }

func (c *controller) stop() {
	c.mu.Lock()
	srv := c.srv
	c.mu.Unlock()
	srv.Close()
}

func (c *controller) snapshot() []byte {
	doc := struct {
		Revision int64       `json:"revision"`
		Flags    []flag.Flag `json:"flags"`
	}{Revision: c.rev, Flags: []flag.Flag{}}
	for _, f := range c.flags {
		doc.Flags = append(doc.Flags, f)
	}
	b, _ := json.Marshal(doc)
	return b
}

func (c *controller) put(f flag.Flag) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rev++
	f.Version = c.rev
	c.flags[f.Key] = f
	b, _ := json.Marshal(f)
	for ch := range c.streams {
		ch <- fmt.Sprintf("event: put\nid: %d\ndata: %s\n\n", c.rev, b)
	}
}

func (c *controller) serve(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+token {
		http.Error(w, `{"error":"bad token"}`, http.StatusUnauthorized)
		return
	}
	c.mu.Lock()
	etag := fmt.Sprintf(`"%d"`, c.rev)
	snap := c.snapshot()
	c.mu.Unlock()
	switch r.URL.Path {
	case "/sdk/v1/snapshot":
		if r.Header.Get("If-None-Match") == etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("ETag", etag)
		w.Write(snap)
	case "/sdk/v1/stream":
		ch := make(chan string, 16)
		c.mu.Lock()
		c.streams[ch] = true
		c.mu.Unlock()
		defer func() {
			c.mu.Lock()
			delete(c.streams, ch)
			c.mu.Unlock()
		}()
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprintf(w, "event: snapshot\nid: %s\ndata: %s\n\n", etag[1:len(etag)-1], snap)
		w.(http.Flusher).Flush()
		for {
			select {
			case <-r.Context().Done():
				return
			case ev := <-ch:
				fmt.Fprint(w, ev)
				w.(http.Flusher).Flush()
			}
		}
	default:
		http.NotFound(w, r)
	}
}

func variants(kv ...string) map[string]json.RawMessage {
	m := map[string]json.RawMessage{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = json.RawMessage(kv[i+1])
	}
	return m
}

func testFlags() []flag.Flag {
	return []flag.Flag{
		{Key: "checkout", Variants: variants("off", "false", "on", "true"), Control: "off", Treatment: "on", Enabled: true,
			Targets: []flag.Target{{Variant: "on", Units: []string{"vip"}}}, Rollout: &flag.Rollout{Percent: 100}, Tracked: true},
		{Key: "color", Variants: variants("a", `"red"`, "b", `"blue"`), Control: "a", Enabled: true,
			Rules: []flag.Rule{{Variant: "b", When: []flag.Clause{{Attribute: "plan", Op: flag.OpIn, Values: flag.Values{"gold"}}}}}},
		{Key: "ratio", Variants: variants("a", "0.25"), Control: "a", Enabled: true},
		{Key: "limit", Variants: variants("a", "10", "b", "20"), Control: "a", Treatment: "b", Enabled: true, Rollout: &flag.Rollout{Percent: 0}},
		{Key: "config", Variants: variants("a", `{"retries": 3}`), Control: "a", Enabled: false},
	}
}

// events collects provider events delivered through OpenFeature.
type events struct {
	ch chan of.EventDetails
}

func watch(c *of.Client, types ...of.EventType) *events {
	e := &events{ch: make(chan of.EventDetails, 64)}
	cb := func(d of.EventDetails) { e.ch <- d }
	for _, t := range types {
		c.AddHandler(t, &cb)
	}
	return e
}

// next waits for an event whose message or changes satisfy match.
func (e *events) next(t *testing.T, what string, match func(of.EventDetails) bool) of.EventDetails {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case d := <-e.ch:
			if match(d) {
				return d
			}
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func fastConfig(url string) sdk.Config {
	return sdk.Config{ServerURL: url, Token: token, InitTimeout: 5 * time.Second, PollInterval: 50 * time.Millisecond,
		BackoffMin: 20 * time.Millisecond, BackoffMax: 100 * time.Millisecond}
}

func TestProvider(t *testing.T) {
	ctl := newController(t, testFlags()...)
	reader := sdkmetric.NewManualReader()
	cfg := fastConfig(ctl.url())
	cfg.MeterProvider = sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	p := New(cfg)
	if err := of.SetNamedProviderAndWait("vigil-test", p); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { of.ShutdownWithContext(context.Background()) })
	c := of.NewClient("vigil-test")
	if c.State() != of.ReadyState {
		t.Fatalf("state %s, want READY", c.State())
	}
	ev := watch(c, of.ProviderConfigChange, of.ProviderStale, of.ProviderReady)
	ctx := context.Background()
	user := of.NewEvaluationContext("user-1", map[string]any{"plan": "gold"})

	b, err := c.BooleanValueDetails(ctx, "checkout", false, user)
	if err != nil || !b.Value || b.Variant != "on" || b.Reason != of.SplitReason || b.FlagMetadata["tracked"] != true {
		t.Errorf("checkout: %+v, %v", b, err)
	}
	s, _ := c.StringValueDetails(ctx, "color", "none", user)
	if s.Value != "blue" || s.Reason != of.TargetingMatchReason {
		t.Errorf("color: %+v", s)
	}
	if f, _ := c.FloatValueDetails(ctx, "ratio", 0, user); f.Value != 0.25 || f.Reason != of.DefaultReason {
		t.Errorf("ratio: %+v", f)
	}
	if i, _ := c.IntValueDetails(ctx, "limit", 0, user); i.Value != 10 || i.Reason != of.SplitReason || i.Variant != "a" {
		t.Errorf("limit: %+v", i)
	}
	if o, _ := c.ObjectValueDetails(ctx, "config", nil, user); !reflect.DeepEqual(o.Value, map[string]any{"retries": 3.0}) || o.Reason != of.DisabledReason {
		t.Errorf("config: %+v", o)
	}
	for _, tc := range []struct {
		name string
		eval func() (any, of.ResolutionDetail)
		def  any
		code of.ErrorCode
	}{
		{"unknown flag", func() (any, of.ResolutionDetail) {
			d, _ := c.BooleanValueDetails(ctx, "nope", true, user)
			return d.Value, d.ResolutionDetail
		}, true, of.FlagNotFoundCode},
		{"wrong type", func() (any, of.ResolutionDetail) {
			d, _ := c.BooleanValueDetails(ctx, "color", true, user)
			return d.Value, d.ResolutionDetail
		}, true, of.TypeMismatchCode},
		{"no targeting key", func() (any, of.ResolutionDetail) {
			d, _ := c.BooleanValueDetails(ctx, "checkout", false, of.NewTargetlessEvaluationContext(nil))
			return d.Value, d.ResolutionDetail
		}, false, of.TargetingKeyMissingCode},
	} {
		v, d := tc.eval()
		if v != tc.def || d.ErrorCode != tc.code || d.Reason != of.ErrorReason {
			t.Errorf("%s: %v %+v, want the default with %s", tc.name, v, d, tc.code)
		}
	}

	// Evaluations through OpenFeature in a request scope count in the
	// cohort metrics, and Track counts business events per cohort. A unit
	// the split placed counts in its unit bucket, a targeted one in none.
	sctx, scope := p.Client().StartScope(ctx)
	if !c.Boolean(sctx, "checkout", false, user) {
		t.Error("checkout in scope")
	}
	c.Track(sctx, "checkout.completed", user, of.NewTrackingEventDetails(30))
	scope.End(nil)
	vip := of.NewEvaluationContext("vip", nil)
	sctx, scope = p.Client().StartScope(ctx)
	c.Boolean(sctx, "checkout", false, vip)
	c.Track(sctx, "checkout.completed", vip, of.NewTrackingEventDetails(30))
	scope.End(nil)
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	cohort := attribute.NewSet(attribute.String("feature_flag.key", "checkout"),
		attribute.String("feature_flag.result.variant", "on"), attribute.String("feature_flag.result.reason", "split"),
		attribute.String("vigil.unit_bucket", strconv.Itoa(flag.UnitBucket("user-1"))))
	targeted := attribute.NewSet(attribute.String("feature_flag.key", "checkout"),
		attribute.String("feature_flag.result.variant", "on"), attribute.String("feature_flag.result.reason", "targeting_match"))
	for _, set := range []attribute.Set{cohort, targeted} {
		event := attribute.NewSet(append(set.ToSlice(), attribute.String("feature_flag.event.name", "checkout.completed"))...)
		if got := sumFor(rm, "feature_flag.events", event); got != 1 {
			t.Errorf("feature_flag.events{%s} = %d, want 1", event.Encoded(attribute.DefaultEncoder()), got)
		}
		if got := sumFor(rm, "feature_flag.requests", set); got != 1 {
			t.Errorf("feature_flag.requests{%s} = %d, want 1 (evaluations outside the scope do not count)", set.Encoded(attribute.DefaultEncoder()), got)
		}
	}

	// CONFIGURATION_CHANGED names the changed flag.
	f := testFlags()[0]
	f.Rollout = &flag.Rollout{Percent: 0}
	ctl.put(f)
	d := ev.next(t, "configuration changed", func(d of.EventDetails) bool { return len(d.FlagChanges) > 0 })
	if !reflect.DeepEqual(d.FlagChanges, []string{"checkout"}) {
		t.Errorf("flags changed %v, want [checkout]", d.FlagChanges)
	}
	after, _ := c.BooleanValueDetails(ctx, "checkout", true, user)
	if after.Value {
		t.Error("checkout still on after the change")
	}
	// The flag metadata follows the flag's version.
	v0, ok0 := b.FlagMetadata["version"].(int64)
	v1, ok1 := after.FlagMetadata["version"].(int64)
	if !ok0 || !ok1 || v1 <= v0 {
		t.Errorf("metadata version %v before the change and %v after", b.FlagMetadata["version"], after.FlagMetadata["version"])
	}

	// STALE while the controller is unreachable, READY when it is back.
	ctl.goDown()
	ev.next(t, "stale", func(d of.EventDetails) bool { return c.State() == of.StaleState })
	if c.Boolean(ctx, "checkout", true, user) {
		t.Error("the last snapshot is not served while stale")
	}
	ctl.comeBack()
	ev.next(t, "ready again", func(d of.EventDetails) bool { return c.State() == of.ReadyState })
}

func sumFor(rm metricdata.ResourceMetrics, name string, attrs attribute.Set) int64 {
	var n int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			if s, ok := m.Data.(metricdata.Sum[int64]); ok {
				for _, dp := range s.DataPoints {
					if dp.Attributes.Equals(&attrs) {
						n += dp.Value
					}
				}
			}
		}
	}
	return n
}

func TestSpanEventsThroughOpenFeature(t *testing.T) {
	ctl := newController(t, testFlags()...)
	c, err := sdk.New(context.Background(), fastConfig(ctl.url()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	p := NewWithClient(c)
	if err := of.SetNamedProviderAndWait("vigil-spans", p); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Shutdown() })
	rec := tracetest.NewSpanRecorder()
	tracer := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)).Tracer("test")
	ctx, span := tracer.Start(context.Background(), "request")
	of.NewClient("vigil-spans").Boolean(ctx, "checkout", false, of.NewEvaluationContext("user-1", nil))
	span.End()
	ended := rec.Ended()
	if len(ended) != 1 || len(ended[0].Events()) != 1 {
		t.Fatalf("spans %v", ended)
	}
	e := ended[0].Events()[0]
	got := map[string]string{}
	for _, a := range e.Attributes {
		got[string(a.Key)] = a.Value.Emit()
	}
	want := map[string]string{"feature_flag.key": "checkout", "feature_flag.provider.name": "vigil",
		"feature_flag.result.reason": "split", "feature_flag.result.variant": "on", "feature_flag.version": "1"}
	if e.Name != "feature_flag.evaluation" || !reflect.DeepEqual(got, want) {
		t.Errorf("event %s %v, want feature_flag.evaluation %v", e.Name, got, want)
	}
	// A shared client keeps receiving flags after the provider shuts down.
	p.Shutdown()
	f := testFlags()[0]
	f.Enabled = false
	next := c.Updated()
	ctl.put(f)
	timeout := time.After(10 * time.Second)
	for c.Bool(context.Background(), "checkout", sdk.EvalContext{Key: "user-1"}, false) {
		select {
		case <-next:
			next = c.Updated()
		case <-timeout:
			t.Fatal("the shared client stopped receiving updates when the provider shut down")
		}
	}
}

func TestInitWithoutFlagsFails(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	ln.Close() // nothing listens there now
	cfg := fastConfig(url)
	cfg.InitTimeout = 200 * time.Millisecond
	p := New(cfg)
	err = of.SetNamedProviderAndWait("vigil-down", p)
	if err == nil || !strings.Contains(err.Error(), "no flags yet") || p.Client() == nil {
		t.Fatalf("init error %v, want no flags yet", err)
	}
	t.Cleanup(func() { p.Shutdown() })
	c := of.NewClient("vigil-down")
	if c.State() != of.ErrorState {
		t.Errorf("state %s, want ERROR", c.State())
	}
	if v := c.Boolean(context.Background(), "checkout", true, of.NewEvaluationContext("u", nil)); !v {
		t.Error("the default is not served")
	}
}

func TestEvalContext(t *testing.T) {
	when := time.Date(2026, 11, 25, 9, 0, 0, 0, time.FixedZone("X", 3600))
	ec := evalContext(of.FlattenedContext{of.TargetingKey: "u", "n": 3, "at": when, "s": "x"})
	want := sdk.EvalContext{Key: "u", Attributes: map[string]any{"n": 3, "at": "2026-11-25T08:00:00Z", "s": "x"}}
	if !reflect.DeepEqual(ec, want) {
		t.Errorf("evalContext = %+v, want %+v", ec, want)
	}
}

func TestRefusedTokenIsOneError(t *testing.T) {
	ctl := newController(t, testFlags()...)
	cfg := fastConfig(ctl.url())
	cfg.Token = "wrong"
	cfg.InitTimeout = 300 * time.Millisecond
	p := New(cfg)
	t.Cleanup(func() { p.Shutdown() })
	if err := p.Init(of.EvaluationContext{}); err == nil {
		t.Fatal("Init succeeded with a refused token")
	}
	var errs int
	deadline := time.After(time.Second) // many polls at 50 ms
	for done := false; !done; {
		select {
		case e := <-p.EventChannel():
			if e.EventType != of.ProviderError || !strings.Contains(e.Message, "refused the token") {
				t.Errorf("event %+v, want PROVIDER_ERROR about the token", e)
			}
			errs++
		case <-deadline:
			done = true
		}
	}
	if errs != 1 {
		t.Errorf("%d error events, want 1 however often the token is refused", errs)
	}
}
