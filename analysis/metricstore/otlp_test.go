package metricstore

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
)

// TestOTLPMatchesPrometheusExporter records the SDK's cohort metrics once and
// sends them both ways: pushed by the real OTLP/HTTP exporter to the store's
// receiver, and exposed by the OpenTelemetry Prometheus exporter that the
// store scrapes. Both must arrive as the same series, names and labels, with
// the same values.
func TestOTLPMatchesPrometheusExporter(t *testing.T) {
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	promExp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		t.Fatal(err)
	}
	scrapeSrv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(scrapeSrv.Close)

	s := openStore(t, Options{ScrapeTargets: []string{scrapeSrv.URL + "/metrics"}, ScrapeInterval: 200 * time.Millisecond})
	otlpSrv := httptest.NewServer(s.Handler())
	t.Cleanup(otlpSrv.Close)
	otlpExp, err := otlpmetrichttp.New(ctx,
		otlpmetrichttp.WithEndpointURL(otlpSrv.URL+"/v1/metrics"),
		otlpmetrichttp.WithCompression(otlpmetrichttp.GzipCompression))
	if err != nil {
		t.Fatal(err)
	}
	mp := sdkmetric.NewMeterProvider(
		sdkmetric.WithResource(resource.NewSchemaless(semconv.ServiceName("checkout"), semconv.ServiceInstanceID("pod-1"))),
		sdkmetric.WithReader(promExp),
		// The periodic reader exports only when flushed within the test.
		sdkmetric.WithReader(sdkmetric.NewPeriodicReader(otlpExp, sdkmetric.WithInterval(time.Hour))),
	)
	t.Cleanup(func() { _ = mp.Shutdown(ctx) })

	meter := mp.Meter("github.com/vigil-dev/vigil/sdk", metric.WithInstrumentationVersion("0.1.0"))
	requests, err := meter.Int64Counter("feature_flag.requests", metric.WithUnit("{request}"))
	if err != nil {
		t.Fatal(err)
	}
	duration, err := meter.Float64Histogram("feature_flag.request.duration", metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(0.05, 0.1, 0.25, 0.5, 1))
	if err != nil {
		t.Fatal(err)
	}
	cohort := func(variant string, errType string) metric.MeasurementOption {
		attrs := []attribute.KeyValue{
			attribute.String("feature_flag.key", "new-checkout"),
			attribute.String("feature_flag.result.variant", variant),
			attribute.String("feature_flag.result.reason", "split"),
		}
		if errType != "" {
			attrs = append(attrs, attribute.String("error.type", errType))
		}
		return metric.WithAttributes(attrs...)
	}
	for i := range 30 {
		variant, errType := "off", ""
		if i%3 == 0 {
			variant = "on"
		}
		if i%10 == 0 {
			errType = "timeout"
		}
		requests.Add(ctx, 1, cohort(variant, errType))
		duration.Record(ctx, float64(i)/40, cohort(variant, errType))
	}

	if err := mp.ForceFlush(ctx); err != nil {
		t.Fatalf("OTLP export: %v", err)
	}
	waitScraped(t, s, time.Now())

	for _, name := range []string{"feature_flag_request_duration_seconds_bucket", "feature_flag_request_duration_seconds_count"} {
		if got := storedTypes(t, s, name); len(got) != 0 {
			t.Errorf("%s is stored (%v); want the histogram stored as native histograms", name, got)
		}
	}
	pushed := seriesOf(t, s, "checkout")
	scraped := seriesOf(t, s, "scrape")
	if len(pushed) == 0 {
		t.Fatal("no feature_flag series arrived over OTLP")
	}
	if !slices.Equal(pushed, scraped) {
		t.Fatalf("OTLP and scraped series differ:\nOTLP:\n  %s\nscraped:\n  %s", strings.Join(pushed, "\n  "), strings.Join(scraped, "\n  "))
	}
	for _, want := range []string{
		`feature_flag_requests_total{error_type="timeout", feature_flag_key="new-checkout", feature_flag_result_reason="split", feature_flag_result_variant="on", otel_scope_name="github.com/vigil-dev/vigil/sdk", otel_scope_version="0.1.0"} 1`,
		`feature_flag_request_duration_seconds_bucket{feature_flag_key="new-checkout", feature_flag_result_reason="split", feature_flag_result_variant="off", le="0.25", otel_scope_name="github.com/vigil-dev/vigil/sdk", otel_scope_version="0.1.0"} 6`,
		`feature_flag_request_duration_seconds_count{feature_flag_key="new-checkout", feature_flag_result_reason="split", feature_flag_result_variant="off", otel_scope_name="github.com/vigil-dev/vigil/sdk", otel_scope_version="0.1.0"} 18`,
	} {
		if !slices.Contains(pushed, want) {
			t.Errorf("missing series %s in:\n  %s", want, strings.Join(pushed, "\n  "))
		}
	}
	v, err := s.Query(ctx, `feature_flag_requests_total{job="checkout",  error_type=""}`, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, smp := range v {
		if smp.Metric["instance"] != "pod-1" {
			t.Errorf("OTLP series %v: instance should come from service.instance.id", smp.Metric)
		}
	}
}

