package cohort

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/vigil-dev/vigil/analysis/judge"
	"github.com/vigil-dev/vigil/sdk/semconv"
)

const (
	labelLE = "le"
	// labelFlag tags each flag's part of a custom metric's query, whose
	// result need not carry feature_flag_key.
	labelFlag = "vigil_flag"
)

// Names under which Reading.Err reports what could not be read.
const (
	MetricRequests = "requests"
	MetricErrors   = "errors"
	MetricLatency  = "latency"
)

// FlagQuery says what to read for one flag under analysis.
type FlagQuery struct {
	// Flag is the flag's key.
	Flag string
	// Treatment and Control are the variants compared.
	Treatment, Control string
	// Since is when the rollout began: counts cover (Since, now].
	Since time.Time
	// Custom are the flag's custom metrics, read into judge.CohortCounts.Custom
	// under their names.
	Custom []*QueryTemplate
}

// Bucket is one bucket of a cumulative latency histogram.
type Bucket struct {
	// UpperBound is the bucket's le in seconds; +Inf for the last.
	UpperBound float64
	// Count is the requests no slower than UpperBound.
	Count float64
}

// Reading is what one Read found for one flag.
type Reading struct {
	// Counts are the cohorts' counts since FlagQuery.Since. A count that
	// could not be read is NaN (Requests, Errors) or absent (Slower,
	// Custom entries), which the judge treats as unreadable: never a pass.
	Counts judge.FlagCounts
	// TreatmentBuckets and ControlBuckets are the cohorts' latency
	// histograms since Since, cumulative and sorted by UpperBound (the last
	// is +Inf); nil when there is none. They are for display (the demo's
	// live view interpolates quantiles from them); the judge never reads
	// them: it tests counts of requests slower than an edge
	// (judge.CohortCounts.Slower), chosen from control's counts, because an
	// interpolated quantile is not a count a sequential test can use.
	TreatmentBuckets, ControlBuckets []Bucket
	// Err says why some counts could not be read; nil when all were.
	// errors.Is(Err, ErrNoData) when a series was missing or not finite;
	// errors.As(Err, **QueryError) when a query failed.
	Err error
}

// Reader reads cohort counts for all flags under analysis with one query
// per metric, whatever the number of flags.
//
// Each query also groups by the unit bucket (semconv.LabelUnitBucket) that
// the SDKs set on tracked flags' series, and the totals are summed from the
// same result, so a cohort's judge.CohortCounts.UnitBuckets add up to its
// totals exactly. A cohort is split only when every series that counted
// toward its requests, errors and latency carries a valid bucket; a series
// without one (an SDK that does not set it) still counts in the totals, and
// UnitBuckets is then nil for that cohort. A custom metric is split too
// where its query keeps the label on every sample of the cohort.
//
// Counts come from increase() over each flag's window since its rollout
// began. increase() copes with what raw counter arithmetic does not: counter
// resets when a pod restarts, and series that vanish with their pod or
// appear with a new one. Its price is extrapolation: Prometheus stretches
// each series' increase from its first and last samples in the window to the
// window's ends, so a count is fractional and may run up to about one scrape
// interval's traffic ahead of or behind the truth, differently at every read.
// Over one window both cohorts are stretched alike, but the judge differences
// successive reads, and a sparse series (treatment's errors) can read lower
// than at the last look; the judge keeps each count's highest reading (see
// judge.Judge) rather than re-base on the lower value, which biased the
// ratio upward. Counts are not rounded here: the judge rounds the cumulative
// values (never the per-tick differences), so rounding errors do not add up.
// A scrape missing at query time (scrape interval, remote-write lag) is
// covered by the same extrapolation and caught up at the next read, since
// every read covers the whole window from Since. VictoriaMetrics's
// increase() does not extrapolate; the counts are then exact at sample
// times.
type Reader struct {
	provider Provider
}

// NewReader returns a Reader that queries p.
func NewReader(p Provider) *Reader { return &Reader{provider: p} }

// Ping asks the provider a trivial query, for readiness checks: an error
// says the metric source cannot answer.
func (r *Reader) Ping(ctx context.Context) error {
	if _, err := r.provider.Query(ctx, "vector(1)", time.Now()); err != nil {
		return fmt.Errorf("metric source: %w", err)
	}
	return nil
}

