package dashboards

import (
	"bytes"
	"context"
	"encoding/json"
	stdflag "flag"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
	"gopkg.in/yaml.v3"

	"github.com/vigil-dev/vigil/analysis/judge"
	"github.com/vigil-dev/vigil/controller/plan"
	"github.com/vigil-dev/vigil/controller/rollout"
	"github.com/vigil-dev/vigil/controller/rolloutmetrics"
	"github.com/vigil-dev/vigil/internal/fleet"
	"github.com/vigil-dev/vigil/sdk/flag"
)

var update = stdflag.Bool("update", false, "rewrite the golden files in testdata")

func testFlags(t *testing.T) map[string]flag.Flag {
	t.Helper()
	file, err := flag.ParseFile(filepath.Join("testdata", "flags.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]flag.Flag{}
	for _, f := range file.Flags {
		m[f.Key] = f
	}
	return m
}

// generated is one dashboard's JSON with the values its template variables
// take in a test.
type generated struct {
	name string
	json []byte
	vars map[string]string
}

func generateAll(t *testing.T) []generated {
	t.Helper()
	var out []generated
	for _, key := range []string{"new-checkout", "fast-payments", "dark-mode"} {
		b, err := ForFlag(testFlags(t)[key], Options{})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, generated{key, b, nil})
	}
	b, err := Overview(Options{})
	if err != nil {
		t.Fatal(err)
	}
	out = append(out,
		generated{"overview", b, map[string]string{"flag": ".*"}},
		generated{"overview-one-flag", b, map[string]string{"flag": "fast-payments"}})
	return out
}

func TestGolden(t *testing.T) {
	for _, g := range generateAll(t) {
		if g.name == "overview-one-flag" {
			continue
		}
		path := filepath.Join("testdata", g.name+".json")
		if *update {
			if err := os.WriteFile(path, g.json, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test -update to create it)", err)
		}
		if !bytes.Equal(g.json, want) {
			t.Errorf("%s differs from %s; if the change is intended, run go test ./dashboards -update and review the diff", g.name, path)
		}
	}
}

// TestRoundTrip decodes each dashboard into the Foundation SDK's types and
// encodes it again: a field Grafana's schema does not know, or a panel or
// query of an unregistered kind, would not come back the same.
func TestRoundTrip(t *testing.T) {
	plugins.RegisterDefaultPlugins()
	for _, g := range generateAll(t) {
		var d dashboard.Dashboard
		if err := json.Unmarshal(g.json, &d); err != nil {
			t.Fatalf("%s: %v", g.name, err)
		}
		again, err := json.MarshalIndent(d, "", "  ")
		if err != nil {
			t.Fatalf("%s: %v", g.name, err)
		}
		if !bytes.Equal(append(again, '\n'), g.json) {
			t.Errorf("%s: JSON changed on a round trip through dashboard.Dashboard", g.name)
		}
		if err := decodeStrict(g.json); err != nil {
			t.Errorf("%s: strict decoding: %v", g.name, err)
		}
	}
	// The strict decoder does refuse what the schema lacks.
	if err := decodeStrict([]byte(`{"title": "x", "bogus": 1}`)); err == nil {
		t.Error("strict decoding accepted an unknown field")
	}
}

// decodeStrict decodes a dashboard refusing fields the schema lacks. The
// SDK returns its error list as an error even when the list is empty.
func decodeStrict(js []byte) error {
	var d dashboard.Dashboard
	err := d.UnmarshalJSONStrict(js)
	if be, ok := err.(cog.BuildErrors); ok && len(be) == 0 {
		return nil
	}
	return err
}

// promQuery is one PromQL expression of a dashboard and where it sits.
type promQuery struct {
	where string
	expr  string
}

// queries lists every expression Grafana sends to Prometheus for a
// dashboard: the panels' targets and the annotations.
func queries(t *testing.T, js []byte) []promQuery {
	t.Helper()
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				RefID string `json:"refId"`
				Expr  string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Annotations struct {
			List []struct {
				Name string `json:"name"`
				Expr string `json:"expr"`
			} `json:"list"`
		} `json:"annotations"`
	}
	if err := json.Unmarshal(js, &d); err != nil {
		t.Fatal(err)
	}
	var out []promQuery
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			out = append(out, promQuery{p.Title + "/" + tg.RefID, tg.Expr})
		}
	}
	for _, a := range d.Annotations.List {
		out = append(out, promQuery{"annotation " + a.Name, a.Expr})
	}
	return out
}

