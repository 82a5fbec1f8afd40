package cohort

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/vigil-dev/vigil/sdk/flag"
	"github.com/vigil-dev/vigil/sdk/semconv"
)

// BenchmarkRead reads the cohort counts of 100 flags from the embedded
// store: 100 flags × 2 cohorts × (requests, errors, 6 buckets) series with
// 10 minutes of 15 s samples, the rollouts started at three different
// times. "followed" is a Reader's read at every look after the first: the
// samples since its last read; "catch-up" is its first read of the flags
// (a new rollout's first look, or a new leader's first tick): every sample
// since each rollout began, in as many reads as its budget needs.
func BenchmarkRead(b *testing.B) {
	l := newLoader(b)
	var flags []FlagQuery
	for i := range 100 {
		key := fmt.Sprintf("flag-%03d", i)
		for _, v := range []string{"on", "off"} {
			l.counter(10, cohortLabels(semconv.PromRequests, key, v, "split")...)
			l.counter(1, cohortLabels(semconv.PromRequests, key, v, "split", semconv.LabelErrorType, "500")...)
			for j, le := range []string{"0.05", "0.1", "0.25", "0.5", "1", "+Inf"} {
				l.counter(float64(j+5), cohortLabels(semconv.PromRequestDuration+"_bucket", key, v, "split", labelLE, le)...)
			}
		}
		flags = append(flags, FlagQuery{Flag: key, Treatment: "on", Control: "off", Since: l.end.Add(-time.Duration(5+i%3) * time.Minute)})
	}
	ctx := context.Background()
	// read reads until no flag is deferred, as a new leader's ticks do:
	// one catch-up takes only the flags within its budget.
	read := func(b *testing.B, r *Reader, now time.Time) {
		for range 100 {
			got, err := r.Read(ctx, now, flags)
			if err != nil {
				b.Fatal(err)
			}
			if !slices.ContainsFunc(flags, func(f FlagQuery) bool { return got[f.Flag].Deferred }) {
				if err := got["flag-042"].Err; err != nil {
					b.Fatal(err)
				}
				return
			}
		}
		b.Fatal("flags still deferred after 100 reads")
	}
	b.Run("followed", func(b *testing.B) {
		r := NewReader(l.s)
		read(b, r, l.end.Add(-15*time.Second))
		b.ReportAllocs()
		for b.Loop() {
			read(b, r, l.end)
		}
	})
	b.Run("catch-up", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			read(b, NewReader(l.s), l.end)
		}
	})
}

// BenchmarkReadManyStarts reads 1,000 flags whose rollouts each began at
// their own time (requests and errors, 4,000 series with 10 minutes of
// 15 s samples): the query must not grow with the start times. Each
// iteration is a followed read.
func BenchmarkReadManyStarts(b *testing.B) {
	l := newLoader(b)
	var flags []FlagQuery
	for i := range 1000 {
		key := fmt.Sprintf("flag-%04d", i)
		for _, v := range []string{"on", "off"} {
			l.counter(10, cohortLabels(semconv.PromRequests, key, v, "split")...)
			l.counter(1, cohortLabels(semconv.PromRequests, key, v, "split", semconv.LabelErrorType, "500")...)
		}
		flags = append(flags, FlagQuery{Flag: key, Treatment: "on", Control: "off", Since: l.end.Add(-9*time.Minute + time.Duration(i)*307*time.Millisecond)})
	}
	ctx := context.Background()
	// The Reader's memory of the 4,000 series, per series.
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	r := NewReader(l.s)
	if _, err := r.Read(ctx, l.end.Add(-15*time.Second), flags); err != nil {
		b.Fatal(err)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportAllocs()
	for b.Loop() {
		got, err := r.Read(ctx, l.end, flags)
		if err != nil || got["flag-0042"].Counts.Treatment.Requests <= 0 {
			b.Fatal(err, got["flag-0042"])
		}
	}
	// After the loop: b.Loop's timer reset drops metrics reported before.
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/4000, "B-kept/series")
}

// replayProvider answers every range query with the series of its metric,
// one sample each at the read's time growing by a fixed step: the Reader's
// own work (folding samples in, tallying cohorts) without a store's.
type replayProvider struct {
	byMetric map[string][]labels.Labels
}

func (replayProvider) Query(context.Context, string, time.Time) (model.Vector, error) {
	return nil, errors.New("replayProvider answers range queries only")
}

func (p replayProvider) QueryMatrix(_ context.Context, q string, ts time.Time, fn func(labels.Labels, []model.SamplePair)) error {
	metric, _, _ := strings.Cut(q, "{")
	at := model.TimeFromUnixNano(ts.UnixNano())
	for _, ls := range p.byMetric[metric] {
		fn(ls, []model.SamplePair{{Timestamp: at, Value: model.SampleValue(at / 100)}})
	}
	return nil
}

// BenchmarkReadLatency is a followed read of 200 flags whose latency is
// judged, each with the SDKs' whole set of series (2 variants × 8 unit
// buckets × the requests counter with and without an error type and the
// duration histogram's 21 buckets: 368 series), from a provider that hands
// over prebuilt series: what the Reader costs a look beyond decoding.
func BenchmarkReadLatency(b *testing.B) {
	p := replayProvider{byMetric: map[string][]labels.Labels{}}
	var flags []FlagQuery
	start := time.UnixMilli(1_800_000_000_000)
	for i := range 200 {
		key := fmt.Sprintf("flag-%03d", i)
		for _, v := range []string{"on", "off"} {
			for bucket := range flag.UnitBuckets {
				ub := strconv.Itoa(bucket)
				p.byMetric[semconv.PromRequests] = append(p.byMetric[semconv.PromRequests],
					labels.FromStrings(cohortLabels(semconv.PromRequests, key, v, "split", semconv.LabelUnitBucket, ub)...),
					labels.FromStrings(cohortLabels(semconv.PromRequests, key, v, "split", semconv.LabelUnitBucket, ub, semconv.LabelErrorType, "500")...))
				for _, le := range append(slices.Clone(semconv.DurationBuckets), math.Inf(1)) {
					p.byMetric[semconv.PromRequestDuration+"_bucket"] = append(p.byMetric[semconv.PromRequestDuration+"_bucket"],
						labels.FromStrings(cohortLabels(semconv.PromRequestDuration+"_bucket", key, v, "split", semconv.LabelUnitBucket, ub, labelLE, strconv.FormatFloat(le, 'g', -1, 64))...))
				}
			}
		}
		flags = append(flags, FlagQuery{Flag: key, Treatment: "on", Control: "off", Since: start})
	}
	ctx := context.Background()
	r := NewReader(p)
	now := start.Add(10 * time.Second)
	if _, err := r.Read(ctx, now, flags); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		now = now.Add(10 * time.Second)
		got, err := r.Read(ctx, now, flags)
		if err != nil || got["flag-042"].Err != nil || len(got["flag-042"].Counts.Treatment.UnitBuckets) != flag.UnitBuckets {
			b.Fatal(err, got["flag-042"])
		}
	}
}
