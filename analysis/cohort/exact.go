package cohort

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/vigil-dev/vigil/sdk/semconv"
)

const (
	// baselineLookback is how far before a rollout's start the first read
	// of a flag looks for each series' last sample, the count's zero: as
	// far as Prometheus's default lookback, so a series scraped at least
	// every five minutes has one.
	baselineLookback = 5 * time.Minute
	// liveWindow is how recent a series' latest sample must be for the
	// next read to start at it: older series are gone (a pod that went
	// away) and would stretch every read.
	liveWindow = 5 * time.Minute
	// followGap is the longest gap since a flag's last read at which it is
	// read with the others: a flag read longer ago is read in the catch-up
	// query, so that it does not stretch every flag's range.
	followGap = 10 * time.Minute
	// forgetAfter is how long the Reader keeps a flag it is no longer
	// asked about; one asked about again later is caught up anew.
	forgetAfter = time.Hour
	// catchUpBudget bounds one catch-up query in series-hours: every
	// series of its flags times the time it reads back (the query reads
	// each from its earliest flag's start). 3,200 is 100 rollouts an
	// hour old with the requests counter's 32 series each, or 110 new
	// ones with the latency histogram's 336 (five minutes before the
	// start and ten seconds after); a series scraped every 10 s has 360
	// samples an hour, so about 1.2 million samples, which Prometheus
	// answers in about a second on 2 cores. Catching up more in one
	// query, such as a controller that took over thousands of long
	// rollouts, would exceed what a provider answers
	// (--query.max-samples) or the tick's read budget, and a read that
	// times out would be asked again whole at every tick.
	catchUpBudget = 3200.0
)

// series is what the Reader remembers of one counter series: of its labels
// only what the counts need, since a Reader may follow millions.
type series struct {
	// cohort is the series' variant: treatment or control.
	cohort cohortIndex
	// failed is set for a series of failed requests (error_type set).
	failed bool
	// le is a histogram bucket's bound, NaN for other series.
	le float64
	// bucket is the unit bucket, or noBucket.
	bucket int
	// last is the latest finite sample's value.
	last float64
	// count is the events the series counted since the rollout began.
	count float64
	// broken is set while the series' latest sample is not finite: its
	// count is then unreadable.
	broken bool
	// seenTS is the time of the latest sample seen, finite or not.
	seenTS model.Time
	// every is the least time between two consecutive samples seen, zero
	// until two: how often the series is scraped (or pushed).
	every time.Duration
}

// observe folds in one sample. A sample at or before since sets the
// baseline; a later one counts what the counter grew by, or, when it went
// down (the process restarted and its counter began again from zero), its
// whole value.
func (s *series) observe(p model.SamplePair, since model.Time) {
	if s.seenTS != model.Earliest {
		if gap := p.Timestamp.Sub(s.seenTS); gap > 0 && (s.every == 0 || gap < s.every) {
			s.every = gap
		}
	}
	s.seenTS = p.Timestamp
	v := float64(p.Value)
	if !finite(v) {
		s.broken = true
		return
	}
	s.broken = false
	if p.Timestamp > since {
		if v >= s.last {
			s.count += v - s.last
		} else {
			s.count += v
		}
	}
	s.last = v
}

// value is the series' count since the rollout began, NaN while broken.
func (s *series) value() float64 {
	if s.broken {
		return math.NaN()
	}
	return s.count
}

// follow is the Reader's memory of one flag for one built-in query.
type follow struct {
	flag               string
	since              time.Time
	treatment, control string
	// readTo is the time of the flag's last successful read; zero before
	// the first.
	readTo time.Time
	// resume is where the next read's samples start: the earliest latest
	// sample among the flag's live series, so that a sample a scrape or
	// remote write committed after the last read (scrape lag;
	// VictoriaMetrics shows the last 30 s late) is still seen, and a
	// counter reset among such samples is not missed. A series' samples
	// are committed in order, so none older than its latest one seen can
	// appear later.
	resume time.Time
	// series are the flag's cohort series by their label sets, and list
	// the same in the order first seen, for the walks over them at every
	// read (a map is slower to range over).
	series map[seriesKey]*series
	list   []*series
	// les are the histogram bounds read besides +Inf, ascending; nil for
	// all (FlagQuery.LatencyEdges). covered are those every read since the
	// memory began has read, nil for all: a series of another bound, first
	// seen later, may have counted since before the rollout began, and
	// only a read from the baseline counts it right.
	les, covered []float64
}

