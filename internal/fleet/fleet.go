// Package fleet runs a small fleet of real HTTP services instrumented with
// the Vigil SDK: a gateway that calls checkout, which calls payments. Each
// service has a treatment code path whose health is configurable, so the
// demo and the end-to-end tests can show a healthy rollout being promoted and
// a harmful one being rolled back.
package fleet

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"

	"github.com/vigil-dev/vigil/sdk"
)

// Flag keys the fleet evaluates.
const (
	// NewCheckout is evaluated in every service: the gateway decides, the
	// others serve the variant pinned in the request's baggage.
	NewCheckout = "new-checkout"
	// FastPayments is evaluated in checkout and payments; its treatment
	// code path runs in payments.
	FastPayments = "fast-payments"
	// SlowSearch is evaluated in the gateway only; its treatment path is
	// slower in the tail.
	SlowSearch = "slow-search"
)

// The fleet's services, as Config.Broken names them and as their
// service.name resource attribute says.
const (
	// Gateway is the entry point: it decides NewCheckout and SlowSearch
	// and calls Checkout.
	Gateway = "gateway"
	// Checkout runs NewCheckout's treatment path and calls Payments.
	Checkout = "checkout"
	// Payments runs FastPayments' treatment path.
	Payments = "payments"
)

// ServedMetric counts, on each service's /metrics, the requests it
// answered by status code, whatever flags they evaluated; the SDK's cohort
// metrics count only requests that evaluated a flag under rollout.
const ServedMetric = "fleet_requests_total"

// Behaviour is how one code path of a service performs.
type Behaviour struct {
	// ErrorRate is the chance that a request fails with a 500.
	ErrorRate float64
	// Latency is the typical service time.
	Latency time.Duration
	// TailRate is the chance that a request is slow, taking TailLatency,
	// or, with TailMax above it, a time drawn evenly between the two.
	TailRate    float64
	TailLatency time.Duration
	TailMax     time.Duration
}

// Draw draws one request on this path from r: whether it fails and how
// long the service works on it.
func (b Behaviour) Draw(r *rand.Rand) (fail bool, work time.Duration) {
	fail = r.Float64() < b.ErrorRate
	if r.Float64() >= b.TailRate {
		return fail, b.Latency
	}
	work = b.TailLatency
	if b.TailMax > work {
		work += time.Duration(r.Float64() * float64(b.TailMax-work))
	}
	return fail, work
}

// Config describes the fleet. Treatment maps a flag key to how its
// treatment path behaves; flags without an entry behave like control.
type Config struct {
	ControllerURL string
	Token         string
	// FlagsFile runs the SDKs offline from a flags file instead.
	FlagsFile string
	// OTLPEndpoint, when set, is a base URL (such as the controller's) to
	// which every service also pushes its metrics with OTLP/HTTP, every
	// PushInterval (default 1s). Each service always serves /metrics too.
	OTLPEndpoint string
	PushInterval time.Duration
	// Headers are sent with every OTLP push, for example an Authorization
	// header.
	Headers   map[string]string
	Control   Behaviour
	Treatment map[string]Behaviour
	// Broken maps a unit to the service (Gateway, Checkout or Payments)
	// that fails every one of its requests with a 500, in every variant of
	// every flag: a customer with broken data. Its requests take the
	// service's usual time, and the services upstream pass the failure on
	// as usual.
	Broken map[string]string
	// Seen, when set, is told of every evaluation: which service saw which
	// variant of which flag for which unit, in which request.
	Seen func(service, flag, unit, request, variant string)
	// Answered, when set, is told of every request the gateway answered:
	// its id and the HTTP status the caller got. With Seen it gives each
	// cohort's failures as users see them, across the whole chain.
	Answered func(request string, status int)
}

// Fleet is the running services.
type Fleet struct {
	services []*service
	gateway  string
	client   *http.Client
	requests atomic.Uint64
}

type service struct {
	name    string
	sdk     *sdk.Client
	srv     *http.Server
	ln      net.Listener
	metrics net.Listener
	msrv    *http.Server
	mp      *sdkmetric.MeterProvider
}

