package metricstore

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
)

// BenchmarkOTLPIngest posts one OTLP export per iteration, as an SDK does at
// each export interval: 100 flags × 2 cohorts of the request counter and a
// 6-bucket duration histogram (1,800 samples once translated).
func BenchmarkOTLPIngest(b *testing.B) {
	s, err := Open(context.Background(), Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	h := s.Handler()
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	rm.Resource().Attributes().PutStr("service.name", "bench")
	sm := rm.ScopeMetrics().AppendEmpty()
	sm.Scope().SetName("github.com/vigil-dev/vigil/sdk")
	reqs := sm.Metrics().AppendEmpty()
	reqs.SetName("feature_flag.requests")
	reqs.SetUnit("{request}")
	sum := reqs.SetEmptySum()
	sum.SetIsMonotonic(true)
	sum.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	dur := sm.Metrics().AppendEmpty()
	dur.SetName("feature_flag.request.duration")
	dur.SetUnit("s")
	hist := dur.SetEmptyHistogram()
	hist.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	for i := range 100 {
		for _, v := range []string{"on", "off"} {
			dp := sum.DataPoints().AppendEmpty()
			dp.Attributes().PutStr("feature_flag.key", fmt.Sprintf("flag-%03d", i))
			dp.Attributes().PutStr("feature_flag.result.variant", v)
			dp.Attributes().PutStr("feature_flag.result.reason", "split")
			hp := hist.DataPoints().AppendEmpty()
			dp.Attributes().CopyTo(hp.Attributes())
			hp.ExplicitBounds().FromRaw([]float64{0.05, 0.1, 0.25, 0.5, 1})
			hp.BucketCounts().FromRaw([]uint64{1, 1, 1, 1, 1, 1})
			hp.SetCount(6)
			hp.SetSum(1)
		}
	}
	start := time.Now()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		ts := pcommon.NewTimestampFromTime(start.Add(time.Duration(i) * time.Millisecond))
		for j := range sum.DataPoints().Len() {
			sum.DataPoints().At(j).SetTimestamp(ts)
			sum.DataPoints().At(j).SetIntValue(int64(i))
			hist.DataPoints().At(j).SetTimestamp(ts)
		}
		body, err := pmetricotlp.NewExportRequestFromMetrics(md).MarshalProto()
		if err != nil {
			b.Fatal(err)
		}
		req := httptest.NewRequest(http.MethodPost, "/v1/metrics", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/x-protobuf")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	}
}
