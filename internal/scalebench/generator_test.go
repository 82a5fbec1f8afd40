package scalebench

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/textparse"

	"github.com/vigil-dev/vigil/controller/plan"
	"github.com/vigil-dev/vigil/controller/rollout"
	"github.com/vigil-dev/vigil/sdk/flag"
	"github.com/vigil-dev/vigil/sdk/semconv"
)

func labelsOf(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

// TestGeneratorServesTheSDKsSeries scrapes the generator over HTTP with a
// clock the test moves: the series carry the SDK's names and labels, the
// counts follow the rate and the treatment share, the histogram counts
// every request, and counters only grow.
func TestGeneratorServesTheSDKsSeries(t *testing.T) {
	g := NewGenerator([]string{"b-flag", "a-flag"}, GeneratorOptions{RPS: 400, ErrorRate: 0.1, Latency: true, Seed: 7})
	now := fakeClock(g)
	g.SetPercent("a-flag", 25)
	g.SetPercent("unknown", 50)
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	ctx := context.Background()

	totals := func() (map[string]map[string]float64, Metrics) {
		*now = now.Add(100 * time.Second)
		ms, err := Scrape(ctx, srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		// Requests by flag and variant, checked against the histogram's
		// count of the same series on the way.
		out := map[string]map[string]float64{}
		for _, m := range ms[semconv.PromRequests].GetMetric() {
			l := labelsOf(m)
			b, err := strconv.Atoi(l[semconv.LabelUnitBucket])
			if l[semconv.LabelReason] != semconv.ReasonSplit || err != nil || b < 0 || b >= flag.UnitBuckets {
				t.Fatalf("series %v: want reason split and a unit bucket 0 to %d", l, flag.UnitBuckets-1)
			}
			if out[l[semconv.LabelKey]] == nil {
				out[l[semconv.LabelKey]] = map[string]float64{}
			}
			out[l[semconv.LabelKey]][l[semconv.LabelVariant]] += m.GetCounter().GetValue()
			if l[semconv.LabelErrorType] != "" {
				out[l[semconv.LabelKey]]["failed"] += m.GetCounter().GetValue()
			}
		}
		return out, ms
	}
	first, ms := totals()
	// 100 s at 400 requests per second: a-flag sends a quarter to
	// treatment, b-flag (at 0%) none. Poisson counts stay within 5
	// standard deviations.
	for _, c := range []struct {
		key, variant string
		mean         float64
	}{{"a-flag", Treatment, 10000}, {"a-flag", Control, 30000}, {"b-flag", Control, 40000}, {"b-flag", "failed", 4000}} {
		if got := first[c.key][c.variant]; math.Abs(got-c.mean) > 5*math.Sqrt(c.mean) {
			t.Errorf("%s %s: %v requests, want about %v", c.key, c.variant, got, c.mean)
		}
	}
	if got := first["b-flag"][Treatment]; got != 0 {
		t.Errorf("b-flag at 0%% sent %v requests to treatment", got)
	}
	var histCount float64
	for _, m := range ms[semconv.PromRequestDuration].GetMetric() {
		h := m.GetHistogram()
		histCount += float64(h.GetSampleCount())
		if n := len(h.GetBucket()); n != len(semconv.DurationBuckets) && n != len(semconv.DurationBuckets)+1 {
			t.Errorf("histogram %v has %d buckets, want the SDK's %d", labelsOf(m), n, len(semconv.DurationBuckets))
		}
	}
	requests := first["a-flag"][Treatment] + first["a-flag"][Control] + first["b-flag"][Control]
	if histCount != requests {
		t.Errorf("histograms count %v requests, the counters %v", histCount, requests)
	}

	g.SetPercent("b-flag", 50)
	second, _ := totals()
	for key, vs := range first {
		for v, n := range vs {
			if second[key][v] < n {
				t.Errorf("%s %s went down from %v to %v", key, v, n, second[key][v])
			}
		}
	}
	if second["b-flag"][Treatment] == 0 {
		t.Error("b-flag at 50% sent nothing to treatment")
	}
}

// TestScheduleOf reads steps from histories: held between the minimum and
// one interval more (and the slack) is on time; steps a person ended, and rollbacks, do
// not count.
func TestScheduleOf(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	s := rollout.New("f")
	s.Plan.Interval, s.Plan.MinStepDuration = plan.Duration(10*time.Second), plan.Duration(30*time.Second)
	s.History = []rollout.Transition{
		{At: at(0), From: rollout.Pending, To: rollout.Progressing, Step: 0, Actor: "alice"},
		{At: at(35), From: rollout.Progressing, To: rollout.Progressing, Step: 1, Actor: rollout.ControllerActor}, // on time
		{At: at(85), From: rollout.Progressing, To: rollout.Progressing, Step: 2, Actor: rollout.ControllerActor}, // 50 s: late
		{At: at(100), From: rollout.Progressing, To: rollout.Promoted, Step: 3, Actor: rollout.ControllerActor},   // 15 s: early
		{At: at(200), From: rollout.Promoted, To: rollout.Progressing, Step: 0, Actor: "alice"},
		{At: at(240), From: rollout.Progressing, To: rollout.Paused, Step: 0, Actor: "bob"},
		{At: at(260), From: rollout.Paused, To: rollout.Progressing, Step: 0, Actor: "bob"},
		{At: at(270), From: rollout.Progressing, To: rollout.RolledBack, Step: 0, Actor: rollout.ControllerActor},
	}
	got := ScheduleOf([]rollout.State{s}, 0)
	want := Schedule{Steps: 3, OnTime: 1, Early: 1, Late: 1, Longest: 50 * time.Second}
	if got != want {
		t.Errorf("%+v, want %+v", got, want)
	}
	// With 10 s of slack the 50 s step is on time.
	if got := ScheduleOf([]rollout.State{s}, 10*time.Second); got.OnTime != 2 || got.Late != 0 {
		t.Errorf("with slack: %+v, want 2 on time and none late", got)
	}
}

// TestHistogramBetween: the delta of two scrapes, its median interpolated
// within its bucket, and the bound that holds its maximum.
func TestHistogramBetween(t *testing.T) {
	hist := func(count uint64, sum float64, cum ...uint64) Metrics {
		h := &dto.Histogram{SampleCount: &count, SampleSum: &sum}
		for i, c := range cum {
			ub, c := []float64{0.1, 1, 10}[i], c
			h.Bucket = append(h.Bucket, &dto.Bucket{UpperBound: &ub, CumulativeCount: &c})
		}
		return Metrics{"h": &dto.MetricFamily{Metric: []*dto.Metric{{Histogram: h}}}}
	}
	d := HistogramBetween(hist(10, 1, 10, 10, 10), hist(30, 11, 10, 30, 30), "h", nil)
	if d.Count != 20 || d.Sum != 10 {
		t.Errorf("count %d sum %v, want 20 and 10", d.Count, d.Sum)
	}
	if q := d.Quantile(0.5); math.Abs(q-0.55) > 1e-9 {
		t.Errorf("median %v, want 0.55 (halfway through the bucket 0.1 to 1)", q)
	}
	if m := d.MaxBound(); m != 1 {
		t.Errorf("max bound %v, want 1", m)
	}
	if q := (HistogramDelta{}).Quantile(0.5); !math.IsNaN(q) {
		t.Errorf("median of nothing %v, want NaN", q)
	}

	// Two processes' deltas (a restart) count as one histogram; nothing
	// added changes nothing.
	e := HistogramBetween(Metrics{}, hist(4, 2, 1, 3, 4), "h", nil)
	sum := d.Add(e)
	if sum.Count != 24 || sum.Sum != 12 || !slices.Equal(sum.Counts, []uint64{1, 23, 24, 24}) || !slices.Equal(sum.Bounds, d.Bounds) {
		t.Errorf("sum %+v, want 24 observations, buckets 1, 23, 24, 24", sum)
	}
	if z := (HistogramDelta{}).Add(d); z.Count != d.Count || !slices.Equal(z.Counts, d.Counts) || !slices.Equal(z.Bounds, d.Bounds) {
		t.Errorf("nothing plus %+v = %+v", d, z)
	}
}

// fullGenerator returns a generator of 1,000 flags at 10%, at 5,000
// requests a second each so that every series is present, and the time
// its clock shows.
func fullGenerator() (*Generator, *time.Time) {
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = "scale-" + strconv.Itoa(i)
	}
	g := NewGenerator(keys, GeneratorOptions{RPS: 5000, ErrorRate: 0.02, Latency: true, Seed: 1})
	now := fakeClock(g)
	for _, k := range keys {
		g.SetPercent(k, 10)
	}
	return g, now
}

// fakeClock sets g's clock to a time the caller moves, with every flag's
// traffic added up to it, and returns that time.
func fakeClock(g *Generator) *time.Time {
	now := time.Unix(1_800_000_000, 0)
	g.now = func() time.Time { return now }
	for _, f := range g.flags {
		f.last = now
	}
	return &now
}

// scrapeFormats are the answers the benchmarks ask the generator for, by
// the Accept header of their scrape.
var scrapeFormats = []struct{ name, accept string }{{"text", "text/plain"}, {"protobuf", protoAccept}}

// BenchmarkGeneratorScrape is one scrape of 1,000 flags, every series
// present: what the generator costs the machine the benchmark runs on.
func BenchmarkGeneratorScrape(b *testing.B) {
	g, now := fullGenerator()
	for _, c := range scrapeFormats {
		b.Run(c.name, func(b *testing.B) {
			r := httptest.NewRequest(http.MethodGet, "/metrics", nil)
			r.Header.Set("Accept", c.accept)
			w := httptest.NewRecorder()
			for b.Loop() {
				*now = now.Add(10 * time.Second)
				w.Body.Reset()
				g.ServeHTTP(w, r)
			}
			b.ReportMetric(float64(w.Body.Len()), "bytes/scrape")
		})
	}
}

// TestGeneratorShards scrapes three shards of five flags: each flag's
// series are on one shard only, together they are every flag, and a
// shard's scrape adds its own flags' traffic since that shard was last
// scraped, whatever the others were.
func TestGeneratorShards(t *testing.T) {
	keys := []string{"e", "d", "c", "b", "a"}
	g := NewGenerator(keys, GeneratorOptions{RPS: 400, Seed: 3})
	now := fakeClock(g)
	ctx := context.Background()
	scrape := func(i int) map[string]float64 {
		srv := httptest.NewServer(g.Shard(i, 3))
		defer srv.Close()
		ms, err := Scrape(ctx, srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]float64{}
		for _, m := range ms[semconv.PromRequests].GetMetric() {
			out[labelsOf(m)[semconv.LabelKey]] += m.GetCounter().GetValue()
		}
		return out
	}
	*now = now.Add(100 * time.Second)
	seen := map[string]int{}
	var shard0 map[string]float64
	for i := range 3 {
		got := scrape(i)
		if i == 0 {
			shard0 = got
		}
		for k := range got {
			seen[k]++
		}
	}
	// In key order a..e, shard 0 of 3 has a and d.
	if len(seen) != len(keys) || seen["a"] != 1 || seen["b"] != 1 || seen["e"] != 1 || len(shard0) != 2 || shard0["a"] == 0 || shard0["d"] == 0 {
		t.Fatalf("flags on the shards %v, shard 0 %v; want each of a to e on one shard, a and d on shard 0", seen, shard0)
	}
	// Shard 0 again, 100 s later: another 40,000 requests a flag
	// (within 5 standard deviations), though shards 1 and 2 were not
	// scraped.
	*now = now.Add(100 * time.Second)
	again := scrape(0)
	for _, k := range []string{"a", "d"} {
		if d := again[k] - shard0[k]; math.Abs(d-40000) > 5*math.Sqrt(40000) {
			t.Errorf("flag %s: %v more requests in 100 s, want about 40,000", k, d)
		}
	}
}

// scrapeBody is one answer of g to a scrape that asks for accept.
func scrapeBody(g *Generator, accept string) (body []byte, contentType string) {
	r := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	r.Header.Set("Accept", accept)
	w := httptest.NewRecorder()
	g.ServeHTTP(w, r)
	return w.Body.Bytes(), w.Header().Get("Content-Type")
}

// protoAccept is what the embedded store asks for: protobuf first.
const protoAccept = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.6,text/plain;version=0.0.4;q=0.3"

// TestGeneratorFormatsAgree: asked for protobuf, the generator answers
// with it, and with the series and values of its text answer; with
// TextOnly it answers in text whatever is asked.
func TestGeneratorFormatsAgree(t *testing.T) {
	for _, latency := range []bool{false, true} {
		g := NewGenerator([]string{"b", "a"}, GeneratorOptions{RPS: 400, ErrorRate: 0.1, Latency: latency, Seed: 5})
		now := fakeClock(g)
		g.SetPercent("a", 30)
		*now = now.Add(10 * time.Second)
		// The clock stands still from here, so every answer has the
		// same counts.
		text, _ := scrapeBody(g, "text/plain")
		pb, ct := scrapeBody(g, protoAccept)
		if got := expfmt.Format(ct).FormatType(); got != expfmt.TypeProtoDelim {
			t.Fatalf("asked for protobuf, got %s", ct)
		}
		if got, want := asText(t, pb, expfmt.Format(ct)), asText(t, text, expfmt.NewFormat(expfmt.TypeTextPlain)); got != want {
			t.Errorf("latency %v: the protobuf answer reads\n%s\nthe text answer\n%s", latency, got, want)
		}
		if !strings.Contains(string(text), semconv.LabelErrorType) || strings.Contains(string(text), semconv.PromRequestDuration) != latency {
			t.Errorf("latency %v: the text answer lacks failed requests or has the histogram when it should not:\n%s", latency, text)
		}
		g.opts.TextOnly = true
		if _, ct := scrapeBody(g, protoAccept); expfmt.Format(ct).FormatType() != expfmt.TypeTextPlain {
			t.Errorf("TextOnly answered %s", ct)
		}
	}
}

// asText decodes an answer in format and writes it in the text format,
// its lines sorted, so that two answers compare as strings.
func asText(t *testing.T, body []byte, format expfmt.Format) string {
	t.Helper()
	dec := expfmt.NewDecoder(bytes.NewReader(body), format)
	var out []string
	for {
		var mf dto.MetricFamily
		if err := dec.Decode(&mf); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		mf.Help = nil
		var b strings.Builder
		if _, err := expfmt.MetricFamilyToText(&b, &mf); err != nil {
			t.Fatal(err)
		}
		out = append(out, strings.Split(strings.TrimSpace(b.String()), "\n")...)
	}
	// The text decoder returns families in no set order.
	slices.Sort(out)
	return strings.Join(out, "\n")
}

// BenchmarkParseScrape is Prometheus's parse of one scrape of 1,000
// flags with the request duration histogram, classic histograms
// converted to native ones as the embedded store does, in each format the
// generator serves.
func BenchmarkParseScrape(b *testing.B) {
	g, now := fullGenerator()
	*now = now.Add(10 * time.Second)
	for _, c := range scrapeFormats {
		body, ct := scrapeBody(g, c.accept)
		b.Run(c.name, func(b *testing.B) {
			st := labels.NewSymbolTable()
			var ls labels.Labels
			for b.Loop() {
				p, err := textparse.New(body, ct, st, textparse.ParserOptions{ConvertClassicHistogramsToNHCB: true})
				if err != nil {
					b.Fatal(err)
				}
				histograms := 0
				for {
					e, err := p.Next()
					if errors.Is(err, io.EOF) {
						break
					} else if err != nil {
						b.Fatal(err)
					}
					switch e {
					case textparse.EntrySeries:
						p.Labels(&ls)
					case textparse.EntryHistogram:
						p.Labels(&ls)
						histograms++
					}
				}
				if histograms != 1000*2*flag.UnitBuckets {
					b.Fatalf("%d histograms, want one a cohort", histograms)
				}
			}
			b.ReportMetric(float64(len(body)), "bytes/scrape")
		})
	}
}
