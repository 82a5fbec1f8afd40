package dashboards

import (
	"bytes"
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
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"gopkg.in/yaml.v3"

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
	for _, key := range []string{"new-checkout", "fast-search", "dark-mode"} {
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
		generated{"overview-one-flag", b, map[string]string{"flag": "fast-search"}})
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

// TestQueriesReturnData runs every query of the dashboards of the flags in
// the test fleet, and of the overview, against the fleet's metrics.
func TestQueriesReturnData(t *testing.T) {
	st := loadFleet(t)
	ng := newEngine(t)
	for _, g := range generateAll(t) {
		if g.name == "dark-mode" {
			continue // not in the fleet
		}
		for _, q := range queries(t, g.json) {
			m := rangeQuery(t, ng, st, substitute(t, q.expr, g.vars))
			if points(m) == 0 {
				t.Errorf("%s: %s: no data\n%s", g.name, q.where, q.expr)
			}
		}
	}
}

// points counts the samples of m that are numbers.
func points(m promql.Matrix) int {
	n := 0
	for _, s := range m {
		for _, p := range s.Floats {
			if !math.IsNaN(p.F) {
				n++
			}
		}
	}
	return n
}

// TestPanelValues checks that the panels measure what their titles say, on
// cohorts whose true error ratios and latency distributions are known.
func TestPanelValues(t *testing.T) {
	st := loadFleet(t)
	ng := newEngine(t)
	f := testFlags(t)["fast-search"]
	s := flagScope(f)
	treatment, control := s.cohorts[0], s.cohorts[1]
	last := func(expr string) float64 {
		t.Helper()
		m := rangeQuery(t, ng, st, substitute(t, expr, nil))
		if len(m) != 1 || len(m[0].Floats) == 0 {
			t.Fatalf("want one series, got %v\n%s", m, expr)
		}
		return m[0].Floats[len(m[0].Floats)-1].F
	}
	near := func(name string, got, want, tol float64) {
		t.Helper()
		if math.Abs(got-want) > tol {
			t.Errorf("%s = %.4f, want %.4f ± %.4f", name, got, want, tol)
		}
	}
	near("treatment error ratio", last(s.errorRatio(treatment)), 0.04, 0.002)
	near("control error ratio", last(s.errorRatio(control)), 0.01, 0.002)
	// Exponential latency: the share slower than e is exp(-e/mean).
	near("treatment slower than 0.5s", last(s.slowShare(0.5, treatment)), math.Exp(-0.5/0.4), 0.01)
	near("control slower than 0.5s", last(s.slowShare(0.5, control)), math.Exp(-0.5/0.2), 0.01)
	// The p50 of an exponential is mean*ln 2; bucket interpolation is coarse.
	near("control p50", last(s.quantile(0.5, control)), 0.2*math.Ln2, 0.03)
	near("state after the rollback", last(s.state()), float64(slices.Index(rolloutStates(), "rolled_back")+1), 0)

	nc := flagScope(testFlags(t)["new-checkout"])
	near("new-checkout state", last(nc.state()), float64(slices.Index(rolloutStates(), "progressing")+1), 0)
	near("new-checkout percent", last(nc.percent()), 25, 0)

	// A cohort that never failed shows a zero error ratio, not a gap.
	noErrors := flagScope(flag.Flag{Key: "new-checkout"})
	m := rangeQuery(t, ng, st, substitute(t, strings.ReplaceAll(noErrors.errorRatio(cohort{}), `error_type!=""`, `error_type="never"`), nil))
	if len(m) != 2 || m[0].Floats[0].F != 0 {
		t.Errorf("error ratio without failures = %v, want 0 for both variants", m)
	}
}

// TestTransitionAnnotation checks that the annotation marks each transition
// once, at the step that follows it, including the first transition to a
// state, whose counter starts at 1.
func TestTransitionAnnotation(t *testing.T) {
	st := loadFleet(t)
	ng := newEngine(t)
	m := rangeQuery(t, ng, st, substitute(t, overviewScope().transitions(), map[string]string{"flag": ".*"}))
	got := map[string][]time.Duration{}
	for _, s := range m {
		key := s.Metric.Get("flag") + " " + s.Metric.Get("to")
		for _, p := range s.Floats {
			got[key] = append(got[key], time.Duration(p.T)*time.Millisecond)
		}
	}
	want := map[string][]time.Duration{
		"new-checkout progressing": {10 * time.Minute, 20 * time.Minute},
		"fast-search progressing":  {10 * time.Minute},
		"fast-search rolled_back":  {20 * time.Minute},
	}
	for k, w := range want {
		if !slices.Equal(got[k], w) {
			t.Errorf("%s: annotations at %v, want %v", k, got[k], w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("annotations for %v, want only %v", got, want)
	}
	for _, s := range m {
		if s.Metric.Has(labels.MetricName) {
			t.Errorf("annotation series keeps its metric name: %v", s.Metric)
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

func TestEdges(t *testing.T) {
	fl := testFlags(t)
	if got := Edges(fl["new-checkout"], Options{}); !slices.Equal(got, []float64{0.5, 1, 2.5}) {
		t.Errorf("plan edges: %v", got)
	}
	if got := Edges(fl["fast-search"], Options{}); !slices.Equal(got, []float64{0.25, 0.5, 1}) {
		t.Errorf("default edges: %v", got)
	}
	if got := Edges(fl["fast-search"], Options{Edges: []float64{2, 0.1, 2}}); !slices.Equal(got, []float64{0.1, 2}) {
		t.Errorf("option edges: %v", got)
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
