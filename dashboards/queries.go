package dashboards

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/vigil-dev/vigil/controller/plan"
	"github.com/vigil-dev/vigil/controller/rollout"
	"github.com/vigil-dev/vigil/controller/rolloutmetrics"
	"github.com/vigil-dev/vigil/sdk/flag"
	"github.com/vigil-dev/vigil/sdk/semconv"
)

// The SDK's cohort metrics, as Prometheus names them: package semconv
// names them once for every reader of the SDK's contract.
const (
	requestsMetric = semconv.PromRequests
	bucketMetric   = semconv.PromRequestDuration + "_bucket"
	countMetric    = semconv.PromRequestDuration + "_count"
)

// The controller's metrics, named in package rolloutmetrics.
const (
	percentMetric     = rolloutmetrics.Percent
	stateMetric       = rolloutmetrics.State
	transitionsMetric = rolloutmetrics.Transitions
	evidenceMetric    = rolloutmetrics.Evidence
	thresholdMetric   = rolloutmetrics.EvidenceThreshold
	verdictsMetric    = rolloutmetrics.Verdicts
	providerErrors    = rolloutmetrics.ProviderErrors
	providerDuration  = rolloutmetrics.ProviderQueryDuration + "_bucket"
	overallCheck      = rolloutmetrics.OverallCheck
	leaderMetric      = rolloutmetrics.Leader
	tickDuration      = rolloutmetrics.TickDuration
	tickOverruns      = rolloutmetrics.TickOverruns
	looksDue          = rolloutmetrics.LooksDue
	looksJudged       = rolloutmetrics.LooksJudged
	readRollouts      = rolloutmetrics.ProviderQueryRollouts
)

// storeDuration is the server's histogram of store operations by op, which
// package server names where it records it; update is the op of every
// write, the rollout loop's commits among them. TestFleet reads both from
// a real server, so a rename leaves its panel without data.
const (
	storeDuration = "vigil_store_duration_seconds"
	storeWrite    = "update"
)

// rolloutStates lists the rollout states in the order the state panel
// numbers them, from 1: the rollout state machine's own list, in the order
// of a rollout's life.
func rolloutStates() []string {
	out := make([]string, len(rollout.Phases))
	for i, p := range rollout.Phases {
		out[i] = string(p)
	}
	return out
}

// Edges returns the latency histogram edges, in seconds, that f's plan
// names for the judge to test, sorted and free of duplicates; none when the
// plan names none, and the judge picks its edge from control's latency
// distribution as it goes (the edge gauge says which).
func Edges(f flag.Flag) []float64 {
	// The flag's plan was validated when it was written.
	spec, _ := plan.OfFlag(f)
	m, _ := spec.Metric(plan.MetricLatency)
	return sortedUnique(m.Edges)
}

// ratioChecks returns the names of the ratio checks the judge runs for f:
// one per metric of its plan, the defaults filled in.
func ratioChecks(f flag.Flag) []string {
	// The flag's plan was validated when it was written; should it no
	// longer resolve, the defaults' checks are still worth drawing.
	spec, _ := plan.OfFlag(f)
	p, err := plan.Resolve(spec)
	if err != nil {
		p = plan.Defaults()
	}
	names := make([]string, len(p.Metrics))
	for i, m := range p.Metrics {
		names[i] = m.Name
	}
	return names
}

func sortedUnique(v []float64) []float64 {
	out := slices.Clone(v)
	slices.Sort(out)
	return slices.Compact(out)
}

// EdgeMatcher returns a regular expression for the le label that matches
// the bucket edges given, in seconds, whichever exposition format the
// series were scraped in: the classic text format writes the edge 1 as "1",
// OpenMetrics as "1.0".
func EdgeMatcher(edges []float64) string {
	alts := make([]string, len(edges))
	for i, e := range edges {
		s := strconv.FormatFloat(e, 'g', -1, 64)
		alts[i] = regexp.QuoteMeta(s)
		if !strings.ContainsAny(s, ".e") {
			alts[i] += `(\.0)?`
		}
	}
	return strings.Join(alts, "|")
}

// formatEdge writes an edge for people: "0.25s", "1s".
func formatEdge(e float64) string { return strconv.FormatFloat(e, 'g', -1, 64) + "s" }

// quote writes s as a PromQL string literal. PromQL unquotes string literals
// with Go's rules, so Go quoting is exact.
func quote(s string) string { return strconv.Quote(s) }

// cohortSeries is one series group a comparison panel draws: a named role
// (treatment or control) pinned to its variant, or, with no role, every
// variant the split served.
type cohortSeries struct {
	role    string
	variant string
}

// scope is what a dashboard's queries are about: one flag with its known
// cohorts, or the flags picked by the overview's variable.
type scope struct {
	// sdk selects the flag on the SDK's metrics, ctl on the controller's.
	sdk, ctl string
	// by is the extra grouping, with a trailing comma, that keeps flags
	// apart where a query covers several.
	sdkBy, ctlBy string
	// legend prefixes every legend where several flags share a panel.
	legend  string
	cohorts []cohortSeries
}

