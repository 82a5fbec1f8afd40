package dashboards

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"

	"github.com/vigil-dev/vigil/analysis/metricstore"
)

// The test fleet: two services export the SDK's metrics for two flags under
// rollout, and one controller exports its own, scraped every 15 s for 30
// minutes. new-checkout advances through its steps; fast-search's treatment
// fails more often and is slower, and it is rolled back at minute 20.
const (
	scrapeEvery  = 15 * time.Second
	fleetSamples = 121 // minute 0 to minute 30, both included
	rollbackAt   = 80  // sample of fast-search's rollback: minute 20
)

// Grafana's interval variables as a dashboard over the fleet resolves them:
// $__rate_interval is four scrape intervals.
const (
	rateInterval = "1m"
	queryStep    = time.Minute
)

// fleetBuckets are the SDK's explicit histogram boundaries in seconds.
func fleetBuckets() []float64 {
	return []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 10}
}

type fleetCohort struct {
	flag, variant, reason string
	rps                   float64 // per service instance
	errorRatio            float64
	meanLatency           float64 // seconds, exponentially distributed
}

func fleetCohorts() []fleetCohort {
	return []fleetCohort{
		{"new-checkout", "on", "split", 4, 0.01, 0.12},
		{"new-checkout", "off", "split", 16, 0.01, 0.12},
		{"new-checkout", "on", "targeting_match", 2, 0.01, 0.12},
		{"fast-search", "v2", "split", 10, 0.04, 0.4},
		{"fast-search", "v1", "split", 10, 0.01, 0.2},
	}
}

