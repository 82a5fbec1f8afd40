package cohort

import (
	"context"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vigil-dev/vigil/analysis/judge"
	"github.com/vigil-dev/vigil/sdk/flag"
	"github.com/vigil-dev/vigil/sdk/semconv"
)

const (
	labelLE = "le"
	// labelFlag tags each flag's part of a custom metric's query, whose
	// result need not carry feature_flag_key.
	labelFlag = "vigil_flag"
)

// Names under which Reading.Err reports the built-in query that could not
// be read: requests (with the errors, read from the same series) and
// latency.
const (
	MetricRequests = "requests"
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
	// SkipLatency leaves the flag out of the latency query: its plan judges
	// no latency. The SDKs' histogram is most of a flag's series (400 of
	// them with the unit buckets), so reading it for nothing is most of a
	// read. The counts then have no Slower and the Reading no buckets.
	SkipLatency bool
	// LatencyEdges are the histogram's bounds (le, in seconds, ascending)
	// to read besides +Inf, as judge.State.LatencyEdges gives them; nil
	// for all. The counts' Slower and the Reading's buckets then hold
	// those bounds only. Leaving a bound out and asking for it again later
	// counts what its series grew by meanwhile, a counter reset in the gap
	// excepted.
	LatencyEdges []float64
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
	// Latest is the time of the latest sample of the flag's requests
	// series the provider has shown, zero before any: a read whose Latest
	// is no later than the last one's found no new scrape.
	Latest time.Time
	// Every is the least time between two consecutive samples of one of
	// the flag's requests series that the reads have shown: how often
	// the provider scrapes (or receives) them. Zero until a series has
	// shown two.
	Every time.Duration
	// Deferred is set when the flag was not read at all: other flags were
	// being caught up from their starts first, and a later read will
	// read it. Its counts are unreadable.
	Deferred bool
	// Err says why some counts could not be read; nil when all were.
	// errors.Is(Err, ErrNoData) when a series was missing or not finite;
	// errors.As(Err, **QueryError) when a query failed.
	Err error
}

// Reader reads cohort counts for all flags under analysis with one query
// per built-in metric (requests with errors, and latency), whatever the
// number of flags, and one per distinct custom query template.
//
// # Exact counts
//
// A count is what the services' counters counted since the rollout began,
// exactly, as of each series' latest sample: whole numbers that never go
// down from one read to the next. The Reader reads the raw samples of every
// split-placed cohort series (a range vector selector with no function, no
// per-flag window and no extrapolation) and keeps, per flag and series, the
// latest sample and a running count:
//
//   - Baseline: a series' count starts from its last sample at or before
//     Since (looked for up to 5 minutes back). A series with none, first
//     scraped after Since (a new pod, or an error series the SDK creates at
//     its first failure), starts from zero, so its first sample counts in
//     full. Events are placed by scrape time: those a sample just after
//     Since holds happened up to one scrape interval earlier.
//   - Counter resets: a sample lower than the one before it is a restarted
//     process counting from zero again, and counts in full. A reset between
//     two samples that the counter outgrew before the next one loses what
//     the old process counted after its last sample, as it would in
//     increase().
//   - Pods that come and go: a vanished series keeps its count; a new one
//     adds to the cohort's. A series that comes back after more than 5
//     minutes without samples is read from where the last read left off,
//     so a reset in its gap counts as above.
//   - Scrape lag: each read starts at the earliest latest sample among the
//     flag's live series (samples within 5 minutes) and skips samples
//     already folded in, so samples committed after the last read are
//     still seen (a series' samples are committed in order). A count is as
//     of the latest sample the provider shows: VictoriaMetrics hides the
//     last 30 s by default.
//   - Non-finite samples: a series whose latest sample is NaN or infinite
//     makes its cohort's count unreadable until a finite one follows.
//
// Cost: a read asks for the samples since the earliest point where its
// flags' last reads left off, so each query costs O(series × samples per
// interval), and its text grows only with the flag keys and variants (the
// selector's alternations), not with their start times. Every series comes
// back with its labels, so a read's answer is larger than an aggregated
// query's when the series far outnumber the cohorts (the latency
// histogram: bounds × unit buckets × error types × pods); the two metrics'
// queries are sent together. A flag that reads some bounds of the
// histogram only (FlagQuery.LatencyEdges) is asked for those and +Inf,
// and a bound it asks for that its memory has not read since the start is
// caught up from the baseline with the rest of its series. A flag the
// Reader has not read yet, or not for 10 minutes, is read in a second,
// catch-up query per built-in metric that reaches back to the earliest
// such flag's start: on the tick of a rollout's first look, and for every
// rollout after the controller starts or takes over the lease. The flags
// read recently are read first, so a slow catch-up does not cost them
// their read. One catch-up takes the flags with the earliest starts
// first, as many as have 3,200 series-hours together (every series of its
// flags times the time back to the earliest start: 100 rollouts an hour
// old with 32 series each, or 110 new ones with the latency histogram's
// 336; a flag not read yet is counted at the mean of those read), at
// least one, so that it stays within what a provider answers in one query
// and in the tick's read budget; the others are Deferred and read as
// ErrNoData (the judge's inconclusive, never a pass) until a later read
// catches them up. A flag not asked about for an hour is forgotten.
//
// Restarts and leader changes: the memory lives in this process. A Reader
// that has not followed a rollout (a new process, or a new leader)
// recomputes its counts from the raw samples since Since, which gives the
// same exact counts as one that followed it all along, as long as the
// provider still holds those samples (its retention). A Reader that led
// before and leads again continues from its memory, reading the samples in
// between.
//
// Unit buckets: the totals are summed from the same series' counts as the
// split by the unit bucket (semconv.LabelUnitBucket) that the SDKs set on
// tracked flags' series, so a cohort's judge.CohortCounts.UnitBuckets add
// up to its totals exactly. A cohort is split only when every series that
// counted toward its requests, errors and latency carries a valid bucket; a
// series without one (an SDK that does not set it) still counts in the
// totals, and UnitBuckets is then nil for that cohort. A custom metric is
// split too where its query keeps the label on every sample of the cohort.
//
// Custom metrics are the user's PromQL over {{window}}, usually increase(),
// which Prometheus extrapolates: they are not exact, and may read lower than
// at the last look.
//
// Read's now should not go back from one call to the next for a flag; a
// read at an earlier time returns the counts as of the latest samples seen.
// Methods are safe for concurrent use; reads take turns.
type Reader struct {
	provider Provider

	mu                sync.Mutex
	requests, latency *source
}

