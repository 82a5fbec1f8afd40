package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/vigil-dev/vigil/sdk"
	vigilflag "github.com/vigil-dev/vigil/sdk/flag"
	"github.com/vigil-dev/vigil/sdk/semconv"
)

// TestPrometheusExposition runs the example service with the real
// OpenTelemetry Prometheus exporter and checks the series the rollout
// analysis queries: names, labels, buckets, and no unit keys.
func TestPrometheusExposition(t *testing.T) {
	data, err := os.ReadFile("flags.yaml")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "flags.yaml")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	registry := prometheus.NewRegistry()
	mp, err := newMeterProvider(registry)
	if err != nil {
		t.Fatal(err)
	}
	defer mp.Shutdown(context.Background())
	client, err := sdk.New(context.Background(), sdk.Config{FlagsFile: path, MeterProvider: mp})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	srv := httptest.NewServer(newHandler(client, registry))
	defer srv.Close()

	get := func(path string) string {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	const users, failing = 40, 3
	for i := range users {
		get(fmt.Sprintf("/checkout?user=secret-user-%d", i))
	}
	for i := range failing {
		get(fmt.Sprintf("/checkout?user=secret-user-%d&fail=1", i))
	}
	text := get("/metrics")
	if strings.Contains(text, "secret-user") {
		t.Fatal("a unit key reached the metrics")
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("parse exposition: %v\n%s", err, text)
	}

	reqs := families["feature_flag_requests_total"]
	if reqs == nil || reqs.GetType() != dto.MetricType_COUNTER {
		t.Fatalf("no counter feature_flag_requests_total in:\n%s", text)
	}
	var total, failed float64
	variants := map[string]bool{}
	for _, m := range reqs.Metric {
		l := labels(m)
		if l["feature_flag_key"] != "new-checkout" || l["feature_flag_result_reason"] != "split" {
			t.Errorf("series labels %v", l)
		}
		if l["otel_scope_name"] != sdk.ScopeName {
			t.Errorf("otel_scope_name = %q", l["otel_scope_name"])
		}
		variants[l["feature_flag_result_variant"]] = true
		total += m.GetCounter().GetValue()
		switch e, ok := l["error_type"]; {
		case !ok:
		case e == "503":
			failed += m.GetCounter().GetValue()
		default:
			t.Errorf("error_type = %q", e)
		}
	}
	if total != users+failing || failed != failing {
		t.Errorf("requests counted %v (failed %v), want %d (%d)", total, failed, users+failing, failing)
	}
	if !variants["on"] || !variants["off"] {
		t.Errorf("variants %v: a 50%% rollout over %d users should show both", variants, users)
	}

	dur := families["feature_flag_request_duration_seconds"]
	if dur == nil || dur.GetType() != dto.MetricType_HISTOGRAM {
		t.Fatalf("no histogram feature_flag_request_duration_seconds in:\n%s", text)
	}
	var count uint64
	for _, m := range dur.Metric {
		var les []float64
		for _, b := range m.GetHistogram().GetBucket() {
			les = append(les, b.GetUpperBound())
		}
		// The text format parser keeps the +Inf bucket the exposition writes.
		if want := append(slices.Clone(sdk.DurationBuckets), math.Inf(1)); !slices.Equal(les, want) {
			t.Errorf("buckets %v, want %v", les, want)
		}
		count += m.GetHistogram().GetSampleCount()
	}
	if count != users+failing {
		t.Errorf("histogram count %d, want %d", count, users+failing)
	}
	// The literal series names the analysis queries.
	for _, want := range []string{
		`feature_flag_requests_total{error_type="503",feature_flag_key="new-checkout"`,
		`feature_flag_request_duration_seconds_bucket{feature_flag_key="new-checkout"`,
		`le="0.005"`, `le="10"`, `le="+Inf"`,
		"feature_flag_request_duration_seconds_sum{", "feature_flag_request_duration_seconds_count{",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("exposition lacks %s", want)
		}
	}
}

