package demo

import (
	"bytes"
	"math"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vigil-dev/vigil/analysis/cohort"
	"github.com/vigil-dev/vigil/analysis/judge"
	"github.com/vigil-dev/vigil/controller/plan"
	"github.com/vigil-dev/vigil/controller/rollout"
	"github.com/vigil-dev/vigil/internal/fleet"
)

// endToEnd is the share of requests that fail on their way through
// services that behave as given, each failing on its own.
func endToEnd(services ...fleet.Behaviour) float64 {
	ok := 1.0
	for _, b := range services {
		ok *= 1 - b.ErrorRate
	}
	return 1 - ok
}

// TestHarmfulFailsTwiceAsOften holds the demo's behaviours to what the
// README and the flag's description say: a request of a user served
// fast-payments's treatment, which runs in payments behind gateway and
// checkout, fails twice as often as one of a user served control.
func TestHarmfulFailsTwiceAsOften(t *testing.T) {
	control := endToEnd(healthy, healthy, healthy)
	treatment := endToEnd(healthy, healthy, harmful)
	if r := treatment / control; r < 1.9 || r > 2.1 {
		t.Errorf("fast-payments: %.2f%% of treatment requests fail end to end vs %.2f%% of control: %.2f times, want about 2",
			100*treatment, 100*control, r)
	}
	if r := endToEnd(healthy, healthy, healthy) / control; r != 1 {
		t.Errorf("new-checkout's treatment fails %.2f times as often as control, want 1", r)
	}
	if harmful.TailRate <= healthy.TailRate || harmful.TailLatency <= healthy.TailLatency {
		t.Errorf("fast-payments's treatment tail %v at %v is not slower than control's %v at %v",
			harmful.TailRate, harmful.TailLatency, healthy.TailRate, healthy.TailLatency)
	}
}

// hist is a histogram from pairs of upper bound and cumulative count.
func hist(pairs ...float64) []cohort.Bucket {
	var out []cohort.Bucket
	for i := 0; i+1 < len(pairs); i += 2 {
		out = append(out, cohort.Bucket{UpperBound: pairs[i], Count: pairs[i+1]})
	}
	return out
}

func TestQuantile(t *testing.T) {
	inf := math.Inf(1)
	for _, tc := range []struct {
		name    string
		buckets []cohort.Bucket
		q, want float64
	}{
		// 100 requests: 90 under 10 ms, 10 between 10 and 50 ms; the
		// 95th is half way through the second bucket.
		{"interpolated", hist(0.01, 90, 0.05, 100, inf, 100), 0.95, 0.03},
		{"first bucket from zero", hist(0.01, 100, inf, 100), 0.5, 0.005},
		// The slowest 10% are beyond the last finite bound.
		{"in the +Inf bucket", hist(0.01, 50, 0.3, 90, inf, 100), 0.95, 0.3},
		// Extrapolated counts that dip are read as flat.
		{"dipping counts", hist(0.01, 90, 0.025, 89.5, 0.05, 100, inf, 100), 0.95, 0.0375},
		{"no requests", hist(0.01, 0, inf, 0), 0.95, math.NaN()},
		{"no histogram", nil, 0.95, math.NaN()},
		{"no +Inf bucket", hist(0.01, 10), 0.95, math.NaN()},
	} {
		got := quantile(tc.q, tc.buckets)
		if math.IsNaN(tc.want) != math.IsNaN(got) || (!math.IsNaN(got) && math.Abs(got-tc.want) > 1e-9) {
			t.Errorf("%s: p%.0f = %v, want %v", tc.name, 100*tc.q, got, tc.want)
		}
	}
}

// testState is fast-payments at its second step, with a verdict and the
// judge's evidence behind it.
func testState(t *testing.T) rollout.State {
	t.Helper()
	detail := &judge.Verdict{Outcome: judge.Inconclusive, Flag: fleet.FastPayments, Checks: []judge.CheckVerdict{
		{Check: "error-rate", Kind: judge.KindErrorRate, Outcome: judge.Inconclusive, Ratio: 2.5,
			Treatment: judge.CohortEvidence{Requests: 400, Events: 20, Rate: 0.05},
			Control:   judge.CohortEvidence{Requests: 4000, Events: 80, Rate: 0.02}},
		{Check: "latency", Kind: judge.KindLatency, Outcome: judge.Inconclusive, Ratio: 1.1},
	}}
	return rollout.State{Key: fleet.FastPayments, Phase: rollout.Progressing, Percent: 10, Step: 1,
		Plan:    plan.Plan{Steps: []float64{5, 10, 25, 50, 100}},
		Cohorts: rollout.Cohorts{Total: judge.RequestCounts{Treatment: 410, Control: 4100}},
		Verdict: &rollout.Verdict{Outcome: judge.Inconclusive, Summary: "error-rate: not enough evidence yet", Detail: detail}}
}