// covers reports whether every series of the bounds les (nil for all) has
// been read since the memory began.
func (fw *follow) covers(les []float64) bool {
	if fw.covered == nil {
		return true
	}
	if les == nil {
		return false
	}
	for _, le := range les {
		if _, ok := slices.BinarySearch(fw.covered, le); !ok {
			return false
		}
	}
	return true
}

// reads reports whether the flag's counts take in a series with bound le
// (NaN for a series that is not a histogram bucket).
func (fw *follow) reads(le float64) bool {
	if fw.les == nil || math.IsNaN(le) || math.IsInf(le, 1) {
		return true
	}
	_, ok := slices.BinarySearch(fw.les, le)
	return ok
}

// matches reports whether the memory belongs to the rollout f asks about:
// a rollout started again, or with other variants, begins from nothing.
func (fw *follow) matches(f FlagQuery) bool {
	return fw.since.Equal(f.Since) && fw.treatment == f.Treatment && fw.control == f.Control
}

// start is where the flag's samples must begin at a read: where the last
// read left off, or before the rollout began for its first.
func (fw *follow) start() time.Time {
	if fw.readTo.IsZero() {
		return fw.since.Add(-baselineLookback)
	}
	return fw.resume
}

// laterTime returns the later of a and b.
func laterTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// followed reports whether the flag is read with the others at now, from
// where its last read left off: it was read recently and showed series;
// false for nil.
func (fw *follow) followed(now time.Time) bool {
	return fw != nil && !fw.readTo.IsZero() && now.Sub(fw.readTo) <= followGap && len(fw.series) > 0
}

// readAt records a successful read at now. A flag that showed no series
// yet (no traffic, or a store that had not committed its first scrape
// when read: a scrape's samples are stamped when it begins and committed
// when its last series is in) has no latest sample to resume from, so its
// next read looks back a live window again (to its baseline at most);
// resuming at now would miss, at every look, a scrape committed late
// whose interval keeps step with the looks'.
func (fw *follow) readAt(now time.Time) {
	fw.readTo, fw.resume = now, now
	if len(fw.series) == 0 {
		fw.resume = laterTime(fw.since.Add(-baselineLookback), now.Add(-liveWindow))
		return
	}
	live := model.TimeFromUnixNano(now.Add(-liveWindow).UnixNano())
	for _, s := range fw.list {
		// A series left unread would hold every read back to its last
		// sample.
		if s.seenTS >= live && fw.reads(s.le) {
			if t := s.seenTS.Time(); t.Before(fw.resume) {
				fw.resume = t
			}
		}
	}
}

// fold takes in the samples a read returned for one of the flag's treatment
// or control series (the read drops other variants'). A series first seen
// starts from zero, so all it counted after the rollout began counts: a
// series the SDK creates at its first failure, or a new pod's, starts with
// the events it counted. Samples at or before the ones already folded in
// are skipped, since reads overlap.
func (fw *follow) fold(ls labels.Labels, samples []model.SamplePair) (created *series) {
	k := keyOf(ls)
	s := fw.series[k]
	if s == nil {
		s = &series{
			cohort: treatment,
			failed: ls.Get(semconv.LabelErrorType) != "",
			le:     upperBound(ls.Get(labelLE)),
			bucket: bucketOf(ls.Get(semconv.LabelUnitBucket)),
			seenTS: model.Earliest,
		}
		if ls.Get(semconv.LabelVariant) == fw.control {
			s.cohort = control
		}
		fw.series[k] = s
		fw.list = append(fw.list, s)
		created = s
	}
	since := model.TimeFromUnixNano(fw.since.UnixNano())
	for _, p := range samples {
		if p.Timestamp > s.seenTS {
			s.observe(p, since)
		}
	}
	return created
}

