package cohort

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/vigil-dev/vigil/sdk/semconv"
)

// BenchmarkRead reads the cohort counts of 100 flags from the embedded
// store: 100 flags × 2 cohorts × (requests, errors, 6 buckets) series with
// 10 minutes of 15 s samples.
func BenchmarkRead(b *testing.B) {
	l := newLoader(b)
	var flags []FlagQuery
	for i := range 100 {
		key := fmt.Sprintf("flag-%03d", i)
		for _, v := range []string{"on", "off"} {
			l.counter(10, cohortLabels(semconv.PromRequests, key, v, "split")...)
			l.counter(1, cohortLabels(semconv.PromRequests, key, v, "split", semconv.LabelErrorType, "500")...)
			for j, le := range []string{"0.05", "0.1", "0.25", "0.5", "1", "+Inf"} {
				l.counter(float64(j+5), cohortLabels(semconv.PromRequestDuration+"_bucket", key, v, "split", labelLE, le)...)
			}
		}
		flags = append(flags, FlagQuery{Flag: key, Treatment: "on", Control: "off", Since: l.end.Add(-time.Duration(5+i%3) * time.Minute)})
	}
	r := NewReader(l.s)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		got, err := r.Read(ctx, l.end, flags)
		if err != nil || got["flag-042"].Err != nil {
			b.Fatal(err, got["flag-042"].Err)
		}
	}
}
