package scalebench

import (
	"context"
	"fmt"
	"iter"
	"math"
	"net/http"
	"slices"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/procfs"

	"github.com/vigil-dev/vigil/controller/rollout"
)

// Usage is a process's CPU time and resident memory, from /proc.
type Usage struct {
	CPU time.Duration
	RSS uint64 // bytes
}

// ReadUsage reads the CPU time (user and system) and resident memory of
// process pid.
func ReadUsage(pid int) (Usage, error) {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return Usage{}, fmt.Errorf("process %d: %w", pid, err)
	}
	st, err := p.Stat()
	if err != nil {
		return Usage{}, fmt.Errorf("process %d: %w", pid, err)
	}
	return Usage{CPU: time.Duration(st.CPUTime() * float64(time.Second)), RSS: uint64(st.ResidentMemory())}, nil
}

// Metrics are the metric families of one scrape, by name.
type Metrics map[string]*dto.MetricFamily

// Scrape reads url's /metrics in the text format.
func Scrape(ctx context.Context, url string) (Metrics, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape %s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	return Metrics(fams), nil
}

// matches reports whether m carries every label of want.
func matches(m *dto.Metric, want map[string]string) bool {
	n := 0
	for _, l := range m.GetLabel() {
		if v, ok := want[l.GetName()]; ok && v == l.GetValue() {
			n++
		}
	}
	return n == len(want)
}

// Sum adds the values of name's series that carry the labels want: a
// counter's or gauge's value, a histogram's or summary's count, and, for
// sum, their sums instead.
func (ms Metrics) Sum(name string, want map[string]string, sum bool) float64 {
	total := 0.0
	for _, m := range ms[name].GetMetric() {
		if !matches(m, want) {
			continue
		}
		switch {
		case m.Counter != nil:
			total += m.GetCounter().GetValue()
		case m.Gauge != nil:
			total += m.GetGauge().GetValue()
		case m.Untyped != nil:
			total += m.GetUntyped().GetValue()
		case m.Histogram != nil && sum:
			total += m.GetHistogram().GetSampleSum()
		case m.Histogram != nil:
			total += float64(m.GetHistogram().GetSampleCount())
		case m.Summary != nil && sum:
			total += m.GetSummary().GetSampleSum()
		case m.Summary != nil:
			total += float64(m.GetSummary().GetSampleCount())
		}
	}
	return total
}

// Has reports whether the scrape has the family name.
func (ms Metrics) Has(name string) bool { return ms[name] != nil }

// HistogramDelta is what a histogram counted between two scrapes.
type HistogramDelta struct {
	Count uint64
	Sum   float64
	// Bounds and Counts are the cumulative buckets' upper bounds and the
	// observations at most each, +Inf last.
	Bounds []float64
	Counts []uint64
}

// HistogramBetween is what the histogram name (its series that carry the
// labels want, merged) counted between the scrapes before and after.
func HistogramBetween(before, after Metrics, name string, want map[string]string) HistogramDelta {
	var d HistogramDelta
	add := func(ms Metrics, sign int64) {
		for _, m := range ms[name].GetMetric() {
			h := m.GetHistogram()
			if h == nil || !matches(m, want) {
				continue
			}
			d.Count = uint64(int64(d.Count) + sign*int64(h.GetSampleCount()))
			d.Sum += float64(sign) * h.GetSampleSum()
			for _, b := range h.GetBucket() {
				d.addBucket(b.GetUpperBound(), sign*int64(b.GetCumulativeCount()))
			}
		}
	}
	add(after, 1)
	add(before, -1)
	if !slices.Contains(d.Bounds, math.Inf(1)) {
		d.Bounds = append(d.Bounds, math.Inf(1))
		d.Counts = append(d.Counts, d.Count)
	}
	return d
}

// Add is what d and e counted together, as one histogram.
func (d HistogramDelta) Add(e HistogramDelta) HistogramDelta {
	out := HistogramDelta{Count: d.Count + e.Count, Sum: d.Sum + e.Sum}
	for _, h := range []HistogramDelta{d, e} {
		for i, b := range h.Bounds {
			out.addBucket(b, int64(h.Counts[i]))
		}
	}
	return out
}

