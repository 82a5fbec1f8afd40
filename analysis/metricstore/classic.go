package metricstore

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/util/annotations"
)

// The store scrapes each classic histogram into one native histogram with
// custom buckets (NHCB) rather than a series for each bucket and for _count
// and _sum: 16 series a flag rather than 368 for the SDK's request
// durations, which took the scraping of 1,000 flags from about 10.6 to 7.2
// CPU s/min and the store from 1.1 GB to 0.4 (docs/benchmarks.md). Readers
// still see classic histograms: classicQueryable derives a histogram's
// name_bucket (with le), name_count and name_sum series from the NHCB
// samples of name whenever a selection asks for them, so that PromQL
// written for classic histograms, the dashboards, the alert rules and the
// cohort reads work unchanged.

// classicSuffixes are the names' endings of a classic histogram's series.
var classicSuffixes = []string{"_bucket", "_count", "_sum"}

// classicQueryable is a storage whose selections of classic histogram
// series also return those derived from native histograms with custom
// buckets.
type classicQueryable struct{ storage.Queryable }

// Querier implements storage.Queryable.
func (c classicQueryable) Querier(mint, maxt int64) (storage.Querier, error) {
	q, err := c.Queryable.Querier(mint, maxt)
	if err != nil {
		return nil, err
	}
	return classicQuerier{q}, nil
}

type classicQuerier struct{ storage.Querier }

// Select implements storage.Querier. A selection whose name matcher asks
// for name_bucket, name_count or name_sum merges the stored series of that
// name (from before the conversion, or pushed over OTLP) with those derived
// from name's NHCB samples; a sample stored both ways is returned once.
func (q classicQuerier) Select(ctx context.Context, sortSeries bool, hints *storage.SelectHints, matchers ...*labels.Matcher) storage.SeriesSet {
	base := histogramName(matchers)
	if base == "" {
		return q.Querier.Select(ctx, sortSeries, hints, matchers...)
	}
	derived, err := q.derive(ctx, hints, base, matchers)
	if err != nil {
		return storage.ErrSeriesSet(err)
	}
	if len(derived) == 0 {
		return q.Querier.Select(ctx, sortSeries, hints, matchers...)
	}
	stored := q.Querier.Select(ctx, true, hints, matchers...)
	return storage.NewMergeSeriesSet([]storage.SeriesSet{stored, &seriesList{list: derived}}, 0, storage.ChainedSeriesMerge)
}

// histogramName is the histogram whose series the matchers' name matcher
// selects by its exact name (such as d for d_bucket), or "".
func histogramName(matchers []*labels.Matcher) string {
	for _, m := range matchers {
		if m.Name != labels.MetricName {
			continue
		}
		if m.Type != labels.MatchEqual {
			return ""
		}
		for _, suffix := range classicSuffixes {
			if base, ok := strings.CutSuffix(m.Value, suffix); ok && base != "" {
				return base
			}
		}
		return ""
	}
	return ""
}

// derive returns, sorted by their labels, the classic series of the NHCB
// samples of histogram base that the matchers select.
func (q classicQuerier) derive(ctx context.Context, hints *storage.SelectHints, base string, matchers []*labels.Matcher) ([]storage.Series, error) {
	sel := []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, labels.MetricName, base)}
	for _, m := range matchers {
		if m.Name != labels.MetricName && m.Name != labels.BucketLabel {
			sel = append(sel, m)
		}
	}
	set := q.Querier.Select(ctx, false, hints, sel...)
	var (
		out []storage.Series
		it  chunkenc.Iterator
		h   *histogram.Histogram
		fh  *histogram.FloatHistogram
		buf []float64
		b   labels.Builder
	)
	for set.Next() {
		s := set.At()
		// The series derived from this histogram, by name and le; nil
		// for those the matchers do not select.
		derived := map[[2]string]*derivedSeries{}
		add := func(name, le string, t int64, v float64) {
			key := [2]string{name, le}
			d, ok := derived[key]
			if !ok {
				b.Reset(s.Labels())
				b.Set(labels.MetricName, name)
				if le != "" {
					b.Set(labels.BucketLabel, le)
				}
				if ls := b.Labels(); matchAll(matchers, ls) {
					d = &derivedSeries{lset: ls}
				}
				derived[key] = d
			}
			if d != nil {
				d.samples = append(d.samples, floatSample{t: t, f: v})
			}
		}
		it = s.Iterator(it)
		for typ := it.Next(); typ != chunkenc.ValNone; typ = it.Next() {
			var (
				t      int64
				nhcb   any
				bounds []float64
				custom bool
				stale  bool
			)
			switch typ {
			case chunkenc.ValHistogram:
				t, h = it.AtHistogram(h)
				nhcb, bounds, custom, stale = h, h.CustomValues, h.UsesCustomBuckets(), value.IsStaleNaN(h.Sum)
			case chunkenc.ValFloatHistogram:
				t, fh = it.AtFloatHistogram(fh)
				nhcb, bounds, custom, stale = fh, fh.CustomValues, fh.UsesCustomBuckets(), value.IsStaleNaN(fh.Sum)
			default:
				continue
			}
			if stale {
				// A stale marker is stored without buckets; it ends every
				// series the histogram's earlier samples gave.
				for _, d := range derived {
					if d != nil {
						d.samples = append(d.samples, floatSample{t: t, f: math.Float64frombits(value.StaleNaN)})
					}
				}
				continue
			}
			if !custom {
				continue
			}
			var (
				count, sum float64
				err        error
			)
			buf, count, sum, err = histogram.ClassicBucketCounts(nhcb, buf)
			if err != nil {
				return nil, fmt.Errorf("series %s at %d: %w", s.Labels(), t, err)
			}
			for i, v := range buf {
				bound := math.Inf(1)
				if i < len(bounds) {
					bound = bounds[i]
				}
				add(base+"_bucket", labels.FormatOpenMetricsFloat(bound), t, v)
			}
			add(base+"_count", "", t, count)
			add(base+"_sum", "", t, sum)
		}
		if err := it.Err(); err != nil {
			return nil, fmt.Errorf("series %s: %w", s.Labels(), err)
		}
		for _, d := range derived {
			if d != nil {
				out = append(out, storage.NewListSeries(d.lset, d.samples))
			}
		}
	}
	if err := set.Err(); err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b storage.Series) int { return labels.Compare(a.Labels(), b.Labels()) })
	return out, nil
}

func matchAll(matchers []*labels.Matcher, ls labels.Labels) bool {
	for _, m := range matchers {
		if !m.Matches(ls.Get(m.Name)) {
			return false
		}
	}
	return true
}

type derivedSeries struct {
	lset    labels.Labels
	samples []chunks.Sample
}

// floatSample is one float sample of a derived series.
type floatSample struct {
	t int64
	f float64
}

func (s floatSample) T() int64                    { return s.t }
func (floatSample) ST() int64                     { return 0 }
func (s floatSample) F() float64                  { return s.f }
func (floatSample) H() *histogram.Histogram       { return nil }
func (floatSample) FH() *histogram.FloatHistogram { return nil }
func (floatSample) Type() chunkenc.ValueType      { return chunkenc.ValFloat }
func (s floatSample) Copy() chunks.Sample         { return s }

// seriesList is a storage.SeriesSet of series in memory.
type seriesList struct {
	list []storage.Series
	next int
}

func (l *seriesList) Next() bool {
	l.next++
	return l.next <= len(l.list)
}

func (l *seriesList) At() storage.Series              { return l.list[l.next-1] }
func (*seriesList) Err() error                        { return nil }
func (*seriesList) Warnings() annotations.Annotations { return nil }