func flagScope(f flag.Flag) scope {
	s := scope{
		sdk: semconv.LabelKey + "=" + quote(f.Key),
		ctl: "flag=" + quote(f.Key),
	}
	if f.Treatment != "" && f.Control != "" {
		s.cohorts = []cohortSeries{{"treatment", f.Treatment}, {"control", f.Control}}
	} else {
		s.cohorts = []cohortSeries{{}}
	}
	return s
}

func overviewScope() scope {
	return scope{
		sdk:     semconv.LabelKey + `=~"$flag"`,
		ctl:     `flag=~"$flag"`,
		sdkBy:   semconv.LabelKey + ", ",
		ctlBy:   "flag, ",
		legend:  "{{" + semconv.LabelKey + "}} ",
		cohorts: []cohortSeries{{}},
	}
}

// sel is a selector of the SDK metric name restricted to the scope and to
// the extra matchers.
func (s scope) sel(metric string, matchers ...string) string {
	return metric + "{" + strings.Join(append([]string{s.sdk}, matchers...), ", ") + "}"
}

// split restricts a selector to the units the rollout split placed: the
// only ones that form comparable random cohorts.
func (c cohortSeries) split() []string {
	m := []string{semconv.LabelReason + "=" + quote(semconv.ReasonSplit)}
	if c.variant != "" {
		m = append(m, semconv.LabelVariant+"="+quote(c.variant))
	}
	return m
}

func (c cohortSeries) legend(s scope, suffix string) string {
	if c.role == "" {
		return s.legend + "{{" + semconv.LabelVariant + "}}" + suffix
	}
	return fmt.Sprintf("%s%s (%s)%s", s.legend, c.role, c.variant, suffix)
}

func rate(sel string) string { return "rate(" + sel + "[$__rate_interval])" }

func (s scope) percent() string {
	return fmt.Sprintf("max by (flag) (%s{%s})", percentMetric, s.ctl)
}

// state encodes the current rollout state as its position in states, from
// 1, so one series per flag carries it and value mappings name it. Only the
// series equal to 1 survive the filter, so the expression holds even when
// the controller exports just the current state.
func (s scope) state() string {
	states := rolloutStates()
	terms := make([]string, len(states))
	for i, st := range states {
		terms[i] = fmt.Sprintf("(%s{%s, state=%q} == 1) * %d", stateMetric, s.ctl, st, i+1)
	}
	return fmt.Sprintf("max by (flag) (\n  %s\n)", strings.Join(terms, "\n  or "))
}

func (s scope) requestRate() string {
	return fmt.Sprintf("sum by (%s%s, %s) (%s)",
		s.sdkBy, semconv.LabelVariant, semconv.LabelReason, rate(s.sel(requestsMetric)))
}

// errorRatio is failed over all requests of the cohort. A cohort without a
// single failure has no error series, so zero stands in for it rather than
// a gap.
func (s scope) errorRatio(c cohortSeries) string {
	by := "sum by (" + s.sdkBy + semconv.LabelVariant + ") "
	all := by + "(" + rate(s.sel(requestsMetric, c.split()...)) + ")"
	failed := by + "(" + rate(s.sel(requestsMetric, append(c.split(), semconv.LabelErrorType+`!=""`)...)) + ")"
	return fmt.Sprintf("(\n  %s\n  or\n  %s * 0\n)\n/\n%s", failed, all, all)
}

func (s scope) quantile(q float64, c cohortSeries) string {
	return fmt.Sprintf("histogram_quantile(%s, sum by (%sle, %s) (%s))",
		strconv.FormatFloat(q, 'g', -1, 64), s.sdkBy, semconv.LabelVariant, rate(s.sel(bucketMetric, c.split()...)))
}

// slowShare is the share of the cohort's requests slower than edge: the
// requests above the edge's bucket over all of them.
func (s scope) slowShare(edge float64, c cohortSeries) string {
	by := "sum by (" + s.sdkBy + semconv.LabelVariant + ") "
	le := "le=~" + quote(EdgeMatcher([]float64{edge}))
	return fmt.Sprintf("1 - (\n  %s(%s)\n  /\n  %s(%s)\n)", by, rate(s.sel(bucketMetric, append(c.split(), le)...)),
		by, rate(s.sel(countMetric, c.split()...)))
}

// meanEvidence is the mean of the checks' e-values, the quantity the judge
// compares with its threshold of 1/alpha.
func (s scope) meanEvidence() string {
	return fmt.Sprintf("max by (flag) (%s{%s, metric=%q})", evidenceMetric, s.ctl, overallCheck)
}

// checkEvidence is each check's own e-value.
func (s scope) checkEvidence() string {
	return fmt.Sprintf("max by (%smetric) (%s{%s, metric!=%q})", s.ctlBy, evidenceMetric, s.ctl, overallCheck)
}

func (s scope) threshold() string {
	return fmt.Sprintf("max by (flag) (%s{%s})", thresholdMetric, s.ctl)
}