// Read returns, for every flag in flags, its counts over (Since, now]. The
// map has an entry for every flag, even when nothing could be read; the
// error is non-nil when a built-in query failed as a whole (each Reading.Err
// then says so too) or when flags is invalid (the map is then nil and
// nothing is queried).
func (r *Reader) Read(ctx context.Context, now time.Time, flags []FlagQuery) (map[string]Reading, error) {
	if err := validateFlagQueries(now, flags); err != nil {
		return nil, err
	}
	out := make(map[string]Reading, len(flags))
	errs := make(map[string][]error, len(flags))
	for _, f := range flags {
		out[f.Flag] = Reading{Counts: judge.FlagCounts{
			Flag:      f.Flag,
			Treatment: judge.CohortCounts{Requests: math.NaN(), Errors: math.NaN()},
			Control:   judge.CohortCounts{Requests: math.NaN(), Errors: math.NaN()},
		}}
	}
	var whole []error
	fail := func(metric, query string, err error) {
		qe := &QueryError{Metric: metric, Query: query, Err: err}
		whole = append(whole, qe)
		for _, f := range flags {
			errs[f.Flag] = append(errs[f.Flag], qe)
		}
	}

	reqs, errCounts, hists := counts{}, counts{}, histograms{}
	q := requestsQuery(now, flags)
	if v, err := r.provider.Query(ctx, q, now); err != nil {
		fail(MetricRequests, q, err)
		reqs = nil
	} else {
		for _, s := range v {
			reqs.add(cohortOf(s.Metric), s.Metric, float64(s.Value))
		}
	}
	q = errorsQuery(now, flags)
	if v, err := r.provider.Query(ctx, q, now); err != nil {
		fail(MetricErrors, q, err)
		errCounts = nil
	} else {
		for _, s := range v {
			errCounts.add(cohortOf(s.Metric), s.Metric, float64(s.Value))
		}
	}
	q = latencyQuery(now, flags)
	if v, err := r.provider.Query(ctx, q, now); err != nil {
		fail(MetricLatency, q, err)
		hists = nil
	} else {
		for _, s := range v {
			hists.add(cohortOf(s.Metric), s.Metric, float64(s.Value))
		}
	}
	for _, f := range flags {
		rd := out[f.Flag]
		rd.Counts.Treatment, rd.TreatmentBuckets = cohortCounts(f, f.Treatment, reqs, errCounts, hists, errs)
		rd.Counts.Control, rd.ControlBuckets = cohortCounts(f, f.Control, reqs, errCounts, hists, errs)
		out[f.Flag] = rd
	}

	r.readCustom(ctx, now, flags, out, errs)

	for _, f := range flags {
		if len(errs[f.Flag]) > 0 {
			rd := out[f.Flag]
			rd.Err = errors.Join(errs[f.Flag]...)
			out[f.Flag] = rd
		}
	}
	return out, errors.Join(whole...)
}

func validateFlagQueries(now time.Time, flags []FlagQuery) error {
	seen := map[string]bool{}
	for i, f := range flags {
		switch {
		case f.Flag == "":
			return fmt.Errorf("flag query %d: empty flag key", i)
		case seen[f.Flag]:
			return fmt.Errorf("flag query %d: flag %s listed twice", i, f.Flag)
		case f.Treatment == "" || f.Control == "":
			return fmt.Errorf("flag %s: treatment and control variants must be named", f.Flag)
		case f.Treatment == f.Control:
			return fmt.Errorf("flag %s: treatment and control are both %q", f.Flag, f.Treatment)
		case !f.Since.Before(now.Add(-time.Millisecond)):
			return fmt.Errorf("flag %s: rollout start %s is not before the read time %s", f.Flag, f.Since.Format(time.RFC3339), now.Format(time.RFC3339))
		}
		names := map[string]bool{}
		for _, t := range f.Custom {
			if t == nil {
				return fmt.Errorf("flag %s: nil custom metric", f.Flag)
			}
			if names[t.Name] {
				return fmt.Errorf("flag %s: custom metric %q listed twice", f.Flag, t.Name)
			}
			names[t.Name] = true
		}
		seen[f.Flag] = true
	}
	return nil
}

// window is the range of a flag's read, in milliseconds as PromQL accepts.
func window(now time.Time, f FlagQuery) string {
	return model.Duration(now.Sub(f.Since).Truncate(time.Millisecond)).String()
}

// flagGroups groups flags by window, so that flags whose rollouts began
// together share one selector.
func flagGroups(now time.Time, flags []FlagQuery) (windows []string, groups [][]FlagQuery) {
	idx := map[string]int{}
	for _, f := range flags {
		w := window(now, f)
		i, ok := idx[w]
		if !ok {
			i = len(windows)
			idx[w] = i
			windows = append(windows, w)
			groups = append(groups, nil)
		}
		groups[i] = append(groups[i], f)
	}
	return windows, groups
}

// alternation is a quoted PromQL regular expression matching exactly the
// given values.
func alternation(values []string) string {
	quoted := make([]string, len(values))
	for i, v := range values {
		quoted[i] = regexp.QuoteMeta(v)
	}
	slices.Sort(quoted)
	return strconv.Quote(strings.Join(slices.Compact(quoted), "|"))
}

