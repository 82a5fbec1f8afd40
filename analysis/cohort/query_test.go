package cohort

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/vigil-dev/vigil/analysis/judge"
	"github.com/vigil-dev/vigil/analysis/metricstore"
	"github.com/vigil-dev/vigil/sdk/semconv"
)

// loader appends counters to an embedded store. Every series gets a sample
// every 15 s for the 10 minutes before end, growing by a fixed step: with
// linear growth, increase() over a window that ends at a sample is exact, so
// expected counts are whole numbers.
type loader struct {
	t   testing.TB
	s   *metricstore.Store
	end time.Time
}

func newLoader(t testing.TB) *loader {
	t.Helper()
	s, err := metricstore.Open(context.Background(), metricstore.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return &loader{t: t, s: s, end: time.UnixMilli(1_800_000_000_000)}
}

func (l *loader) counter(step float64, lbls ...string) {
	l.t.Helper()
	l.counterFrom(0, step, lbls...)
}

// counterFrom is counter for a series that begins at the first-th of the
// 41 samples, counting from 0 there (a process started later).
func (l *loader) counterFrom(first int, step float64, lbls ...string) {
	l.t.Helper()
	app := l.s.Appender(context.Background())
	ls := labels.FromStrings(append([]string{"otel_scope_name", "vigil", "instance", "pod-a"}, lbls...)...)
	for k := first; k <= 40; k++ {
		ts := l.end.Add(-time.Duration(40-k) * 15 * time.Second)
		if _, err := app.Append(0, ls, ts.UnixMilli(), float64(k-first)*step); err != nil {
			l.t.Fatal(err)
		}
	}
	if err := app.Commit(); err != nil {
		l.t.Fatal(err)
	}
}

// cohortLabels returns the SDK's labels of one cohort.
func cohortLabels(name, flagKey, variant, reason string, extra ...string) []string {
	return append([]string{"__name__", name, semconv.LabelKey, flagKey, semconv.LabelVariant, variant, semconv.LabelReason, reason}, extra...)
}

func (l *loader) loadCheckout() {
	// checkout: treatment "on", control "off", over the whole 10 minutes.
	l.counter(3, cohortLabels(semconv.PromRequests, "checkout", "on", "split")...)
	l.counter(1, cohortLabels(semconv.PromRequests, "checkout", "on", "split", semconv.LabelErrorType, "timeout")...)
	l.counter(10, cohortLabels(semconv.PromRequests, "checkout", "off", "split")...)
	l.counter(1, cohortLabels(semconv.PromRequests, "checkout", "off", "split", semconv.LabelErrorType, "500")...)
	// Targeted units are not part of the comparison.
	l.counter(100, cohortLabels(semconv.PromRequests, "checkout", "on", "targeting_match")...)
	l.counter(100, cohortLabels(semconv.PromRequests, "checkout", "on", "targeting_match", semconv.LabelErrorType, "500")...)
	// A third variant is ignored.
	l.counter(7, cohortLabels(semconv.PromRequests, "checkout", "beta", "split")...)
	b := semconv.PromRequestDuration + "_bucket"
	for _, c := range []struct {
		variant, le string
		step        float64
	}{
		{"on", "0.1", 1}, {"on", "0.5", 2}, {"on", "+Inf", 3},
		{"off", "0.1", 6}, {"off", "0.5", 10}, {"off", "+Inf", 11},
	} {
		l.counter(c.step, cohortLabels(b, "checkout", c.variant, "split", labelLE, c.le)...)
	}
	// A second pod whose bucket bound is written "0.50": bounds are
	// compared as numbers.
	for _, c := range []struct {
		le   string
		step float64
	}{{"0.1", 0}, {"0.50", 1}, {"+Inf", 1}} {
		l.counter(c.step, append(cohortLabels(b, "checkout", "on", "split", labelLE, c.le), "pod", "b")...)
	}
}

func TestReadCohortCounts(t *testing.T) {
	l := newLoader(t)
	l.loadCheckout()
	// search: only its treatment has traffic.
	l.counter(2, cohortLabels(semconv.PromRequests, "search", "v2", "split")...)

	var counting countingProvider
	counting.p = l.s
	r := NewReader(&counting)
	got, err := r.Read(context.Background(), l.end, []FlagQuery{
		{Flag: "checkout", Treatment: "on", Control: "off", Since: l.end.Add(-10 * time.Minute)},
		{Flag: "search", Treatment: "v2", Control: "v1", Since: l.end.Add(-5 * time.Minute)},
	})
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	if counting.n != 2 {
		t.Errorf("Read sent %d queries for 2 flags, want 2 (one per built-in metric)", counting.n)
	}

	co := got["checkout"]
	if co.Err != nil {
		t.Errorf("checkout: unexpected error %v", co.Err)
	}
	want := judge.FlagCounts{
		Flag:      "checkout",
		Treatment: judge.CohortCounts{Requests: 160, Errors: 40, Slower: map[float64]float64{0.1: 120, 0.5: 40}},
		Control:   judge.CohortCounts{Requests: 440, Errors: 40, Slower: map[float64]float64{0.1: 200, 0.5: 40}},
	}
	assertCounts(t, co.Counts, want)
	if len(co.ControlBuckets) != 3 || co.ControlBuckets[0].UpperBound != 0.1 || !near(co.ControlBuckets[0].Count, 240) || !math.IsInf(co.ControlBuckets[2].UpperBound, 1) || !near(co.ControlBuckets[2].Count, 440) {
		t.Errorf("control buckets = %v", co.ControlBuckets)
	}

	se := got["search"]
	if !near(se.Counts.Treatment.Requests, 40) {
		t.Errorf("search treatment requests over its 5-minute window = %v, want 40", se.Counts.Treatment.Requests)
	}
	if !math.IsNaN(se.Counts.Control.Requests) {
		t.Errorf("search control requests = %v, want NaN (no series)", se.Counts.Control.Requests)
	}
	if !errors.Is(se.Err, ErrNoData) || !strings.Contains(se.Err.Error(), `variant "v1"`) {
		t.Errorf("search error = %v, want ErrNoData naming variant v1", se.Err)
	}
	if se.Counts.Treatment.Slower != nil || se.TreatmentBuckets != nil {
		t.Errorf("search has no histogram, got %v %v", se.Counts.Treatment.Slower, se.TreatmentBuckets)
	}
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-6*math.Max(1, math.Abs(b)) }

func assertCounts(t *testing.T, got, want judge.FlagCounts) {
	t.Helper()
	if got.Flag != want.Flag {
		t.Errorf("flag %q, want %q", got.Flag, want.Flag)
	}
	for _, c := range []struct {
		name      string
		got, want judge.CohortCounts
	}{{"treatment", got.Treatment, want.Treatment}, {"control", got.Control, want.Control}} {
		if !near(c.got.Requests, c.want.Requests) || !near(c.got.Errors, c.want.Errors) {
			t.Errorf("%s %s: requests %v errors %v, want %v and %v", want.Flag, c.name, c.got.Requests, c.got.Errors, c.want.Requests, c.want.Errors)
		}
		if len(c.got.Slower) != len(c.want.Slower) {
			t.Errorf("%s %s: slower %v, want %v", want.Flag, c.name, c.got.Slower, c.want.Slower)
		}
		for edge, n := range c.want.Slower {
			if !near(c.got.Slower[edge], n) {
				t.Errorf("%s %s: slower than %v = %v, want %v", want.Flag, c.name, edge, c.got.Slower[edge], n)
			}
		}
		for name, n := range c.want.Custom {
			if !near(c.got.Custom[name], n) {
				t.Errorf("%s %s: custom %s = %v, want %v", want.Flag, c.name, name, c.got.Custom[name], n)
			}
		}
	}
}

// countingProvider counts and records the queries sent; the Reader sends
// some together, so they are recorded in no particular order.
// A flag whose plan judges no latency is left out of the latency query:
// its counts have requests and errors, no latency and no error for the
// missing histogram; the other flags' latency is read as before.
func TestSkipLatencyReadsNoHistogram(t *testing.T) {
	l := newLoader(t)
	l.loadCheckout()
	l.counter(2, cohortLabels(semconv.PromRequests, "search", "v2", "split")...)
	l.counter(2, cohortLabels(semconv.PromRequests, "search", "v1", "split")...)
	since := l.end.Add(-10 * time.Minute)

	var counting countingProvider
	counting.p = l.s
	got, err := NewReader(&counting).Read(context.Background(), l.end, []FlagQuery{
		{Flag: "checkout", Treatment: "on", Control: "off", Since: since, SkipLatency: true},
	})
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	if counting.n != 1 || strings.Contains(counting.queries[0], semconv.PromRequestDuration) {
		t.Errorf("queries %q, want the requests query only", counting.queries)
	}
	co := got["checkout"]
	assertCounts(t, co.Counts, judge.FlagCounts{Flag: "checkout",
		Treatment: judge.CohortCounts{Requests: 160, Errors: 40}, Control: judge.CohortCounts{Requests: 440, Errors: 40}})
	if co.Err != nil || co.TreatmentBuckets != nil || co.ControlBuckets != nil {
		t.Errorf("checkout without latency: err %v, buckets %v %v; want none", co.Err, co.TreatmentBuckets, co.ControlBuckets)
	}

	counting = countingProvider{p: l.s}
	got, err = NewReader(&counting).Read(context.Background(), l.end, []FlagQuery{
		{Flag: "checkout", Treatment: "on", Control: "off", Since: since},
		{Flag: "search", Treatment: "v2", Control: "v1", Since: since, SkipLatency: true},
	})
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	for _, q := range counting.queries {
		if strings.Contains(q, semconv.PromRequestDuration) && strings.Contains(q, "search") {
			t.Errorf("latency query %s names search, which skips latency", q)
		}
	}
	if se := got["search"]; se.Err != nil || !near(se.Counts.Treatment.Requests, 80) || se.Counts.Treatment.Slower != nil {
		t.Errorf("search: err %v, treatment %+v; want 80 requests, no latency, no error", se.Err, se.Counts.Treatment)
	}
	if c := got["checkout"].Counts.Treatment.Slower; !near(c[0.1], 120) {
		t.Errorf("checkout's latency beside a flag that skips it: %v, want 120 slower than 0.1 s", c)
	}
}

type countingProvider struct {
	p       Provider
	mu      sync.Mutex
	n       int
	queries []string
}

func (c *countingProvider) note(q string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	c.queries = append(c.queries, q)
}

func (c *countingProvider) Query(ctx context.Context, q string, ts time.Time) (model.Vector, error) {
	c.note(q)
	return c.p.Query(ctx, q, ts)
}

func (c *countingProvider) QueryMatrix(ctx context.Context, q string, ts time.Time, fn func(labels.Labels, []model.SamplePair)) error {
	c.note(q)
	return c.p.QueryMatrix(ctx, q, ts, fn)
}

// failingProvider fails the queries whose text contains match.
type failingProvider struct {
	p     Provider
	match string
}

func (f failingProvider) Query(ctx context.Context, q string, ts time.Time) (model.Vector, error) {
	if strings.Contains(q, f.match) {
		return nil, errors.New("connection refused")
	}
	return f.p.Query(ctx, q, ts)
}

func (f failingProvider) QueryMatrix(ctx context.Context, q string, ts time.Time, fn func(labels.Labels, []model.SamplePair)) error {
	if strings.Contains(q, f.match) {
		return errors.New("connection refused")
	}
	return f.p.QueryMatrix(ctx, q, ts, fn)
}

func TestReadQueryFailureIsUnreadable(t *testing.T) {
	l := newLoader(t)
	l.loadCheckout()
	q := []FlagQuery{{Flag: "checkout", Treatment: "on", Control: "off", Since: l.end.Add(-10 * time.Minute)}}

	got, err := NewReader(failingProvider{l.s, semconv.PromRequests + "{"}).Read(context.Background(), l.end, q)
	var qe *QueryError
	if !errors.As(err, &qe) || qe.Metric != MetricRequests || !strings.Contains(qe.Query, semconv.PromRequests) {
		t.Fatalf("Read error = %v, want a QueryError for requests", err)
	}
	co := got["checkout"]
	if !math.IsNaN(co.Counts.Treatment.Errors) || !math.IsNaN(co.Counts.Control.Requests) {
		t.Errorf("counts after a failed query = %v / %v, want NaN", co.Counts.Treatment.Errors, co.Counts.Control.Requests)
	}
	if !near(co.Counts.Treatment.Slower[0.1], 120) || !errors.As(co.Err, &qe) {
		t.Errorf("latency should still be read (%v) and the flag's error name the query (%v)", co.Counts.Treatment.Slower, co.Err)
	}

	got, err = NewReader(failingProvider{l.s, semconv.PromRequestDuration}).Read(context.Background(), l.end, q)
	if err == nil || got["checkout"].Counts.Treatment.Slower != nil || got["checkout"].Counts.Control.Slower != nil {
		t.Errorf("latency query failure: err %v, slower %v", err, got["checkout"].Counts.Treatment.Slower)
	}
}

func TestReadNaNIsUnreadable(t *testing.T) {
	l := newLoader(t)
	app := l.s.Appender(context.Background())
	for _, v := range []string{"on", "off"} {
		ls := labels.FromStrings(cohortLabels(semconv.PromRequests, "f", v, "split")...)
		for k := 0; k <= 4; k++ {
			val := float64(k)
			if v == "on" && k == 4 {
				val = math.NaN()
			}
			if _, err := app.Append(0, ls, l.end.Add(-time.Duration(4-k)*15*time.Second).UnixMilli(), val); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	got, err := NewReader(l.s).Read(context.Background(), l.end, []FlagQuery{{Flag: "f", Treatment: "on", Control: "off", Since: l.end.Add(-time.Minute)}})
	if err != nil {
		t.Fatal(err)
	}
	f := got["f"]
	if !math.IsNaN(f.Counts.Treatment.Requests) || !errors.Is(f.Err, ErrNoData) {
		t.Errorf("NaN counter: requests %v, err %v; want NaN and ErrNoData", f.Counts.Treatment.Requests, f.Err)
	}
	if math.IsNaN(f.Counts.Control.Requests) {
		t.Errorf("control is readable, got NaN")
	}
}

func TestReadRejectsBadFlagQueries(t *testing.T) {
	now := time.Now()
	ago := now.Add(-time.Hour)
	for name, qs := range map[string][]FlagQuery{
		"empty key":     {{Treatment: "a", Control: "b", Since: ago}},
		"twice":         {{Flag: "f", Treatment: "a", Control: "b", Since: ago}, {Flag: "f", Treatment: "a", Control: "b", Since: ago}},
		"same variants": {{Flag: "f", Treatment: "a", Control: "a", Since: ago}},
		"no control":    {{Flag: "f", Treatment: "a", Since: ago}},
		"future start":  {{Flag: "f", Treatment: "a", Control: "b", Since: now.Add(time.Minute)}},
		"nil custom":    {{Flag: "f", Treatment: "a", Control: "b", Since: ago, Custom: []*QueryTemplate{nil}}},
		"custom twice":  {{Flag: "f", Treatment: "a", Control: "b", Since: ago, Custom: []*QueryTemplate{mustTemplate(t, "x", "vector(1)"), mustTemplate(t, "x", "vector(2)")}}},
	} {
		var counting countingProvider
		got, err := NewReader(&counting).Read(context.Background(), now, qs)
		if err == nil || got != nil || counting.n != 0 {
			t.Errorf("%s: err %v, result %v, %d queries; want an error and no query", name, err, got, counting.n)
		}
	}
}

func mustTemplate(t *testing.T, name, text string) *QueryTemplate {
	t.Helper()
	q, err := ParseQueryTemplate(name, text)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// TestQueriesDoNotGrowWithStartTimes: the built-in queries select raw
// samples with one selector per metric, so their text is the same whether
// the flags' rollouts began together or each at its own time, and a second
// read asks only for the samples since the first.
func TestQueriesDoNotGrowWithStartTimes(t *testing.T) {
	l := newLoader(t)
	var keys []string
	for i := range 40 {
		keys = append(keys, fmt.Sprintf("flag-%02d", i))
	}
	keys = append(keys, "b.c", "d|e")
	for _, k := range keys {
		l.counter(1, cohortLabels(semconv.PromRequests, k, "on", "split")...)
		l.counter(1, cohortLabels(semconv.PromRequestDuration+"_bucket", k, "on", "split", labelLE, "+Inf")...)
	}
	texts := func(distinct bool) []string {
		t.Helper()
		var flags []FlagQuery
		for i, k := range keys {
			since := l.end.Add(-10 * time.Minute)
			if distinct {
				since = since.Add(time.Duration(i) * time.Second)
			}
			flags = append(flags, FlagQuery{Flag: k, Treatment: "on", Control: "off", Since: since})
		}
		var counting countingProvider
		counting.p = l.s
		r := NewReader(&counting)
		// All in one catch-up: the budget is TestCatchUpIsSizedBySeries's.
		r.requests.budget, r.latency.budget = math.Inf(1), math.Inf(1)
		for _, now := range []time.Time{l.end.Add(-time.Minute), l.end} {
			if _, err := r.Read(context.Background(), now, flags); err != nil {
				t.Fatal(err)
			}
		}
		// The two metrics' queries of a read go out together, in no
		// particular order.
		for i := 0; i+1 < len(counting.queries); i += 2 {
			slices.Sort(counting.queries[i : i+2])
		}
		return counting.queries
	}
	together, apart := texts(false), texts(true)
	if !slices.Equal(together, apart) {
		t.Errorf("queries differ with the number of start times:\n%s\n%s", strings.Join(together, "\n"), strings.Join(apart, "\n"))
	}
	if len(apart) != 4 {
		t.Fatalf("two reads sent %d queries, want 4 (two built-in metrics each)", len(apart))
	}
	p := parser.NewParser(parser.Options{})
	for i, q := range apart {
		if _, err := p.ParseExpr(q); err != nil {
			t.Errorf("query does not parse: %v\n%s", err, q)
		}
		for _, want := range []string{`feature_flag_result_reason="split"`, `d\\|e`, `b\\.c`, `feature_flag_result_variant=~"off|on"`} {
			if !strings.Contains(q, want) {
				t.Errorf("query lacks %s:\n%s", want, q)
			}
		}
		// The first read reaches back to the rollouts' start and 5 minutes
		// before it for the baseline; the second only to where the first
		// left off (the latest sample it showed, a minute before the
		// second read).
		if want := []string{"[14m]", "[14m]", "[1m]", "[1m]"}[i]; !strings.HasSuffix(q, want) {
			t.Errorf("query %d has not the range %s:\n%s", i, want, q)
		}
	}
}

func TestCustomMetric(t *testing.T) {
	l := newLoader(t)
	l.loadCheckout()
	l.counter(2, "__name__", "checkout_failures_total", semconv.LabelKey, "checkout", semconv.LabelVariant, "on")
	l.counter(1, "__name__", "checkout_failures_total", semconv.LabelKey, "checkout", semconv.LabelVariant, "off")
	l.counter(5, "__name__", "checkout_failures_total", semconv.LabelKey, "other", semconv.LabelVariant, "on")
	l.counter(6, "__name__", "checkout_failures_total", semconv.LabelKey, "other", semconv.LabelVariant, "off")
	l.counter(1, cohortLabels(semconv.PromRequests, "other", "on", "split")...)
	l.counter(1, cohortLabels(semconv.PromRequests, "other", "off", "split")...)

	failures := mustTemplate(t, "checkout-failures",
		`sum by (feature_flag_result_variant) (increase(checkout_failures_total{feature_flag_key="{{ flag }}", feature_flag_result_variant=~"{{treatment}}|{{control}}"}[{{window}}]))`)
	missing := mustTemplate(t, "refunds", `sum by (feature_flag_result_variant) (increase(refunds_total{feature_flag_key="{{flag}}"}[{{window}}]))`)
	var counting countingProvider
	counting.p = l.s
	since := l.end.Add(-10 * time.Minute)
	got, err := NewReader(&counting).Read(context.Background(), l.end, []FlagQuery{
		{Flag: "checkout", Treatment: "on", Control: "off", Since: since, Custom: []*QueryTemplate{failures, missing}},
		{Flag: "other", Treatment: "on", Control: "off", Since: since, Custom: []*QueryTemplate{failures}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if counting.n != 4 {
		t.Errorf("%d queries, want 4: two built-in and one per custom metric", counting.n)
	}
	co := got["checkout"].Counts
	if !near(co.Treatment.Custom["checkout-failures"], 80) || !near(co.Control.Custom["checkout-failures"], 40) {
		t.Errorf("checkout custom counts %v / %v, want 80 / 40", co.Treatment.Custom, co.Control.Custom)
	}
	ot := got["other"].Counts
	if !near(ot.Treatment.Custom["checkout-failures"], 200) || !near(ot.Control.Custom["checkout-failures"], 240) {
		t.Errorf("other custom counts %v / %v, want 200 / 240", ot.Treatment.Custom, ot.Control.Custom)
	}
	if _, ok := co.Treatment.Custom["refunds"]; ok {
		t.Errorf("refunds has no series but was read: %v", co.Treatment.Custom)
	}
	if err := got["checkout"].Err; !errors.Is(err, ErrNoData) || !strings.Contains(err.Error(), `"refunds"`) {
		t.Errorf("checkout error %v, want ErrNoData naming refunds", err)
	}
	// other has no latency histogram, and nothing else missing.
	if err := got["other"].Err; err == nil || strings.Contains(err.Error(), "custom") {
		t.Errorf("other: error %v, want only the missing latency histogram", err)
	}
}

func TestQueryTemplateErrors(t *testing.T) {
	for _, tc := range []struct{ name, text, want string }{
		{"", "vector(1)", "empty name"},
		{"m", "  ", `custom metric "m": empty query`},
		{"m", `rate(x{flag="{{flagg}}"}[5m])`, `custom metric "m": unknown placeholder {{flagg}}`},
		{"m", `sum(rate(x[{{window}}])`, `custom metric "m": query`},
		{"m", `x[{{window}}]`, "want an instant vector"},
		{"m", `"{{flag}}"`, "want an instant vector"},
	} {
		_, err := ParseQueryTemplate(tc.name, tc.text)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseQueryTemplate(%q, %q) = %v, want an error containing %q", tc.name, tc.text, err, tc.want)
		}
	}
	tmpl := mustTemplate(t, "m", `x{feature_flag_key="{{flag}}"}`)
	if _, err := tmpl.Expand(`a"} or vector(1) or x{a="`, "on", "off", time.Minute); err == nil {
		t.Error("a flag key with a quote was put in a query")
	}
	if _, err := tmpl.Expand("a", "on", "off", 0); err == nil {
		t.Error("a zero window was accepted")
	}
	q, err := tmpl.Expand("a", "on", "off", 90*time.Second)
	if err != nil || q != `x{feature_flag_key="a"}` {
		t.Errorf("Expand = %q, %v", q, err)
	}
}

// TestCustomTemplatesFromPlan: moved with the plan to controller/plan
// (legacy_test.go).

func FuzzParseQueryTemplate(f *testing.F) {
	for _, s := range []string{
		`sum by (feature_flag_result_variant) (increase(x{feature_flag_key="{{flag}}"}[{{window}}]))`,
		`{{treatment}}`, `{{ control }}{{`, `}}{{window}}`, `x[{{window}}] offset {{window}}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		tmpl, err := ParseQueryTemplate("fuzz", text)
		if err != nil {
			if !strings.Contains(err.Error(), `"fuzz"`) {
				t.Errorf("error does not name the metric: %v", err)
			}
			return
		}
		// A template that parsed must expand for ordinary values.
		if _, err := tmpl.Expand("some-flag", "treatment", "control", time.Hour); err != nil {
			t.Errorf("parsed template %q fails to expand: %v", text, err)
		}
	})
}
