package metricstore

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
)

// BenchmarkSelectHistogramBounds is the judge's latency read of 200 flags
// on the embedded store: two bounds of the SDKs' request duration
// histogram (21 buckets) for 2 variants × 8 unit buckets a flag, over the
// last 10 s of 5 minutes of 10 s scrapes, stored as classic series and as
// native histograms with custom buckets.
func BenchmarkSelectHistogramBounds(b *testing.B) {
	bounds := []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1, 1.5, 2, 2.5, 5, 7.5, 10}
	const flags, scrapes = 200, 30
	base := time.UnixMilli(1_800_000_000_000)
	var keys []string
	for i := range flags {
		keys = append(keys, fmt.Sprintf("flag-%03d", i))
	}
	query := fmt.Sprintf(`d_bucket{feature_flag_result_reason="split", feature_flag_key=~%q, feature_flag_result_variant=~"on|off", le=~"0.25|\\+Inf"}[10s]`,
		strings.Join(keys, "|"))
	for _, native := range []bool{false, true} {
		b.Run(fmt.Sprintf("native=%v", native), func(b *testing.B) {
			s := openStore(b, Options{})
			for n := range scrapes {
				app := s.Appender(context.Background())
				ts := base.Add(time.Duration(n) * 10 * time.Second).UnixMilli()
				for _, key := range keys {
					for _, variant := range []string{"on", "off"} {
						for ub := range 8 {
							ls := labels.FromStrings(labels.MetricName, "d", "feature_flag_key", key, "feature_flag_result_reason", "split",
								"feature_flag_result_variant", variant, "vigil_unit_bucket", fmt.Sprint(ub))
							// 10 more requests a scrape in each bucket.
							perBucket := int64(10 * (n + 1))
							if native {
								h := &histogram.Histogram{Schema: histogram.CustomBucketsSchema, CustomValues: bounds,
									Count: uint64(perBucket) * uint64(len(bounds)+1), Sum: float64(perBucket),
									PositiveSpans: []histogram.Span{{Offset: 0, Length: uint32(len(bounds) + 1)}}, PositiveBuckets: make([]int64, len(bounds)+1)}
								h.PositiveBuckets[0] = perBucket
								if _, err := app.AppendHistogram(0, ls, ts, h, nil); err != nil {
									b.Fatal(err)
								}
								continue
							}
							for i := range len(bounds) + 1 {
								le := math.Inf(1)
								if i < len(bounds) {
									le = bounds[i]
								}
								bl := labels.NewBuilder(ls).Set(labels.MetricName, "d_bucket").Set(labels.BucketLabel, labels.FormatOpenMetricsFloat(le)).Labels()
								if _, err := app.Append(0, bl, ts, float64(perBucket*int64(i+1))); err != nil {
									b.Fatal(err)
								}
							}
						}
					}
				}
				if err := app.Commit(); err != nil {
					b.Fatal(err)
				}
			}
			at := base.Add((scrapes - 1) * 10 * time.Second)
			b.ReportAllocs()
			for b.Loop() {
				series := 0
				err := s.QueryMatrix(context.Background(), query, at, func(ls labels.Labels, samples []model.SamplePair) {
					series++
				})
				if err != nil || series != flags*2*8*2 {
					b.Fatalf("read %d series, want %d: %v", series, flags*2*8*2, err)
				}
			}
		})
	}
}
