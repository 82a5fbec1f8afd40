package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/vigil-dev/vigil/sdk"
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
