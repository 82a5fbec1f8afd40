// Package alerts generates a Prometheus rule file for Vigil's rollouts:
// recording rules for the cohorts' error and slow-request ratios, and alerts
// for a treatment that hurts, a traffic split that is not the flag's, a
// rollout that is stuck or rolled back, a controller that cannot see its
// metrics, and a rollout loop too slow for its interval or its plans.
//
// Whether a treatment hurts is what the judge decides, so the alerts that
// compare treatment with control read the judge's own evidence, which the
// controller exports (package rolloutmetrics): its interval for the ratio,
// the tolerance and floor it tests against, and the latency edge it picked.
// An alert with a definition of its own (other edges, another tolerance, a
// five-minute window) would miss what the judge rolls back and page about
// what it passes. Those alerts and the others on the controller's metrics
// are generic: they carry a flag label and cover every flag the controller
// runs, including those added after the file was generated. Only the plan's
// absolute bounds (max, maxP99) are compared on the SDK's metrics, in one
// group per flag whose plan sets them.
package alerts

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"gopkg.in/yaml.v3"

	"github.com/vigil-dev/vigil/controller/plan"
	"github.com/vigil-dev/vigil/controller/rollout"
	"github.com/vigil-dev/vigil/controller/rolloutmetrics"
	"github.com/vigil-dev/vigil/dashboards"
	"github.com/vigil-dev/vigil/sdk/flag"
	"github.com/vigil-dev/vigil/sdk/semconv"
)

// Recording rules, named level:metric:operations. The level flag_variant
// stands for the labels feature_flag_key and feature_flag_result_variant;
// flag_variant_le adds le. Only the rollout split's requests count.
const (
	RequestsRate    = "flag_variant:feature_flag_requests:rate5m"
	ErrorsRate      = "flag_variant:feature_flag_request_errors:rate5m"
	ErrorRatio      = "flag_variant:feature_flag_request_errors_per_requests:ratio_rate5m"
	BucketRate      = "flag_variant_le:feature_flag_request_duration_seconds_bucket:rate5m"
	CountRate       = "flag_variant:feature_flag_request_duration_seconds_count:rate5m"
	SlowRatio       = "flag_variant_le:feature_flag_slow_requests_per_requests:ratio_rate5m"
	cohortGroupings = semconv.LabelKey + ", " + semconv.LabelVariant
)

// The controller's metrics, named in package rolloutmetrics.
const (
	percentMetric     = rolloutmetrics.Percent
	stateMetric       = rolloutmetrics.State
	transitionsMetric = rolloutmetrics.Transitions
	providerErrors    = rolloutmetrics.ProviderErrors
	leaderMetric      = rolloutmetrics.Leader
	tickDuration      = rolloutmetrics.TickDuration
	tickOverruns      = rolloutmetrics.TickOverruns
)

// The SDK's cohort metrics, as package semconv names them.
const (
	requestsMetric = semconv.PromRequests
	bucketMetric   = semconv.PromRequestDuration + "_bucket"
	countMetric    = semconv.PromRequestDuration + "_count"
)

// rolledBackFor is how long VigilRolloutRolledBack fires after a rollback:
// long enough for a notification to get through Alertmanager's grouping and
// a restart of either, short enough not to page about last week's rollback.
const rolledBackFor = 30 * time.Minute

// loopFor is how long the rollout loop must stay slow before its alerts
// fire: longer than a burst of rollouts all starting at once, short
// enough that few steps were held past their plan meanwhile.
const loopFor = 10 * time.Minute

