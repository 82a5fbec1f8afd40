// Command service is a small HTTP service that uses the Vigil SDK the way a
// production service would: flags from the controller (or a flags file),
// the net/http middleware for cohort metrics, baggage propagation, and the
// OpenTelemetry Prometheus exporter serving /metrics.
//
//	go run ./service -server http://localhost:8080 -token $VIGIL_TOKEN
//	go run ./service -flags service/flags.yaml
//	curl 'localhost:8081/checkout?user=alice'; curl localhost:8081/metrics
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/vigil-dev/vigil/sdk"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "service:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		addr   = flag.String("listen", "127.0.0.1:8081", "address to serve on")
		server = flag.String("server", "", "Vigil controller URL")
		token  = flag.String("token", os.Getenv("VIGIL_TOKEN"), "SDK token")
		flags  = flag.String("flags", "", "flags file, instead of a controller")
		cache  = flag.String("cache", "", "file that keeps the last snapshot for cold starts")
	)
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	// Baggage must cross service boundaries for pinning to work.
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	registry := prometheus.NewRegistry()
	mp, err := newMeterProvider(registry)
	if err != nil {
		return err
	}
	defer mp.Shutdown(context.Background())

	client, err := sdk.New(ctx, sdk.Config{
		ServerURL:          *server,
		Token:              *token,
		FlagsFile:          *flags,
		FileReloadInterval: 2 * time.Second,
		CacheFile:          *cache,
		MeterProvider:      mp,
	})
	if err != nil {
		return err
	}
	defer client.Close()

	srv := &http.Server{Addr: *addr, Handler: newHandler(client, registry), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
	}()
	slog.Info("serving", "addr", *addr)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// newMeterProvider exports the SDK's metrics through the OpenTelemetry
// Prometheus exporter into registry.
func newMeterProvider(registry *prometheus.Registry) (*sdkmetric.MeterProvider, error) {
	exporter, err := otelprom.New(otelprom.WithRegisterer(registry))
	if err != nil {
		return nil, fmt.Errorf("prometheus exporter: %w", err)
	}
	return sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter)), nil
}

// newHandler serves /checkout behind the Vigil middleware, and /metrics.
func newHandler(client *sdk.Client, registry *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /checkout", client.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user := r.URL.Query().Get("user")
		ec := sdk.EvalContext{Key: user, Attributes: map[string]any{"plan": r.URL.Query().Get("plan")}}
		newFlow, detail := client.BoolDetail(r.Context(), "new-checkout", ec, false)
		if r.URL.Query().Get("fail") != "" {
			http.Error(w, "payment backend unavailable", http.StatusServiceUnavailable)
			return
		}
		// Simulated work: the new flow is a little slower.
		work := time.Duration(rand.N(5)) * time.Millisecond
		if newFlow {
			work += 2 * time.Millisecond
		}
		time.Sleep(work)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"user": user, "newCheckout": newFlow, "detail": detail})
	})))
	mux.Handle("GET /metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))
	return mux
}