// seriesKey identifies one of a flag's series by the 64-bit hash of its
// label set (labels.Labels.Hash, xxHash): keeping every label set would cost
// a Reader that follows millions of series far more memory. Keys are
// compared only among one flag's series, a few thousand at most, where a
// collision has a chance of about n²/2⁶⁵ (10⁻¹³ for 4,000); whoever could
// craft one writes the flag's series, and so its counts, anyway.
type seriesKey uint64

func keyOf(ls labels.Labels) seriesKey { return seriesKey(ls.Hash()) }

// source is one built-in query of the Reader: a counter metric, and the
// Reader's memory of every flag it reads.
type source struct {
	// name is what Reading.Err and QueryError call it.
	name string
	// metric is the counter read.
	metric string
	// guess is how many series a flag has before any flag was read: the
	// SDKs' series of one process.
	guess int
	// leText maps each histogram bound seen to its le labels as written
	// (SDKs may write one bound two ways, such as 1 and 1.0), for
	// selectors that read some bounds only; nil for a source of counters
	// without bounds.
	leText  map[float64][]string
	follows map[string]*follow
	// budget is catchUpBudget, smaller in tests.
	budget float64
}

// group is the flags one query reads.
type group struct {
	src     *source
	follows []*follow
	// failed is the query's failure, once read.
	failed *QueryError
}

// plan sorts flags into the Reader's queries: one for the flags read
// recently, and one to catch up the others (read for the first time since
// their rollout began, or not for followGap, or with no series seen yet,
// whose reads look back a live window and would stretch the others').
// Catching up reads every sample since a rollout's start, so it takes the
// flags with the earliest starts first, as many as fit in the catch-up
// budget together (at least one); the rest are deferred to later reads. A
// flag with no series seen is counted at the mean number of series of the
// flags read.
func (src *source) plan(now time.Time, flags []FlagQuery) (recent, catchUp *group, deferred []string) {
	recent, catchUp = &group{src: src}, &group{src: src}
	var behind []*follow
	for _, f := range flags {
		var les []float64
		if src.leText != nil {
			les = f.LatencyEdges
		}
		fw := src.follows[f.Flag]
		if fw == nil || !fw.matches(f) || !fw.covers(les) {
			// A bound not read since the start is caught up with the
			// others, from the baseline.
			fw = &follow{flag: f.Flag, since: f.Since, treatment: f.Treatment, control: f.Control, series: map[seriesKey]*series{},
				covered: les}
			src.follows[f.Flag] = fw
		}
		fw.les = les
		if fw.followed(now) {
			recent.follows = append(recent.follows, fw)
		} else {
			behind = append(behind, fw)
		}
	}
	if len(behind) == 0 {
		return recent, catchUp, nil
	}
	slices.SortFunc(behind, func(a, b *follow) int {
		if c := a.start().Compare(b.start()); c != 0 {
			return c
		}
		return strings.Compare(a.flag, b.flag)
	})
	hint := src.seriesHint()
	reach := now.Sub(behind[0].start()).Hours()
	series := 0
	for _, fw := range behind {
		n := len(fw.series)
		if n == 0 {
			n = hint
		}
		series += n
		if float64(series)*reach > src.budget && len(catchUp.follows) > 0 {
			deferred = append(deferred, fw.flag)
			continue
		}
		catchUp.follows = append(catchUp.follows, fw)
	}
	return recent, catchUp, deferred
}

// seriesHint is how many series a flag not yet read is thought to have: the
// mean of the flags read, or the guess before any.
func (src *source) seriesHint() int {
	total, flags := 0, 0
	for _, fw := range src.follows {
		if len(fw.series) > 0 {
			total += len(fw.series)
			flags++
		}
	}
	if flags == 0 {
		return src.guess
	}
	return max(1, total/flags)
}