var grafanaVar = regexp.MustCompile(`\$\{(\w+)(?::\w+)?\}|\$(\w+)`)

// substitute does what Grafana does to a query before sending it: replaces
// its variables, the built-in interval ones and the dashboard's own.
func substitute(t *testing.T, expr string, vars map[string]string) string {
	t.Helper()
	return grafanaVar.ReplaceAllStringFunc(expr, func(m string) string {
		sub := grafanaVar.FindStringSubmatch(m)
		name := sub[1] + sub[2]
		switch name {
		case "__rate_interval", "__interval", "__range":
			return rateInterval
		}
		v, ok := vars[name]
		if !ok {
			t.Errorf("query uses unknown variable %s: %s", m, expr)
		}
		return v
	})
}

func TestQueriesParse(t *testing.T) {
	p := parser.NewParser(parser.Options{})
	for _, g := range generateAll(t) {
		qs := queries(t, g.json)
		if len(qs) < 5 {
			t.Fatalf("%s: only %d queries", g.name, len(qs))
		}
		for _, q := range qs {
			expr := substitute(t, q.expr, g.vars)
			if _, err := p.ParseExpr(expr); err != nil {
				t.Errorf("%s: %s: %v\n%s", g.name, q.where, err, expr)
			}
		}
	}
}

// TestFleet runs every query of the dashboards of the flags in the test
// fleet, and of the overview, against what the fleet's services and
// controller exported, then checks that the panels measure what their
// titles say where the fleet's behaviour makes the truth known.
func TestFleet(t *testing.T) {
	run := runFleet(t)
	for _, key := range []string{fleet.NewCheckout, fleet.FastPayments} {
		if _, ok := testFlags(t)[key]; !ok {
			t.Fatalf("flag %s of the fleet is not in testdata/flags.yaml", key)
		}
	}
	if s := run.rollouts[fleet.NewCheckout]; s.Phase != rollout.Promoted {
		t.Fatalf("healthy new-checkout ended %s, want promoted:%s", s.Phase, summary(run.rollouts, run.start))
	}
	if s := run.rollouts[fleet.FastPayments]; s.Phase != rollout.RolledBack || s.Verdict == nil || s.Verdict.Outcome != judge.Fail {
		t.Fatalf("harmful fast-payments ended %s, want rolled back by the judge:%s", s.Phase, summary(run.rollouts, run.start))
	}
	t.Run("queries return data", func(t *testing.T) { testQueriesReturnData(t, run) })
	t.Run("flag variable", func(t *testing.T) { testFlagVariable(t, run) })
	t.Run("panel values", func(t *testing.T) { testPanelValues(t, run) })
	t.Run("transition annotation", func(t *testing.T) { testTransitionAnnotation(t, run) })
}

func testQueriesReturnData(t *testing.T, run *fleetRun) {
	for _, g := range generateAll(t) {
		if g.name == "dark-mode" {
			continue // not in the fleet
		}
		for _, q := range queries(t, g.json) {
			m := run.rangeQuery(t, substitute(t, q.expr, g.vars))
			if points(m) == 0 && !mayLack(q.where) {
				t.Errorf("%s: %s: no data\n%s", g.name, q.where, q.expr)
			}
		}
	}
}

