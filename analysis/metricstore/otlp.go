package metricstore

import (
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/prometheus/prometheus/storage/remote/otlptranslator/prometheusremotewrite"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
)

// maxOTLPBody bounds one OTLP request, uncompressed, as a guard against a
// client sending more than the store can hold in memory.
const maxOTLPBody = 32 << 20

// otlpSettings translate OTLP names the way the OpenTelemetry Prometheus
// exporter does, so that a counter feature_flag.requests pushed over OTLP and
// the same counter scraped from the exporter are one series name:
// feature_flag_requests_total, with otel_scope_* labels. Histograms are
// stored as the scrapes store them, as native histograms with custom
// buckets (see classicQueryable).
func otlpSettings() prometheusremotewrite.Settings {
	return prometheusremotewrite.Settings{
		AddMetricSuffixes:       true,
		PromoteScopeMetadata:    true,
		ConvertHistogramsToNHCB: true,
	}
}

// OTLPHandler receives OTLP/HTTP metrics export requests (POST, protobuf or
// JSON, optionally gzip-compressed) and stores their cumulative data points.
// Mount it at /v1/metrics, the path OTLP exporters post to. Delta
// temporality is refused: configure SDKs for cumulative temporality (the
// OpenTelemetry default).
func (s *Store) OTLPHandler() http.Handler {
	return http.HandlerFunc(s.receiveOTLP)
}

func (s *Store) receiveOTLP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "OTLP metrics: use POST", http.StatusMethodNotAllowed)
		return
	}
	ctype, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ctype != "application/x-protobuf" && ctype != "application/json" {
		http.Error(w, fmt.Sprintf("OTLP metrics: unsupported Content-Type %q (want application/x-protobuf or application/json)", r.Header.Get("Content-Type")), http.StatusUnsupportedMediaType)
		return
	}
	var body io.Reader = r.Body
	switch enc := r.Header.Get("Content-Encoding"); enc {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, "OTLP metrics: bad gzip body: "+err.Error(), http.StatusBadRequest)
			return
		}
		defer zr.Close()
		body = zr
	default:
		http.Error(w, fmt.Sprintf("OTLP metrics: unsupported Content-Encoding %q", enc), http.StatusUnsupportedMediaType)
		return
	}
	raw, err := io.ReadAll(io.LimitReader(body, maxOTLPBody+1))
	if err != nil {
		http.Error(w, "OTLP metrics: read body: "+err.Error(), http.StatusBadRequest)
		return
	}
	if len(raw) > maxOTLPBody {
		http.Error(w, fmt.Sprintf("OTLP metrics: body larger than %d bytes", maxOTLPBody), http.StatusRequestEntityTooLarge)
		return
	}
	req := pmetricotlp.NewExportRequest()
	if ctype == "application/json" {
		err = req.UnmarshalJSON(raw)
	} else {
		err = req.UnmarshalProto(raw)
	}
	if err != nil {
		http.Error(w, "OTLP metrics: decode "+ctype+": "+err.Error(), http.StatusBadRequest)
		return
	}

	if err := s.appendOTLP(r, req); err != nil {
		// Partial writes are kept: a client resending them would only
		// produce duplicate-sample errors.
		s.log.Warn("OTLP metrics partly rejected", "err", err)
		http.Error(w, "OTLP metrics: "+err.Error(), http.StatusBadRequest)
		return
	}
	resp := pmetricotlp.NewExportResponse()
	var out []byte
	if ctype == "application/json" {
		out, err = resp.MarshalJSON()
	} else {
		out, err = resp.MarshalProto()
	}
	if err != nil {
		http.Error(w, "OTLP metrics: encode response: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", ctype)
	_, _ = w.Write(out)
}

func (s *Store) appendOTLP(r *http.Request, req pmetricotlp.ExportRequest) error {
	// One converter per request: it keeps per-request caches.
	app := s.db.AppenderV2(r.Context())
	conv := prometheusremotewrite.NewPrometheusConverter(app)
	_, convErr := conv.FromMetrics(r.Context(), req.Metrics(), otlpSettings())
	if names := deltaMetrics(req.Metrics()); len(names) > 0 {
		convErr = errors.Join(fmt.Errorf("metrics %s have delta temporality, which Prometheus counters cannot hold: configure the exporter for cumulative temporality", strings.Join(names, ", ")), convErr)
	}
	if err := app.Commit(); err != nil {
		return errors.Join(convErr, fmt.Errorf("commit: %w", err))
	}
	return convErr
}

// deltaMetrics names the metrics of md sent with delta temporality, which
// the translator refuses with a message that does not say why.
func deltaMetrics(md pmetric.Metrics) []string {
	var names []string
	rms := md.ResourceMetrics()
	for i := range rms.Len() {
		sms := rms.At(i).ScopeMetrics()
		for j := range sms.Len() {
			ms := sms.At(j).Metrics()
			for k := range ms.Len() {
				m := ms.At(k)
				var t pmetric.AggregationTemporality
				switch m.Type() {
				case pmetric.MetricTypeSum:
					t = m.Sum().AggregationTemporality()
				case pmetric.MetricTypeHistogram:
					t = m.Histogram().AggregationTemporality()
				case pmetric.MetricTypeExponentialHistogram:
					t = m.ExponentialHistogram().AggregationTemporality()
				}
				if t == pmetric.AggregationTemporalityDelta && !slices.Contains(names, strconv.Quote(m.Name())) {
					names = append(names, strconv.Quote(m.Name()))
				}
			}
		}
	}
	return names
}