func labels(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

// TestUnitBucketSeries runs the example service with the real exporter and
// a tracked flag that places most units by its split and some by targets:
// split series carry vigil_unit_bucket, the unit's bucket, and targeted ones
// do not; an untracked flag exports no cohort series at all. It counts the
// series a tracked flag adds, which docs/sdk.md quotes.
func TestUnitBucketSeries(t *testing.T) {
	const users = 160
	doc := func(tracked bool) string {
		return fmt.Sprintf(`{"flags": [{"key": "new-checkout", "variants": {"off": false, "on": true}, "control": "off", "treatment": "on",
			"enabled": true, "tracked": %v, "rollout": {"percent": 50},
			"targets": [{"variant": "on", "units": ["vip-1", "vip-2"]}, {"variant": "off", "units": ["staff-1"]}]}]}`, tracked)
	}
	units := []string{"vip-1", "vip-2", "staff-1"}
	for i := range users {
		units = append(units, fmt.Sprintf("user-%d", i))
	}

	tracked := scrapeAfter(t, doc(true), units)
	// Each unit made one good and one failed request.
	want := map[string]int{}
	for _, u := range units {
		d := tracked.client.Snapshot().Evaluate("new-checkout", sdk.EvalContext{Key: u})
		bucket := ""
		if d.Reason == vigilflag.ReasonSplit {
			bucket = strconv.Itoa(vigilflag.UnitBucket(u))
		}
		for _, e := range []string{"", "503"} {
			want[fmt.Sprintf("%s %s %s %s", d.Variant, d.Reason, bucket, e)]++
		}
	}
	got := map[string]int{}
	buckets := map[string]bool{}
	for _, m := range tracked.families[semconv.PromRequests].GetMetric() {
		l := labels(m)
		bucket, has := l[semconv.LabelUnitBucket]
		if split := l[semconv.LabelReason] == semconv.ReasonSplit; split != has {
			t.Errorf("series %v: reason %s with unit bucket label %v", l, l[semconv.LabelReason], has)
		}
		buckets[bucket] = true
		got[fmt.Sprintf("%s %s %s %s", l[semconv.LabelVariant], l[semconv.LabelReason], bucket, l[semconv.LabelErrorType])] += int(m.GetCounter().GetValue())
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("requests by variant, reason, unit bucket and error type:\n got  %v\n want %v", got, want)
	}
	if len(buckets) != vigilflag.UnitBuckets+1 { // the 8 buckets and none
		t.Errorf("unit bucket labels %v, want all %d and none", buckets, vigilflag.UnitBuckets)
	}

	// The series of the exposition, as Prometheus stores them: one per
	// sample line. Two variants, good and failed (one error type): the
	// split's cohorts are 2 x 2 x 8 unit buckets, the targets' 2 x 2, and
	// each cohort has one counter series and a histogram of 20 boundaries
	// plus +Inf, _sum and _count.
	perCohort := 1 + len(sdk.DurationBuckets) + 1 + 2
	split, targeted := tracked.series(t)
	if want := 2 * 2 * vigilflag.UnitBuckets * perCohort; split != want {
		t.Errorf("%d split series, want %d", split, want)
	}
	if want := 2 * 2 * perCohort; targeted != want {
		t.Errorf("%d targeted series, want %d", targeted, want)
	}
	t.Logf("series per process: split %d (%d per cohort), targeted %d", split, perCohort, targeted)

	untracked := scrapeAfter(t, doc(false), units)
	for name := range untracked.families {
		if strings.HasPrefix(name, "feature_flag_") {
			t.Errorf("an untracked flag exported %s", name)
		}
	}
}

// scrape is one scrape of the example service's /metrics.
type scrape struct {
	client   *sdk.Client
	text     string
	families map[string]*dto.MetricFamily
}

// series counts the cohort series of the exposition, with and without the
// unit bucket label.
func (s scrape) series(t *testing.T) (labelled, unlabelled int) {
	t.Helper()
	for _, line := range strings.Split(s.text, "\n") {
		if !strings.HasPrefix(line, "feature_flag_") {
			continue
		}
		if strings.Contains(line, semconv.LabelUnitBucket+`="`) {
			labelled++
		} else {
			unlabelled++
		}
	}
	return labelled, unlabelled
}

// scrapeAfter serves the flags file doc with the example's handler and
// exporter, sends each unit one good and one failed /checkout, and scrapes.
func scrapeAfter(t *testing.T, doc string, units []string) scrape {
	t.Helper()
	path := filepath.Join(t.TempDir(), "flags.json")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	registry := prometheus.NewRegistry()
	mp, err := newMeterProvider(registry)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mp.Shutdown(context.Background()) })
	client, err := sdk.New(context.Background(), sdk.Config{FlagsFile: path, MeterProvider: mp})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	srv := httptest.NewServer(newHandler(client, registry))
	t.Cleanup(srv.Close)
	get := func(path string) (string, error) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	// The handler sleeps a few milliseconds per request: send them from a
	// few goroutines.
	paths := make(chan string)
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			var first error
			for p := range paths {
				if _, err := get(p); err != nil && first == nil {
					first = err
				}
			}
			errs <- first
		}()
	}
	for _, u := range units {
		paths <- "/checkout?user=" + url.QueryEscape(u)
		paths <- "/checkout?fail=1&user=" + url.QueryEscape(u)
	}
	close(paths)
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	text, err := get("/metrics")
	if err != nil {
		t.Fatal(err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("parse exposition: %v\n%s", err, text)
	}
	return scrape{client: client, text: text, families: families}
}