// Start starts payments, checkout and gateway, each with its own SDK client
// connected to the controller and its own /metrics endpoint. It waits until
// every SDK has its first snapshot.
func Start(ctx context.Context, cfg Config) (*Fleet, error) {
	services := chain()
	for unit, name := range cfg.Broken {
		if !slices.Contains(services, name) {
			return nil, fmt.Errorf("fleet: Broken[%q]: unknown service %q (want %s, %s or %s)", unit, name, Gateway, Checkout, Payments)
		}
	}
	f := &Fleet{client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 256}}}
	next := ""
	for _, name := range services {
		s, err := startService(ctx, cfg, name, next, f.client)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("start %s: %w", name, err)
		}
		f.services = append(f.services, s)
		next = "http://" + s.ln.Addr().String()
	}
	f.gateway = next
	return f, nil
}

// MetricsTargets returns the host:port of every service's /metrics endpoint.
func (f *Fleet) MetricsTargets() []string {
	out := make([]string, len(f.services))
	for i, s := range f.services {
		out[i] = s.metrics.Addr().String()
	}
	return out
}

// GatewayURL is the fleet's entry point.
func (f *Fleet) GatewayURL() string { return f.gateway }

// Close stops every service.
func (f *Fleet) Close() {
	for _, s := range f.services {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = s.srv.Shutdown(ctx)
		_ = s.msrv.Shutdown(ctx)
		cancel()
		_ = s.sdk.Close()
		_ = s.mp.Shutdown(context.Background())
	}
	f.client.CloseIdleConnections()
}

// Do sends one request for unit through the gateway and reports whether it
// succeeded. Every service sees the request under the same id.
func (f *Fleet) Do(ctx context.Context, unit string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.gateway+"/checkout", nil)
	if err != nil {
		return err
	}
	req.Header.Set("X-User", unit)
	req.Header.Set("X-Request-Id", fmt.Sprintf("%x", f.requests.Add(1)))
	resp, err := f.client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode >= 500 {
		return fmt.Errorf("gateway: %s", resp.Status)
	}
	return nil
}

func startService(ctx context.Context, cfg Config, name, next string, client *http.Client) (*service, error) {
	reg := prometheus.NewRegistry()
	// Every request, flags under rollout or not, so that the fleet's
	// traffic shows after the rollouts have finished too.
	served := prometheus.NewCounterVec(prometheus.CounterOpts{Name: ServedMetric, Help: "Requests the service answered, by status code."}, []string{"code"})
	if err := reg.Register(served); err != nil {
		return nil, fmt.Errorf("register %s: %w", ServedMetric, err)
	}
	exp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, err
	}
	readers := []sdkmetric.Option{sdkmetric.WithReader(exp)}
	if cfg.OTLPEndpoint != "" {
		push, err := otlpmetrichttp.New(ctx, otlpmetrichttp.WithEndpointURL(strings.TrimSuffix(cfg.OTLPEndpoint, "/")+"/v1/metrics"),
			otlpmetrichttp.WithHeaders(cfg.Headers))
		if err != nil {
			return nil, fmt.Errorf("otlp exporter: %w", err)
		}
		interval := cfg.PushInterval
		if interval <= 0 {
			interval = time.Second
		}
		readers = append(readers, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(push, sdkmetric.WithInterval(interval))))
	}
	s := &service{name: name}
	s.mp = sdkmetric.NewMeterProvider(append(readers, sdkmetric.WithResource(resource.NewSchemaless(semconv.ServiceName(name))))...)
	ok := false
	defer func() {
		if ok {
			return
		}
		// Whatever started before the failure stops with it.
		for _, l := range []net.Listener{s.ln, s.metrics} {
			if l != nil {
				l.Close()
			}
		}
		if s.sdk != nil {
			s.sdk.Close()
		}
		_ = s.mp.Shutdown(context.Background())
	}()
	c, err := sdk.New(ctx, sdk.Config{ServerURL: cfg.ControllerURL, Token: cfg.Token, FlagsFile: cfg.FlagsFile, MeterProvider: s.mp,
		BackoffMin: 100 * time.Millisecond, BackoffMax: time.Second, PollInterval: time.Second})
	if err != nil {
		return nil, err
	}
	s.sdk = c
	if !c.Ready() {
		return nil, errors.New("no flags from the controller yet")
	}
	h := &handler{service: s, cfg: cfg, next: next, client: client, rng: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))}
	if s.ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		return nil, err
	}
	if s.metrics, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		return nil, err
	}
	report := func(_ string, status int) { served.WithLabelValues(strconv.Itoa(status)).Inc() }
	if name == Gateway && cfg.Answered != nil {
		// Only the gateway's answer is what the caller sees.
		report = func(request string, status int) {
			served.WithLabelValues(strconv.Itoa(status)).Inc()
			cfg.Answered(request, status)
		}
	}
	s.srv = &http.Server{Handler: answered(withBaggage(c.Middleware(h)), report), ReadHeaderTimeout: 5 * time.Second}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	s.msrv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go s.srv.Serve(s.ln)
	go s.msrv.Serve(s.metrics)
	ok = true
	return s, nil
}

