package sdk

import (
	"net/http"
	"net/http/httptest"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// The evaluation path's promise of no allocation is a contract services
// rely on at millions of calls a second; the benchmarks measure it, and
// these tests keep make test from letting it slip.

func TestEvaluationDoesNotAllocate(t *testing.T) {
	c := staticClient(t, nil, rollout("new-checkout", 37.5, true), rules20(true))
	units := benchUnits(64)
	s := c.Snapshot()
	cases := []struct {
		name string
		eval func(i int)
	}{
		{"Snapshot.Evaluate rollout", func(i int) { s.Evaluate("new-checkout", units[i&63]) }},
		{"Client.Bool rollout", func(i int) { c.Bool(bg, "new-checkout", units[i&63], false) }},
		{"Client.Bool 20 rules then rollout", func(i int) { c.Bool(bg, "pricing", units[i&63], false) }},
		{"Client.BoolDetail unknown flag", func(i int) { c.BoolDetail(bg, "missing", units[i&63], false) }},
	}
	for _, tc := range cases {
		i := 0
		if n := testing.AllocsPerRun(1000, func() { tc.eval(i); i++ }); n != 0 {
			t.Errorf("%s: %v allocations per evaluation, want 0", tc.name, n)
		}
	}
}

// TestMiddlewareAllocations holds the middleware to its two allocations per
// request (the scope and http.Request.WithContext) with three tracked flags.
func TestMiddlewareAllocations(t *testing.T) {
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	c := staticClient(t, mp, rollout("a", 10, true), rollout("b", 50, true), rollout("c", 90, true))
	h := c.Middleware(threeTracked(c))
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Header.Set("X-User", "user-1")
	w := &discardWriter{h: http.Header{}}
	h.ServeHTTP(w, req) // the cohorts' first use builds their metric options
	if n := testing.AllocsPerRun(1000, func() { h.ServeHTTP(w, req) }); n > 2 {
		t.Errorf("%v allocations per request, want at most 2", n)
	}
}
