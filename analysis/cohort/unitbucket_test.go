package cohort

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-dev/vigil/analysis/judge"
	"github.com/vigil-dev/vigil/sdk/flag"
	"github.com/vigil-dev/vigil/sdk/semconv"
)

// TestReadUnitBuckets reads series labelled with the unit bucket: each
// cohort's counts come back split by bucket, adding up to the totals, from
// the same one query per metric.
func TestReadUnitBuckets(t *testing.T) {
	l := newLoader(t)
	req := func(flagKey, variant, bucket string, step float64, extra ...string) {
		l.counter(step, cohortLabels(semconv.PromRequests, flagKey, variant, "split", append([]string{semconv.LabelUnitBucket, bucket}, extra...)...)...)
	}
	hist := func(flagKey, variant, bucket, le string, step float64) {
		l.counter(step, cohortLabels(semconv.PromRequestDuration+"_bucket", flagKey, variant, "split", semconv.LabelUnitBucket, bucket, labelLE, le)...)
	}
	// ub: treatment in buckets 0 and 3, control in 1 and 7 (over 10
	// minutes a counter grows by 40 steps).
	req("ub", "on", "0", 2)
	req("ub", "on", "3", 1)
	req("ub", "on", "3", 1, semconv.LabelErrorType, "timeout")
	hist("ub", "on", "0", "0.1", 1)
	hist("ub", "on", "0", "+Inf", 2)
	hist("ub", "on", "3", "0.1", 0)
	hist("ub", "on", "3", "+Inf", 1)
	req("ub", "off", "1", 4)
	req("ub", "off", "7", 6)
	req("ub", "off", "7", 1, semconv.LabelErrorType, "500")
	hist("ub", "off", "1", "0.1", 4)
	hist("ub", "off", "1", "+Inf", 4)
	hist("ub", "off", "7", "0.1", 3)
	hist("ub", "off", "7", "+Inf", 6)
	// An old pod's unlabelled series that counted nothing in the window
	// does not stop the split.
	l.counter(0, cohortLabels(semconv.PromRequests, "ub", "off", "split", "pod", "old")...)
	// mixed: treatment counts from a labelled and an unlabelled SDK.
	req("mixed", "on", "2", 1)
	l.counter(3, cohortLabels(semconv.PromRequests, "mixed", "on", "split", "pod", "old")...)
	req("mixed", "off", "5", 1)
	// A custom metric grouped by the bucket label.
	for _, c := range []struct {
		variant, bucket string
		step            float64
	}{{"on", "0", 1}, {"on", "3", 2}, {"off", "7", 5}} {
		l.counter(c.step, "__name__", "checkout_failures_total", semconv.LabelKey, "ub", semconv.LabelVariant, c.variant, semconv.LabelUnitBucket, c.bucket)
	}
	failures := mustTemplate(t, "checkout-failures",
		`sum by (feature_flag_result_variant, vigil_unit_bucket) (increase(checkout_failures_total{feature_flag_key="{{flag}}"}[{{window}}]))`)

	var counting countingProvider
	counting.p = l.s
	since := l.end.Add(-10 * time.Minute)
	got, err := NewReader(&counting).Read(context.Background(), l.end, []FlagQuery{
		{Flag: "ub", Treatment: "on", Control: "off", Since: since, Custom: []*QueryTemplate{failures}},
		{Flag: "mixed", Treatment: "on", Control: "off", Since: since},
	})
	if err != nil {
		t.Fatal(err)
	}
	if counting.n != 3 {
		t.Errorf("%d queries for 2 flags, want 3: one per built-in metric and one custom", counting.n)
	}

	ub := got["ub"]
	if ub.Err != nil {
		t.Fatalf("ub: %v", ub.Err)
	}
	assertCounts(t, ub.Counts, judge.FlagCounts{
		Flag:      "ub",
		Treatment: judge.CohortCounts{Requests: 160, Errors: 40, Slower: map[float64]float64{0.1: 80}, Custom: map[string]float64{"checkout-failures": 120}},
		Control:   judge.CohortCounts{Requests: 440, Errors: 40, Slower: map[float64]float64{0.1: 120}, Custom: map[string]float64{"checkout-failures": 200}},
	})
	wantBuckets := func(cohort string, got []judge.CohortCounts, want map[int]judge.CohortCounts) {
		t.Helper()
		if len(got) != flag.UnitBuckets {
			t.Fatalf("ub %s: %d unit buckets, want %d", cohort, len(got), flag.UnitBuckets)
		}
		for b, c := range got {
			w := want[b]
			if w.Slower == nil {
				w.Slower = map[float64]float64{0.1: 0}
			}
			if w.Custom == nil {
				w.Custom = map[string]float64{"checkout-failures": 0}
			}
			assertCounts(t, judge.FlagCounts{Flag: "ub", Treatment: c}, judge.FlagCounts{Flag: "ub", Treatment: w})
			if c.UnitBuckets != nil {
				t.Errorf("ub %s bucket %d has its own unit buckets", cohort, b)
			}
		}
	}
	wantBuckets("treatment", ub.Counts.Treatment.UnitBuckets, map[int]judge.CohortCounts{
		0: {Requests: 80, Slower: map[float64]float64{0.1: 40}, Custom: map[string]float64{"checkout-failures": 40}},
		3: {Requests: 80, Errors: 40, Slower: map[float64]float64{0.1: 40}, Custom: map[string]float64{"checkout-failures": 80}},
	})
	wantBuckets("control", ub.Counts.Control.UnitBuckets, map[int]judge.CohortCounts{
		1: {Requests: 160},
		7: {Requests: 280, Errors: 40, Slower: map[float64]float64{0.1: 120}, Custom: map[string]float64{"checkout-failures": 200}},
	})

	mixed := got["mixed"].Counts
	if !near(mixed.Treatment.Requests, 160) || mixed.Treatment.UnitBuckets != nil {
		t.Errorf("mixed treatment: requests %v (want 160, both SDKs) and unit buckets %v (want none)", mixed.Treatment.Requests, mixed.Treatment.UnitBuckets)
	}
	if len(mixed.Control.UnitBuckets) != flag.UnitBuckets || !near(mixed.Control.UnitBuckets[5].Requests, 40) {
		t.Errorf("mixed control: unit buckets %v, want 40 requests in bucket 5", mixed.Control.UnitBuckets)
	}
	// The histogram is missing for mixed: its buckets' latency is
	// unreadable, like the totals'.
	if mixed.Control.Slower != nil || mixed.Control.UnitBuckets[5].Slower != nil {
		t.Errorf("mixed control has no histogram, got slower %v", mixed.Control.UnitBuckets[5].Slower)
	}
}