// seriesOf lists the feature_flag_* series of one job with their latest
// values, without the job and instance labels, sorted. Histograms are
// stored as native histograms: each classic series name is asked for, as
// the dashboards and the cohort reads do.
func seriesOf(t *testing.T, s *Store, job string) []string {
	t.Helper()
	var v model.Vector
	for _, name := range []string{"feature_flag_requests_total", "feature_flag_request_duration_seconds_bucket",
		"feature_flag_request_duration_seconds_count", "feature_flag_request_duration_seconds_sum"} {
		vs, err := s.Query(context.Background(), name+`{job="`+job+`"}`, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		v = append(v, vs...)
	}
	var out []string
	for _, smp := range v {
		b := labels.NewBuilder(labels.EmptyLabels())
		for k, val := range smp.Metric {
			switch k {
			case "job", "instance", "__name__":
			case "le":
				// Prometheus 3's text parser writes le="1" as "1.0"; the
				// OTLP translator keeps "1". Queries must compare le as a
				// number (package cohort does).
				f, err := strconv.ParseFloat(string(val), 64)
				if err != nil {
					t.Fatalf("series %v: le is not a number", smp.Metric)
				}
				b.Set("le", strconv.FormatFloat(f, 'g', -1, 64))
			default:
				b.Set(string(k), string(val))
			}
		}
		out = append(out, string(smp.Metric["__name__"])+b.Labels().String()+" "+smp.Value.String())
	}
	slices.Sort(out)
	return out
}

func TestOTLPRejectsBadRequests(t *testing.T) {
	s := openStore(t, Options{})
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	for _, tc := range []struct {
		name, method, ctype, encoding, body string
		want                                int
	}{
		{"GET", http.MethodGet, "application/x-protobuf", "", "", http.StatusMethodNotAllowed},
		{"text body", http.MethodPost, "text/plain", "", "hi", http.StatusUnsupportedMediaType},
		{"garbage protobuf", http.MethodPost, "application/x-protobuf", "", "\xff\xff\xff", http.StatusBadRequest},
		{"garbage json", http.MethodPost, "application/json", "", "{", http.StatusBadRequest},
		{"bad gzip", http.MethodPost, "application/x-protobuf", "gzip", "not gzip", http.StatusBadRequest},
		{"unknown encoding", http.MethodPost, "application/x-protobuf", "br", "", http.StatusUnsupportedMediaType},
		{"empty request", http.MethodPost, "application/json", "", "{}", http.StatusOK},
	} {
		req, err := http.NewRequest(tc.method, srv.URL+"/v1/metrics", bytes.NewBufferString(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", tc.ctype)
		if tc.encoding != "" {
			req.Header.Set("Content-Encoding", tc.encoding)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s: status %d, want %d", tc.name, resp.StatusCode, tc.want)
		}
	}
}

// TestOTLPRefusesDelta: delta sums cannot be stored as Prometheus counters;
// the client is told so, and nothing is stored.
func TestOTLPRefusesDelta(t *testing.T) {
	s := openStore(t, Options{})
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	md := pmetric.NewMetrics()
	m := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
	m.SetName("feature_flag.requests")
	sum := m.SetEmptySum()
	sum.SetIsMonotonic(true)
	sum.SetAggregationTemporality(pmetric.AggregationTemporalityDelta)
	dp := sum.DataPoints().AppendEmpty()
	dp.SetIntValue(3)
	dp.SetTimestamp(pcommon.NewTimestampFromTime(time.Now()))
	body, err := pmetricotlp.NewExportRequestFromMetrics(md).MarshalProto()
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(srv.URL+"/v1/metrics", "application/x-protobuf", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(strings.ToLower(string(msg)), "delta") {
		t.Errorf("delta sum: status %d %q, want 400 naming delta temporality", resp.StatusCode, msg)
	}
	v, err := s.Query(context.Background(), `{__name__=~"feature_flag.*"}`, time.Now())
	if err != nil || len(v) != 0 {
		t.Errorf("after a refused delta: %v, %v; want nothing stored", v, err)
	}
}