// mayLack says whether a query may return nothing over the fleet: the
// judge exports a ratio, an interval, a harm bound or a floor's ratio only
// when it has one, and in the fleet fast-payments' control never fails (no
// ratio, no floor for its errors), new-checkout's plan turns the harm bound
// off, and its requests are never slower than its plan's edges. Every
// ratio check has a tolerance, which must be there.
func mayLack(where string) bool {
	return strings.HasPrefix(where, "Ratio and interval: ") && !strings.HasSuffix(where, "/tolerance")
}

// testFlagVariable asks the store for the overview's flag variable as
// Grafana does, with the label values API.
func testFlagVariable(t *testing.T, run *fleetRun) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got, _, _, err := run.api.LabelValues(ctx, "flag", []string{percentMetric}, run.start, run.end)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{fleet.NewCheckout, fleet.FastPayments} {
		if !slices.Contains(got, model.LabelValue(key)) {
			t.Errorf("flag variable offers %v, without %s", got, key)
		}
	}
}

// testPanelValues checks the panels against what is known of the fleet:
// fast-payments' treatment fails every request and takes at least 300 ms,
// its control never fails, and each rollout ended where its state says.
func testPanelValues(t *testing.T, run *fleetRun) {
	fp := flagScope(testFlags(t)[fleet.FastPayments])
	nc := flagScope(testFlags(t)[fleet.NewCheckout])
	treatment, control := fp.cohorts[0], fp.cohorts[1]
	// every checks every sample of expr's one series, and that it has some.
	every := func(name, expr string, ok func(float64) bool) {
		t.Helper()
		m := run.rangeQuery(t, substitute(t, expr, nil))
		if len(m) != 1 || points(m) == 0 {
			t.Errorf("%s: want one series with samples, got %v\n%s", name, m, expr)
			return
		}
		for _, p := range m[0].Values {
			if v := float64(p.Value); !math.IsNaN(v) && !ok(v) {
				t.Errorf("%s = %v at %v\n%s", name, v, p.Timestamp.Time().Sub(run.start), expr)
				return
			}
		}
	}
	last := func(name, expr string) float64 {
		t.Helper()
		m := run.rangeQuery(t, substitute(t, expr, nil))
		if len(m) != 1 || len(m[0].Values) == 0 {
			t.Fatalf("%s: want one series, got %v\n%s", name, m, expr)
		}
		return float64(m[0].Values[len(m[0].Values)-1].Value)
	}
	// peak is the highest number of expr's one series.
	peak := func(name, expr string) float64 {
		t.Helper()
		m := run.rangeQuery(t, substitute(t, expr, nil))
		if len(m) != 1 {
			t.Fatalf("%s: want one series, got %v\n%s", name, m, expr)
		}
		top := math.NaN()
		for _, p := range m[0].Values {
			if v := float64(p.Value); !math.IsNaN(v) && !(v <= top) {
				top = v
			}
		}
		return top
	}
	is := func(want float64) func(float64) bool {
		return func(v float64) bool { return math.Abs(v-want) < 1e-9 }
	}

	every("treatment error ratio", fp.errorRatio(treatment), is(1))
	// Control has no error series at all: zero stands in for it.
	every("control error ratio", fp.errorRatio(control), is(0))
	every("treatment slower than 0.25s", fp.slowShare(0.25, treatment), is(1))
	every("treatment p50", fp.quantile(0.5, treatment), func(v float64) bool { return v >= 0.25 })

	state := func(p rollout.Phase) float64 { return float64(slices.Index(rolloutStates(), string(p)) + 1) }
	if got := last("fast-payments state", fp.state()); got != state(rollout.RolledBack) {
		t.Errorf("fast-payments state = %v, want %v (rolled_back)", got, state(rollout.RolledBack))
	}
	if got := last("new-checkout state", nc.state()); got != state(rollout.Promoted) {
		t.Errorf("new-checkout state = %v, want %v (promoted)", got, state(rollout.Promoted))
	}
	if got := last("new-checkout percent", nc.percent()); got != 100 {
		t.Errorf("new-checkout percent = %v, want 100", got)
	}
	if got := last("fast-payments percent", fp.percent()); got != 0 {
		t.Errorf("fast-payments percent = %v, want 0", got)
	}

	// The evidence panel draws what the judge compared with its threshold:
	// the judge rolled fast-payments back on the tick its mean reached
	// 1/alpha, and new-checkout's stayed below all along.
	threshold := last("threshold", fp.threshold())
	if threshold != 100 { // alpha 0.01
		t.Errorf("threshold = %v, want 1/alpha = 100", threshold)
	}
	if got := last("fast-payments mean evidence", fp.meanEvidence()); got < threshold {
		t.Errorf("fast-payments was rolled back with a mean e-value of %v, below the threshold %v", got, threshold)
	}
	every("new-checkout mean evidence", nc.meanEvidence(), func(v float64) bool { return v < threshold })

	// The judge's own findings, as the ratio panels and the alerts read
	// them. fast-payments' treatment fails every request and its control
	// none: the judge's interval for the error ratio lay wholly above the
	// tolerance when it rolled back, which is what the error-ratio alert
	// fires on; new-checkout's never did.
	tolerance := last("fast-payments error-rate tolerance", fp.checkGauge(rolloutmetrics.Tolerance, plan.MetricErrorRate))
	if low := last("fast-payments error-rate interval low", fp.checkGauge(rolloutmetrics.RatioLow, plan.MetricErrorRate)); !(low > tolerance) {
		t.Errorf("fast-payments was rolled back with its error ratio's interval starting at %v, not above the tolerance %v", low, tolerance)
	}
	every("new-checkout error-rate interval low", nc.checkGauge(rolloutmetrics.RatioLow, plan.MetricErrorRate), func(v float64) bool { return v <= 1.2 })
	// fast-payments' plan sets no metrics: the defaults' harm bound is
	// there, 1.25 times the tolerance.
	if got := last("fast-payments harm bound", fp.checkGauge(rolloutmetrics.HarmBound, plan.MetricErrorRate)); math.Abs(got-plan.DefaultHarmFactor*tolerance) > 1e-9 {
		t.Errorf("fast-payments harm bound = %v, want %v times the tolerance %v", got, plan.DefaultHarmFactor, tolerance)
	}
	// The judge tests one of the edges new-checkout's plan names; it picks
	// fast-payments' from control's latency (a few milliseconds, more on a
	// busy machine), and at the look that rolled it back, treatment's
	// 300 ms requests were slower than it more often than control's.
	every("new-checkout judge's edge", nc.checkGauge(rolloutmetrics.Edge, plan.MetricLatency), func(v float64) bool { return slices.Contains(Edges(testFlags(t)[fleet.NewCheckout]), v) })
	every("fast-payments judge's edge", fp.checkGauge(rolloutmetrics.Edge, plan.MetricLatency), func(v float64) bool { return v > 0 })
	slowT := last("fast-payments treatment slower than the judge's edge", fp.cohortRate(plan.MetricLatency, rolloutmetrics.Treatment))
	slowC := last("fast-payments control slower than the judge's edge", fp.cohortRate(plan.MetricLatency, rolloutmetrics.Control))
	if !(slowT > slowC) {
		t.Errorf("at the rollback, %v of treatment's requests were slower than the judge's edge, %v of control's", slowT, slowC)
	}
	// The fleet's services split with the real SDK: treatment's share is
	// what the steps give (10% then 50%), and no mismatch is ever found.
	for _, s := range []scope{fp, nc} {
		every("expected share", s.splitGauge(rolloutmetrics.SplitExpected), func(v float64) bool { return v >= 0.1-1e-9 && v <= 0.5+1e-9 })
		every("observed share", s.splitGauge(rolloutmetrics.SplitObserved), func(v float64) bool { return v > 0.02 && v < 0.7 })
		every("sample ratio mismatch", s.splitGauge(rolloutmetrics.SplitMismatch), is(0))
	}
	// A check fails alone at the number of checks over alpha.
	checks := len(run.rollouts[fleet.NewCheckout].Verdict.Metrics)
	if got := last("new-checkout threshold per check", nc.checkThreshold()); checks < 2 || got != float64(checks)*threshold {
		t.Errorf("threshold per check = %v, want %d checks times %v", got, checks, threshold)
	}

	// The loop's own panels: the controller ticked, found the two
	// rollouts due, the judge weighed them, each read of the store asked
	// for some, and the loop's commits were timed.
	for name, expr := range map[string]string{
		"tick p50": tickQuantile(0.5), "time between ticks": tickSpacing(),
		"looks due per tick": perTick(looksDue), "looks judged per tick": perTick(looksJudged),
		"rollouts per read": rolloutsPerRead(), "store write p99": storeWriteLatency(0.99),
	} {
		if got := peak(name, expr); !(got > 0) {
			t.Errorf("%s peaked at %v over the fleet's rollouts, want more than 0\n%s", name, got, expr)
		}
	}
}

