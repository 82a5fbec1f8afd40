package cohort

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
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

	"github.com/vigil-dev/vigil/internal/testenv/poll"
	"github.com/vigil-dev/vigil/internal/testenv/promtest"
	"github.com/vigil-dev/vigil/sdk/flag"
	"github.com/vigil-dev/vigil/sdk/semconv"
)

// pod is one service process with the SDK's cohort metrics, exported
// through the OpenTelemetry Prometheus exporter at a fixed address. A
// restart replaces its meter provider, so its counters begin again from
// zero under the same labels, as a restarted container's do.
type pod struct {
	srv *httptest.Server

	mu       sync.Mutex
	handler  http.Handler
	mp       *sdkmetric.MeterProvider
	requests metric.Int64Counter
	duration metric.Float64Histogram
}

func newPod(t *testing.T) *pod {
	t.Helper()
	p := &pod{}
	p.start(t)
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		h := p.handler
		p.mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		p.srv.Close()
		p.mu.Lock()
		defer p.mu.Unlock()
		_ = p.mp.Shutdown(context.Background())
	})
	return p
}

// start gives the pod fresh counters.
func (p *pod) start(t *testing.T) {
	t.Helper()
	reg := prometheus.NewRegistry()
	exp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		t.Fatal(err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp))
	meter := mp.Meter("github.com/vigil-dev/vigil/sdk")
	requests, err := meter.Int64Counter(semconv.MetricRequests, metric.WithUnit("{request}"))
	if err != nil {
		t.Fatal(err)
	}
	duration, err := meter.Float64Histogram(semconv.MetricRequestDuration, metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(0.1, 0.25, 1))
	if err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mp != nil {
		_ = p.mp.Shutdown(context.Background())
	}
	p.handler, p.mp, p.requests, p.duration = promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), mp, requests, duration
}

func (p *pod) request(variant string, bucket int, fail bool, seconds float64) {
	attrs := []attribute.KeyValue{
		attribute.String(semconv.AttrKey, "checkout"),
		attribute.String(semconv.AttrVariant, variant),
		attribute.String(semconv.AttrReason, "split"),
		attribute.String(semconv.AttrUnitBucket, strconv.Itoa(bucket)),
	}
	if fail {
		attrs = append(attrs, attribute.String(semconv.AttrErrorType, "timeout"))
	}
	ctx := context.Background()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.requests.Add(ctx, 1, metric.WithAttributes(attrs...))
	p.duration.Record(ctx, seconds, metric.WithAttributes(attrs...))
}

// tally of what the services counted for one cohort.
type counted struct {
	requests, errors, slow float64 // slow: slower than 0.25 s
	bucketRequests         [flag.UnitBuckets]float64
}

// fleet drives traffic through its pods every 5 ms and counts it: in each
// round, every pod serves a treatment request (every 7th fails, every 3rd
// is slow) and two control requests (every 11th round one fails, every 5th
// one is slow), in unit buckets that go round all eight.
type fleet struct {
	pods []*pod

	mu     sync.Mutex
	paused bool
	round  int
	truth  map[string]*counted
	// requests is what each pod's counters show: the requests it served
	// since it last started.
	requests []float64

	stop, done chan struct{}
}

func startFleet(t *testing.T, n int) *fleet {
	t.Helper()
	f := &fleet{truth: map[string]*counted{"on": {}, "off": {}}, stop: make(chan struct{}), done: make(chan struct{})}
	for range n {
		f.pods = append(f.pods, newPod(t))
	}
	f.requests = make([]float64, n)
	go f.run()
	t.Cleanup(func() {
		close(f.stop)
		<-f.done
	})
	return f
}

func (f *fleet) targets() []string {
	var out []string
	for _, p := range f.pods {
		out = append(out, p.srv.URL+"/metrics")
	}
	return out
}

func (f *fleet) run() {
	defer close(f.done)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-f.stop:
			return
		case <-tick.C:
		}
		f.mu.Lock()
		if !f.paused {
			for k, p := range f.pods {
				i := f.round
				f.requests[k] += 3
				f.serve(p, "on", i%8, i%7 == 0, i%3 == 0)
				f.serve(p, "off", (i+1)%8, i%11 == 0, false)
				f.serve(p, "off", (i+2)%8, false, i%5 == 0)
				f.round++
			}
		}
		f.mu.Unlock()
	}
}

func (f *fleet) serve(p *pod, variant string, bucket int, fail, slow bool) {
	seconds := 0.05
	if slow {
		seconds = 0.3
	}
	p.request(variant, bucket, fail, seconds)
	c := f.truth[variant]
	c.requests++
	c.bucketRequests[bucket]++
	if fail {
		c.errors++
	}
	if slow {
		c.slow++
	}
}

