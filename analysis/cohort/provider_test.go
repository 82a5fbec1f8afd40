package cohort

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/model"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/vigil-dev/vigil/analysis/judge"
	"github.com/vigil-dev/vigil/analysis/metricstore"
	"github.com/vigil-dev/vigil/internal/testenv/promtest"
	"github.com/vigil-dev/vigil/sdk/flag"
	"github.com/vigil-dev/vigil/sdk/semconv"
)

// traffic drives the SDK's cohort metrics through the OpenTelemetry SDK and
// its Prometheus exporter at a steady pace: every tick, one treatment
// request (every 5th fails) and three control requests (one fails every
// 15th tick), labelled with unit buckets as a tracked flag's are: treatment
// in buckets 0 to 3 in turn, control in all eight. It remembers when each tick happened, so the true counts of
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

func (tr *traffic) request(variant string, bucket int, fail bool, seconds float64) {
	attrs := []attribute.KeyValue{
		attribute.String(semconv.AttrKey, "checkout"),
		attribute.String(semconv.AttrVariant, variant),
		attribute.String(semconv.AttrReason, "split"),
		attribute.String(semconv.AttrUnitBucket, strconv.Itoa(bucket)),
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
		tr.request("on", i%4, i%5 == 0, []float64{0.03, 0.07, 0.3, 0.7}[i%4])
		tr.request("off", (3*i)%8, i%15 == 0, 0.03)
		tr.request("off", (3*i+1)%8, false, 0.07)
		tr.request("off", (3*i+2)%8, false, 0.2)
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
// real Prometheus server and against the embedded store.
//
// Two servers scraping the same exporter on their own schedules cannot
// agree exactly: increase() stretches the change between a series' first
// and last samples in the window to the window's ends, and where those
// samples fall depends on each server's scrape phase, so even an exporter
// frozen at both ends gives counts that differ by that stretch (up to two
// scrape intervals over the window). Equal samples must give equal
// answers, though, and that is what the comparison checks: a mirror store
// scrapes Prometheus's federation endpoint, which serves each series'
// latest sample with its own timestamp, ten times per Prometheus scrape,
// so it holds exactly Prometheus's samples. The window's ends lie midway
// between scrapes, where Prometheus 2's closed range and Prometheus 3's
// left-open one select the same samples. A second embedded store scrapes
// the exporter itself, like Prometheus, and both are checked against the
// traffic actually sent.
func TestSameCountsOnPrometheusAndEmbedded(t *testing.T) {
	tr, exp := startTraffic(t)
	ctx := context.Background()
	waitCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()

	scraper, err := metricstore.Open(ctx, metricstore.Options{
		Dir: t.TempDir(), ScrapeTargets: []string{exp.URL + "/metrics"}, ScrapeInterval: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { scraper.Close() })
	prom := promtest.Start(t, promtest.Options{Targets: []string{exp.URL + "/metrics"}, ScrapeInterval: time.Second})
	federate := prom.URL + "/federate?match[]=" + url.QueryEscape(`{__name__=~"feature_flag_.+"}`)
	fed := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp, err := http.Get(federate)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	}))
	t.Cleanup(fed.Close)
	mirror, err := metricstore.Open(ctx, metricstore.Options{
		Dir: t.TempDir(), ScrapeTargets: []string{fed.URL + "/metrics"}, ScrapeInterval: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mirror.Close() })
	if err := scraper.WaitScraped(waitCtx, time.Time{}); err != nil {
		t.Fatal(err)
	}
	prom.WaitNextScrape(t)
	if err := mirror.WaitScraped(waitCtx, time.Now()); err != nil {
		t.Fatal(err)
	}

	// lastScrape is the time of Prometheus's latest samples of the
	// exporter's series (up is stamped a little apart from them).
	lastScrape := func() time.Time {
		v := prom.Query(t, "max(timestamp("+semconv.PromRequests+"))")
		vec, ok := v.(model.Vector)
		if !ok || len(vec) != 1 {
			t.Fatalf("latest sample time = %v, want one value", v)
		}
		return time.UnixMilli(int64(math.Round(float64(vec[0].Value) * 1000)))
	}
	since := lastScrape().Add(500 * time.Millisecond)
	// Six scrape intervals of data after the rollout start.
	for range 7 {
		prom.WaitNextScrape(t)
	}
	latest := lastScrape()
	now := latest.Add(-500 * time.Millisecond)
	// The mirror has caught up when it holds Prometheus's samples of the
	// latest scrape, after now: Prometheus commits a scrape's samples at
	// once, so one metric's series show it for all.
	series := fmt.Sprintf("count(timestamp(%s) > %.4f)", semconv.PromRequests, float64(latest.UnixMilli())/1000-0.0005)
	v, _, _, err := prom.API().Query(waitCtx, series, latest)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := v.(model.Vector)
	poll := time.NewTicker(20 * time.Millisecond)
	defer poll.Stop()
	for {
		got, err := mirror.Query(waitCtx, series, latest)
		if err == nil && len(got) == 1 && len(want) == 1 && got[0].Value == want[0].Value {
			break
		}
		select {
		case <-waitCtx.Done():
			t.Fatalf("mirror never caught up with Prometheus: %v, want %v (%v)", got, want, err)
		case <-poll.C:
		}
	}
	if err := scraper.WaitScraped(waitCtx, now); err != nil {
		t.Fatal(err)
	}

	httpProv, err := NewHTTPProvider(HTTPOptions{URL: prom.URL})
	if err != nil {
		t.Fatal(err)
	}
	q := []FlagQuery{{Flag: "checkout", Treatment: "on", Control: "off", Since: since}}
	read := func(name string, p Provider) Reading {
		t.Helper()
		out, err := NewReader(p).Read(ctx, now, q)
		if err != nil {
			t.Fatalf("read from %s: %v", name, err)
		}
		rd := out["checkout"]
		if rd.Err != nil {
			t.Fatalf("%s: unreadable counts: %v", name, rd.Err)
		}
		t.Logf("%-10s %+v", name+":", rd.Counts)
		return rd
	}
	p, m, e := read("Prometheus", httpProv), read("mirror", mirror), read("embedded", scraper)

	// Same samples, same query: the same counts, up to the order in which
	// the two engines add floating-point numbers.
	const exact = 1e-9
	for _, c := range []struct {
		what       string
		prom, mirr float64
	}{
		{"treatment requests", p.Counts.Treatment.Requests, m.Counts.Treatment.Requests},
		{"control requests", p.Counts.Control.Requests, m.Counts.Control.Requests},
		{"treatment errors", p.Counts.Treatment.Errors, m.Counts.Treatment.Errors},
		{"control errors", p.Counts.Control.Errors, m.Counts.Control.Errors},
	} {
		if !within(c.prom, c.mirr, exact, 0) {
			t.Errorf("%s: Prometheus %v, embedded on the same samples %v", c.what, c.prom, c.mirr)
		}
	}
	for _, co := range []struct {
		what       string
		prom, mirr map[float64]float64
	}{{"treatment", p.Counts.Treatment.Slower, m.Counts.Treatment.Slower}, {"control", p.Counts.Control.Slower, m.Counts.Control.Slower}} {
		if len(co.prom) != len(co.mirr) {
			t.Errorf("%s latency edges: Prometheus %v, embedded on the same samples %v", co.what, co.prom, co.mirr)
		}
		for edge, n := range co.prom {
			if got, ok := co.mirr[edge]; !ok || !within(n, got, exact, 0) {
				t.Errorf("%s slower than %vs: Prometheus %v, embedded on the same samples %v", co.what, edge, n, got)
			}
		}
	}

	// The split by unit bucket comes from the same samples: the same on
	// both, and adding up to the totals on each.
	for _, c := range []struct {
		what       string
		prom, mirr judge.CohortCounts
	}{{"treatment", p.Counts.Treatment, m.Counts.Treatment}, {"control", p.Counts.Control, m.Counts.Control}} {
		if len(c.prom.UnitBuckets) != flag.UnitBuckets || len(c.mirr.UnitBuckets) != flag.UnitBuckets {
			t.Fatalf("%s: unit buckets on Prometheus %v, embedded %v; want %d each", c.what, c.prom.UnitBuckets, c.mirr.UnitBuckets, flag.UnitBuckets)
		}
		for b := range c.prom.UnitBuckets {
			pb, mb := c.prom.UnitBuckets[b], c.mirr.UnitBuckets[b]
			if !within(pb.Requests, mb.Requests, exact, 0) || !within(pb.Errors, mb.Errors, exact, 0) || !within(pb.Slower[0.25], mb.Slower[0.25], exact, 0) {
				t.Errorf("%s bucket %d: Prometheus %+v, embedded on the same samples %+v", c.what, b, pb, mb)
			}
		}
	}
	for name, r := range map[string]Reading{"Prometheus": p, "mirror": m, "embedded": e} {
		for _, c := range []struct {
			what string
			cc   judge.CohortCounts
		}{{"treatment", r.Counts.Treatment}, {"control", r.Counts.Control}} {
			var req, bad, slow float64
			for _, b := range c.cc.UnitBuckets {
				req, bad, slow = req+b.Requests, bad+b.Errors, slow+b.Slower[0.25]
			}
			if !within(req, c.cc.Requests, exact, 0) || !within(bad, c.cc.Errors, exact, 0) || !within(slow, c.cc.Slower[0.25], exact, 0) {
				t.Errorf("%s %s: unit buckets add up to %v requests, %v errors, %v slower than 0.25s; totals %v, %v, %v",
					name, c.what, req, bad, slow, c.cc.Requests, c.cc.Errors, c.cc.Slower[0.25])
			}
		}
		for b := 4; b < flag.UnitBuckets; b++ {
			if n := r.Counts.Treatment.UnitBuckets[b].Requests; n != 0 {
				t.Errorf("%s: treatment bucket %d has %v requests, want none", name, b, n)
			}
		}
		if n := r.Counts.Treatment.UnitBuckets[1].Requests; !within(n, r.Counts.Treatment.Requests/4, 0.15, 2) {
			t.Errorf("%s: treatment bucket 1 has %v requests of %v, want a quarter", name, n, r.Counts.Treatment.Requests)
		}
	}

	ticks := tr.ticksIn(since, now)
	// Against the traffic sent, each server is off by its own stretch of
	// the window (see above): with steady traffic that is close, but the
	// scrape phases differ.
	const tol = 0.15
	for name, r := range map[string]Reading{"Prometheus": p, "embedded": e} {
		for _, c := range []struct {
			what       string
			got, truth float64
		}{
			{"treatment requests", r.Counts.Treatment.Requests, ticks},
			{"control requests", r.Counts.Control.Requests, 3 * ticks},
			{"treatment errors", r.Counts.Treatment.Errors, ticks / 5},
			{"control errors", r.Counts.Control.Errors, ticks / 15},
			{"treatment slower than 0.25s", r.Counts.Treatment.Slower[0.25], ticks / 2},
			{"control slower than 0.1s", r.Counts.Control.Slower[0.1], ticks},
			{"control slower than 0.25s", r.Counts.Control.Slower[0.25], 0},
		} {
			if !within(c.got, c.truth, tol, 2) {
				t.Errorf("%s: %s %.1f, sent %.1f", c.what, name, c.got, c.truth)
			}
		}
		// Both cohorts' series come from the same scrapes and are
		// stretched alike, so ratios are close to exact on each server.
		if got := r.Counts.Control.Requests / r.Counts.Treatment.Requests; !within(got, 3, 0.02, 0) {
			t.Errorf("%s: control/treatment requests %.3f, want 3", name, got)
		}
		if got := r.Counts.Treatment.Errors / r.Counts.Treatment.Requests; !within(got, 0.2, 0.05, 0) {
			t.Errorf("%s: treatment error rate %.3f, want 0.2", name, got)
		}
		if len(r.ControlBuckets) != 6 {
			t.Errorf("%s: control histogram %v, want 6 buckets", name, r.ControlBuckets)
		}
	}
}

