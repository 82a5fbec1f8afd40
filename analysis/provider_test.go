package analysis

import (
	"context"
	"math"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/vigil-dev/vigil/analysis/metricstore"
	"github.com/vigil-dev/vigil/internal/promtest"
)

// traffic drives the SDK's cohort metrics through the OpenTelemetry SDK and
// its Prometheus exporter at a steady pace: every tick, one treatment
// request (every 5th fails) and three control requests (one fails every
// 15th tick). It remembers when each tick happened, so the true counts of
// any window are known.
type traffic struct {
	requests metric.Int64Counter
	duration metric.Float64Histogram

	mu    sync.Mutex
	ticks []time.Time
	stop  chan struct{}
	done  chan struct{}
}

func startTraffic(t *testing.T) (*traffic, *httptest.Server) {
	t.Helper()
	reg := prometheus.NewRegistry()
	exp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		t.Fatal(err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp))
	meter := mp.Meter("github.com/vigil-dev/vigil/sdk")
	tr := &traffic{stop: make(chan struct{}), done: make(chan struct{})}
	if tr.requests, err = meter.Int64Counter("feature_flag.requests", metric.WithUnit("{request}")); err != nil {
		t.Fatal(err)
	}
	if tr.duration, err = meter.Float64Histogram("feature_flag.request.duration", metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(0.05, 0.1, 0.25, 0.5, 1)); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	go tr.run()
	t.Cleanup(func() {
		close(tr.stop)
		<-tr.done
		srv.Close()
		_ = mp.Shutdown(context.Background())
	})
	return tr, srv
}

func (tr *traffic) request(variant string, fail bool, seconds float64) {
	attrs := []attribute.KeyValue{
		attribute.String("feature_flag.key", "checkout"),
		attribute.String("feature_flag.result.variant", variant),
		attribute.String("feature_flag.result.reason", "split"),
	}
	if fail {
		attrs = append(attrs, attribute.String("error.type", "timeout"))
	}
	ctx := context.Background()
	tr.requests.Add(ctx, 1, metric.WithAttributes(attrs...))
	tr.duration.Record(ctx, seconds, metric.WithAttributes(attrs...))
}

func (tr *traffic) run() {
	defer close(tr.done)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-tr.stop:
			return
		case <-tick.C:
		}
		tr.request("on", i%5 == 0, []float64{0.03, 0.07, 0.3, 0.7}[i%4])
		tr.request("off", i%15 == 0, 0.03)
		tr.request("off", false, 0.07)
		tr.request("off", false, 0.2)
		tr.mu.Lock()
		tr.ticks = append(tr.ticks, time.Now())
		tr.mu.Unlock()
	}
}

// ticksIn counts the ticks in (from, to].
func (tr *traffic) ticksIn(from, to time.Time) float64 {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	n := 0
	for _, at := range tr.ticks {
		if at.After(from) && !at.After(to) {
			n++
		}
	}
	return float64(n)
}

// TestSameCountsOnPrometheusAndEmbedded runs the cohort queries against a
// real Prometheus server and against the embedded store, both scraping the
// same OpenTelemetry exporter, and checks that they agree with each other
// and with the traffic actually sent.
func TestSameCountsOnPrometheusAndEmbedded(t *testing.T) {
	tr, exp := startTraffic(t)
	ctx := context.Background()

	store, err := metricstore.Open(ctx, metricstore.Options{
		Dir: t.TempDir(), ScrapeTargets: []string{exp.URL + "/metrics"}, ScrapeInterval: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	prom := promtest.Start(t, promtest.Options{Targets: []string{exp.URL + "/metrics"}, ScrapeInterval: time.Second})
	waitCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := store.WaitScraped(waitCtx, time.Time{}); err != nil {
		t.Fatal(err)
	}

	since := time.Now()
	// Six scrape intervals of data after the rollout start, on both.
	for range 6 {
		prom.WaitNextScrape(t)
	}
	if err := store.WaitScraped(waitCtx, since.Add(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	now := time.Now()

	httpProv, err := NewHTTPProvider(HTTPOptions{URL: prom.URL})
	if err != nil {
		t.Fatal(err)
	}
	q := []FlagQuery{{Flag: "checkout", Treatment: "on", Control: "off", Since: since}}
	fromProm, err := NewReader(httpProv).Read(ctx, now, q)
	if err != nil {
		t.Fatalf("read from Prometheus: %v", err)
	}
	fromStore, err := NewReader(store).Read(ctx, now, q)
	if err != nil {
		t.Fatalf("read from the embedded store: %v", err)
	}
	p, e := fromProm["checkout"], fromStore["checkout"]
	if p.Err != nil || e.Err != nil {
		t.Fatalf("unreadable counts: Prometheus %v; embedded %v", p.Err, e.Err)
	}
	t.Logf("Prometheus: %+v", p.Counts)
	t.Logf("embedded:   %+v", e.Counts)

	ticks := tr.ticksIn(since, now)
	// increase() extrapolates each series from its first and last samples
	// in the window to the window's ends; with steady traffic that is
	// close, but the two servers scrape at different moments.
	const tol = 0.15
	for _, c := range []struct {
		what             string
		prom, emb, truth float64
	}{
		{"treatment requests", p.Counts.Treatment.Requests, e.Counts.Treatment.Requests, ticks},
		{"control requests", p.Counts.Control.Requests, e.Counts.Control.Requests, 3 * ticks},
		{"treatment errors", p.Counts.Treatment.Errors, e.Counts.Treatment.Errors, ticks / 5},
		{"control errors", p.Counts.Control.Errors, e.Counts.Control.Errors, ticks / 15},
		{"treatment slower than 0.25s", p.Counts.Treatment.Slower[0.25], e.Counts.Treatment.Slower[0.25], ticks / 2},
		{"control slower than 0.1s", p.Counts.Control.Slower[0.1], e.Counts.Control.Slower[0.1], ticks},
		{"control slower than 0.25s", p.Counts.Control.Slower[0.25], e.Counts.Control.Slower[0.25], 0},
	} {
		if !within(c.prom, c.emb, tol, 2) {
			t.Errorf("%s: Prometheus %.1f, embedded %.1f: differ by more than %.0f%%", c.what, c.prom, c.emb, 100*tol)
		}
		if !within(c.prom, c.truth, tol, 2) || !within(c.emb, c.truth, tol, 2) {
			t.Errorf("%s: Prometheus %.1f, embedded %.1f, sent %.1f", c.what, c.prom, c.emb, c.truth)
		}
	}
	// Both cohorts' series come from the same scrapes and are stretched
	// alike, so ratios are close to exact on each server.
	for name, r := range map[string]FlagCounts{"Prometheus": p.Counts, "embedded": e.Counts} {
		if got := r.Control.Requests / r.Treatment.Requests; !within(got, 3, 0.02, 0) {
			t.Errorf("%s: control/treatment requests %.3f, want 3", name, got)
		}
		if got := r.Treatment.Errors / r.Treatment.Requests; !within(got, 0.2, 0.05, 0) {
			t.Errorf("%s: treatment error rate %.3f, want 0.2", name, got)
		}
	}
	if len(p.ControlBuckets) != 6 || len(e.ControlBuckets) != 6 {
		t.Errorf("control histograms: Prometheus %v, embedded %v; want 6 buckets each", p.ControlBuckets, e.ControlBuckets)
	}
}

// within reports whether a and b differ by at most rel of the larger plus
// abs.
func within(a, b, rel, abs float64) bool {
	return math.Abs(a-b) <= rel*math.Max(math.Abs(a), math.Abs(b))+abs
}
