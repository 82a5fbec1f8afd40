package sdk

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/baggage"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/vigil-dev/vigil/sdk/flag"
)

// TestScopeConcurrentEvaluations evaluates six tracked flags, more than a
// scope holds inline, from several goroutines of one request, while others
// read its baggage and count events. Each flag must be recorded once with
// the variant its bucket gives, and pinned once. Under -race this also
// checks that evaluations read a scope's entries safely without its mutex.
func TestScopeConcurrentEvaluations(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { mp.Shutdown(context.Background()) })
	var flags []flag.Flag
	for i := range 6 {
		flags = append(flags, rollout(fmt.Sprintf("f%d", i), 50, true))
	}
	c := staticClient(t, mp, flags...)
	snap, err := flag.NewSnapshot(1, flags)
	if err != nil {
		t.Fatal(err)
	}
	u := unit("user-7")

	ctx, scope := c.StartScope(context.Background())
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 60 {
				f := flags[(g+i)%len(flags)]
				want := snap.Evaluate(f.Key, u).Value.(bool)
				if got := c.Bool(ctx, f.Key, u, !want); got != want {
					t.Errorf("goroutine %d: %s = %v, want %v", g, f.Key, got, want)
					return
				}
				if i%10 == 0 {
					c.Track(ctx, "step")
					baggage.FromContext(ctx)
				}
			}
		}()
	}
	wg.Wait()
	c.Track(ctx, "step")

	var want []string
	pins := map[string]string{}
	for _, f := range flags {
		d := snap.Evaluate(f.Key, u)
		want = append(want, fmt.Sprintf("feature_flag.key=%s,feature_flag.result.reason=split,feature_flag.result.variant=%s%s => 1", f.Key, d.Variant, bucketAttr(u.Key)))
		pins[pinPrefix+f.Key] = d.Variant
	}
	b := baggage.FromContext(ctx)
	if b.Len() != len(flags) {
		t.Errorf("baggage has %d members, want %d: %s", b.Len(), len(flags), b)
	}
	for name, variant := range pins {
		if got := b.Member(name).Value(); got != variant {
			t.Errorf("baggage %s = %q, want %q", name, got, variant)
		}
	}
	scope.End(nil)

	ms := collect(t, reader)
	equal(t, "requests", counts(t, ms[MetricRequests]), want)
	ev := ms[MetricEvents].Data.(metricdata.Sum[int64])
	if len(ev.DataPoints) != len(flags) {
		t.Errorf("events for %d cohorts, want %d", len(ev.DataPoints), len(flags))
	}
	for _, p := range ev.DataPoints {
		// 8 goroutines track 6 times each, then once more after all ran.
		if p.Value < 1 || p.Value > 8*6+1 {
			t.Errorf("events %s = %d, want 1 to %d", strings.TrimSpace(encode(p.Attributes)), p.Value, 8*6+1)
		}
	}
}