// fleetSeries returns every series of the fleet with one value per scrape.
func fleetSeries() map[string][]float64 {
	out := map[string][]float64{}
	add := func(labels string, v func(i int) float64) {
		vals := make([]float64, fleetSamples)
		for i := range vals {
			vals[i] = v(i)
		}
		out[labels] = vals
	}
	secs := scrapeEvery.Seconds()
	for _, instance := range []string{"svc-a:8080", "svc-b:8080"} {
		for _, c := range fleetCohorts() {
			// The OTel exporter adds its scope labels to every series.
			common := fmt.Sprintf(`feature_flag_key=%q, feature_flag_result_variant=%q, feature_flag_result_reason=%q, `+
				`otel_scope_name="github.com/vigil-dev/vigil/sdk", otel_scope_version="0.1.0", otel_scope_schema_url="", `+
				`job="checkout", instance=%q`, c.flag, c.variant, c.reason, instance)
			total := func(i int) float64 { return math.Round(c.rps * secs * float64(i)) }
			failed := func(i int) float64 { return math.Round(total(i) * c.errorRatio) }
			add("feature_flag_requests_total{"+common+"}", func(i int) float64 { return total(i) - failed(i) })
			add(`feature_flag_requests_total{`+common+`, error_type="timeout"}`, failed)
			for _, le := range fleetBuckets() {
				cdf := 1 - math.Exp(-le/c.meanLatency)
				// The classic text format writes edges as Go's 'g' does.
				le := strconv.FormatFloat(le, 'g', -1, 64)
				add(fmt.Sprintf("feature_flag_request_duration_seconds_bucket{%s, le=%q}", common, le),
					func(i int) float64 { return math.Floor(total(i) * cdf) })
			}
			add(fmt.Sprintf(`feature_flag_request_duration_seconds_bucket{%s, le="+Inf"}`, common), total)
			add("feature_flag_request_duration_seconds_count{"+common+"}", total)
			add("feature_flag_request_duration_seconds_sum{"+common+"}",
				func(i int) float64 { return total(i) * c.meanLatency })
		}
	}

	ctl := `job="vigil", instance="vigil:8080"`
	minute := func(i int) float64 { return float64(i) * secs / 60 }
	// new-checkout's steps: 1% from minute 0, then 5, 10 and 25 at minutes
	// 5, 10 and 20.
	checkoutStep := func(i int) int {
		m := minute(i)
		switch {
		case m >= 20:
			return 3
		case m >= 10:
			return 2
		case m >= 5:
			return 1
		}
		return 0
	}
	add(`vigil_rollout_percent{flag="new-checkout", `+ctl+`}`, func(i int) float64 {
		return []float64{1, 5, 10, 25}[checkoutStep(i)]
	})
	add(`vigil_rollout_transitions_total{flag="new-checkout", to="progressing", `+ctl+`}`, func(i int) float64 {
		return float64(checkoutStep(i) + 1)
	})
	// fast-search: 5% from minute 0, 10% from minute 10, rolled back at 20.
	add(`vigil_rollout_percent{flag="fast-search", `+ctl+`}`, func(i int) float64 {
		switch {
		case i >= rollbackAt:
			return 0
		case minute(i) >= 10:
			return 10
		}
		return 5
	})
	add(`vigil_rollout_transitions_total{flag="fast-search", to="progressing", `+ctl+`}`, func(i int) float64 {
		if minute(i) >= 10 {
			return 2
		}
		return 1
	})
	// This series first appears at the rollback, as a counter created on
	// first use does.
	add(`vigil_rollout_transitions_total{flag="fast-search", to="rolled_back", `+ctl+`}`, func(i int) float64 {
		if i < rollbackAt {
			return math.NaN()
		}
		return 1
	})
	for _, st := range rolloutStates() {
		add(fmt.Sprintf(`vigil_rollout_state{flag="new-checkout", state=%q, %s}`, st, ctl), func(int) float64 {
			return b2f(st == "progressing")
		})
		add(fmt.Sprintf(`vigil_rollout_state{flag="fast-search", state=%q, %s}`, st, ctl), func(i int) float64 {
			if i >= rollbackAt {
				return b2f(st == "rolled_back")
			}
			return b2f(st == "progressing")
		})
	}
	for _, f := range []string{"new-checkout", "fast-search"} {
		growth := 1.02
		if f == "fast-search" {
			growth = 1.06
		}
		add(fmt.Sprintf(`vigil_analysis_evidence_threshold{flag=%q, %s}`, f, ctl), func(int) float64 { return 100 })
		for _, m := range []string{"error-rate", "latency"} {
			add(fmt.Sprintf(`vigil_analysis_evidence{flag=%q, metric=%q, %s}`, f, m, ctl), func(i int) float64 {
				return math.Pow(growth, float64(i))
			})
			add(fmt.Sprintf(`vigil_analysis_verdicts_total{flag=%q, metric=%q, verdict="inconclusive", %s}`, f, m, ctl),
				func(i int) float64 { return math.Floor(float64(i) / 2) })
		}
	}
	add(`vigil_provider_errors_total{`+ctl+`}`, func(i int) float64 { return math.Floor(float64(i) / 20) })
	for _, le := range []string{"0.01", "0.05", "0.1", "0.5", "1", "+Inf"} {
		x, _ := strconv.ParseFloat(le, 64)
		add(fmt.Sprintf(`vigil_provider_query_duration_seconds_bucket{le=%q, %s}`, le, ctl), func(i int) float64 {
			return math.Floor(float64(2*i) * (1 - math.Exp(-x/0.03)))
		})
	}
	return out
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// loadFleet stores the fleet in the embedded metric store that `vigil serve`
// runs when there is no Prometheus, minute 0 at the Unix epoch.
func loadFleet(t *testing.T) storage.Queryable {
	t.Helper()
	ms, err := metricstore.Open(context.Background(), metricstore.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ms.Close() })
	series := fleetSeries()
	names := make([]string, 0, len(series))
	for n := range series {
		names = append(names, n)
	}
	sort.Strings(names)
	app := ms.Appender(context.Background())
	for _, n := range names {
		lbls, err := parser.NewParser(parser.Options{}).ParseMetric(n)
		if err != nil {
			t.Fatalf("series %s: %v", n, err)
		}
		for i, v := range series[n] {
			if math.IsNaN(v) {
				continue // no sample
			}
			if _, err := app.Append(0, lbls, time.Unix(0, 0).Add(time.Duration(i)*scrapeEvery).UnixMilli(), v); err != nil {
				t.Fatalf("append %s: %v", n, err)
			}
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	return ms.Queryable()
}

func newEngine(t *testing.T) *promql.Engine {
	t.Helper()
	ng := promql.NewEngine(promql.EngineOpts{
		MaxSamples:    5_000_000,
		Timeout:       time.Minute,
		LookbackDelta: 5 * time.Minute,
		Parser:        parser.NewParser(parser.Options{}),
	})
	t.Cleanup(func() { ng.Close() })
	return ng
}

// rangeQuery runs expr from minute 10 to minute 30 of the fleet.
func rangeQuery(t *testing.T, ng *promql.Engine, st storage.Queryable, expr string) promql.Matrix {
	t.Helper()
	start, end := time.Unix(0, 0).Add(10*time.Minute), time.Unix(0, 0).Add(30*time.Minute)
	q, err := ng.NewRangeQuery(context.Background(), st, nil, expr, start, end, queryStep)
	if err != nil {
		t.Fatalf("query %s: %v", expr, err)
	}
	defer q.Close()
	res := q.Exec(context.Background())
	if res.Err != nil {
		t.Fatalf("query %s: %v", expr, res.Err)
	}
	m, err := res.Matrix()
	if err != nil {
		t.Fatalf("query %s: %v", expr, err)
	}
	return m
}
