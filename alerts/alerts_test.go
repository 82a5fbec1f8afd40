package alerts

import (
	"bytes"
	"context"
	stdflag "flag"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/template"

	"github.com/vigil-dev/vigil/analysis/cohort"
	"github.com/vigil-dev/vigil/analysis/metricstore"
	"github.com/vigil-dev/vigil/controller/plan"
	"github.com/vigil-dev/vigil/controller/rolloutmetrics"
	"github.com/vigil-dev/vigil/controller/runner"
	"github.com/vigil-dev/vigil/controller/server"
	"github.com/vigil-dev/vigil/dashboards"
	"github.com/vigil-dev/vigil/internal/client"
	"github.com/vigil-dev/vigil/internal/testenv/poll"
	"github.com/vigil-dev/vigil/sdk/flag"
)

var update = stdflag.Bool("update", false, "rewrite the golden files in testdata")

func testFlags(t *testing.T) []flag.Flag {
	t.Helper()
	f, err := flag.ParseFile(filepath.Join("testdata", "flags.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return f.Flags
}

// testOptions are the options rules_test.yaml expects.
func testOptions() Options {
	return Options{Team: "payments", GrafanaURL: "https://grafana.example.com/"}
}

func generate(t *testing.T, opts Options) []byte {
	t.Helper()
	b, err := Generate(testFlags(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestGolden(t *testing.T) {
	got := generate(t, testOptions())
	path := filepath.Join("testdata", "rules.yaml")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("generated rules differ from %s; if the change is intended, run go test ./alerts -update and review the diff", path)
	}
}

func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool not found (Debian package prometheus): %v", err)
	}
	return p
}

// runPromtool writes rules beside a copy of testdata/rules_test.yaml and
// runs promtool on them.
func runPromtool(t *testing.T, rules []byte, args ...string) (string, error) {
	t.Helper()
	dir := t.TempDir()
	tests, err := os.ReadFile(filepath.Join("testdata", "rules_test.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"rules.yaml": rules, "rules_test.yaml": tests} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(promtool(t), args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestPromtoolCheckRules(t *testing.T) {
	out, err := runPromtool(t, generate(t, testOptions()), "check", "rules", "rules.yaml")
	if err != nil || !strings.Contains(out, "SUCCESS") {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
}

// TestPromtoolUnitTests runs the rule unit tests: input series, then the
// alerts that must fire, with their labels and annotations, and those that
// must not.
func TestPromtoolUnitTests(t *testing.T) {
	out, err := runPromtool(t, generate(t, testOptions()), "test", "rules", "rules_test.yaml")
	if err != nil || !strings.Contains(out, "SUCCESS") {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
}

// TestPromtoolUnitTestsFail checks the unit tests can fail: with alerts
// that fire after a minute rather than ten, the judge's error-ratio alert
// fires at five minutes, where the tests say it is still pending.
func TestPromtoolUnitTestsFail(t *testing.T) {
	opts := testOptions()
	opts.For = time.Minute
	out, err := runPromtool(t, generate(t, opts), "test", "rules", "rules_test.yaml")
	if err == nil {
		t.Fatalf("promtool test rules passed on rules it should reject:\n%s", out)
	}
	if !strings.Contains(out, "VigilTreatmentErrorRatioHigh") {
		t.Errorf("promtool failed, but not on the error ratio alert:\n%s", out)
	}
}

func TestExprsParse(t *testing.T) {
	groups, err := Groups(testFlags(t), testOptions())
	if err != nil {
		t.Fatal(err)
	}
	p := parser.NewParser(parser.Options{})
	var names []string
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			if _, err := p.ParseExpr(r.Expr); err != nil {
				t.Errorf("%s %s%s: %v\n%s", g.Name, r.Record, r.Alert, err, r.Expr)
			}
			names = append(names, g.Name+"/"+r.Record+r.Alert)
		}
	}
	for _, want := range []string{
		"vigil-recording/" + ErrorRatio,
		"vigil-recording/" + SlowRatio,
		"vigil-rollouts/" + AlertRolloutStuck,
		"vigil-rollouts/" + AlertRolledBack,
		"vigil-rollouts/" + AlertProviderErrors,
		"vigil-rollouts/" + AlertCohortsMissing,
		"vigil-rollouts/" + AlertErrorRatioHigh,
		"vigil-rollouts/" + AlertLatencyRegressed,
		"vigil-rollouts/" + AlertSplitMismatch,
		"vigil-rollouts/" + AlertTicksOverrun,
		"vigil-rollouts/" + AlertLooksLate,
		"vigil-flag-new-checkout/" + AlertErrorRatioAbove,
		"vigil-flag-new-checkout/" + AlertP99AboveMax,
	} {
		if !slices.Contains(names, want) {
			t.Errorf("no rule %s", want)
		}
	}
	for _, n := range names {
		// fast-search's plan sets no bounds, so it needs no group of its
		// own; dark-mode has no treatment.
		if strings.HasPrefix(n, "vigil-flag-fast-search/") || strings.HasPrefix(n, "vigil-flag-dark-mode/") {
			t.Errorf("unexpected rule %s", n)
		}
	}
}

func TestStuckWindowCoversLongSteps(t *testing.T) {
	flags := testFlags(t)
	spec, err := plan.OfFlag(flags[0])
	if err != nil || spec == nil {
		t.Fatalf("flag %s: plan %v, %v", flags[0].Key, spec, err)
	}
	spec.MaxStepDuration = new(plan.Duration(90 * time.Minute))
	flags[0].Rollout.Plan = spec.Raw()
	groups, err := Groups(flags, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range groups.Groups[1].Rules {
		if r.Alert == AlertRolloutStuck && !strings.Contains(r.Expr, "[3h]") {
			t.Errorf("stuck window for a 90m step is not 3h:\n%s", r.Expr)
		}
	}
}

// TestLooksLateFollowsShortestInterval: the loop is too slow once its
// median tick passes half the shortest plan interval among the flags that
// can be rolled out, the defaults' where they set none.
func TestLooksLateFollowsShortestInterval(t *testing.T) {
	flags := testFlags(t) // new-checkout sets 20s, fast-search the defaults' 30s
	withInterval := func(f flag.Flag, d time.Duration) flag.Flag {
		spec, err := plan.OfFlag(f)
		if err != nil {
			t.Fatal(err)
		}
		if spec == nil {
			spec = &plan.Spec{}
		}
		spec.Interval = new(plan.Duration(d))
		r := flag.Rollout{}
		if f.Rollout != nil {
			r = *f.Rollout
		}
		r.Plan = spec.Raw()
		f.Rollout = &r
		return f
	}
	darkMode := slices.IndexFunc(flags, func(f flag.Flag) bool { return f.Key == "dark-mode" })
	tests := []struct {
		name  string
		flags []flag.Flag
		want  time.Duration
	}{
		{"the flags'", flags, 20 * time.Second},
		{"no flags", nil, 30 * time.Second},
		{"the defaults' below a longer one", []flag.Flag{withInterval(flags[0], time.Minute), flags[1]}, 30 * time.Second},
		{"a flag with no treatment is never rolled out", append([]flag.Flag{withInterval(flags[darkMode], 2*time.Second)}, flags[1]), 30 * time.Second},
	}
	for _, tt := range tests {
		if got := shortestInterval(tt.flags); got != tt.want {
			t.Errorf("%s: shortest interval %v, want %v", tt.name, got, tt.want)
		}
	}
	// The promtool tests expect 20s: with 30s the alert names another
	// interval, and they fail on it.
	flags[0] = withInterval(flags[0], time.Minute)
	rules, err := Generate(flags, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	out, err := runPromtool(t, rules, "test", "rules", "rules_test.yaml")
	if err == nil || !strings.Contains(out, AlertLooksLate) {
		t.Errorf("promtool test rules on rules for a 30s shortest interval: %v, want a failure of %s\n%s", err, AlertLooksLate, out)
	}
}

func TestNoTeamLabel(t *testing.T) {
	groups, err := Groups(testFlags(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := groups.Groups[1].Rules[0]
	if _, ok := r.Labels["team"]; ok {
		t.Errorf("team label without a team: %v", r.Labels)
	}
	if got := expandURL(t, r.Annotations["dashboard_url"], "new-checkout"); got != "http://localhost:3000/d/vigil-flag-new-checkout" {
		t.Errorf("default Grafana URL: %s", got)
	}
}

// expandURL expands an annotation for an alert on flag as Prometheus does,
// with the same variables and functions.
func expandURL(t *testing.T, text, flag string) string {
	t.Helper()
	defs := "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}"
	data := template.AlertTemplateData(map[string]string{"flag": flag}, nil, "", promql.Sample{F: 1})
	out, err := template.NewTemplateExpander(context.Background(), defs+text, "dashboard_url", data, 0, nil, nil, nil).Expand()
	if err != nil {
		t.Fatalf("expand %q for flag %s: %v", text, flag, err)
	}
	return out
}

// TestFlagDashboardURL checks that the generic alerts link each flag's own
// dashboard, as dashboards.UID names it, for the flags the rules were
// generated from and for later flags whose key the UID holds as it is; a
// later flag with a hashed UID gets the overview narrowed to it.
func TestFlagDashboardURL(t *testing.T) {
	groups, err := Groups(testFlags(t), testOptions())
	if err != nil {
		t.Fatal(err)
	}
	base := "https://grafana.example.com/d/"
	known := map[string]bool{}
	for _, f := range testFlags(t) {
		known[f.Key] = true
	}
	keys := []string{"new-checkout", "search.ranking", "dark-mode", "added-later", "added.later",
		strings.Repeat("k", 29), strings.Repeat("k", 30)}
	for _, r := range groups.Groups[1].Rules {
		if r.Alert == AlertProviderErrors || r.Alert == AlertTicksOverrun || r.Alert == AlertLooksLate {
			continue // about a controller, not a flag
		}
		for _, key := range keys {
			want := base + dashboards.UID(key)
			if !known[key] && dashboards.UID(key) != dashboards.FlagUIDPrefix+key {
				want = base + dashboards.OverviewUID + "?var-flag=" + key
			}
			if got := expandURL(t, r.Annotations["dashboard_url"], key); got != want {
				t.Errorf("%s for flag %s links %s, want %s", r.Alert, key, got, want)
			}
		}
	}
}

// TestRulesOnRealController evaluates the generic alerts' expressions on
// the metrics of a real controller, scraped by the embedded metric store:
// a rollout just started and without cohort metrics raises
// VigilCohortMetricsMissing, and once rolled back VigilRolloutRolledBack.
// A metric or label the controller renamed would leave them silent. The
// judge, looking every second at no traffic, exports its tolerances and
// its split check, and the alerts on its evidence stay quiet.
func TestRulesOnRealController(t *testing.T) {
	const token = "alerts-test-admin-token-0123456789"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	reg := server.NewRegistry()
	ms, err := metricstore.Open(ctx, metricstore.Options{
		Dir: t.TempDir(), ScrapeTargets: []string{ln.Addr().String()}, ScrapeInterval: 250 * time.Millisecond, Registerer: reg,
	})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { ms.Close() })
	srv, err := server.New(ctx, server.Config{
		DataDir: t.TempDir(), AdminToken: token, Registry: reg, Logger: slog.New(slog.DiscardHandler),
		Extensions: []server.Extension{runner.Extension(runner.Options{Reader: cohort.NewReader(ms)})},
	})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	srvCtx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(srvCtx, ln) }()
	t.Cleanup(func() {
		stop()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	ctl, err := client.New("http://"+ln.Addr().String(), token)
	if err != nil {
		t.Fatal(err)
	}
	f := testFlags(t)[0]
	if _, err := ctl.PutFlag(ctx, f, 0, "alerts test"); err != nil {
		t.Fatal(err)
	}
	groups, err := Groups([]flag.Flag{f}, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	expr := map[string]string{}
	for _, r := range groups.Groups[1].Rules {
		expr[r.Alert] = r.Expr
	}
	// command runs a rollout command, waits until the store has scraped
	// the controller since, and returns the flags alert fires for.
	command := func(kind, alert string) []string {
		t.Helper()
		body := runner.CommandBody{Reason: "alerts test"}
		if kind == "start" {
			body.Plan = &plan.Spec{Interval: new(plan.Duration(time.Second))}
		}
		if err := ctl.Do(ctx, client.Request{Method: http.MethodPost, Path: "/api/v1/rollouts/" + f.Key + "/" + kind,
			Body: body}, nil); err != nil {
			t.Fatalf("%s %s: %v", kind, f.Key, err)
		}
		now := time.Now()
		if err := ms.WaitScraped(ctx, now); err != nil {
			t.Fatal(err)
		}
		v, err := ms.Query(ctx, expr[alert], time.Now())
		if err != nil {
			t.Fatalf("%s: %v\n%s", alert, err, expr[alert])
		}
		var flags []string
		for _, s := range v {
			flags = append(flags, string(s.Metric["flag"]))
		}
		return flags
	}
	if got := command("start", AlertCohortsMissing); !slices.Equal(got, []string{f.Key}) {
		t.Errorf("%s after the start, without cohorts, fires for %v, want %s\n%s", AlertCohortsMissing, got, f.Key, expr[AlertCohortsMissing])
	}
	// The judge's gauges the alerts read, from the leader: without traffic
	// there is no interval, so none of its alerts fires.
	judgedNow := func(name string) model.Vector {
		v, err := ms.Query(ctx, fmt.Sprintf("%s{flag=%q} and on (job, instance) %s == 1", name, f.Key, leaderMetric), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	poll.Until(t, 30*time.Second, "the judge's gauges scraped", func() error {
		for _, name := range []string{rolloutmetrics.Tolerance, rolloutmetrics.SplitMismatch} {
			if v := judgedNow(name); len(v) == 0 {
				return fmt.Errorf("no %s from the leader", name)
			}
		}
		return nil
	})
	for _, s := range judgedNow(rolloutmetrics.Tolerance) {
		if m := string(s.Metric["metric"]); m != plan.MetricErrorRate && m != plan.MetricLatency || s.Value != 1.2 {
			t.Errorf("tolerance %v: want 1.2 for error-rate and latency, as the plan says", s)
		}
	}
	for _, alert := range []string{AlertErrorRatioHigh, AlertLatencyRegressed, AlertSplitMismatch} {
		if v, err := ms.Query(ctx, expr[alert], time.Now()); err != nil || len(v) != 0 {
			t.Errorf("%s without traffic: %v, %v\n%s", alert, v, err, expr[alert])
		}
	}
	if got := command("rollback", AlertRolledBack); !slices.Equal(got, []string{f.Key}) {
		t.Errorf("%s after a rollback fires for %v, want %s\n%s", AlertRolledBack, got, f.Key, expr[AlertRolledBack])
	}
	// The loop's alerts measure the real loop: without its threshold, each
	// expression gives one series, the controller's, which ticked at least
	// once a second through the rollout.
	for _, alert := range []string{AlertTicksOverrun, AlertLooksLate} {
		measure, _, ok := strings.Cut(expr[alert], "\n> ")
		if !ok {
			t.Fatalf("%s has no threshold on a line of its own:\n%s", alert, expr[alert])
		}
		v, err := ms.Query(ctx, measure, time.Now())
		if err != nil || len(v) != 1 || math.IsNaN(float64(v[0].Value)) || v[0].Metric["instance"] == "" {
			t.Errorf("%s's measure on the real loop: %v, %v, want one number for the controller\n%s", alert, v, err, measure)
		}
	}
	// Every controller metric the rules read is one the controller exports.
	for _, name := range []string{percentMetric, stateMetric, transitionsMetric, providerErrors, leaderMetric,
		tickDuration + "_bucket", tickDuration + "_count", tickOverruns} {
		v, err := ms.Query(ctx, "count("+name+")", time.Now())
		if err != nil || len(v) != 1 || v[0].Value == 0 {
			t.Errorf("the controller exports no %s: %v %v", name, v, err)
		}
	}
}

func TestBadInput(t *testing.T) {
	tests := []struct {
		name  string
		flags func([]flag.Flag) []flag.Flag
		opts  Options
		want  string
	}{
		{"relative Grafana URL", nil, Options{GrafanaURL: "grafana:3000/x"}, "Grafana URL"},
		{"negative request rate", nil, Options{MinRequestRate: -1}, "minimum request rate"},
		{"template in team", nil, Options{Team: "{{ x }}"}, "team"},
		{"unknown treatment", func(f []flag.Flag) []flag.Flag { f[0].Treatment = "nope"; return f }, Options{}, "new-checkout"},
	}
	for _, tt := range tests {
		flags := testFlags(t)
		if tt.flags != nil {
			flags = tt.flags(flags)
		}
		_, err := Generate(flags, tt.opts)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want one mentioning %q", tt.name, err, tt.want)
		}
	}
}

// BenchmarkGenerate100 generates the rules for 100 flags under rollout,
// checking them with Prometheus's rule parser as Generate always does.
func BenchmarkGenerate100(b *testing.B) {
	file, err := flag.ParseFile(filepath.Join("testdata", "flags.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	flags := make([]flag.Flag, 100)
	for i := range flags {
		flags[i] = file.Flags[i%2]
		flags[i].Key = fmt.Sprintf("flag-%03d", i)
	}
	for b.Loop() {
		if _, err := Generate(flags, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}
