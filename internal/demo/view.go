package demo

import (
	"context"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/vigil-dev/vigil/analysis/cohort"
	"github.com/vigil-dev/vigil/analysis/judge"
	"github.com/vigil-dev/vigil/controller/rollout"
	"github.com/vigil-dev/vigil/internal/rolloutview"
)

// latencyQuantile is the latency figure the view shows for each cohort.
const latencyQuantile = 0.95

// liveView shows the rollouts while they run: redrawn in place on a
// terminal, or a rollout's lines again whenever its phase or percent
// changes otherwise, so that a log of the run stays short.
type liveView struct {
	out   io.Writer
	live  bool
	lines int               // lines drawn last time, to move back over
	last  map[string]string // last heading printed per rollout, when not live
}

// draw shows every rollout; figures, which may be nil or lack a rollout,
// are its cohorts' numbers from the metrics.
func (v *liveView) draw(states map[string]rollout.State, figures map[string]flagFigures) {
	keys := slices.Sorted(maps.Keys(states))
	if v.live {
		var b strings.Builder
		for _, key := range keys {
			b.WriteString(describe(states[key], figures[key]))
		}
		text := b.String()
		if v.lines > 0 {
			// Up over the last drawing and clear to the end of the
			// screen.
			fmt.Fprintf(v.out, "\x1b[%dA\x1b[J", v.lines)
		}
		fmt.Fprint(v.out, text)
		v.lines = strings.Count(text, "\n")
		return
	}
	if v.last == nil {
		v.last = map[string]string{}
	}
	for _, key := range keys {
		s := states[key]
		if h := heading(s); v.last[key] != h {
			v.last[key] = h
			fmt.Fprint(v.out, describe(s, figures[key]))
		}
	}
}

// heading is a rollout's first line: phase, percent and progress.
func heading(s rollout.State) string {
	return fmt.Sprintf("%-13s %-11s %6s%%  %s", s.Key, s.Phase, formatPercent(s.Percent), rolloutview.Progress(s))
}

// describe renders one rollout in a few lines: its progress through the
// steps, each cohort's requests, errors and latency, the checks and the
// latest verdict.
func describe(s rollout.State, f flagFigures) string {
	var b strings.Builder
	b.WriteString(heading(s) + "\n")
	v := judgeVerdictOf(s.Verdict)
	t, c := f.Treatment, f.Control
	if !f.read {
		// Before the first read of the metrics, the judge's counts.
		t, c = verdictFigures(v, s.Cohorts.Total.Treatment, true), verdictFigures(v, s.Cohorts.Total.Control, false)
	}
	fmt.Fprintf(&b, "   %-10s %9s %16s %12s\n", "cohort", "requests", "errors", fmt.Sprintf("p%.0f latency", 100*latencyQuantile))
	fmt.Fprintf(&b, "   %-10s %s\n", "treatment", t)
	fmt.Fprintf(&b, "   %-10s %s\n", "control", c)
	if v != nil && len(v.Checks) > 0 {
		checks := make([]string, len(v.Checks))
		for i, cv := range v.Checks {
			checks[i] = fmt.Sprintf("%s %s", cv.Check, cv.Outcome)
			if cv.Ratio > 0 {
				checks[i] += fmt.Sprintf(" (ratio %.2f)", cv.Ratio)
			}
		}
		fmt.Fprintf(&b, "   checks: %s\n", strings.Join(checks, ", "))
	}
	if s.Verdict != nil {
		fmt.Fprintf(&b, "   verdict: %s\n", s.Verdict.Summary)
	}
	return b.String()
}

// flagFigures are a rollout's cohorts as the metrics show them.
type flagFigures struct {
	Treatment, Control cohortFigures
	// read is whether they come from a read of the metrics.
	read bool
}

// cohortFigures are one cohort's numbers since the rollout began; NaN
// where unknown.
type cohortFigures struct {
	Requests, Errors float64
	// Latency is the latencyQuantile of the cohort's request latency, in
	// seconds.
	Latency float64
}

// String is the cohort's row of the view.
func (c cohortFigures) String() string {
	errs := "-"
	if !math.IsNaN(c.Errors) && !math.IsNaN(c.Requests) {
		rate := 0.0
		if c.Requests > 0 {
			rate = c.Errors / c.Requests
		}
		errs = fmt.Sprintf("%.0f (%.2f%%)", c.Errors, 100*rate)
	}
	reqs := "-"
	if !math.IsNaN(c.Requests) {
		reqs = fmt.Sprintf("%.0f", c.Requests)
	}
	return fmt.Sprintf("%9s %16s %12s", reqs, errs, formatLatency(c.Latency))
}

