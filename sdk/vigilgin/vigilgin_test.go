package vigilgin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/vigil-dev/vigil/sdk"
	"github.com/vigil-dev/vigil/sdk/flag"
)

func init() { gin.SetMode(gin.ReleaseMode) }

func client(tb testing.TB, mp *sdkmetric.MeterProvider, keys ...string) *sdk.Client {
	tb.Helper()
	var flags []flag.Flag
	for _, k := range keys {
		flags = append(flags, flag.Flag{
			Key: k, Enabled: true, Control: "off", Treatment: "on", Tracked: true,
			Variants: map[string]json.RawMessage{"off": json.RawMessage("false"), "on": json.RawMessage("true")},
			Rollout:  &flag.Rollout{Percent: 100},
		})
	}
	data, _ := json.Marshal(flag.File{Flags: flags})
	path := filepath.Join(tb.TempDir(), "flags.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		tb.Fatal(err)
	}
	c, err := sdk.New(context.Background(), sdk.Config{FlagsFile: path, MeterProvider: mp})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

func TestMiddleware(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	c := client(t, mp, "checkout")
	r := gin.New()
	r.Use(gin.CustomRecovery(func(c *gin.Context, _ any) { c.AbortWithStatus(http.StatusInternalServerError) }), Middleware(c))
	eval := func(g *gin.Context) { c.Bool(g.Request.Context(), "checkout", sdk.EvalContext{Key: "u"}, false) }
	r.GET("/ok", func(g *gin.Context) { eval(g); g.String(http.StatusOK, "ok") })
	r.GET("/fail", func(g *gin.Context) { eval(g); g.String(http.StatusBadGateway, "upstream") })
	r.GET("/panic", func(g *gin.Context) { eval(g); panic("boom") })
	r.GET("/reported", func(g *gin.Context) {
		eval(g)
		sdk.ReportError(g.Request.Context(), io.ErrUnexpectedEOF)
		g.Status(http.StatusOK)
	})
	srv := httptest.NewServer(r)
	defer srv.Close()
	for _, p := range []string{"/ok", "/ok", "/fail", "/panic", "/reported"} {
		resp, err := http.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "feature_flag.requests" {
				continue
			}
			for _, p := range m.Data.(metricdata.Sum[int64]).DataPoints {
				got = append(got, fmt.Sprintf("%s => %d", p.Attributes.Encoded(attribute.DefaultEncoder()), p.Value))
			}
		}
	}
	slices.Sort(got)
	// Unit "u" is placed by the split, so its cohort carries its bucket.
	cohort := fmt.Sprintf("feature_flag.key=checkout,feature_flag.result.reason=split,feature_flag.result.variant=on,vigil.unit_bucket=%d", flag.UnitBucket("u"))
	want := []string{
		"error.type=error," + cohort + " => 1",
		"error.type=500," + cohort + " => 1",
		"error.type=502," + cohort + " => 1",
		cohort + " => 2",
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("feature_flag.requests:\n got  %q\n want %q", got, want)
	}
}

type discard struct{ h http.Header }

func (w *discard) Header() http.Header         { return w.h }
func (w *discard) Write(p []byte) (int, error) { return len(p), nil }
func (w *discard) WriteHeader(int)             {}

func BenchmarkMiddleware3Tracked(b *testing.B) {
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	c := client(b, mp, "a", "b", "c")
	r := gin.New()
	r.Use(Middleware(c))
	r.GET("/", func(g *gin.Context) {
		ctx, ec := g.Request.Context(), sdk.EvalContext{Key: "user-1"}
		c.Bool(ctx, "a", ec, false)
		c.Bool(ctx, "b", ec, false)
		c.Bool(ctx, "c", ec, false)
		g.Status(http.StatusOK)
	})
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	w := &discard{h: http.Header{}}
	b.ReportAllocs()
	start := processCPU()
	for b.Loop() {
		r.ServeHTTP(w, req)
	}
	b.ReportMetric(float64(processCPU()-start)/float64(b.N), "cpu-ns/op")
}

// processCPU is the process's CPU time, reported besides wall time because
// the benchmark machine is shared (see docs/benchmarks.md).
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
