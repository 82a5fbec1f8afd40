package metricstore

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
)

// TestScrapedHistogramReadsAsClassic: a scraped classic histogram is
// stored as one native histogram with custom buckets, and PromQL over its
// classic series (_bucket with le, _count, _sum) reads it as if those were
// stored. The store asks for the protobuf format first; a target that
// serves only text is read the same.
func TestScrapedHistogramReadsAsClassic(t *testing.T) {
	for _, c := range []struct {
		name string
		// textOnly drops the store's Accept header, as a target that
		// knows only the text format ignores it.
		textOnly bool
		want     expfmt.FormatType
	}{
		{name: "protobuf", want: expfmt.TypeProtoDelim},
		{name: "text only", textOnly: true, want: expfmt.TypeTextPlain},
	} {
		t.Run(c.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "req_seconds", Help: "Requests.", Buckets: []float64{0.1, 0.5, 1}}, []string{"variant"})
			reg.MustRegister(h)
			for _, v := range []float64{0.05, 0.3, 0.3, 2} {
				h.WithLabelValues("on").Observe(v)
			}
			handler := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
			var mu sync.Mutex
			var served []string
			exp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if c.textOnly {
					r.Header.Del("Accept")
				}
				handler.ServeHTTP(w, r)
				mu.Lock()
				served = append(served, w.Header().Get("Content-Type"))
				mu.Unlock()
			}))
			t.Cleanup(exp.Close)
			s := openStore(t, Options{ScrapeTargets: []string{exp.URL}, ScrapeInterval: 200 * time.Millisecond})
			waitScraped(t, s, time.Time{})
			mu.Lock()
			if got := expfmt.Format(served[0]).FormatType(); got != c.want {
				t.Errorf("the target served %s, want %s", served[0], expfmt.NewFormat(c.want))
			}
			mu.Unlock()
			readsAsClassic(t, s)
		})
	}
}

