package cohort

import (
	"context"
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