// addBucket adds n (negative to take away) to the cumulative count at
// bound, a bucket of its own if d has none at it yet.
func (d *HistogramDelta) addBucket(bound float64, n int64) {
	i := slices.Index(d.Bounds, bound)
	if i < 0 {
		d.Bounds = append(d.Bounds, bound)
		d.Counts = append(d.Counts, 0)
		i = len(d.Bounds) - 1
	}
	d.Counts[i] = uint64(int64(d.Counts[i]) + n)
}

// Quantile estimates the q-quantile as histogram_quantile does: linearly
// within the bucket that holds it. NaN without observations.
func (d HistogramDelta) Quantile(q float64) float64 {
	if d.Count == 0 {
		return math.NaN()
	}
	rank := q * float64(d.Count)
	lower, below := 0.0, uint64(0)
	for i, b := range d.Bounds {
		if float64(d.Counts[i]) >= rank {
			if math.IsInf(b, 1) {
				return lower // above the last finite bound: its bound is all we know
			}
			in := d.Counts[i] - below
			if in == 0 {
				return b
			}
			return lower + (b-lower)*(rank-float64(below))/float64(in)
		}
		lower, below = b, d.Counts[i]
	}
	return lower
}

// MaxBound is the upper bound of the lowest bucket that holds every
// observation: the most a histogram can say of its maximum.
func (d HistogramDelta) MaxBound() float64 {
	for i, b := range d.Bounds {
		if d.Counts[i] >= d.Count {
			return b
		}
	}
	return math.Inf(1)
}

// Schedule counts the steps of rollouts by whether each was held for as
// long as its plan asks: at least its minimum step duration and at most
// one interval longer.
type Schedule struct {
	// Steps is how many steps ended in a step advance or promotion by the
	// controller; OnTime, Early and Late split them.
	Steps, OnTime, Early, Late int
	// Longest is the longest any of them was held.
	Longest time.Duration
}

// Share is the share of steps on schedule, NaN without steps.
func (s Schedule) Share() float64 {
	if s.Steps == 0 {
		return math.NaN()
	}
	return float64(s.OnTime) / float64(s.Steps)
}

// StepHeld is one step of a rollout that the controller ended by
// advancing it, to a higher step or to promoted.
type StepHeld struct {
	Key  string
	Step int
	// From and To are the transitions into the step and out of it.
	From, To time.Time
	// Minimum and Interval are the plan's minimum step duration and
	// interval between looks.
	Minimum, Interval time.Duration
}

// Held is how long the step was held.
func (h StepHeld) Held() time.Duration { return h.To.Sub(h.From) }

// Late reports whether the step was held longer than its minimum, one
// interval and slack.
func (h StepHeld) Late(slack time.Duration) bool {
	return h.Held() > h.Minimum+h.Interval+slack
}

// StepsHeld reads the steps from the rollouts' histories: each stretch
// from a transition into a progressing step to the controller's next
// transition that advances it. Steps a person ended, or that ended in a
// rollback or a pause, say nothing of the schedule and are left out.
func StepsHeld(states []rollout.State) iter.Seq[StepHeld] {
	return func(yield func(StepHeld) bool) {
		for _, st := range states {
			h := st.History
			for i := 0; i+1 < len(h); i++ {
				from, to := h[i], h[i+1]
				if from.To != rollout.Progressing || to.Actor != rollout.ControllerActor {
					continue
				}
				if advanced := (to.To == rollout.Progressing && to.Step > from.Step) || to.To == rollout.Promoted; !advanced {
					continue
				}
				held := StepHeld{Key: st.Key, Step: from.Step, From: from.At, To: to.At,
					Minimum: st.Plan.MinStepDuration.Std(), Interval: st.Plan.Interval.Std()}
				if !yield(held) {
					return
				}
			}
		}
	}
}

// ScheduleOf counts the steps StepsHeld reads from the rollouts'
// histories: early when held less than the minimum, late when longer
// than the minimum, one interval and slack.
func ScheduleOf(states []rollout.State, slack time.Duration) Schedule {
	var s Schedule
	for h := range StepsHeld(states) {
		s.Steps++
		s.Longest = max(s.Longest, h.Held())
		switch {
		case h.Held() < h.Minimum:
			s.Early++
		case h.Late(slack):
			s.Late++
		default:
			s.OnTime++
		}
	}
	return s
}
