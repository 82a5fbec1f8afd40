// Package scalebench measures the rollout loop at scale (make bench-scale):
// a counter generator on loopback serves the SDKs' cohort metrics for N
// flags, the real controller (`vigil serve` as a process) rolls all N out
// judged from its embedded metric store or from a real Prometheus, and
// the benchmark reads the controller's own metrics, its CPU and memory
// from /proc, the rollouts' histories and the list API's latency.
package scalebench

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"gonum.org/v1/gonum/stat/distuv"

	"github.com/vigil-dev/vigil/controller/server"
	"github.com/vigil-dev/vigil/internal/client"
	"github.com/vigil-dev/vigil/sdk/flag"
	"github.com/vigil-dev/vigil/sdk/semconv"
)

// The variants of every generated flag.
const (
	Control   = "off"
	Treatment = "on"
)

// variant is the variant of the cohorts at index v: control, then
// treatment.
func variant(v int) string { return [2]string{Control, Treatment}[v] }

// GeneratorOptions shape the traffic of every flag.
type GeneratorOptions struct {
	// RPS is each flag's requests per second, split between the cohorts
	// by the flag's treatment percentage.
	RPS float64
	// ErrorRate is the share of failed requests, the same in both
	// cohorts: every rollout is harmless, so every step should pass as
	// soon as its minimum duration allows.
	ErrorRate float64
	// Latency adds the request duration histogram, with the SDK's
	// buckets; the latency is the same in both cohorts.
	Latency bool
	// Seed makes the counts reproducible.
	Seed uint64
	// TextOnly answers every scrape in the Prometheus text format, as
	// services whose exporter knows no other do. Otherwise the generator
	// answers in the protobuf format when the scraper asks for it, as
	// client_golang's handler (the Go SDK's services) does.
	TextOnly bool
}

// cohort is what the SDKs of a fleet would have counted for one variant
// and one unit bucket of a flag.
type cohort struct {
	// labels are the series' labels, written once: key, variant, reason
	// and unit bucket.
	labels     string
	ok, failed uint64
	// bins counts requests by latency bin: bins[i] are those at most
	// semconv.DurationBuckets[i] and above the bound before; the last,
	// those above every bound.
	bins []uint64
	sum  float64
	// pb are the cohort's series as the protobuf format carries them,
	// made at its first protobuf scrape and updated in place after.
	pb *cohortProto
}

type cohortProto struct {
	ok, failed, duration *dto.Metric
}

type genFlag struct {
	key     string
	percent float64
	// last is when the flag's traffic was last added (see advance).
	last time.Time
	// cohorts are indexed by variant (0 control, 1 treatment), then by
	// unit bucket.
	cohorts [2][flag.UnitBuckets]cohort
}

// Generator serves, as a Prometheus /metrics endpoint, the cohort
// metrics a fleet's SDKs would export for a set of flags: the counters
// semconv names, with its labels, for split-placed units in every unit
// bucket. It does not simulate requests: at each scrape it adds to every
// counter a Poisson draw for the time since the scrape before, at the
// flag's rate and treatment share.
type Generator struct {
	opts GeneratorOptions
	// binP is the probability of each latency bin; binMid a latency
	// within it, for the histogram's sum.
	binP, binMid []float64

	mu    sync.Mutex
	rng   *rand.Rand
	flags []*genFlag
	byKey map[string]*genFlag
	now   func() time.Time
}

// NewGenerator returns a generator of keys' metrics, every flag at 0%
// until SetPercent or Follow says otherwise.
func NewGenerator(keys []string, opts GeneratorOptions) *Generator {
	g := &Generator{opts: opts, rng: rand.New(rand.NewPCG(opts.Seed, opts.Seed^0x5ca1e)), byKey: map[string]*genFlag{}, now: time.Now}
	for _, k := range slices.Sorted(slices.Values(keys)) {
		f := &genFlag{key: k}
		for v := range 2 {
			for b := range flag.UnitBuckets {
				f.cohorts[v][b].labels = fmt.Sprintf(`%s=%q,%s=%q,%s=%q,%s="%d"`, semconv.LabelKey, k, semconv.LabelVariant, variant(v),
					semconv.LabelReason, semconv.ReasonSplit, semconv.LabelUnitBucket, b)
			}
		}
		g.flags = append(g.flags, f)
		g.byKey[k] = f
	}
	// Latencies are log-normal with a median of 80 ms in both cohorts.
	lat := distuv.LogNormal{Mu: math.Log(0.08), Sigma: 0.6}
	prev := 0.0
	for _, b := range semconv.DurationBuckets {
		c := lat.CDF(b)
		g.binP = append(g.binP, c-prev)
		g.binMid = append(g.binMid, lat.Quantile((prev+c)/2))
		prev = c
	}
	g.binP = append(g.binP, 1-prev)
	g.binMid = append(g.binMid, lat.Quantile((prev+1)/2))
	start := g.now()
	for _, f := range g.flags {
		f.last = start
	}
	return g
}