// TestReadWithoutUnitBuckets: series from SDKs that do not label the bucket
// count in the totals, and no cohort is split.
func TestReadWithoutUnitBuckets(t *testing.T) {
	l := newLoader(t)
	l.loadCheckout()
	got, err := NewReader(l.s).Read(context.Background(), l.end, []FlagQuery{{Flag: "checkout", Treatment: "on", Control: "off", Since: l.end.Add(-10 * time.Minute)}})
	if err != nil {
		t.Fatal(err)
	}
	co := got["checkout"].Counts
	if co.Treatment.UnitBuckets != nil || co.Control.UnitBuckets != nil || !near(co.Treatment.Requests, 160) {
		t.Errorf("unlabelled series: requests %v, unit buckets %v / %v; want 160 and none", co.Treatment.Requests, co.Treatment.UnitBuckets, co.Control.UnitBuckets)
	}
}

func TestUnitBucketLabel(t *testing.T) {
	for _, tc := range []struct {
		value string
		want  int
		ok    bool
	}{{"0", 0, true}, {"7", 7, true}, {"8", 0, false}, {"-1", 0, false}, {"x", 0, false}, {"", 0, false}} {
		b, ok := unitBucket(tc.value)
		if b != tc.want || ok != tc.ok {
			t.Errorf("unitBucket(%q) = %d, %v; want %d, %v", tc.value, b, ok, tc.want, tc.ok)
		}
	}
}

