package cohort

import (
	"math"
	"strconv"

	"github.com/vigil-dev/vigil/analysis/judge"
	"github.com/vigil-dev/vigil/sdk/flag"
)

// tally is one count of one cohort: its total and its split by unit bucket
// (semconv.LabelUnitBucket). The total is the sum of the buckets and of what
// came from series without a bucket label, so totals and buckets agree
// exactly.
type tally struct {
	total   float64
	buckets [flag.UnitBuckets]float64
	// unlabelled is set when a series without a valid bucket label
	// contributed a non-zero count: the split by bucket is then not the
	// whole cohort.
	unlabelled bool
	// labelled is set when a series with a bucket label contributed.
	labelled bool
}

// add counts v from a series in unit bucket b; b is noBucket for a series
// without a valid bucket label.
func (t *tally) add(b int, v float64) {
	t.total += v
	switch {
	case b != noBucket:
		t.buckets[b] += v
		t.labelled = true
	case v != 0:
		t.unlabelled = true
	}
}

// noBucket is the unit bucket of a series without a valid bucket label.
const noBucket = -1

// bucketOf is the unit bucket a series' semconv.LabelUnitBucket value names,
// or noBucket.
func bucketOf(value string) int {
	if b, ok := unitBucket(value); ok {
		return b
	}
	return noBucket
}

// unitBucket reads a series' unit bucket label's value; false when it is
// empty (the label is missing) or not one of "0" to "7" (a series from an
// SDK that does not label it).
func unitBucket(value string) (int, bool) {
	b, err := strconv.Atoi(value)
	if err != nil || b < 0 || b >= flag.UnitBuckets {
		return 0, false
	}
	return b, true
}

type cohortKey struct{ flag, variant string }

// counts are one metric's tallies by cohort.
type counts map[cohortKey]*tally

func (c counts) add(k cohortKey, bucket int, v float64) {
	t := c[k]
	if t == nil {
		t = &tally{}
		c[k] = t
	}
	t.add(bucket, v)
}

// histogram is one cohort's latency buckets, by upper bound.
type histogram map[float64]*tally

// histograms are the cohorts' latency buckets.
type histograms map[cohortKey]histogram

// upperBound reads a histogram series' le label's value. Bounds are compared as numbers:
// Prometheus 3's text parser stores le="1" as "1.0", the OTLP translator
// keeps "1", and one store may hold both. NaN when there is none.
func upperBound(value string) float64 {
	le, err := strconv.ParseFloat(value, 64)
	if err != nil {
		return math.NaN()
	}
	return le
}

// add counts v from a bucket series of bound le in unit bucket bucket; a
// series without a readable le is ignored.
func (h histograms) add(k cohortKey, le float64, bucket int, v float64) {
	if math.IsNaN(le) {
		return
	}
	if h[k] == nil {
		h[k] = histogram{}
	}
	t := h[k][le]
	if t == nil {
		t = &tally{}
		h[k][le] = t
	}
	t.add(bucket, v)
}

// totals returns the histogram's counts over the whole cohort.
func (h histogram) totals() map[float64]float64 {
	if len(h) == 0 {
		return nil
	}
	out := make(map[float64]float64, len(h))
	for le, t := range h {
		out[le] = t.total
	}
	return out
}

// bucket returns the histogram's counts in one unit bucket.
func (h histogram) bucket(b int) map[float64]float64 {
	if len(h) == 0 {
		return nil
	}
	out := make(map[float64]float64, len(h))
	for le, t := range h {
		out[le] = t.buckets[b]
	}
	return out
}

// splitByUnit says whether a cohort's counts can be split by unit bucket:
// some series carried the label, and none that counted lacked it. A cohort
// whose services mix SDKs that label the bucket with ones that do not (a
// rolling upgrade) gets no split until the old series stop counting, since a
// split that misses part of the cohort would not add up to its totals.
func splitByUnit(ts ...*tally) bool {
	labelled := false
	for _, t := range ts {
		if t == nil {
			continue
		}
		if t.unlabelled {
			return false
		}
		labelled = labelled || t.labelled
	}
	return labelled
}

// unitBuckets returns the cohort's counts split by unit bucket from the
// built-in counts read (nil tallies and histogram for queries that failed),
// or nil when they cannot be split (see splitByUnit).
func unitBuckets(req, errs *tally, h histogram) []judge.CohortCounts {
	ts := []*tally{req, errs}
	for _, t := range h {
		ts = append(ts, t)
	}
	if !splitByUnit(ts...) {
		return nil
	}
	out := make([]judge.CohortCounts, flag.UnitBuckets)
	for b := range out {
		c := judge.CohortCounts{Requests: math.NaN(), Errors: math.NaN()}
		if req != nil {
			c.Requests = req.buckets[b]
		}
		if errs != nil {
			c.Errors = errs.buckets[b]
		}
		if len(h) > 0 {
			// A bucket with no traffic has zero counts at every bound,
			// which slower reads as nothing slower.
			c.Slower, _, _ = slower(h.bucket(b))
		}
		out[b] = c
	}
	return out
}