// Alert names.
const (
	AlertErrorRatioHigh   = "VigilTreatmentErrorRatioHigh"
	AlertErrorRatioAbove  = "VigilTreatmentErrorRatioAboveMax"
	AlertLatencyRegressed = "VigilTreatmentLatencyRegression"
	AlertP99AboveMax      = "VigilTreatmentP99AboveMax"
	AlertSplitMismatch    = "VigilSampleRatioMismatch"
	AlertRolloutStuck     = "VigilRolloutStuck"
	AlertRolledBack       = "VigilRolloutRolledBack"
	AlertProviderErrors   = "VigilMetricProviderErrors"
	AlertCohortsMissing   = "VigilCohortMetricsMissing"
	AlertTicksOverrun     = "VigilRolloutTicksOverrun"
	AlertLooksLate        = "VigilRolloutLooksLate"
)

// Options tunes the rules. The zero value gives the defaults documented on
// each field.
type Options struct {
	// Team is the value of the team label on every alert, for routing; empty
	// leaves the label out.
	Team string
	// GrafanaURL is where Vigil's dashboards are; alerts link to them.
	// Default http://localhost:3000.
	GrafanaURL string
	// RunbookURL is the runbook; each alert links to its own section.
	// Default the runbook in Vigil's repository.
	RunbookURL string
	// MinRequestRate is the treatment's requests per second below which
	// the plan's absolute bounds do not alert: a handful of requests
	// proves nothing. Default 0.1.
	MinRequestRate float64
	// For is how long a treatment must stay worse before its alert fires:
	// the judge's interval beyond what is tolerated, or a plan's bound
	// exceeded. Default 10m.
	For time.Duration
	// StuckAfter is how long a rollout may progress without a transition
	// before it is reported stuck. It is raised to twice the longest
	// maxStepDuration of the flags given, since a step that long is normal.
	// Default 2h.
	StuckAfter time.Duration
}

const defaultRunbook = "https://github.com/vigil-dev/vigil/blob/main/docs/runbook.md"

func (o Options) withDefaults() (Options, error) {
	set := func(v *float64, def float64, name string) error {
		if *v == 0 {
			*v = def
		}
		if !(*v > 0) {
			return fmt.Errorf("%s %v must be positive", name, *v)
		}
		return nil
	}
	if o.GrafanaURL == "" {
		o.GrafanaURL = "http://localhost:3000"
	}
	if o.RunbookURL == "" {
		o.RunbookURL = defaultRunbook
	}
	for _, u := range []struct{ name, v string }{{"Grafana URL", o.GrafanaURL}, {"runbook URL", o.RunbookURL}} {
		p, err := url.Parse(u.v)
		if err != nil || p.Scheme == "" || p.Host == "" {
			return o, fmt.Errorf("%s %q must be an absolute http(s) URL", u.name, u.v)
		}
	}
	o.GrafanaURL = strings.TrimRight(o.GrafanaURL, "/")
	if strings.Contains(o.Team, "{{") {
		return o, fmt.Errorf("team %q must not contain {{", o.Team)
	}
	errs := []error{set(&o.MinRequestRate, 0.1, "minimum request rate")}
	if o.For == 0 {
		o.For = 10 * time.Minute
	}
	if o.StuckAfter == 0 {
		o.StuckAfter = 2 * time.Hour
	}
	if o.For < 0 || o.StuckAfter < 0 {
		errs = append(errs, errors.New("durations must not be negative"))
	}
	return o, errors.Join(errs...)
}

// Generate returns the rule file for flags as YAML, checked with
// Prometheus's own rule parser.
func Generate(flags []flag.Flag, opts Options) ([]byte, error) {
	groups, err := Groups(flags, opts)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	buf.WriteString("# Prometheus rules for Vigil's rollouts, generated by `vigil alerts generate`.\n" +
		"# Do not edit: generate again instead.\n")
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(groups); err != nil {
		return nil, fmt.Errorf("encode rules: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode rules: %w", err)
	}
	// A flag whose names slipped past validation must not yield a file that
	// Prometheus refuses at its next reload.
	_, errs := rulefmt.Parse(buf.Bytes(), false, model.UTF8Validation, parser.NewParser(parser.Options{}), slog.New(slog.DiscardHandler))
	if len(errs) > 0 {
		return nil, fmt.Errorf("generated rules are invalid: %w", errors.Join(errs...))
	}
	return buf.Bytes(), nil
}