// withBaggage reads the W3C baggage header into the request context, where
// the SDK finds variants pinned upstream. Real services get this from their
// OpenTelemetry propagator (otelhttp).
func withBaggage(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := propagation.Baggage{}.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// answered reports the status of every request next answered. Outermost,
// so it sees the status the SDK middleware recorded and the caller got.
func answered(next http.Handler, report func(request string, status int)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		if rec.status != 0 {
			report(r.Header.Get("X-Request-Id"), rec.status)
		}
	})
}

// statusRecorder remembers the status written through it.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

type handler struct {
	service *service
	cfg     Config
	next    string
	client  *http.Client
	mu      sync.Mutex
	rng     *rand.Rand
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	unit, request := r.Header.Get("X-User"), r.Header.Get("X-Request-Id")
	ec := sdk.EvalContext{Key: unit}
	behaviour := h.cfg.Control
	for _, key := range evaluates(h.service.name) {
		on, d := h.service.sdk.BoolDetail(ctx, key, ec, false)
		if h.cfg.Seen != nil && d.Variant != "" {
			h.cfg.Seen(h.service.name, key, unit, request, d.Variant)
		}
		if on && owner(key) == h.service.name {
			if b, ok := h.cfg.Treatment[key]; ok {
				behaviour = b
			}
		}
	}
	if h.next != "" {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.next+"/checkout", nil)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		req.Header.Set("X-User", unit)
		req.Header.Set("X-Request-Id", request)
		propagation.Baggage{}.Inject(ctx, propagation.HeaderCarrier(req.Header))
		resp, err := h.client.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			http.Error(w, h.next+": "+resp.Status, http.StatusBadGateway)
			return
		}
	}
	h.mu.Lock()
	fail, work := behaviour.Draw(h.rng)
	h.mu.Unlock()
	fail = fail || h.cfg.Broken[unit] == h.service.name
	// Simulated service time.
	select {
	case <-time.After(work):
	case <-ctx.Done():
		return
	}
	if fail {
		http.Error(w, h.service.name+" failed", http.StatusInternalServerError)
		return
	}
	fmt.Fprintln(w, "ok")
}

// chain lists the services from the last a request reaches to the entry
// point, each calling the one before it.
func chain() []string { return []string{Payments, Checkout, Gateway} }

// evaluates lists the flags service evaluates, in order.
func evaluates(service string) []string {
	switch service {
	case Gateway:
		return []string{NewCheckout, SlowSearch}
	default:
		return []string{NewCheckout, FastPayments}
	}
}

// owner is the service where the flag's treatment code path runs.
func owner(key string) string {
	switch key {
	case NewCheckout:
		return Checkout
	case FastPayments:
		return Payments
	case SlowSearch:
		return Gateway
	}
	return ""
}