// SetPercent sets the treatment percentage of key's traffic from now on;
// unknown keys are ignored.
func (g *Generator) SetPercent(key string, percent float64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if f, ok := g.byKey[key]; ok {
		f.percent = percent
	}
}

// Follow reads the controller's SDK snapshot every interval, as a fleet's
// SDKs would hear of changes, and sets each flag's percentage from it,
// until ctx ends. While the controller does not answer the percentages
// stay; it returns an error when that has lasted followOutage.
func (g *Generator) Follow(ctx context.Context, c *client.Client, every time.Duration) error {
	t := time.NewTicker(every)
	defer t.Stop()
	var failing time.Time
	for {
		var snap server.SnapshotBody
		err := c.Do(ctx, client.Request{Method: http.MethodGet, Path: "/sdk/v1/snapshot"}, &snap)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil && failing.IsZero():
			failing = time.Now()
		case err != nil && time.Since(failing) > followOutage:
			return fmt.Errorf("follow the flags: failing for %v: %w", followOutage, err)
		case err == nil:
			failing = time.Time{}
		}
		for _, f := range snap.Flags {
			p := 0.0
			if f.Enabled && f.Rollout != nil {
				p = f.Rollout.Percent
			}
			g.SetPercent(f.Key, p)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// followOutage is how long Follow keeps the percentages it has while the
// controller does not answer (a restart), as an SDK keeps serving its
// last snapshot, before it gives up.
const followOutage = time.Minute

// poisson draws a count with mean lambda.
func (g *Generator) poisson(lambda float64) uint64 {
	if lambda <= 0 {
		return 0
	}
	return uint64(distuv.Poisson{Lambda: lambda, Src: g.rng}.Rand())
}

// advance adds to flags the traffic since each was last advanced. g.mu
// is held.
func (g *Generator) advance(flags []*genFlag) {
	now := g.now()
	for _, f := range flags {
		dt := now.Sub(f.last).Seconds()
		if dt <= 0 {
			continue
		}
		f.last = now
		share := [2]float64{1 - f.percent/100, f.percent / 100}
		for v := range 2 {
			mean := g.opts.RPS * share[v] * dt / flag.UnitBuckets
			for b := range flag.UnitBuckets {
				c := &f.cohorts[v][b]
				var n uint64
				if g.opts.Latency {
					if c.bins == nil {
						c.bins = make([]uint64, len(g.binP))
					}
					for i, p := range g.binP {
						k := g.poisson(mean * p)
						c.bins[i] += k
						c.sum += float64(k) * g.binMid[i]
						n += k
					}
				} else {
					n = g.poisson(mean)
				}
				var failed uint64
				if n > 0 && g.opts.ErrorRate > 0 {
					failed = uint64(distuv.Binomial{N: float64(n), P: g.opts.ErrorRate, Src: g.rng}.Rand())
				}
				c.failed += failed
				c.ok += n - failed
			}
		}
	}
}

// ServeHTTP answers a scrape in the Prometheus text or protobuf format
// (see GeneratorOptions.TextOnly). A series appears once its counter is
// above 0, as the SDKs' exporters do.
func (g *Generator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.serve(w, r, 0, 1)
}

// Shard returns a handler that answers scrapes as ServeHTTP does, with
// the series of the flags whose index in key order is i modulo n only:
// one of n services, each exporting its own flags' series, as a fleet's
// scrape targets are, rather than one answer with all of them.
func (g *Generator) Shard(i, n int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { g.serve(w, r, i, n) })
}

// serve answers a scrape of shard i of n; r may be nil for a text answer.
func (g *Generator) serve(w http.ResponseWriter, r *http.Request, i, n int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	var flags []*genFlag
	for j, f := range g.flags {
		if j%n == i {
			flags = append(flags, f)
		}
	}
	g.advance(flags)
	if r != nil && !g.opts.TextOnly {
		if format := expfmt.Negotiate(r.Header); format.FormatType() == expfmt.TypeProtoDelim {
			g.writeProto(w, flags, format)
			return
		}
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	bw := bufio.NewWriterSize(w, 1<<16)
	var line []byte
	// series writes one line: name{labels,extra} value.
	series := func(name string, c *cohort, extra string, value []byte) {
		line = append(append(append(append(line[:0], name...), '{'), c.labels...), extra...)
		line = append(append(append(line, "} "...), value...), '\n')
		bw.Write(line)
	}
	num := make([]byte, 0, 32)
	les := make([]string, len(semconv.DurationBuckets)+1)
	for i, b := range semconv.DurationBuckets {
		les[i] = `,le="` + strconv.FormatFloat(b, 'g', -1, 64) + `"`
	}
	les[len(les)-1] = `,le="+Inf"`
	fmt.Fprintf(bw, "# TYPE %s counter\n", semconv.PromRequests)
	for _, f := range flags {
		for v := range 2 {
			for b := range flag.UnitBuckets {
				c := &f.cohorts[v][b]
				if c.ok > 0 {
					series(semconv.PromRequests, c, "", strconv.AppendUint(num[:0], c.ok, 10))
				}
				if c.failed > 0 {
					series(semconv.PromRequests, c, ","+semconv.LabelErrorType+`="500"`, strconv.AppendUint(num[:0], c.failed, 10))
				}
			}
		}
	}
	if g.opts.Latency {
		fmt.Fprintf(bw, "# TYPE %s histogram\n", semconv.PromRequestDuration)
		for _, f := range flags {
			for v := range 2 {
				for b := range flag.UnitBuckets {
					c := &f.cohorts[v][b]
					total := c.ok + c.failed
					if total == 0 {
						continue
					}
					var cum uint64
					for i, n := range c.bins {
						cum += n
						series(semconv.PromRequestDuration+"_bucket", c, les[i], strconv.AppendUint(num[:0], cum, 10))
					}
					series(semconv.PromRequestDuration+"_sum", c, "", strconv.AppendFloat(num[:0], c.sum, 'g', -1, 64))
					series(semconv.PromRequestDuration+"_count", c, "", strconv.AppendUint(num[:0], total, 10))
				}
			}
		}
	}
	bw.Flush()
}

// writeProto answers a scrape of flags in the protobuf format, with the
// series the text answer has.
func (g *Generator) writeProto(w http.ResponseWriter, flags []*genFlag, format expfmt.Format) {
	requests := &dto.MetricFamily{Name: new(semconv.PromRequests), Type: dto.MetricType_COUNTER.Enum()}
	duration := &dto.MetricFamily{Name: new(semconv.PromRequestDuration), Type: dto.MetricType_HISTOGRAM.Enum()}
	for _, f := range flags {
		for v := range 2 {
			for b := range flag.UnitBuckets {
				c := &f.cohorts[v][b]
				if c.ok+c.failed == 0 {
					continue
				}
				pb := c.proto(f.key, v, b, g.opts.Latency)
				if c.ok > 0 {
					*pb.ok.Counter.Value = float64(c.ok)
					requests.Metric = append(requests.Metric, pb.ok)
				}
				if c.failed > 0 {
					*pb.failed.Counter.Value = float64(c.failed)
					requests.Metric = append(requests.Metric, pb.failed)
				}
				if g.opts.Latency {
					h := pb.duration.Histogram
					*h.SampleCount, *h.SampleSum = c.ok+c.failed, c.sum
					var cum uint64
					for i, bucket := range h.Bucket {
						cum += c.bins[i]
						*bucket.CumulativeCount = cum
					}
					duration.Metric = append(duration.Metric, pb.duration)
				}
			}
		}
	}
	w.Header().Set("Content-Type", string(format))
	bw := bufio.NewWriterSize(w, 1<<16)
	enc := expfmt.NewEncoder(bw, format)
	for _, mf := range []*dto.MetricFamily{requests, duration} {
		if len(mf.Metric) > 0 {
			if err := enc.Encode(mf); err != nil {
				return
			}
		}
	}
	bw.Flush()
}

// proto returns the protobuf series of c, flag key's cohort of variant v
// and unit bucket b, made on first use.
func (c *cohort) proto(key string, v, b int, latency bool) *cohortProto {
	if c.pb != nil {
		return c.pb
	}
	labels := func(extra ...*dto.LabelPair) []*dto.LabelPair {
		return append([]*dto.LabelPair{
			{Name: new(semconv.LabelKey), Value: new(key)},
			{Name: new(semconv.LabelVariant), Value: new(variant(v))},
			{Name: new(semconv.LabelReason), Value: new(semconv.ReasonSplit)},
			{Name: new(semconv.LabelUnitBucket), Value: new(strconv.Itoa(b))},
		}, extra...)
	}
	c.pb = &cohortProto{
		ok:     &dto.Metric{Label: labels(), Counter: &dto.Counter{Value: new(0.0)}},
		failed: &dto.Metric{Label: labels(&dto.LabelPair{Name: new(semconv.LabelErrorType), Value: new("500")}), Counter: &dto.Counter{Value: new(0.0)}},
	}
	if latency {
		h := &dto.Histogram{SampleCount: new(uint64(0)), SampleSum: new(0.0)}
		for _, bound := range semconv.DurationBuckets {
			h.Bucket = append(h.Bucket, &dto.Bucket{UpperBound: new(bound), CumulativeCount: new(uint64(0))})
		}
		c.pb.duration = &dto.Metric{Label: labels(), Histogram: h}
	}
	return c.pb
}