// within reports whether a and b differ by at most rel of the larger plus
// abs.
func within(a, b, rel, abs float64) bool {
	return math.Abs(a-b) <= rel*math.Max(math.Abs(a), math.Abs(b))+abs
}

// A failed read's error becomes every due rollout's paused reason: it shows
// the start of a long query and its size, not the whole query, whose every
// key is in Query.
func TestQueryErrorShowsTheStartOfALongQuery(t *testing.T) {
	keys := make([]string, 2000)
	for i := range keys {
		keys[i] = fmt.Sprintf("flag-%05d", i)
	}
	q := samplesQuery("vigil_requests_total", keys, []string{"on", "off"}, nil, time.Minute)
	e := &QueryError{Metric: MetricRequests, Query: q, Err: errors.New("context deadline exceeded")}
	msg := e.Error()
	if len(msg) > 400 || !strings.HasPrefix(msg, "read requests: query "+q[:50]) || !strings.Contains(msg, fmt.Sprintf("(%d bytes)", len(q))) || !strings.HasSuffix(msg, ": context deadline exceeded") {
		t.Errorf("error of a %d-byte query, %d bytes: %.500s", len(q), len(msg), msg)
	}
	short := &QueryError{Metric: MetricLatency, Query: "up", Err: errors.New("bad")}
	if got := short.Error(); got != "read latency: query up: bad" {
		t.Errorf("short query's error %q", got)
	}
}