// TestReadSomeLatencyEdges: a flag read at one histogram bound after a read
// in full asks for that bound and +Inf only, and counts the requests
// slower than it exactly as a read in full does, in total and by unit
// bucket; the bounds left out are not in its counts. A bound asked for
// again is counted from the rollout's start, both by a Reader that read it
// before and by one that never did (a new process).
func TestReadSomeLatencyEdges(t *testing.T) {
	l := newLoader(t)
	steps := map[string][4]float64{ // per 15 s at le 0.1, 0.25, 0.5, +Inf
		"on/0": {1, 2, 3, 4}, "on/1": {0, 1, 1, 2}, "off/0": {1, 3, 4, 5}, "off/1": {2, 2, 3, 6},
	}
	for cohortBucket, s := range steps {
		variant, bucket, _ := strings.Cut(cohortBucket, "/")
		l.counter(s[3], cohortLabels(semconv.PromRequests, "f", variant, "split", semconv.LabelUnitBucket, bucket)...)
		for i, le := range []string{"0.1", "0.25", "0.5", "+Inf"} {
			l.counter(s[i], cohortLabels(semconv.PromRequestDuration+"_bucket", "f", variant, "split", semconv.LabelUnitBucket, bucket, labelLE, le)...)
		}
	}
	// A second process of treatment's bucket 0 writes 0.25 s as 0.250.
	for le, step := range map[string]float64{"0.250": 1, "0.5": 1, "+Inf": 2} {
		l.counter(step, cohortLabels(semconv.PromRequestDuration+"_bucket", "f", "on", "split", semconv.LabelUnitBucket, "0", labelLE, le, "pod", "b")...)
	}
	l.counter(2, cohortLabels(semconv.PromRequests, "f", "on", "split", semconv.LabelUnitBucket, "0", "pod", "b")...)
	// The counters had counted 20 scrapes' worth when the rollout began.
	since := l.end.Add(-5 * time.Minute)
	query := func(les ...float64) []FlagQuery {
		return []FlagQuery{{Flag: "f", Treatment: "on", Control: "off", Since: since, LatencyEdges: les}}
	}
	var counting countingProvider
	counting.p = l.s
	some, all := NewReader(&counting), NewReader(l.s)
	for i, at := range []time.Time{l.end.Add(-4 * time.Minute), l.end.Add(-2 * time.Minute), l.end} {
		q := query()
		if i > 0 {
			q = query(0.25)
		}
		counting.queries = nil
		got, err := some.Read(context.Background(), at, q)
		if err != nil {
			t.Fatal(err)
		}
		want, err := all.Read(context.Background(), at, query())
		if err != nil {
			t.Fatal(err)
		}
		g, w := got["f"], want["f"]
		for _, c := range []struct {
			name      string
			got, want judge.CohortCounts
		}{{"treatment", g.Counts.Treatment, w.Counts.Treatment}, {"control", g.Counts.Control, w.Counts.Control}} {
			if c.got.Slower[0.25] != c.want.Slower[0.25] || len(c.got.UnitBuckets) == 0 || len(c.got.UnitBuckets) != len(c.want.UnitBuckets) {
				t.Fatalf("read %d, %s: %v slower than 0.25 s, %d unit buckets; a read in full: %v", i, c.name, c.got.Slower[0.25], len(c.got.UnitBuckets), c.want.Slower[0.25])
			}
			for b := range c.got.UnitBuckets {
				if c.got.UnitBuckets[b].Slower[0.25] != c.want.UnitBuckets[b].Slower[0.25] {
					t.Errorf("read %d, %s, unit bucket %d: %v slower than 0.25 s, a read in full %v", i, c.name, b, c.got.UnitBuckets[b].Slower[0.25], c.want.UnitBuckets[b].Slower[0.25])
				}
			}
			if i > 0 && (len(c.got.Slower) != 1 || len(c.got.UnitBuckets[0].Slower) != 1) {
				t.Errorf("read %d, %s: slower than %v, want 0.25 s only", i, c.name, c.got.Slower)
			}
		}
		latency := counting.queries[slices.IndexFunc(counting.queries, func(q string) bool { return strings.Contains(q, "_bucket") })]
		if filtered := strings.Contains(latency, `le=~"0\\.25|0\\.250|\\+Inf"`); filtered != (i > 0) {
			t.Errorf("read %d: latency query %s", i, latency)
		}
	}
	// By hand, over the 20 scrapes since the start: treatment's buckets
	// counted (4−2)·20 + (2−1)·20 requests slower than 0.25 s, and the
	// second process (2−1)·20, control's (5−3)·20 + (6−2)·20; slower than
	// 0.5 s, (4−3)·20 + (2−1)·20 + (2−1)·20 and (5−4)·20 + (6−3)·20.
	fresh := NewReader(l.s)
	// It learns how the bounds are written from an earlier rollout of f,
	// and then reads this one at 0.25 s only.
	earlier := query()
	earlier[0].Since = since.Add(-time.Minute)
	for _, q := range [][]FlagQuery{earlier, query(0.25)} {
		if _, err := fresh.Read(context.Background(), l.end.Add(-2*time.Minute), q); err != nil {
			t.Fatal(err)
		}
	}
	for name, r := range map[string]*Reader{"a Reader that read every bound": some, "a Reader that never read 0.5 s": fresh} {
		got, err := r.Read(context.Background(), l.end, query(0.25, 0.5))
		if err != nil {
			t.Fatal(err)
		}
		if co := got["f"].Counts; co.Treatment.Slower[0.25] != 80 || co.Control.Slower[0.25] != 120 || co.Treatment.Slower[0.5] != 60 || co.Control.Slower[0.5] != 80 {
			t.Errorf("%s: slower than 0.25 s %v and %v, than 0.5 s %v and %v; want 80 and 120, 60 and 80", name,
				co.Treatment.Slower[0.25], co.Control.Slower[0.25], co.Treatment.Slower[0.5], co.Control.Slower[0.5])
		}
	}
	if _, err := some.Read(context.Background(), l.end, []FlagQuery{{Flag: "f", Treatment: "on", Control: "off", Since: since, LatencyEdges: []float64{0.5, 0.25}}}); err == nil || !strings.Contains(err.Error(), "flag f: latency edges [0.5 0.25]") {
		t.Errorf("edges out of order: %v", err)
	}
}