// checkThreshold is where one check fails on its own: the number of checks
// over alpha, so that the chance of any false failure stays alpha. The
// checks are counted once each, whichever controller reported them.
func (s scope) checkThreshold() string {
	return fmt.Sprintf("max by (flag) (%s{%s})\n* on (flag)\ncount by (flag) (max by (flag, metric) (%s{%s, metric!=%q}))",
		thresholdMetric, s.ctl, evidenceMetric, s.ctl, overallCheck)
}

// judged is one of the judge's gauges in the scope, grouped by by, from the
// replica that holds the lease: only it judges, and the series of a replica
// that lost the lease keep the values of its last look.
func (s scope) judged(metric, by string, matchers ...string) string {
	sel := metric + "{" + strings.Join(append([]string{s.ctl}, matchers...), ", ") + "}"
	return fmt.Sprintf("max by (%s) (\n  %s\n  and on (job, instance) %s == 1\n)", by, sel, leaderMetric)
}

// checkGauge is a gauge of the judge's for one ratio check.
func (s scope) checkGauge(metric, check string) string {
	return s.judged(metric, s.ctlBy+"metric", "metric="+quote(check))
}

// cohortRate is each cohort's rate of bad events at the check, as the judge
// counts them since the rollout began.
func (s scope) cohortRate(check, cohort string) string {
	return s.judged(rolloutmetrics.CohortRate, s.ctlBy+rolloutmetrics.CohortLabel,
		"metric="+quote(check), rolloutmetrics.CohortLabel+"="+quote(cohort))
}

// splitGauge is a gauge of the traffic split's check.
func (s scope) splitGauge(metric string) string {
	return s.judged(metric, "flag")
}

func (s scope) verdicts() string {
	return fmt.Sprintf("sum by (%smetric, verdict) (increase(%s{%s}[$__rate_interval]))", s.ctlBy, verdictsMetric, s.ctl)
}

// transitions finds the steps at which a rollout changed. A counter's first
// sample shows no change, so a series that was absent a window ago counts
// too: otherwise the first rollback of a flag would go unmarked.
func (s scope) transitions() string {
	sel := fmt.Sprintf("%s{%s}", transitionsMetric, s.ctl)
	return fmt.Sprintf("sum by (flag, to) (\n  changes(%s[$__rate_interval]) > 0\n  or\n  (%s unless %s offset $__rate_interval)\n)", sel, sel, sel)
}

func providerErrorRate() string {
	return fmt.Sprintf("sum by (instance) (rate(%s[$__rate_interval]))", providerErrors)
}

// providerLatency is the q-quantile of the looks' reads of the metric
// source, catchUpLatency of the reads that catch new rollouts up before
// their first looks.
func providerLatency(q float64) string {
	return quantileOf(q, providerRead(rolloutmetrics.ReadLook))
}

func catchUpLatency(q float64) string {
	return quantileOf(q, providerRead(rolloutmetrics.ReadCatchUp))
}

// providerRead selects the buckets of the metric source's reads of one kind.
func providerRead(read string) string {
	return providerDuration + "{" + rolloutmetrics.LabelRead + "=" + quote(read) + "}"
}

// quantileOf is the q-quantile of a histogram over every replica, from the
// selector of its buckets.
func quantileOf(q float64, buckets string) string {
	return fmt.Sprintf("histogram_quantile(%s, sum by (le) (%s))", strconv.FormatFloat(q, 'g', -1, 64), rate(buckets))
}

// The rollout loop's cost. Only the replica that holds the lease ticks and
// records these, so they are summed over replicas: a change of leader
// leaves one series for the old and one for the new.

// tickQuantile is the q-quantile of the loop's tick duration.
func tickQuantile(q float64) string {
	return quantileOf(q, tickDuration+"_bucket")
}

// ticks is the loop's ticks per second, none where it did not tick, so
// that what is divided by it is missing there rather than infinite.
func ticks() string {
	return "(sum(" + rate(tickDuration+"_count") + ") > 0)"
}

// tickSpacing is the time from one tick's start to the next's: the loop's
// tick interval while ticks keep within it, longer once they overrun it,
// since a tick does not start before the last one ended.
func tickSpacing() string {
	return "1 / " + ticks()
}

// perTick divides a counter of the loop's, summed over its ticks, by the
// ticks: overruns give the share of ticks that overran, looks the
// rollouts due or judged per tick.
func perTick(counter string) string {
	return "sum(" + rate(counter) + ")\n/\n" + ticks()
}

// rolloutsPerRead is the mean number of rollouts one batched read of the
// metric source asked for the counts of.
func rolloutsPerRead() string {
	look := "{" + rolloutmetrics.LabelRead + "=" + quote(rolloutmetrics.ReadLook) + "}"
	return "sum(" + rate(readRollouts+"_sum"+look) + ")\n/\n(sum(" + rate(readRollouts+"_count"+look) + ") > 0)"
}

// storeWriteLatency is the q-quantile of the store's writes, the loop's
// commits and every other replica's API writes together.
func storeWriteLatency(q float64) string {
	return quantileOf(q, storeDuration+"_bucket{op="+quote(storeWrite)+"}")
}