// Groups returns the rule groups for flags: the recording rules, the
// generic rollout alerts, and one group per flag with a treatment whose
// plan sets an absolute bound.
func Groups(flags []flag.Flag, opts Options) (rulefmt.RuleGroups, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return rulefmt.RuleGroups{}, fmt.Errorf("alert options: %w", err)
	}
	if err := flag.Validate(flags); err != nil {
		return rulefmt.RuleGroups{}, err
	}
	sorted := slices.Clone(flags)
	slices.SortFunc(sorted, func(a, b flag.Flag) int { return strings.Compare(a.Key, b.Key) })
	g := &gen{o: o, flags: sorted}
	groups := []rulefmt.RuleGroup{
		{Name: "vigil-recording", Rules: recordingRules()},
		{Name: "vigil-rollouts", Rules: append(g.rolloutAlerts(stuckWindow(flags, o.StuckAfter)), g.loopAlerts(shortestInterval(flags))...)},
	}
	for _, f := range sorted {
		if f.Treatment == "" {
			continue // nothing to compare
		}
		if rules := g.flagAlerts(f); len(rules) > 0 {
			groups = append(groups, rulefmt.RuleGroup{Name: "vigil-flag-" + f.Key, Rules: rules})
		}
	}
	return rulefmt.RuleGroups{Groups: groups}, nil
}

func stuckWindow(flags []flag.Flag, floor time.Duration) time.Duration {
	w := floor
	for _, f := range flags {
		// The flags' plans were validated when they were written.
		if spec, _ := plan.OfFlag(f); spec != nil && spec.MaxStepDuration != nil {
			w = max(w, 2*spec.MaxStepDuration.Std())
		}
	}
	return w
}

// shortestInterval is the shortest plan interval among the flags that can
// be rolled out, the defaults filled in: the default plan's when there are
// none. A plan given when a rollout starts can set a shorter one, which
// rules generated from the flags cannot know.
func shortestInterval(flags []flag.Flag) time.Duration {
	shortest := plan.Defaults().Interval.Std()
	first := true
	for _, f := range flags {
		if f.Treatment == "" {
			continue // never rolled out
		}
		// The flags' plans were validated when they were written.
		spec, _ := plan.OfFlag(f)
		p, err := plan.Resolve(spec)
		if err != nil {
			continue
		}
		if i := p.Interval.Std(); first || i < shortest {
			shortest, first = i, false
		}
	}
	return shortest
}

func recordingRules() []rulefmt.Rule {
	split := semconv.LabelReason + "=" + strconv.Quote(semconv.ReasonSplit)
	sumRate := func(sel, by string) string {
		return fmt.Sprintf("sum by (%s) (rate(%s[5m]))", by, sel)
	}
	return []rulefmt.Rule{
		{Record: RequestsRate, Expr: sumRate(requestsMetric+"{"+split+"}", cohortGroupings)},
		{Record: ErrorsRate, Expr: sumRate(requestsMetric+"{"+split+", "+semconv.LabelErrorType+`!=""}`, cohortGroupings)},
		// A cohort that never failed has no error series: it counts as zero.
		{Record: ErrorRatio, Expr: fmt.Sprintf("(%s or %s * 0) / %s", ErrorsRate, RequestsRate, RequestsRate)},
		{Record: BucketRate, Expr: sumRate(bucketMetric+"{"+split+"}", cohortGroupings+", le")},
		{Record: CountRate, Expr: sumRate(countMetric+"{"+split+"}", cohortGroupings)},
		// The share slower than each edge: the requests above its bucket.
		{Record: SlowRatio, Expr: fmt.Sprintf("1 - (%s / ignoring (le) group_left %s)", BucketRate, CountRate)},
	}
}

type gen struct {
	o     Options
	flags []flag.Flag
}