// TestReadSomeLatencyEdgesOfANewProcess: a process that starts while a
// flag reads 1 s alone, and writes that bound as 1.0 where every series
// seen wrote 1, is counted as a read in full counts it. By hand: the new
// process's treatment requests slower than 1 s are its +Inf less its 1.0,
// 3 − 2 a scrape over the 12 since it began, so 12 more than the first
// process's (4 − 1)·20 = 60 since the rollout began: 72, where reading its
// +Inf without its 1.0 would give 96.
func TestReadSomeLatencyEdgesOfANewProcess(t *testing.T) {
	l := newLoader(t)
	for _, v := range []string{"on", "off"} {
		l.counter(4, cohortLabels(semconv.PromRequests, "f", v, "split", semconv.LabelUnitBucket, "0")...)
		for le, step := range map[string]float64{"0.5": 0.5, "1": 1, "+Inf": 4} {
			l.counter(step, cohortLabels(semconv.PromRequestDuration+"_bucket", "f", v, "split", semconv.LabelUnitBucket, "0", labelLE, le)...)
		}
	}
	// The new process's samples begin 3 minutes before the end, 12
	// scrapes.
	l.counterFrom(28, 3, cohortLabels(semconv.PromRequests, "f", "on", "split", semconv.LabelUnitBucket, "0", "pod", "b")...)
	for le, step := range map[string]float64{"0.5": 1, "1.0": 2, "+Inf": 3} {
		l.counterFrom(28, step, cohortLabels(semconv.PromRequestDuration+"_bucket", "f", "on", "split", semconv.LabelUnitBucket, "0", labelLE, le, "pod", "b")...)
	}
	since := l.end.Add(-5 * time.Minute)
	query := func(les ...float64) []FlagQuery {
		return []FlagQuery{{Flag: "f", Treatment: "on", Control: "off", Since: since, LatencyEdges: les}}
	}
	some := NewReader(l.s)
	// A read in full before the new process began learns how 1 s is
	// written: 1.
	if _, err := some.Read(context.Background(), l.end.Add(-4*time.Minute), query()); err != nil {
		t.Fatal(err)
	}
	got, err := some.Read(context.Background(), l.end, query(1))
	if err != nil {
		t.Fatal(err)
	}
	want, err := NewReader(l.s).Read(context.Background(), l.end, query())
	if err != nil {
		t.Fatal(err)
	}
	if g, w := got["f"].Counts.Treatment.Slower[1], want["f"].Counts.Treatment.Slower[1]; g != 72 || w != 72 {
		t.Errorf("treatment slower than 1 s: %v read at 1 s alone, %v read in full; want 72", g, w)
	}
}