// testTransitionAnnotation checks that the annotation marks every
// transition of the rollouts, including the first to each state, whose
// counter appears at 1, and nothing else.
func testTransitionAnnotation(t *testing.T, run *fleetRun) {
	m := run.rangeQuery(t, substitute(t, overviewScope().transitions(), map[string]string{"flag": ".*"}))
	marked := map[string]time.Time{} // the last mark of each flag and state
	for _, s := range m {
		if _, ok := s.Metric[model.MetricNameLabel]; ok {
			t.Errorf("annotation series keeps its metric name: %v", s.Metric)
		}
		key := string(s.Metric["flag"]) + " " + string(s.Metric["to"])
		for _, p := range s.Values {
			if p.Value > 0 {
				marked[key] = p.Timestamp.Time()
			}
		}
	}
	want := map[string]time.Time{} // the last transition to each state
	for _, key := range []string{fleet.NewCheckout, fleet.FastPayments} {
		for _, h := range run.rollouts[key].History {
			want[key+" "+string(h.To)] = h.At
		}
	}
	for k, at := range want {
		// A mark follows the transition by up to a rate interval and the
		// scrape that saw it.
		if got, ok := marked[k]; !ok || got.Before(at) {
			t.Errorf("%s: last marked at %v, want a mark after the transition at %v", k, got, at)
		}
	}
	for k := range marked {
		if _, ok := want[k]; !ok {
			t.Errorf("annotation %s, but no such transition: %v", k, want)
		}
	}
}