// alert builds an alerting rule with Vigil's routing labels and
// annotations. The runbook's anchor is the alert's name in lower case, as
// the heading of its section renders.
func (g *gen) alert(name, expr string, for_ time.Duration, severity string, labels map[string]string, summary, description, runbook, dashboard string) rulefmt.Rule {
	l := map[string]string{"severity": severity}
	if g.o.Team != "" {
		l["team"] = g.o.Team
	}
	for k, v := range labels {
		l[k] = v
	}
	return rulefmt.Rule{
		Alert:  name,
		Expr:   expr,
		For:    model.Duration(for_),
		Labels: l,
		Annotations: map[string]string{
			"summary":       summary,
			"description":   description,
			"runbook":       runbook,
			"runbook_url":   g.o.RunbookURL + "#" + strings.ToLower(name),
			"dashboard_url": dashboard,
		},
	}
}

// flagDashboardURL links the dashboard of the alert's flag. A generic alert
// covers flags added after the rules were generated, so the link is a
// template over the flag label: a key that Grafana takes as it is gives the
// UID dashboards.UID gives it; a key it shortens and hashes, which a
// template cannot compute, is spelled out for each flag known now; for any
// other, the link is the overview narrowed to the flag.
func (g *gen) flagDashboardURL() string {
	d := g.o.GrafanaURL + "/d/"
	var b strings.Builder
	b.WriteString("{{ if ")
	for _, f := range g.flags {
		if uid := dashboards.UID(f.Key); uid != dashboards.FlagUIDPrefix+f.Key {
			fmt.Fprintf(&b, "eq $labels.flag %q }}%s%s{{ else if ", f.Key, d, uid)
		}
	}
	// dashboards.UID keeps a key without a '.' that fits in the UID.
	asIs := fmt.Sprintf("^[^.]{1,%d}$", dashboards.MaxUIDLength-len(dashboards.FlagUIDPrefix))
	fmt.Fprintf(&b, "match %q $labels.flag }}%s%s{{ $labels.flag }}{{ else }}%s%s?var-flag={{ $labels.flag }}{{ end }}",
		asIs, d, dashboards.FlagUIDPrefix, d, dashboards.OverviewUID)
	return b.String()
}

// judged filters expr, a selection of the judge's gauges, to the series of
// the replica that holds the rollout loop's lease: only it judges, and
// another replica's series keep the values of its last lease.
func judged(expr string) string {
	return fmt.Sprintf("(\n    %s\n  )\n  and on (job, instance) %s == 1", expr, leaderMetric)
}

// live keeps the flags whose rollout is progressing or paused: the judge's
// gauges keep their last values after a rollout ends, and a treatment no
// longer served alerts no more. Every replica exports the state.
func live() string {
	return fmt.Sprintf("max by (flag) (%s{state=~%q}) == 1", stateMetric, string(rollout.Progressing)+"|"+string(rollout.Paused))
}

// judgeValue is a template that writes the judge's gauge metric for the
// alert's flag, and its check with check, through the function format.
func judgeValue(metric string, check bool, format string) string {
	sel, args := "flag=%q", " $labels.flag"
	if check {
		sel, args = sel+", metric=%q", args+" $labels.metric"
	}
	return `{{ with printf "max(` + metric + `{` + sel + `})"` + args + ` | query }}{{ . | first | value | ` + format + ` }}{{ end }}`
}

// beyondTolerance is the judge's evidence that a ratio check's treatment is
// worse than tolerated: the low end of its always-valid interval above
// both the tolerance and the floor's ratio (a difference below the
// practical floor is no harm), as the judge itself decides it. Its value
// is that low end.
func beyondTolerance(check string) string {
	low := fmt.Sprintf("%s{metric=%q}", rolloutmetrics.RatioLow, check)
	return fmt.Sprintf("max by (flag, metric) (\n  %s\n)\nand on (flag) %s",
		judged(fmt.Sprintf("%s > %s\n    unless %s <= %s", low, rolloutmetrics.Tolerance, low, rolloutmetrics.FloorRatio)), live())
}