func TestDescribeShowsEachCohortsRequestsErrorsAndLatency(t *testing.T) {
	s := testState(t)
	inf := math.Inf(1)
	rd := cohort.Reading{
		Counts: judge.FlagCounts{Flag: fleet.FastPayments,
			Treatment: judge.CohortCounts{Requests: 500, Errors: 25},
			Control:   judge.CohortCounts{Requests: 5000, Errors: 100}},
		TreatmentBuckets: hist(0.005, 400, 0.25, 450, 0.3, 500, inf, 500),
		ControlBuckets:   hist(0.005, 4000, 0.06, 5000, inf, 5000),
	}
	got := describe(s, figuresOf(rd))
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^fast-payments +progressing +10%  ● 5% ─ ◉ 10% ─ ○ 25%`),
		regexp.MustCompile(`(?m)^   cohort +requests +errors +p95 latency$`),
		// Treatment's 475th of 500 requests is half way through the 50
		// between 250 and 300 ms; control's 4750th of 5000 is 750 into
		// the 1000 between 5 and 60 ms.
		regexp.MustCompile(`(?m)^   treatment +500 +25 \(5\.00%\) +275 ms$`),
		regexp.MustCompile(`(?m)^   control +5000 +100 \(2\.00%\) +46 ms$`),
		regexp.MustCompile(`(?m)^   checks: error-rate inconclusive \(ratio 2\.50\), latency inconclusive \(ratio 1\.10\)$`),
		regexp.MustCompile(`(?m)^   verdict: error-rate: not enough evidence yet$`),
	} {
		if !want.MatchString(got) {
			t.Errorf("view lacks %s:\n%s", want, got)
		}
	}

	// Before any read of the metrics: the judge's counts, no latency.
	got = describe(s, flagFigures{})
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^   treatment +400 +20 \(5\.00%\) +-$`),
		regexp.MustCompile(`(?m)^   control +4000 +80 \(2\.00%\) +-$`),
	} {
		if !want.MatchString(got) {
			t.Errorf("view without metrics lacks %s:\n%s", want, got)
		}
	}
}

func TestLiveViewRedrawsInPlace(t *testing.T) {
	var out bytes.Buffer
	v := &liveView{out: &out, live: true}
	states := map[string]rollout.State{fleet.FastPayments: testState(t)}
	v.draw(states, nil)
	first := out.String()
	lines := strings.Count(first, "\n")
	if strings.Contains(first, "\x1b[") || lines < 5 {
		t.Fatalf("first drawing: %d lines, want at least 5 and no cursor movement:\n%q", lines, first)
	}
	out.Reset()
	v.draw(states, nil)
	// Up over the last drawing, clear, draw again.
	if want := "\x1b[" + strconv.Itoa(lines) + "A\x1b[J" + first; out.String() != want {
		t.Errorf("redraw:\n%q\nwant\n%q", out.String(), want)
	}
}

func TestLogViewPrintsOnChange(t *testing.T) {
	var out bytes.Buffer
	v := &liveView{out: &out}
	s := testState(t)
	states := map[string]rollout.State{fleet.FastPayments: s}
	v.draw(states, nil)
	v.draw(states, nil)
	if n := strings.Count(out.String(), "fast-payments "); n != 1 {
		t.Errorf("same state drawn twice: %d headings, want 1:\n%s", n, out.String())
	}
	s.Phase, s.Percent, s.Step = rollout.RolledBack, 0, 1
	states[fleet.FastPayments] = s
	v.draw(states, nil)
	if !regexp.MustCompile(`(?m)^fast-payments +rolled_back +0%`).MatchString(out.String()) || strings.Contains(out.String(), "\x1b[") {
		t.Errorf("rollback not printed as a new block without cursor movement:\n%s", out.String())
	}
}