// cohortQuery sums increase(metric{selector}[window]) by flag, variant, unit
// bucket and the extra labels, over every flag's own window, in one query.
// Series without the bucket label (SDKs that do not set it) sum into one
// group without it.
func cohortQuery(now time.Time, flags []FlagQuery, metric, extraSelector string, extraBy ...string) string {
	by := strings.Join(append([]string{semconv.LabelKey, semconv.LabelVariant, semconv.LabelUnitBucket}, extraBy...), ", ")
	windows, groups := flagGroups(now, flags)
	parts := make([]string, len(groups))
	for i, g := range groups {
		var keys, variants []string
		for _, f := range g {
			keys = append(keys, f.Flag)
			variants = append(variants, f.Treatment, f.Control)
		}
		parts[i] = fmt.Sprintf(`sum by (%s) (increase(%s{%s=%q, %s=~%s, %s=~%s%s}[%s]))`,
			by, metric, semconv.LabelReason, semconv.ReasonSplit, semconv.LabelKey, alternation(keys), semconv.LabelVariant, alternation(variants), extraSelector, windows[i])
	}
	return strings.Join(parts, " or ")
}

func requestsQuery(now time.Time, flags []FlagQuery) string {
	return cohortQuery(now, flags, semconv.PromRequests, "")
}

func errorsQuery(now time.Time, flags []FlagQuery) string {
	return cohortQuery(now, flags, semconv.PromRequests, fmt.Sprintf(`, %s!=""`, semconv.LabelErrorType))
}

func latencyQuery(now time.Time, flags []FlagQuery) string {
	return cohortQuery(now, flags, semconv.PromRequestDuration+"_bucket", "", labelLE)
}

// cohortOf returns the cohort a series of the built-in queries belongs to.
func cohortOf(m model.Metric) cohortKey {
	return cohortKey{string(m[semconv.LabelKey]), string(m[semconv.LabelVariant])}
}

// cohortCounts assembles one cohort's counts from the built-in queries'
// tallies; a nil reqs, errCounts or hists is a query that failed, whose
// counts stay unreadable (NaN or nil) without a further error here.
func cohortCounts(f FlagQuery, variant string, reqs, errCounts counts, hists histograms, errs map[string][]error) (judge.CohortCounts, []Bucket) {
	k := cohortKey{f.Flag, variant}
	c := judge.CohortCounts{Requests: math.NaN(), Errors: math.NaN()}
	var req, bad *tally
	if reqs != nil {
		req = reqs[k]
		c.Requests = pick(req, f, variant, MetricRequests, errs)
	}
	if errCounts != nil {
		// No error series means no errors: the SDK creates the series at
		// the first failure.
		bad = errCounts[k]
		if bad == nil {
			bad = &tally{}
		}
		c.Errors = pick(bad, f, variant, MetricErrors, errs)
	}
	var hist histogram
	var buckets []Bucket
	if hists != nil {
		hist = hists[k]
		var err error
		c.Slower, buckets, err = slower(hist.totals())
		if err != nil {
			errs[f.Flag] = append(errs[f.Flag], fmt.Errorf("flag %s variant %q: latency: %w", f.Flag, variant, err))
			hist = nil
		}
	}
	c.UnitBuckets = unitBuckets(req, bad, hist)
	return c, buckets
}

// pick reads one cohort's count; a missing or non-finite one is NaN with an
// ErrNoData recorded against the flag.
func pick(t *tally, f FlagQuery, variant, metric string, errs map[string][]error) float64 {
	if t == nil {
		errs[f.Flag] = append(errs[f.Flag], fmt.Errorf("flag %s variant %q: %s: %w: no series with reason %q since %s",
			f.Flag, variant, metric, ErrNoData, semconv.ReasonSplit, f.Since.UTC().Format(time.RFC3339)))
		return math.NaN()
	}
	if !finite(t.total) {
		errs[f.Flag] = append(errs[f.Flag], fmt.Errorf("flag %s variant %q: %s: %w: value %v", f.Flag, variant, metric, ErrNoData, t.total))
		return math.NaN()
	}
	return t.total
}

// slower turns one cohort's buckets into the requests slower than each
// finite edge (the +Inf bucket minus the edge's) and the sorted histogram.
func slower(h map[float64]float64) (map[float64]float64, []Bucket, error) {
	if len(h) == 0 {
		return nil, nil, fmt.Errorf("%w: no %s_bucket series", ErrNoData, semconv.PromRequestDuration)
	}
	total, ok := h[math.Inf(1)]
	if !ok {
		return nil, nil, fmt.Errorf("%w: no le=\"+Inf\" bucket", ErrNoData)
	}
	buckets := make([]Bucket, 0, len(h))
	for le, n := range h {
		if !finite(n) {
			return nil, nil, fmt.Errorf("%w: bucket le=%v is %v", ErrNoData, le, n)
		}
		buckets = append(buckets, Bucket{UpperBound: le, Count: n})
	}
	slices.SortFunc(buckets, func(a, b Bucket) int { return cmp.Compare(a.UpperBound, b.UpperBound) })
	out := make(map[float64]float64, len(h)-1)
	for _, b := range buckets {
		if !math.IsInf(b.UpperBound, 1) {
			// Buckets are extrapolated separately; never report a
			// negative count for their difference.
			out[b.UpperBound] = max(0, total-b.Count)
		}
	}
	return out, buckets, nil
}