func TestBuildFlagRejectsInvalidFlag(t *testing.T) {
	f := testFlags(t)["new-checkout"]
	f.Treatment = "missing"
	_, err := ForFlag(f, Options{})
	if err == nil || !strings.Contains(err.Error(), "new-checkout") || !strings.Contains(err.Error(), "treatment") {
		t.Fatalf("err = %v, want one naming the flag and its treatment", err)
	}
}

// panelTitles lists the titles of d's panels, and checks their IDs are
// distinct.
func panelTitles(t *testing.T, d dashboard.Dashboard) []string {
	t.Helper()
	var titles []string
	ids := map[uint32]bool{}
	for _, p := range d.Panels {
		if p.Panel != nil {
			titles = append(titles, *p.Panel.Title)
			if ids[*p.Panel.Id] {
				t.Errorf("panel id %d used twice", *p.Panel.Id)
			}
			ids[*p.Panel.Id] = true
		}
	}
	return titles
}

// TestJudgePanels: a flag's dashboard draws the judge's own findings, one
// interval panel per ratio check of its plan (the defaults' where it names
// no metrics), and slow shares only at the edges the plan names, never at
// fixed ones.
func TestJudgePanels(t *testing.T) {
	judge := []string{"The judge's latency edge", "Slower than the judge's edge", "Ratio and interval: error-rate",
		"Ratio and interval: latency", "Traffic split: treatment's share", "Sample ratio check", "Judge's evidence against the threshold"}
	for key, fixed := range map[string][]string{
		"new-checkout":  {"Slower than 0.5s", "Slower than 1s", "Slower than 2.5s"},
		"fast-payments": nil,
	} {
		d, err := BuildFlag(testFlags(t)[key], Options{})
		if err != nil {
			t.Fatal(err)
		}
		titles := panelTitles(t, d)
		for _, want := range append(judge, fixed...) {
			if !slices.Contains(titles, want) {
				t.Errorf("%s: no panel %q in %q", key, want, titles)
			}
		}
		var slow []string
		for _, title := range titles {
			if strings.HasPrefix(title, "Slower than ") && title != "Slower than the judge's edge" {
				slow = append(slow, title)
			}
		}
		if !slices.Equal(slow, fixed) {
			t.Errorf("%s: slow-share panels %q, want %q", key, slow, fixed)
		}
	}
	// A custom metric of the plan gets its own interval panel.
	f := testFlags(t)["fast-payments"]
	f.Rollout.Plan = json.RawMessage(`{"metrics":[{"name":"latency"},{"name":"checkout-failures","query":"sum by (feature_flag_result_variant) (increase(checkout_failures_total{feature_flag_key=\"{{flag}}\"}[{{window}}]))"}]}`)
	d, err := BuildFlag(f, Options{})
	if err != nil {
		t.Fatal(err)
	}
	titles := panelTitles(t, d)
	if !slices.Contains(titles, "Ratio and interval: checkout-failures") || slices.Contains(titles, "Ratio and interval: error-rate") {
		t.Errorf("plan with latency and a custom metric: panels %q", titles)
	}
}