// NewReader returns a Reader that queries p.
func NewReader(p Provider) *Reader {
	return &Reader{
		provider: p,
		// Two variants, each split by unit bucket; requests with and
		// without an error type, latency in each of the histogram's
		// buckets.
		requests: &source{name: MetricRequests, metric: semconv.PromRequests, guess: 2 * flag.UnitBuckets * 2,
			follows: map[string]*follow{}, budget: catchUpBudget},
		latency: &source{name: MetricLatency, metric: semconv.PromRequestDuration + "_bucket", guess: 2 * flag.UnitBuckets * (len(semconv.DurationBuckets) + 1),
			follows: map[string]*follow{}, budget: catchUpBudget, leText: map[float64][]string{}},
	}
}

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
	r.mu.Lock()
	// The two metrics defer the same flags unless a past catch-up failed
	// for one only; a flag deferred by either waits for both.
	reqRecent, reqCatchUp, reqLater := r.requests.plan(now, flags)
	latRecent, latCatchUp, latLater := r.latency.plan(now, withLatency(flags))
	// The flags read recently first: a slow catch-up must not cost them
	// their read.
	r.readTogether(ctx, now, reqRecent, latRecent)
	r.readTogether(ctx, now, reqCatchUp, latCatchUp)
	r.requests.forget(now)
	r.latency.forget(now)
	// Tallied under the lock: the next read changes the memory.
	tallies := make(map[string]*flagTally, len(flags))
	for _, f := range flags {
		tallies[f.Flag] = &flagTally{}
	}
	for _, g := range []*group{reqRecent, reqCatchUp} {
		for _, fw := range g.follows {
			ft := tallies[fw.flag]
			if g.failed != nil {
				ft.reqFailed = g.failed
				continue
			}
			for _, s := range fw.list {
				ft.count(s)
			}
		}
	}
	for _, g := range []*group{latRecent, latCatchUp} {
		for _, fw := range g.follows {
			ft := tallies[fw.flag]
			if g.failed != nil {
				ft.latFailed = g.failed
				continue
			}
			for _, s := range fw.list {
				if fw.reads(s.le) {
					ft.countBucket(s)
				}
			}
		}
	}
	r.mu.Unlock()
	later := map[string]bool{}
	for _, k := range append(reqLater, latLater...) {
		later[k] = true
	}

	var whole []error
	seen := map[*QueryError]bool{}
	for _, f := range flags {
		ft := tallies[f.Flag]
		for _, qe := range []*QueryError{ft.reqFailed, ft.latFailed} {
			if qe == nil {
				continue
			}
			errs[f.Flag] = append(errs[f.Flag], qe)
			if !seen[qe] {
				seen[qe] = true
				whole = append(whole, qe)
			}
		}
		if later[f.Flag] {
			errs[f.Flag] = append(errs[f.Flag], fmt.Errorf("flag %s: %w: other rollouts are being caught up from their start first; read again at the next read", f.Flag, ErrNoData))
			rd := out[f.Flag]
			rd.Deferred = true
			out[f.Flag] = rd
			continue
		}
		rd := out[f.Flag]
		rd.Latest, rd.Every = ft.latest, ft.every
		rd.Counts.Treatment, rd.TreatmentBuckets = ft.cohort(f, treatment, errs)
		rd.Counts.Control, rd.ControlBuckets = ft.cohort(f, control, errs)
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

// Warm catches up the flags the Reader does not follow yet, as a Read would
// at their first look, without reading their counts: a controller calls it
// in the ticks before new rollouts' first looks, so that those looks read
// only the samples since. It reads as many as the catch-up budget allows
// (the others wait for the next call) and no custom metric, and returns the
// flags it now follows with both built-in metrics (the latency one only
// where read): those read whose series it has seen, since one whose
// series have not appeared yet is read as a catch-up at its look anyway.
// The error says which query failed. Flags it follows already cost
// nothing.
func (r *Reader) Warm(ctx context.Context, now time.Time, flags []FlagQuery) ([]string, error) {
	if err := validateFlagQueries(now, flags); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	_, reqCatchUp, _ := r.requests.plan(now, flags)
	_, latCatchUp, _ := r.latency.plan(now, withLatency(flags))
	r.readTogether(ctx, now, reqCatchUp, latCatchUp)
	var errs []error
	for _, g := range []*group{reqCatchUp, latCatchUp} {
		if g.failed != nil {
			errs = append(errs, g.failed)
		}
	}
	var warm []string
	for _, f := range flags {
		if r.requests.follows[f.Flag].followed(now) && (f.SkipLatency || r.latency.follows[f.Flag].followed(now)) {
			warm = append(warm, f.Flag)
		}
	}
	return warm, errors.Join(errs...)
}

// readTogether reads the two metrics' groups at once: each changes only its
// own source's memory.
func (r *Reader) readTogether(ctx context.Context, now time.Time, requests, latency *group) {
	var wg sync.WaitGroup
	for _, g := range []*group{requests, latency} {
		wg.Go(func() { g.read(ctx, r.provider, now) })
	}
	wg.Wait()
}

// withLatency returns the flags whose latency is read.
func withLatency(flags []FlagQuery) []FlagQuery {
	out := make([]FlagQuery, 0, len(flags))
	for _, f := range flags {
		if !f.SkipLatency {
			out = append(out, f)
		}
	}
	return out
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
		for i, e := range f.LatencyEdges {
			if !(e > 0) || math.IsInf(e, 1) || (i > 0 && e <= f.LatencyEdges[i-1]) {
				return fmt.Errorf("flag %s: latency edges %v: want positive, finite bounds in ascending order", f.Flag, f.LatencyEdges)
			}
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

// cohort assembles one cohort's counts. Counts whose query failed stay
// unreadable (NaN or nil) without a further error here: the QueryError says
// why.
func (ft *flagTally) cohort(f FlagQuery, c cohortIndex, errs map[string][]error) (judge.CohortCounts, []Bucket) {
	variant := f.Treatment
	if c == control {
		variant = f.Control
	}
	counts := judge.CohortCounts{Requests: math.NaN(), Errors: math.NaN()}
	var req, bad *tally
	if ft.reqFailed == nil {
		req = ft.reqs[c]
		counts.Requests = pick(req, f, variant, MetricRequests, errs)
		// No error series means no errors: the SDK creates the series at
		// the first failure.
		bad = ft.errs[c]
		if bad == nil {
			bad = &tally{}
		}
		counts.Errors = pick(bad, f, variant, "errors", errs)
	}
	var hist []bound
	var buckets []Bucket
	if ft.latFailed == nil && !f.SkipLatency {
		hist = ft.hists[c].sorted()
		var err error
		counts.Slower, err = slower(hist, func(t *tally) float64 { return t.total })
		if err != nil {
			errs[f.Flag] = append(errs[f.Flag], fmt.Errorf("flag %s variant %q: latency: %w", f.Flag, variant, err))
			hist = nil
		} else {
			buckets = make([]Bucket, len(hist))
			for i, b := range hist {
				buckets[i] = Bucket{UpperBound: b.le, Count: b.t.total}
			}
		}
	}
	counts.UnitBuckets = unitBuckets(req, bad, hist)
	return counts, buckets
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