// pause stops the traffic after the round in progress and returns what the
// services counted; resume starts it again.
func (f *fleet) pause() map[string]counted {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.paused = true
	return map[string]counted{"on": *f.truth["on"], "off": *f.truth["off"]}
}

// restart restarts pod k: its counters begin again at zero.
func (f *fleet) restart(t *testing.T, k int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pods[k].start(t)
	f.requests[k] = 0
}

// exposed is the sum of the requests the pods' counters show.
func (f *fleet) exposed() float64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	var n float64
	for _, r := range f.requests {
		n += r
	}
	return n
}

func (f *fleet) resume() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.paused = false
}

func (f *fleet) counted() map[string]counted {
	f.mu.Lock()
	defer f.mu.Unlock()
	return map[string]counted{"on": *f.truth["on"], "off": *f.truth["off"]}
}

// since subtracts a baseline.
func (c counted) since(base counted) counted {
	out := counted{requests: c.requests - base.requests, errors: c.errors - base.errors, slow: c.slow - base.slow}
	for b := range out.bucketRequests {
		out.bucketRequests[b] = c.bucketRequests[b] - base.bucketRequests[b]
	}
	return out
}

// metricServer is what the fleet is scraped into: a real Prometheus or
// VictoriaMetrics.
type metricServer struct {
	name  string
	start func(t *testing.T, targets []string) *promtest.Server
}

var metricServers = []metricServer{
	{"Prometheus", func(t *testing.T, targets []string) *promtest.Server {
		return promtest.Start(t, promtest.Options{Targets: targets, ScrapeInterval: time.Second})
	}},
	{"VictoriaMetrics", func(t *testing.T, targets []string) *promtest.Server {
		return promtest.StartVictoriaMetrics(t, promtest.Options{Targets: targets, ScrapeInterval: time.Second})
	}},
}

// TestReadMatchesWhatServicesCounted scrapes a fleet of 1 and of 4 pods
// into a real Prometheus and into VictoriaMetrics, starts a rollout while
// the counters are well past zero, restarts a pod mid-run, and reads the
// cohorts every half second: counts never go down, never exceed what the
// services counted since the start, and once the traffic stops and the last
// scrapes are in, equal it exactly, requests, errors, slow requests and unit
// buckets alike. A second Reader that did not follow the rollout (a
// controller that just took over) reads the same.
func TestReadMatchesWhatServicesCounted(t *testing.T) {
	for _, ms := range metricServers {
		for _, pods := range []int{1, 4} {
			t.Run(fmt.Sprintf("%s/%d pods", ms.name, pods), func(t *testing.T) {
				readMatchesCounted(t, ms, pods)
			})
		}
	}
}