// TestLoopPanels: the overview draws the rollout loop's cost, whatever
// flags are picked, beside the metric provider's errors.
func TestLoopPanels(t *testing.T) {
	d, err := BuildOverview(Options{})
	if err != nil {
		t.Fatal(err)
	}
	titles := panelTitles(t, d)
	for _, want := range []string{"Rollout loop tick duration", "Ticks that overran the interval", "Looks per tick",
		"Rollouts per metric provider read", "Metric provider read latency", "Store write latency", "Metric provider errors"} {
		if !slices.Contains(titles, want) {
			t.Errorf("no panel %q in %q", want, titles)
		}
	}
}

func TestDashboardSettings(t *testing.T) {
	f := testFlags(t)["new-checkout"]
	d, err := BuildFlag(f, Options{Refresh: "1m", From: "now-1h"})
	if err != nil {
		t.Fatal(err)
	}
	if *d.Uid != "vigil-flag-new-checkout" || *d.Refresh != "1m" || d.Time.From != "now-1h" {
		t.Errorf("uid %s refresh %s from %s", *d.Uid, *d.Refresh, d.Time.From)
	}
	vars := d.Templating.List
	if len(vars) != 1 || vars[0].Type != "datasource" || *vars[0].Query.String != "prometheus" {
		t.Errorf("want one prometheus datasource variable, got %+v", vars)
	}
	titles := panelTitles(t, d)
	for _, want := range []string{"Slower than 0.5s", "Slower than 1s", "Slower than 2.5s", "Latency p99"} {
		if !slices.Contains(titles, want) {
			t.Errorf("no panel %q in %q", want, titles)
		}
	}
}