func (g *gen) rolloutAlerts(stuck time.Duration) []rulefmt.Rule {
	w := model.Duration(stuck).String()
	progressing := fmt.Sprintf("%s{state=%q}", stateMetric, rollout.Progressing)
	rolledBack := fmt.Sprintf("%s{to=%q}", transitionsMetric, rollout.RolledBack)
	since := model.Duration(rolledBackFor).String()
	forWhile := model.Duration(g.o.For).String()
	interval := func(events string) string {
		return "The judge's always-valid interval for treatment's rate of " + events + " over control's, " +
			`{{ $value | printf "%.3g" }} to ` + judgeValue(rolloutmetrics.RatioHigh, true, `printf "%.3g"`) +
			", has lain above the tolerance " + judgeValue(rolloutmetrics.Tolerance, true, `printf "%.3g"`) +
			" and the practical floor for " + forWhile + ", and the rollout of {{ $labels.flag }} is still live."
	}
	return []rulefmt.Rule{
		g.alert(AlertErrorRatioHigh, beyondTolerance(plan.MetricErrorRate),
			g.o.For, "critical", nil,
			"Treatment of {{ $labels.flag }} fails more often than control",
			interval("errors"),
			"`vigil rollout status {{ $labels.flag }}`: the judge rolls back once its evidence reaches its threshold; "+
				"if the rollout is paused or holds and the errors hurt, roll back with `vigil rollout rollback {{ $labels.flag }}`, "+
				"then look at the treatment's errors by error_type.",
			g.flagDashboardURL()),
		g.alert(AlertLatencyRegressed, beyondTolerance(plan.MetricLatency),
			g.o.For, "warning", nil,
			"Treatment of {{ $labels.flag }} is slower than control",
			interval("requests slower than "+judgeValue(rolloutmetrics.Edge, true, "humanizeDuration")+" (the judge's edge)"),
			"Compare the cohorts at the judge's edge on the flag's dashboard and in `vigil rollout status {{ $labels.flag }}`; "+
				"roll back with `vigil rollout rollback {{ $labels.flag }}` if the slowdown matters and Vigil has not already.",
			g.flagDashboardURL()),
		g.alert(AlertSplitMismatch,
			fmt.Sprintf("max by (flag) (\n  %s\n)\nand on (flag) %s",
				judged(rolloutmetrics.SplitMismatch+" == 1"), live()),
			0, "warning", nil,
			"Traffic split of {{ $labels.flag }} is not the flag's",
			"Treatment of {{ $labels.flag }} got "+judgeValue(rolloutmetrics.SplitObserved, false, "humanizePercentage")+
				" of the split's requests where the flag gives it "+judgeValue(rolloutmetrics.SplitExpected, false, "humanizePercentage")+
				", beyond chance: the cohorts are not comparable, so the rollout holds every step until maxStepDuration and its onTimeout.",
			"Find where the split differs: a service evaluating the flag without the Vigil SDK, a cache serving stale variants, "+
				"an SDK whose bucketing differs, or counts pushed by a client with no traffic. Then abort and start the rollout again.",
			g.flagDashboardURL()),
		g.alert(AlertRolloutStuck,
			// Progressing now, a whole window ago and all along, and
			// neither a step nor any transition since. The window's start
			// matters: a counter's first sample shows no increase.
			fmt.Sprintf("max by (flag) (min_over_time(%s[%s])) == 1\n"+
				"and on (flag) max by (flag) (%s offset %s) == 1\n"+
				"unless on (flag) max by (flag) (changes(%s[%s])) > 0\n"+
				"unless on (flag) sum by (flag) (increase(%s[%s])) > 0",
				progressing, w, progressing, w, percentMetric, w, transitionsMetric, w),
			5*time.Minute, "warning", nil,
			"Rollout of {{ $labels.flag }} is stuck",
			"The rollout of flag {{ $labels.flag }} has been progressing for "+w+" without moving to another step.",
			"Check the controller is running and holds the lock, and the rollout's latest verdict: "+
				"an inconclusive judge holds a step until maxStepDuration. Pause, resume or roll back by hand.",
			g.flagDashboardURL()),
		g.alert(AlertRolledBack,
			// A rollback within the window: the counter went up, or its
			// series appeared, since a counter is created at the first
			// rollback of a flag and increase() cannot see a first sample.
			fmt.Sprintf("max by (flag) (\n"+
				"  increase(%s[%s]) > 0\n"+
				"  or\n"+
				"  (%s unless %s offset %s)\n"+
				")",
				rolledBack, since, rolledBack, rolledBack, since),
			0, "info", nil,
			"Rollout of {{ $labels.flag }} was rolled back",
			"Vigil rolled flag {{ $labels.flag }} back to its control variant in the last "+since+
				". It stays there until someone starts a new rollout; this alert ends after "+since+".",
			"Read the rollback's verdict and evidence in `vigil rollout status {{ $labels.flag }}`, fix the treatment, then start a new rollout.",
			g.flagDashboardURL()),
		g.alert(AlertProviderErrors,
			"sum by (job, instance) (rate("+providerErrors+"[5m])) > 0",
			5*time.Minute, "warning", nil,
			"Vigil cannot query its metric provider",
			"Vigil's controller {{ $labels.instance }} fails to query its metric provider ({{ printf \"%.3g\" $value }} errors/s): "+
				"rollouts hold, then follow their onProviderError policy.",
			"Check the provider's address and credentials in the controller's configuration, and that Prometheus is up and answers queries.",
			g.o.GrafanaURL+"/d/"+dashboards.OverviewUID),
		g.alert(AlertCohortsMissing,
			fmt.Sprintf("max by (flag) (%s) == 1\n"+
				"unless on (flag) label_replace(sum by (%s) (%s) > 0, \"flag\", \"$1\", %q, \"(.*)\")",
				progressing, semconv.LabelKey, RequestsRate, semconv.LabelKey),
			10*time.Minute, "warning", nil,
			"No cohort metrics for the rollout of {{ $labels.flag }}",
			"Flag {{ $labels.flag }} is under rollout but no service reports requests split between its treatment and control: the judge cannot decide.",
			"Check the services evaluating the flag use the Vigil SDK with metrics enabled, that Prometheus scrapes them, "+
				"and that the requests evaluate this flag.",
			g.flagDashboardURL()),
	}
}

