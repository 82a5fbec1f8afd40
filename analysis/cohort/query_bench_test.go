package cohort

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"testing"
	"time"

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