func TestSightings(t *testing.T) {
	s := newSightings()
	// Request 1: both services agree, and it failed for the caller.
	s.record("checkout", fleet.FastPayments, "u1", "1", "on")
	s.record("payments", fleet.FastPayments, "u1", "1", "on")
	s.answered("1", 502)
	// Request 2: control, fine.
	s.record("checkout", fleet.FastPayments, "u2", "2", "off")
	s.record("payments", fleet.FastPayments, "u2", "2", "off")
	s.answered("2", 200)
	// Request 3: the services disagreed; not counted as either cohort.
	s.record("checkout", fleet.FastPayments, "u3", "3", "off")
	s.record("payments", fleet.FastPayments, "u3", "3", "on")
	s.answered("3", 200)
	s.stop()
	// After the story: not recorded.
	s.record("checkout", fleet.FastPayments, "u4", "4", "on")
	s.answered("4", 502)

	multi, bad := s.summary()
	if multi[fleet.FastPayments] != 3 || bad[fleet.FastPayments] != 1 {
		t.Errorf("cross-service: %d users in more than one service, %d mismatched; want 3 and 1", multi[fleet.FastPayments], bad[fleet.FastPayments])
	}
	o := Outcome{Served: s.served()}
	if got := o.Served[fleet.FastPayments]; got["on"] != (Tally{1, 1}) || got["off"] != (Tally{1, 0}) {
		t.Errorf("served %v, want on 1 of 1 failed, off 0 of 1", got)
	}
	if r := o.ErrorRatio(fleet.FastPayments); !math.IsNaN(r) {
		t.Errorf("ratio %v without control failures, want NaN", r)
	}
	o.Served[fleet.FastPayments]["off"] = Tally{Requests: 100, Failed: 3}
	o.Served[fleet.FastPayments]["on"] = Tally{Requests: 50, Failed: 3}
	if r := o.ErrorRatio(fleet.FastPayments); math.Abs(r-2) > 1e-9 {
		t.Errorf("ratio %v, want 2", r)
	}
}

func TestPrintSummary(t *testing.T) {
	rb := testState(t)
	rb.Verdict.Detail = &judge.Verdict{Outcome: judge.Fail, Checks: []judge.CheckVerdict{
		{Check: "error-rate", Explanation: "treatment error rate 5.0% vs control 2.0% (ratio 2.5) exceeds tolerance 1.2: fail"}}}
	rb.Phase, rb.Percent = rollout.RolledBack, 0
	rb.History = []rollout.Transition{
		{At: time.Date(2026, 1, 2, 3, 4, 5, 0, time.Local), From: rollout.Progressing, To: rollout.RolledBack, Reason: "the judge found the treatment worse than control", Evidence: rb.Verdict},
	}
	o := Outcome{
		Rollouts:     map[string]rollout.State{fleet.FastPayments: rb},
		Sent:         1000,
		Failed:       40,
		CrossService: map[string]int{fleet.FastPayments: 700},
		Mismatched:   map[string]int{fleet.FastPayments: 0},
		Served:       map[string]map[string]Tally{fleet.FastPayments: {"on": {Requests: 100, Failed: 6}, "off": {Requests: 900, Failed: 27}}},
		Elapsed:      90 * time.Second,
	}
	for _, tc := range []struct {
		a    Artifacts
		want string
	}{
		{Artifacts{PrometheusAPI: "http://127.0.0.1:1234", PrometheusAuth: "bearer token in /d/admin-token"},
			"Prometheus API for Grafana (a Prometheus data source, bearer token in /d/admin-token): http://127.0.0.1:1234\n"},
		{Artifacts{PrometheusAPI: "http://prometheus:9090"}, "Prometheus API for Grafana (a Prometheus data source): http://prometheus:9090\n"},
	} {
		var out bytes.Buffer
		tc.a.Dashboards, tc.a.AlertRules = "/d/dashboards", "/d/alerts.yaml"
		PrintSummary(&out, o, tc.a)
		for _, want := range []string{
			"Summary after 1m30s: 1000 requests sent, 40 failed\n",
			"fast-payments: rolled_back at 0%\n",
			"      error-rate: treatment error rate 5.0% vs control 2.0% (ratio 2.5) exceeds tolerance 1.2: fail\n",
			"  fast-payments: treatment 6 of 100 failed (6.00%), control 27 of 900 (3.00%): 2.00 times as often (95% CI 0.85 to 4.73)\n",
			"  fast-payments: 700 users were served it by more than one service; 0 of them saw different variants in one request\n",
			"Grafana dashboards: /d/dashboards\n",
			"Prometheus alert rules: /d/alerts.yaml\n",
			tc.want,
		} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("summary lacks %q:\n%s", want, out.String())
			}
		}
	}
}