func TestUID(t *testing.T) {
	long := strings.Repeat("a", 60)
	tests := []struct{ key, want string }{
		{"new-checkout", "vigil-flag-new-checkout"},
		{"New_Checkout-2", "vigil-flag-New_Checkout-2"},
		{strings.Repeat("x", 29), "vigil-flag-" + strings.Repeat("x", 29)},
	}
	for _, tt := range tests {
		if got := UID(tt.key); got != tt.want {
			t.Errorf("UID(%q) = %q, want %q", tt.key, got, tt.want)
		}
	}
	// Keys Grafana would refuse, or that would collide once cleaned, get
	// distinct valid UIDs.
	distinct := []string{"a.b", "a_b", long, long + "b", strings.Repeat("x", 30)}
	seen := map[string]string{}
	for _, k := range distinct {
		u := UID(k)
		if prev, dup := seen[u]; dup {
			t.Errorf("UID(%q) = UID(%q) = %q", k, prev, u)
		}
		seen[u] = k
		checkUID(t, k, u)
	}
}

var validUID = regexp.MustCompile(`^[A-Za-z0-9_-]{1,40}$`)

func checkUID(t *testing.T, key, uid string) {
	t.Helper()
	if !validUID.MatchString(uid) || !strings.HasPrefix(uid, "vigil-flag-") {
		t.Errorf("UID(%q) = %q: not a valid Grafana UID with the vigil-flag- prefix", key, uid)
	}
	if UID(key) != uid {
		t.Errorf("UID(%q) is not stable", key)
	}
}

func FuzzUID(f *testing.F) {
	for _, s := range []string{"new-checkout", "a.b", strings.Repeat("k", 128), "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, key string) {
		if err := flag.ValidateFlag(&flag.Flag{Key: key, Control: "a", Variants: map[string]json.RawMessage{"a": json.RawMessage("1")}}); err != nil {
			return // only valid keys reach UID
		}
		checkUID(t, key, UID(key))
	})
}

// TestEdges: the edges drawn from the SDK's histograms are those the plan
// names; with none, the judge picks its own, and no fixed edge stands in
// for them.
func TestEdges(t *testing.T) {
	fl := testFlags(t)
	if got := Edges(fl["new-checkout"]); !slices.Equal(got, []float64{0.5, 1, 2.5}) {
		t.Errorf("plan edges: %v", got)
	}
	if got := Edges(fl["fast-payments"]); len(got) != 0 {
		t.Errorf("edges of a plan that names none: %v", got)
	}
}

func TestEdgeMatcher(t *testing.T) {
	re := regexp.MustCompile("^(?:" + EdgeMatcher([]float64{0.25, 1, 10, 1e-05}) + ")$")
	for _, le := range []string{"0.25", "1", "1.0", "10", "10.0", "1e-05"} {
		if !re.MatchString(le) {
			t.Errorf("le=%q not matched", le)
		}
	}
	for _, le := range []string{"0.2", "0x25", "100", "1.00", "+Inf", "2"} {
		if re.MatchString(le) {
			t.Errorf("le=%q matched", le)
		}
	}
}

func TestProvisioning(t *testing.T) {
	b, err := Provisioning("/var/lib/grafana/dashboards/vigil", "Vigil")
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		APIVersion int `yaml:"apiVersion"`
		Providers  []struct {
			Name, Folder, Type string
			Options            struct{ Path string }
		}
	}
	if err := yaml.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.APIVersion != 1 || len(got.Providers) != 1 {
		t.Fatalf("got %+v", got)
	}
	p := got.Providers[0]
	if p.Type != "file" || p.Folder != "Vigil" || p.Options.Path != "/var/lib/grafana/dashboards/vigil" || p.Name == "" {
		t.Errorf("provider %+v", p)
	}
	if _, err := Provisioning("", "Vigil"); err == nil {
		t.Error("an empty path was accepted")
	}
}

// BenchmarkForFlag measures what the controller's dashboard endpoint costs
// per request when it builds the JSON each time.
func BenchmarkForFlag(b *testing.B) {
	file, err := flag.ParseFile(filepath.Join("testdata", "flags.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	f := file.Flags[0]
	for b.Loop() {
		if _, err := ForFlag(f, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}