// read brings the memory of the group's flags up to now with one query,
// over the range that its earliest flag needs.
func (g *group) read(ctx context.Context, p Provider, now time.Time) {
	if len(g.follows) == 0 {
		return
	}
	byKey := make(map[string]*follow, len(g.follows))
	var flagKeys, variants []string
	from := now
	for _, fw := range g.follows {
		byKey[fw.flag] = fw
		flagKeys = append(flagKeys, fw.flag)
		variants = append(variants, fw.treatment, fw.control)
		if st := fw.start(); st.Before(from) {
			from = st
		}
	}
	q := samplesQuery(g.src.metric, flagKeys, variants, g.bounds(), now.Sub(from))
	err := p.QueryMatrix(ctx, q, now, func(ls labels.Labels, samples []model.SamplePair) {
		fw := byKey[ls.Get(semconv.LabelKey)]
		if fw == nil {
			return
		}
		// The selector matches every flag's variants; keep this flag's
		// own.
		if v := ls.Get(semconv.LabelVariant); v != fw.treatment && v != fw.control {
			return
		}
		if s := fw.fold(ls, samples); s != nil && g.src.leText != nil && !math.IsNaN(s.le) {
			if text := ls.Get(labelLE); !slices.Contains(g.src.leText[s.le], text) {
				g.src.leText[s.le] = append(g.src.leText[s.le], text)
			}
		}
	})
	if err != nil {
		// What was folded in before the failure stays: each sample is
		// counted once, and the next read starts where the last
		// successful one left off.
		g.failed = &QueryError{Metric: g.src.name, Query: q, Err: err}
		return
	}
	for _, fw := range g.follows {
		fw.readAt(now)
	}
}

// forget drops the memory of flags not read for forgetAfter.
func (src *source) forget(now time.Time) {
	for k, fw := range src.follows {
		last := fw.readTo
		if last.IsZero() {
			last = fw.since
		}
		if now.Sub(last) > forgetAfter {
			delete(src.follows, k)
		}
	}
}

// bounds returns the le labels the group's flags read, +Inf among them, or
// nil for all: when a flag reads all, or a bound it reads has not been seen
// written yet. A bound one flag reads is read for all of them (one
// selector), and the others' counts leave it out (follow.reads).
//
// Each bound is asked for as it was seen written and as exporters write
// it (leSpellings): a process that starts while its flag reads a bound
// alone, and writes it in a way no series seen did, is read all the same.
// Its +Inf is read in any case, so without its bound the requests slower
// than that bound would read high.
func (g *group) bounds() []string {
	if g.src.leText == nil {
		return nil
	}
	texts := []string{"+Inf"}
	for _, fw := range g.follows {
		if fw.les == nil {
			return nil
		}
		for _, le := range fw.les {
			written, ok := g.src.leText[le]
			if !ok {
				return nil
			}
			texts = append(texts, written...)
			texts = append(texts, leSpellings(le)...)
		}
	}
	return texts
}

// leSpellings returns how exporters write bound le: the shortest decimal
// (Go's and JavaScript's Prometheus exporters: 1, 0.25), and for a whole
// number that with ".0" too (OpenMetrics and Python's client: 1.0).
func leSpellings(le float64) []string {
	short := strconv.FormatFloat(le, 'g', -1, 64)
	if le == math.Trunc(le) && !strings.ContainsAny(short, ".e") {
		return []string{short, short + ".0"}
	}
	return []string{short}
}

// samplesQuery selects the raw samples of the split-placed cohort series of
// the given flags and variants, and bounds (le) unless nil, over the range
// before the read.
func samplesQuery(metric string, flagKeys, variants, bounds []string, window time.Duration) string {
	window = max(window.Truncate(time.Millisecond), time.Millisecond)
	slices.Sort(flagKeys)
	les := ""
	if bounds != nil {
		les = fmt.Sprintf(`, %s=~%s`, labelLE, alternation(bounds))
	}
	return fmt.Sprintf(`%s{%s=%q, %s=~%s, %s=~%s%s}[%s]`,
		metric, semconv.LabelReason, semconv.ReasonSplit, semconv.LabelKey, alternation(flagKeys), semconv.LabelVariant, alternation(variants), les, model.Duration(window))
}