func readMatchesCounted(t *testing.T, ms metricServer, pods int) {
	f := startFleet(t, pods)
	srv := ms.start(t, f.targets())
	p, err := NewHTTPProvider(HTTPOptions{URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	// scraped waits until the server holds the services' counts as of a
	// pause: every pod's latest samples are in.
	scraped := func() {
		t.Helper()
		want := f.exposed()
		srv.WaitFor(t, fmt.Sprintf(`sum(%s{%s="checkout"})`, semconv.PromRequests, semconv.LabelKey), func(v model.Value) bool {
			vec, ok := v.(model.Vector)
			return ok && len(vec) == 1 && float64(vec[0].Value) == want
		})
	}
	// The rollout starts with the counters well past zero.
	srv.WaitFor(t, fmt.Sprintf(`sum(%s)`, semconv.PromRequests), func(v model.Value) bool {
		vec, ok := v.(model.Vector)
		return ok && len(vec) == 1 && vec[0].Value > 500
	})
	base := f.pause()
	scraped()
	since := time.Now()
	f.resume()

	q := []FlagQuery{{Flag: "checkout", Treatment: "on", Control: "off", Since: since}}
	r := NewReader(p)
	var last Reading
	// lag is the most treatment traffic counted but not yet read, in
	// seconds of traffic, at the reads while it flows.
	var lag time.Duration
	read := func(r *Reader) Reading {
		t.Helper()
		now := time.Now()
		got, err := r.Read(ctx, now, q)
		if err != nil {
			t.Fatal(err)
		}
		rd := got["checkout"]
		if rd.Err != nil {
			t.Fatalf("read at %s: %v", now.Sub(since).Round(time.Millisecond), rd.Err)
		}
		return rd
	}
	check := func(rd Reading) {
		t.Helper()
		truth := f.counted()
		for _, c := range []struct {
			cohort             string
			got, prev, counted float64
		}{
			{"treatment requests", rd.Counts.Treatment.Requests, last.Counts.Treatment.Requests, truth["on"].since(base["on"]).requests},
			{"treatment errors", rd.Counts.Treatment.Errors, last.Counts.Treatment.Errors, truth["on"].since(base["on"]).errors},
			{"treatment slower than 0.25s", rd.Counts.Treatment.Slower[0.25], last.Counts.Treatment.Slower[0.25], truth["on"].since(base["on"]).slow},
			{"control requests", rd.Counts.Control.Requests, last.Counts.Control.Requests, truth["off"].since(base["off"]).requests},
			{"control errors", rd.Counts.Control.Errors, last.Counts.Control.Errors, truth["off"].since(base["off"]).errors},
		} {
			if c.got < c.prev || c.got > c.counted {
				t.Errorf("%s: read %v after %v, with %v counted since the start; want it between", c.cohort, c.got, c.prev, c.counted)
			}
		}
		last = rd
	}

	// Half a second between reads; a clean restart of pod 0 half-way: its
	// last counts are scraped before its counters begin again at zero.
	deadline := time.Now().Add(6 * time.Second)
	restarted := false
	every := time.NewTicker(500 * time.Millisecond)
	defer every.Stop()
	for time.Now().Before(deadline) {
		<-every.C
		rd := read(r)
		check(rd)
		if n, elapsed := f.counted()["on"].since(base["on"]).requests, time.Since(since); n > 0 {
			lag = max(lag, time.Duration((n-rd.Counts.Treatment.Requests)/n*float64(elapsed)))
		}
		if !restarted && time.Until(deadline) < 3*time.Second {
			f.pause()
			scraped()
			f.restart(t, 0)
			f.resume()
			restarted = true
		}
	}

	end := f.pause()
	scraped()
	want := map[string]counted{"on": end["on"].since(base["on"]), "off": end["off"].since(base["off"])}
	var got Reading
	poll.Until(t, 30*time.Second, "the read to catch up with the last scrapes", func() error {
		got = read(r)
		check(got)
		if got.Counts.Treatment.Requests != want["on"].requests || got.Counts.Control.Requests != want["off"].requests {
			return fmt.Errorf("requests %v / %v, counted %v / %v", got.Counts.Treatment.Requests, got.Counts.Control.Requests, want["on"].requests, want["off"].requests)
		}
		return nil
	})
	fresh := read(NewReader(p))
	for name, rd := range map[string]Reading{"follower": got, "new reader": fresh} {
		for _, c := range []struct {
			variant string
			counts  counted
			read    Reading
		}{{"on", want["on"], rd}, {"off", want["off"], rd}} {
			cc := c.read.Counts.Treatment
			if c.variant == "off" {
				cc = c.read.Counts.Control
			}
			if cc.Requests != c.counts.requests || cc.Errors != c.counts.errors || cc.Slower[0.25] != c.counts.slow {
				t.Errorf("%s, %s: read %v requests, %v errors, %v slow; the services counted %v, %v, %v",
					name, c.variant, cc.Requests, cc.Errors, cc.Slower[0.25], c.counts.requests, c.counts.errors, c.counts.slow)
			}
			if len(cc.UnitBuckets) != flag.UnitBuckets {
				t.Fatalf("%s, %s: %d unit buckets, want %d", name, c.variant, len(cc.UnitBuckets), flag.UnitBuckets)
			}
			for b, ub := range cc.UnitBuckets {
				if ub.Requests != c.counts.bucketRequests[b] {
					t.Errorf("%s, %s bucket %d: read %v requests, counted %v", name, c.variant, b, ub.Requests, c.counts.bucketRequests[b])
				}
			}
		}
	}
	// For the record: increase() over the same window, as the Reader read
	// before, on the same server.
	window := model.Duration(time.Since(since).Truncate(time.Millisecond))
	inc := srv.Query(t, fmt.Sprintf(`sum by (%s) (increase(%s{%s="checkout", %s="split"}[%s]))`,
		semconv.LabelVariant, semconv.PromRequests, semconv.LabelKey, semconv.LabelReason, window))
	t.Logf("%s, %d pods: while traffic flowed, reads lagged what the services counted by up to %s of traffic (scrape every 1 s, reads every 0.5 s)", ms.name, len(f.pods), lag.Round(10*time.Millisecond))
	t.Logf("%s, %d pods, pod 0 restarted: exact read treatment %v / control %v requests, %v / %v errors; the services counted %v / %v, %v / %v; increase() over the window reads %v",
		ms.name, len(f.pods), got.Counts.Treatment.Requests, got.Counts.Control.Requests, got.Counts.Treatment.Errors, got.Counts.Control.Errors,
		want["on"].requests, want["off"].requests, want["on"].errors, want["off"].errors, inc)
}