// loopAlerts are about the rollout loop's own pace, on the replica that
// holds its lease (the only one that ticks): its ticks outgrowing the
// loop's interval, and, worse, approaching the rollouts' plan interval.
// A look falls due during a tick, waits for it to end and then for its
// own tick: up to two ticks late, so once the median tick passes half the
// shortest plan interval, looks come up to an interval late and steps
// are held past their plan.
func (g *gen) loopAlerts(interval time.Duration) []rulefmt.Rule {
	w := model.Duration(loopFor).String()
	late := interval / 2
	overview := g.o.GrafanaURL + "/d/" + dashboards.OverviewUID
	look := "On the overview dashboard's Rollout loop row, find which part of the tick grew: the rollouts due per tick, " +
		"the metric provider's read latency, or the store's write latency; the controller logs each overrun with its time and the looks due."
	return []rulefmt.Rule{
		g.alert(AlertTicksOverrun,
			// The share of the ticks that overran; a replica that does not
			// tick has none, which compares as nothing.
			fmt.Sprintf("sum by (job, instance) (rate(%s[5m]))\n/\nsum by (job, instance) (rate(%s_count[5m]))\n> 0.5",
				tickOverruns, tickDuration),
			loopFor, "warning", nil,
			"Vigil's rollout loop overruns its tick interval",
			"{{ $value | humanizePercentage }} of the rollout loop's ticks on {{ $labels.instance }} in the last 5m took longer than "+
				"the loop's tick interval, and more than half have for "+w+": looks that fall due during a tick wait for the next, "+
				"so rollouts look and step later than their plans say.",
			look,
			overview),
		g.alert(AlertLooksLate,
			fmt.Sprintf("histogram_quantile(0.5, sum by (job, instance, le) (rate(%s_bucket[5m])))\n> %s",
				tickDuration, strconv.FormatFloat(late.Seconds(), 'g', -1, 64)),
			loopFor, "critical", nil,
			"Vigil's rollout loop is too slow for its rollouts' plans",
			"The median tick of the rollout loop on {{ $labels.instance }} has taken {{ $value | humanizeDuration }} for "+w+
				", over half the shortest plan interval ("+model.Duration(interval).String()+"): looks come up to an interval late, "+
				"so steps are held past their plan and a harmful treatment is rolled back later.",
			look+" Until the loop is faster, lengthen the plans' interval or start fewer rollouts at once.",
			overview),
	}
}