// verdictFigures are a cohort's numbers from the error-rate check of the
// latest verdict, or only its requests when there is none.
func verdictFigures(v *judge.Verdict, requests float64, treatment bool) cohortFigures {
	out := cohortFigures{Requests: requests, Errors: math.NaN(), Latency: math.NaN()}
	if v == nil {
		return out
	}
	for _, cv := range v.Checks {
		if cv.Kind == judge.KindErrorRate {
			e := cv.Control
			if treatment {
				e = cv.Treatment
			}
			out.Requests, out.Errors = e.Requests, e.Events
		}
	}
	return out
}

// formatLatency shows seconds in ms below a second.
func formatLatency(s float64) string {
	switch {
	case math.IsNaN(s):
		return "-"
	case s < 0.01:
		return fmt.Sprintf("%.1f ms", 1000*s)
	case s < 1:
		return fmt.Sprintf("%.0f ms", 1000*s)
	}
	return fmt.Sprintf("%.2f s", s)
}

// quantile estimates the q-quantile, in seconds, of a cumulative histogram
// sorted by bound whose last bucket is +Inf, as PromQL's
// histogram_quantile does: linearly within the bucket that holds it, and
// the highest finite bound when that is the +Inf bucket. NaN without
// requests.
func quantile(q float64, buckets []cohort.Bucket) float64 {
	if len(buckets) == 0 || !math.IsInf(buckets[len(buckets)-1].UpperBound, 1) {
		return math.NaN()
	}
	total := buckets[len(buckets)-1].Count
	if !(total > 0) {
		return math.NaN()
	}
	rank := q * total
	lower, below := 0.0, 0.0
	for _, b := range buckets {
		// Each bucket is counted on its own series, so a broken
		// exporter could leave a count below the one before it; they
		// cannot really dip.
		count := max(b.Count, below)
		if count >= rank && count > below {
			if math.IsInf(b.UpperBound, 1) {
				return lower
			}
			return lower + (b.UpperBound-lower)*(rank-below)/(count-below)
		}
		lower, below = b.UpperBound, count
	}
	return lower
}

// cohortReader reads the rollouts' cohort figures from the metrics the
// judge reads, at most once an interval, since the view redraws more often.
type cohortReader struct {
	reader  *cohort.Reader
	every   time.Duration
	last    time.Time
	figures map[string]flagFigures
}

func newCohortReader(p cohort.Provider, every time.Duration) *cohortReader {
	return &cohortReader{reader: cohort.NewReader(p), every: every, figures: map[string]flagFigures{}}
}

// update reads the figures of the rollouts still running when an interval
// has passed since the last read, and returns the latest figures of all.
// A rollout that has finished keeps the figures it finished with. A failed
// read keeps the last figures: the view is no reason to stop the demo.
func (r *cohortReader) update(ctx context.Context, now time.Time, states map[string]rollout.State) map[string]flagFigures {
	if now.Sub(r.last) < r.every {
		return r.figures
	}
	var queries []cohort.FlagQuery
	for _, key := range slices.Sorted(maps.Keys(states)) {
		s := states[key]
		if (s.Phase == rollout.Progressing || s.Phase == rollout.Paused) && !s.StartedAt.IsZero() && s.StartedAt.Before(now.Add(-time.Second)) {
			queries = append(queries, cohort.FlagQuery{Flag: key, Treatment: treatmentVariant, Control: controlVariant, Since: s.StartedAt})
		}
	}
	if len(queries) == 0 {
		return r.figures
	}
	r.last = now
	readings, _ := r.reader.Read(ctx, now, queries)
	for key, rd := range readings {
		f := figuresOf(rd)
		if math.IsNaN(f.Treatment.Requests) && math.IsNaN(f.Control.Requests) {
			continue
		}
		r.figures[key] = f
	}
	return r.figures
}

// figuresOf turns one flag's reading into the view's figures.
func figuresOf(rd cohort.Reading) flagFigures {
	return flagFigures{
		Treatment: cohortFigures{Requests: rd.Counts.Treatment.Requests, Errors: rd.Counts.Treatment.Errors, Latency: quantile(latencyQuantile, rd.TreatmentBuckets)},
		Control:   cohortFigures{Requests: rd.Counts.Control.Requests, Errors: rd.Counts.Control.Errors, Latency: quantile(latencyQuantile, rd.ControlBuckets)},
		read:      true,
	}
}

// judgeVerdictOf is the judge's evidence kept with a verdict, or nil.
func judgeVerdictOf(v *rollout.Verdict) *judge.Verdict {
	if v == nil {
		return nil
	}
	return v.Detail
}