// readsAsClassic checks what s reads of the histogram
// TestScrapedHistogramReadsAsClassic serves.
func readsAsClassic(t *testing.T, s *Store) {
	t.Helper()
	ctx := context.Background()
	now := time.Now()

	if got := storedTypes(t, s, "req_seconds_bucket"); len(got) != 0 {
		t.Errorf("req_seconds_bucket is stored (%v); want the histogram stored as one native histogram", got)
	}
	if got := storedTypes(t, s, "req_seconds"); !slices.Equal(got, []string{"histogram"}) {
		t.Errorf("req_seconds is stored as %v, want native histogram samples", got)
	}

	query := func(q string) string {
		t.Helper()
		v, err := s.Query(ctx, q, now)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, smp := range v {
			out = append(out, fmt.Sprintf("%s %s", smp.Metric[model.BucketLabel], smp.Value))
		}
		slices.Sort(out)
		return strings.Join(out, ", ")
	}
	for q, want := range map[string]string{
		`req_seconds_bucket{variant="on"}`:  "+Inf 4, 0.1 1, 0.5 3, 1.0 3",
		`req_seconds_bucket{le=~"0.5|1.0"}`: "0.5 3, 1.0 3",
		`req_seconds_count`:                 " 4",
		`req_seconds_sum`:                   " 2.65",
		`round(histogram_quantile(0.5, sum by (le) (req_seconds_bucket)), 0.001)`: " 0.3",
		`req_seconds_bucket{variant="off"}`:                                       "",
	} {
		if got := query(q); got != want {
			t.Errorf("%s = %q, want %q", q, got, want)
		}
	}
	var got []string
	err := s.QueryMatrix(ctx, `req_seconds_bucket{le="+Inf"}[1m]`, now, func(ls labels.Labels, samples []model.SamplePair) {
		got = append(got, fmt.Sprintf("%s %v", ls.Get(model.BucketLabel), samples[len(samples)-1].Value))
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []string{"+Inf 4"}) {
		t.Errorf(`QueryMatrix(req_seconds_bucket{le="+Inf"}[1m]) = %v, want one series ending at 4`, got)
	}

	// What Grafana's metric and label browsers ask.
	api := apiClient(t, s)
	names, _, _, err := api.LabelValues(ctx, "__name__", nil, time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"req_seconds", "req_seconds_bucket", "req_seconds_count", "req_seconds_sum"}; !containsAll(toStrings(names), want) {
		t.Errorf("metric names %v, want %v among them", names, want)
	}
	names, _, _, err = api.LabelValues(ctx, "__name__", []string{`{__name__=~".+_count"}`}, time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(toStrings(names), "req_seconds_count") || slices.Contains(toStrings(names), "req_seconds_bucket") {
		t.Errorf(`metric names matching ".+_count": %v, want req_seconds_count and not req_seconds_bucket`, names)
	}
	les, _, _, err := api.LabelValues(ctx, "le", []string{"req_seconds_bucket"}, time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if got := toStrings(les); !slices.Equal(got, []string{"+Inf", "0.1", "0.5", "1.0"}) {
		t.Errorf("le of req_seconds_bucket = %v", got)
	}
	labelNames, _, _, err := api.LabelNames(ctx, []string{"req_seconds_bucket"}, time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if !containsAll(toStrings(labelNames), []string{"__name__", "le", "variant"}) {
		t.Errorf("label names of req_seconds_bucket = %v, want le and variant among them", labelNames)
	}
	series, _, _, err := api.Series(ctx, []string{`req_seconds_bucket{le="+Inf"}`, "req_seconds_count"}, time.Now().Add(-time.Minute), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(series) != 2 {
		t.Errorf("series of req_seconds_bucket{le=\"+Inf\"} and req_seconds_count = %v, want 2", series)
	}
}

func containsAll(have, want []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

// storedTypes lists the kinds of sample (float, histogram) the TSDB itself
// holds under a series name, derived series left out.
func storedTypes(t *testing.T, s *Store, name string) []string {
	t.Helper()
	q, err := s.db.Querier(0, time.Now().UnixMilli())
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	var out []string
	set := q.Select(context.Background(), true, nil, labels.MustNewMatcher(labels.MatchEqual, labels.MetricName, name))
	for set.Next() {
		it := set.At().Iterator(nil)
		for typ := it.Next(); typ != chunkenc.ValNone; typ = it.Next() {
			out = append(out, typ.String())
		}
	}
	if err := set.Err(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// TestClassicSeriesFromNativeHistograms: the classic series derived from
// native histograms with custom buckets carry every sample in the range,
// merged with classic series stored under the same labels (a sample stored
// both ways once), stale markers included; exponential native histograms
// are not derived; and the direct read gives what the engine gives.
func TestClassicSeriesFromNativeHistograms(t *testing.T) {
	s := openStore(t, Options{})
	base := time.UnixMilli(1_800_000_000_000)
	at := func(sec int) int64 { return base.Add(time.Duration(sec) * time.Second).UnixMilli() }
	app := s.Appender(context.Background())
	pod := labels.FromStrings(labels.MetricName, "d", "pod", "a")
	classic := func(name, le string, sec int, v float64) {
		t.Helper()
		b := labels.NewBuilder(pod).Set(labels.MetricName, name)
		if le != "" {
			b.Set(labels.BucketLabel, le)
		}
		if _, err := app.Append(0, b.Labels(), at(sec), v); err != nil {
			t.Fatal(err)
		}
	}
	// Before the store converted: 1 and 2 requests of at most 1 s, 2 and
	// 3 in all.
	for i, sec := range []int{0, 15} {
		classic("d_bucket", "1.0", sec, float64(1+i))
		classic("d_bucket", "+Inf", sec, float64(2+i))
		classic("d_count", "", sec, float64(2+i))
		classic("d_sum", "", sec, 0.5+float64(i))
	}
	nhcb := func(sec int, le1, inf, sum float64) {
		t.Helper()
		h := &histogram.Histogram{Schema: histogram.CustomBucketsSchema, Count: uint64(inf), Sum: sum, CustomValues: []float64{1},
			PositiveSpans: []histogram.Span{{Offset: 0, Length: 2}}, PositiveBuckets: []int64{int64(le1), int64(inf - 2*le1)}}
		if _, err := app.AppendHistogram(0, pod, at(sec), h, nil); err != nil {
			t.Fatal(err)
		}
	}
	// The sample at 15 s is stored both ways; at 45 s the target has gone.
	nhcb(15, 2, 3, 1.5)
	nhcb(30, 4, 6, 3)
	stale := &histogram.Histogram{Schema: histogram.CustomBucketsSchema, Sum: math.Float64frombits(value.StaleNaN), CustomValues: []float64{1}}
	if _, err := app.AppendHistogram(0, pod, at(45), stale, nil); err != nil {
		t.Fatal(err)
	}
	// Pod b's histogram gains a bucket at 15 s: the series of le 1 goes
	// on, that of le 2 begins.
	podB := labels.FromStrings(labels.MetricName, "d", "pod", "b")
	for _, h := range []*histogram.Histogram{
		{Schema: histogram.CustomBucketsSchema, Count: 2, Sum: 2, CustomValues: []float64{1},
			PositiveSpans: []histogram.Span{{Offset: 0, Length: 2}}, PositiveBuckets: []int64{1, 0}},
		{Schema: histogram.CustomBucketsSchema, Count: 4, Sum: 4, CustomValues: []float64{1, 2},
			PositiveSpans: []histogram.Span{{Offset: 0, Length: 3}}, PositiveBuckets: []int64{2, -1, 0}},
	} {
		sec := 15 * int(h.Count/2-1)
		if _, err := app.AppendHistogram(0, podB, at(sec), h, nil); err != nil {
			t.Fatal(err)
		}
	}
	exponential := &histogram.Histogram{Count: 3, Sum: 1.5, Schema: 0, PositiveSpans: []histogram.Span{{Offset: 0, Length: 1}}, PositiveBuckets: []int64{3}}
	if _, err := app.AppendHistogram(0, labels.FromStrings(labels.MetricName, "d", "pod", "exp"), at(30), exponential, nil); err != nil {
		t.Fatal(err)
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}

	end := time.UnixMilli(at(45))
	for query, want := range map[string]string{
		`d_bucket{le="1.0", pod="a"}[1m]`:   `{__name__="d_bucket", le="1.0", pod="a"} [1 @[1800000000] 2 @[1800000015] 4 @[1800000030]]`,
		`d_bucket{le="+Inf", pod!="b"}[1m]`: `{__name__="d_bucket", le="+Inf", pod="a"} [2 @[1800000000] 3 @[1800000015] 6 @[1800000030]]`,
		`d_count{pod="a"}[1m]`:              `{__name__="d_count", pod="a"} [2 @[1800000000] 3 @[1800000015] 6 @[1800000030]]`,
		`d_sum{pod=~"a|exp"}[1m]`:           `{__name__="d_sum", pod="a"} [0.5 @[1800000000] 1.5 @[1800000015] 3 @[1800000030]]`,
		`d_bucket{le="0.5"}[1m]`:            ``,
		`d_bucket{pod="b"}[1m]`: `{__name__="d_bucket", le="+Inf", pod="b"} [2 @[1800000000] 4 @[1800000015]]
{__name__="d_bucket", le="1.0", pod="b"} [1 @[1800000000] 2 @[1800000015]]
{__name__="d_bucket", le="2.0", pod="b"} [3 @[1800000015]]`,
		`d_count{pod="exp"}[1m]`: ``,
	} {
		if got := readMatrix(t, s, query, end, true); got != want {
			t.Errorf("%s at 45 s:\n%s\nwant\n%s", query, got, want)
		}
	}
	for _, query := range []string{`d_bucket[1m]`, `d_bucket{le!="1.0"}[30s]`, `d_count[20s]`, `{__name__="d_sum"}[2m]`} {
		for _, sec := range []int{0, 15, 30, 45, 60} {
			ts := time.UnixMilli(at(sec))
			if direct, engine := readMatrix(t, s, query, ts, true), readMatrix(t, s, query, ts, false); direct != engine {
				t.Errorf("%s at %ds:\n%s\nthe engine gives\n%s", query, sec, direct, engine)
			}
		}
	}
	// The stale marker ends the series for instant queries too.
	v, err := s.Query(context.Background(), `d_count{pod="a"}`, time.UnixMilli(at(50)))
	if err != nil {
		t.Fatal(err)
	}
	if len(v) != 0 {
		t.Errorf("d_count after the stale marker = %v, want nothing", v)
	}
}

// TestHistogramName: only a name matcher that names a classic histogram
// series exactly derives them.
func TestHistogramName(t *testing.T) {
	for _, tc := range []struct {
		matcher      *labels.Matcher
		base, suffix string
	}{
		{labels.MustNewMatcher(labels.MatchEqual, labels.MetricName, "d_bucket"), "d", "_bucket"},
		{labels.MustNewMatcher(labels.MatchEqual, labels.MetricName, "d_count"), "d", "_count"},
		{labels.MustNewMatcher(labels.MatchEqual, labels.MetricName, "a_b_sum"), "a_b", "_sum"},
		{labels.MustNewMatcher(labels.MatchEqual, labels.MetricName, "_sum"), "", ""},
		{labels.MustNewMatcher(labels.MatchEqual, labels.MetricName, "d_total"), "", ""},
		{labels.MustNewMatcher(labels.MatchRegexp, labels.MetricName, "d_bucket"), "", ""},
		{labels.MustNewMatcher(labels.MatchEqual, "job", "d_bucket"), "", ""},
	} {
		if base, suffix := histogramName([]*labels.Matcher{tc.matcher}); base != tc.base || suffix != tc.suffix {
			t.Errorf("histogramName(%s) = %q, %q, want %q, %q", tc.matcher, base, suffix, tc.base, tc.suffix)
		}
	}
}

// FuzzDerivedMatchesStored: a histogram stored as native histograms with
// custom buckets reads, through PromQL and the direct range read, as the
// same histogram stored as classic series does. The seed draws the bucket
// layout (which may change between samples), the counts and the sum, and
// whether the series ends with a stale marker.
func FuzzDerivedMatchesStored(f *testing.F) {
	for seed := range uint64(8) {
		f.Add(seed)
	}
	base := time.UnixMilli(1_800_000_000_000)
	at := func(sec int) int64 { return base.Add(time.Duration(sec) * time.Second).UnixMilli() }
	f.Fuzz(func(t *testing.T, seed uint64) {
		rng := rand.New(rand.NewPCG(seed, seed>>32))
		classic, native := openStore(t, Options{}), openStore(t, Options{})
		if seed%2 == 1 {
			// Keep nothing from the first decoding: each histogram is
			// decoded again when its series are iterated.
			native.read = classicQueryable{Queryable: native.db}
		}
		capp, napp := classic.Appender(context.Background()), native.Appender(context.Background())
		ls := labels.FromStrings(labels.MetricName, "d", "pod", "a")
		var (
			bounds []float64
			counts []uint64
			sum    float64
		)
		samples := 1 + rng.IntN(5)
		for i := range samples {
			if i == 0 || rng.IntN(4) == 0 {
				// A new layout: counts restart, as after a deploy, and a
				// scrape marks the bounds that are gone stale.
				gone := slices.Clone(bounds)
				bounds = bounds[:0]
				b := 0.0
				for range 1 + rng.IntN(5) {
					b += float64(1+rng.IntN(4)) / 4
					bounds = append(bounds, b)
				}
				counts, sum = make([]uint64, len(bounds)+1), 0
				for _, b := range gone {
					if slices.Contains(bounds, b) {
						continue
					}
					le := labels.NewBuilder(ls).Set(labels.MetricName, "d_bucket").Set(labels.BucketLabel, labels.FormatOpenMetricsFloat(b)).Labels()
					if _, err := capp.Append(0, le, at(15*i), math.Float64frombits(value.StaleNaN)); err != nil {
						t.Fatal(err)
					}
				}
			}
			for j := range counts {
				counts[j] += uint64(rng.IntN(5))
			}
			sum += float64(rng.IntN(100)) / 8
			h := &histogram.Histogram{Schema: histogram.CustomBucketsSchema, Sum: sum, CustomValues: slices.Clone(bounds),
				PositiveSpans: []histogram.Span{{Offset: 0, Length: uint32(len(counts))}}}
			prev := int64(0)
			for _, c := range counts {
				h.Count += c
				h.PositiveBuckets = append(h.PositiveBuckets, int64(c)-prev)
				prev = int64(c)
			}
			if _, err := napp.AppendHistogram(0, ls, at(15*i), h, nil); err != nil {
				t.Fatal(err)
			}
			err := histogram.ConvertNHCBToClassic(h, ls, labels.NewBuilder(ls), func(cls labels.Labels, v float64) error {
				_, err := capp.Append(0, cls, at(15*i), v)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		if rng.IntN(2) == 0 {
			stale := math.Float64frombits(value.StaleNaN)
			if _, err := napp.AppendHistogram(0, ls, at(15*samples), &histogram.Histogram{Sum: stale}, nil); err != nil {
				t.Fatal(err)
			}
			// The target has gone: each classic series is marked stale.
			err := histogram.ConvertNHCBToClassic(&histogram.Histogram{Schema: histogram.CustomBucketsSchema, CustomValues: bounds}, ls, labels.NewBuilder(ls),
				func(cls labels.Labels, _ float64) error {
					_, err := capp.Append(0, cls, at(15*samples), stale)
					return err
				})
			if err != nil {
				t.Fatal(err)
			}
		}
		for _, app := range []storage.Appender{capp, napp} {
			if err := app.Commit(); err != nil {
				t.Fatal(err)
			}
		}
		query := func(s *Store, q string, ts time.Time) string {
			v, err := s.Query(context.Background(), q, ts)
			if err != nil {
				t.Fatalf("%s: %v", q, err)
			}
			slices.SortFunc(v, func(a, b *model.Sample) int { return strings.Compare(a.Metric.String(), b.Metric.String()) })
			return fmt.Sprint(v)
		}
		for sec := 0; sec <= 15*samples+15; sec += 5 {
			ts := time.UnixMilli(at(sec))
			for _, q := range []string{`d_bucket[1m]`, `d_bucket{le="+Inf"}[30s]`, `d_bucket{le=~"0.5|1.0|1.25"}[1h]`, `d_count[20s]`, `d_sum{pod="a"}[1m]`} {
				if got, want := readMatrix(t, native, q, ts, true), readMatrix(t, classic, q, ts, true); got != want {
					t.Errorf("%s at %ds:\n%s\nstored as classic series:\n%s", q, sec, got, want)
				}
			}
			for _, q := range []string{`d_bucket`, `d_count + d_sum`, `histogram_quantile(0.9, d_bucket)`, `sum by (le) (rate(d_bucket[1m]))`} {
				if got, want := query(native, q, ts), query(classic, q, ts); got != want {
					t.Errorf("%s at %ds: %s; stored as classic series: %s", q, sec, got, want)
				}
			}
		}
	})
}

// TestDerivationKeepsAtMostMaxKept: what the decoding that finds a
// selection's series keeps is bounded, so that a selection of many
// histograms over a long range holds one histogram's samples at a time;
// the rest are decoded again when iterated, and read the same.
func TestDerivationKeepsAtMostMaxKept(t *testing.T) {
	s := openStore(t, Options{})
	base := time.UnixMilli(1_800_000_000_000)
	app := s.Appender(context.Background())
	for pod := range 10 {
		ls := labels.FromStrings(labels.MetricName, "d", "pod", fmt.Sprint(pod))
		for i := range 10 {
			h := &histogram.Histogram{Schema: histogram.CustomBucketsSchema, Count: uint64(2 * i), Sum: float64(i), CustomValues: []float64{1},
				PositiveSpans: []histogram.Span{{Offset: 0, Length: 2}}, PositiveBuckets: []int64{int64(i), 0}}
			if _, err := app.AppendHistogram(0, ls, base.Add(time.Duration(i)*15*time.Second).UnixMilli(), h, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	read := func(maxKept int) (kept int, out []string) {
		t.Helper()
		q, err := classicQueryable{Queryable: s.db, maxKept: maxKept}.Querier(base.UnixMilli(), base.Add(time.Hour).UnixMilli())
		if err != nil {
			t.Fatal(err)
		}
		defer q.Close()
		set := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchEqual, labels.MetricName, "d_bucket"))
		var series []storage.Series
		for set.Next() {
			series = append(series, set.At())
		}
		if err := set.Err(); err != nil {
			t.Fatal(err)
		}
		seen := map[*histogramSeries]bool{}
		for _, sr := range series {
			if hs := sr.(*derivedSeries).hist; !seen[hs] {
				seen[hs] = true
				for _, d := range hs.decoded {
					kept += len(d.samples)
				}
			}
		}
		for _, sr := range series {
			it := sr.Iterator(nil)
			var vs []float64
			for it.Next() != chunkenc.ValNone {
				_, v := it.At()
				vs = append(vs, v)
			}
			if err := it.Err(); err != nil {
				t.Fatal(err)
			}
			out = append(out, fmt.Sprintf("%s %v", sr.Labels(), vs))
		}
		slices.Sort(out)
		return kept, out
	}
	keptAll, all := read(maxKeptSamples)
	if keptAll != 10*2*10 || len(all) != 20 {
		t.Fatalf("with room for all: kept %d samples of %d series, want 200 of 20", keptAll, len(all))
	}
	kept, bounded := read(45)
	if kept > 45 || kept == 0 {
		t.Errorf("kept %d samples, want some and at most 45", kept)
	}
	if !slices.Equal(bounded, all) {
		t.Errorf("decoded again:\n%s\nkept:\n%s", strings.Join(bounded, "\n"), strings.Join(all, "\n"))
	}
}