// flagAlerts are f's alerts on the absolute bounds its plan sets, which
// need the flag's treatment variant and the plan's numbers.
func (g *gen) flagAlerts(f flag.Flag) []rulefmt.Rule {
	var maxErrors float64
	var maxP99 time.Duration
	// The flag's plan was validated when it was written.
	spec, _ := plan.OfFlag(f)
	if m, ok := spec.Metric(plan.MetricErrorRate); ok && m.Max != nil {
		maxErrors = *m.Max
	}
	if m, ok := spec.Metric(plan.MetricLatency); ok && m.MaxP99 != nil {
		maxP99 = m.MaxP99.Std()
	}
	sel := func(metric, variant string, more ...string) string {
		m := append([]string{semconv.LabelKey + "=" + strconv.Quote(f.Key), semconv.LabelVariant + "=" + strconv.Quote(variant)}, more...)
		return metric + "{" + strings.Join(m, ", ") + "}"
	}
	num := func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
	t := f.Treatment
	treatmentTraffic := fmt.Sprintf("%s > %s", sel(RequestsRate, t), num(g.o.MinRequestRate))
	labels := map[string]string{"flag": f.Key}
	dash := g.o.GrafanaURL + "/d/" + dashboards.UID(f.Key)

	var rules []rulefmt.Rule
	if maxErrors > 0 {
		rules = append(rules, g.alert(AlertErrorRatioAbove,
			fmt.Sprintf("%s > %s\nand %s", sel(ErrorRatio, t), num(maxErrors), treatmentTraffic),
			g.o.For, "critical", labels,
			"Treatment of "+f.Key+" fails more than its plan allows",
			"The treatment {{ $labels."+semconv.LabelVariant+" }} of flag "+f.Key+" fails {{ $value | humanizePercentage }} of its requests, "+
				"above the plan's maximum of "+num(maxErrors)+".",
			"Roll back with `vigil rollout rollback "+f.Key+"` if Vigil has not already, then look at the treatment's errors by error_type.",
			dash))
	}
	if maxP99 > 0 {
		rules = append(rules, g.alert(AlertP99AboveMax,
			fmt.Sprintf("histogram_quantile(0.99, %s) > %s\nand %s",
				sel(BucketRate, t), num(maxP99.Seconds()), treatmentTraffic),
			g.o.For, "warning", labels,
			"Treatment of "+f.Key+" is slower than its plan allows",
			"The p99 latency of treatment {{ $labels."+semconv.LabelVariant+" }} of flag "+f.Key+" is {{ $value | humanizeDuration }}, "+
				"above the plan's maximum of "+maxP99.String()+".",
			"Compare the cohorts' latency on the flag's dashboard; roll back with `vigil rollout rollback "+f.Key+"` if the slowdown matters.",
			dash))
	}
	return rules
}
