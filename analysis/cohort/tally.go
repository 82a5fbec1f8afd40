package cohort

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/vigil-dev/vigil/analysis/judge"
	"github.com/vigil-dev/vigil/sdk/flag"
	"github.com/vigil-dev/vigil/sdk/semconv"
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
	c[k] = addTo(c[k], bucket, v)
}

// cohortIndex is a flag's cohort: its treatment or its control.
type cohortIndex int

const (
	treatment cohortIndex = iota
	control
)

// flagTally is what a read counted for one flag's two cohorts, by
// cohortIndex, from the built-in queries. A nil tally or histogram is a
// cohort none of whose series the query returned; the failed fields are
// the queries that failed for the flag, whose counts are then unreadable.
type flagTally struct {
	reqs, errs           [2]*tally
	hists                [2]histogram
	reqFailed, latFailed *QueryError
	// latest is the time of the latest requests sample seen; every the
	// least time between two consecutive samples of one requests series.
	latest time.Time
	every  time.Duration
}

// count adds a requests series' count to its cohort's tallies.
func (ft *flagTally) count(s *series) {
	if t := s.seenTS.Time(); t.After(ft.latest) {
		ft.latest = t
	}
	if s.every > 0 && (ft.every == 0 || s.every < ft.every) {
		ft.every = s.every
	}
	ft.reqs[s.cohort] = addTo(ft.reqs[s.cohort], s.bucket, s.value())
	if s.failed {
		ft.errs[s.cohort] = addTo(ft.errs[s.cohort], s.bucket, s.value())
	}
}

// addTo adds v from unit bucket b to t, a new tally when t is nil.
func addTo(t *tally, b int, v float64) *tally {
	if t == nil {
		t = &tally{}
	}
	t.add(b, v)
	return t
}

// histogram is one cohort's latency buckets, by upper bound.
type histogram map[float64]*tally

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

// countBucket adds a histogram series' count to its cohort's histogram; a
// series without a readable le is ignored.
func (ft *flagTally) countBucket(s *series) {
	if math.IsNaN(s.le) {
		return
	}
	h := ft.hists[s.cohort]
	if h == nil {
		h = histogram{}
		ft.hists[s.cohort] = h
	}
	h[s.le] = addTo(h[s.le], s.bucket, s.value())
}

// bound is one bucket of a histogram, its tally by unit bucket.
type bound struct {
	le float64
	t  *tally
}

// sorted returns the histogram's buckets by upper bound, lowest first.
func (h histogram) sorted() []bound {
	out := make([]bound, 0, len(h))
	for le, t := range h {
		out = append(out, bound{le, t})
	}
	slices.SortFunc(out, func(a, b bound) int { return cmp.Compare(a.le, b.le) })
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
func unitBuckets(req, errs *tally, h []bound) []judge.CohortCounts {
	ts := []*tally{req, errs}
	for _, b := range h {
		ts = append(ts, b.t)
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
			c.Slower, _ = slower(h, func(t *tally) float64 { return t.buckets[b] })
		}
		out[b] = c
	}
	return out
}

// slower returns the requests slower than each finite bound of a cohort's
// histogram, sorted (the +Inf bucket's count minus the bound's), reading
// each bucket's count from its tally with count.
func slower(h []bound, count func(*tally) float64) (map[float64]float64, error) {
	if len(h) == 0 {
		return nil, fmt.Errorf("%w: no %s_bucket series", ErrNoData, semconv.PromRequestDuration)
	}
	last := h[len(h)-1]
	if !math.IsInf(last.le, 1) {
		return nil, fmt.Errorf("%w: no le=\"+Inf\" bucket", ErrNoData)
	}
	total := count(last.t)
	out := make(map[float64]float64, len(h)-1)
	for _, b := range h {
		n := count(b.t)
		if !finite(n) {
			return nil, fmt.Errorf("%w: bucket le=%v is %v", ErrNoData, b.le, n)
		}
		if !math.IsInf(b.le, 1) {
			// A pod's buckets come from one scrape, so +Inf holds every
			// other bucket; but a broken exporter or a bucket series
			// that vanished must not give a negative count.
			out[b.le] = max(0, total-n)
		}
	}
	return out, nil
}
