package dashboards

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/vigil-dev/vigil/analysis/cohort"
	"github.com/vigil-dev/vigil/analysis/metricstore"
	"github.com/vigil-dev/vigil/controller/rollout"
	"github.com/vigil-dev/vigil/controller/runner"
	"github.com/vigil-dev/vigil/controller/server"
	"github.com/vigil-dev/vigil/internal/client"
	"github.com/vigil-dev/vigil/internal/fleet"
)

// The test fleet is the product's own parts on loopback: the services of
// internal/fleet, which use the real Go SDK, push their cohort metrics over
// OTLP into the embedded metric store that `vigil serve` runs when there is
// no Prometheus; the store scrapes a real controller, whose rollout loop
// judges from that same store. Two rollouts run to their end: the treatment
// of new-checkout behaves as control does and is promoted; that of
// fast-payments fails every request after 300 ms, and the judge rolls it
// back. Nothing is written by hand, so a metric or label renamed in the SDK
// or the controller leaves a panel without data.
const (
	// scrapeEvery is how often the store scrapes the controller, and
	// pushEvery how often the services push: often, so that rollouts of a
	// few seconds leave several samples of every series, yet with time to
	// spare for a scrape on a busy machine.
	scrapeEvery = time.Second
	pushEvery   = 250 * time.Millisecond
	// fleetTimeout bounds the rollouts; they take about ten seconds.
	fleetTimeout = time.Minute
	fleetToken   = "dashboards-fleet-test-admin-token-0123"
)

// Grafana's interval variables as a dashboard over the fleet resolves them:
// $__rate_interval is four scrape intervals, and the step one interval.
const (
	rateInterval = "4s"
	queryStep    = scrapeEvery
)

// The fleet's code paths: control is fast and never fails, so that every
// failure and every slow request belongs to fast-payments' treatment.
var (
	fleetControl = fleet.Behaviour{Latency: 2 * time.Millisecond}
	fleetHarmful = fleet.Behaviour{ErrorRate: 1, Latency: 300 * time.Millisecond}
)

// fleetRun is what a run of the fleet left: its metrics in the store, read
// through the store's Prometheus query API, and the rollouts' final states.
type fleetRun struct {
	api        promv1.API
	start, end time.Time
	rollouts   map[string]rollout.State
}

// runFleet runs the fleet until both rollouts have finished and the store
// holds the controller's final metrics. Everything stops at the test's end.
func runFleet(t *testing.T) *fleetRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), fleetTimeout)
	t.Cleanup(cancel)
	start := time.Now()
	logger := slog.New(slog.DiscardHandler)

	// The controller's listener comes first: the store scrapes it, and the
	// controller judges from the store.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	reg := server.NewRegistry()
	ms, err := metricstore.Open(ctx, metricstore.Options{
		Dir: t.TempDir(), ScrapeTargets: []string{ln.Addr().String()}, ScrapeInterval: scrapeEvery,
		Registerer: reg, Logger: logger,
	})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { ms.Close() })
	storeHTTP := httptest.NewServer(ms.Handler())
	t.Cleanup(storeHTTP.Close)

	srv, err := server.New(ctx, server.Config{
		DataDir: t.TempDir(), AdminToken: fleetToken, Registry: reg, Logger: logger,
		Extensions: []server.Extension{runner.Extension(runner.Options{Reader: cohort.NewReader(ms)})},
	})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	srvCtx, stopSrv := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(srvCtx, ln) }()
	t.Cleanup(func() {
		stopSrv()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	base := "http://" + ln.Addr().String()
	ctl, err := client.New(base, fleetToken)
	if err != nil {
		t.Fatal(err)
	}
	file, err := os.ReadFile(filepath.Join("testdata", "flags.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.Apply(ctx, file, false, false, "dashboards fleet test"); err != nil {
		t.Fatalf("apply testdata/flags.yaml: %v", err)
	}

	fl, err := fleet.Start(ctx, fleet.Config{
		ControllerURL: base, Token: fleetToken,
		OTLPEndpoint: storeHTTP.URL, PushInterval: pushEvery,
		Control:   fleetControl,
		Treatment: map[string]fleet.Behaviour{fleet.FastPayments: fleetHarmful},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fl.Close)
	loadCtx, stopLoad := context.WithCancel(ctx)
	loaded := make(chan struct{})
	go func() { (&fleet.Load{Rate: 60, Users: 2000, Workers: 12}).Run(loadCtx, fl); close(loaded) }()
	stop := func() { stopLoad(); <-loaded }
	t.Cleanup(stop)

	keys := []string{fleet.NewCheckout, fleet.FastPayments}
	for _, key := range keys {
		if err := ctl.Do(ctx, client.Request{Method: http.MethodPost, Path: "/api/v1/rollouts/" + key + "/start",
			Body: map[string]string{"reason": "dashboards fleet test"}}, nil); err != nil {
			t.Fatalf("start rollout %s: %v", key, err)
		}
	}
	states, err := awaitRollouts(ctx, ctl, keys)
	if err != nil {
		t.Fatalf("%v:%s", err, summary(states, start))
	}
	// The queries' range ends once the store holds what the controller
	// exported after the last transition, and a rate interval more: the
	// annotation marks a change only in a window that holds samples from
	// both sides of it.
	var last time.Time
	for _, s := range states {
		for _, h := range s.History {
			last = maxTime(last, h.At)
		}
	}
	window, err := time.ParseDuration(rateInterval)
	if err != nil {
		t.Fatal(err)
	}
	if err := ms.WaitScraped(ctx, last.Add(window+scrapeEvery)); err != nil {
		t.Fatalf("wait for the store to scrape the controller: %v", err)
	}
	stop()
	t.Logf("rollouts finished in %v:%s", time.Since(start).Round(time.Millisecond), summary(states, start))

	c, err := api.NewClient(api.Config{Address: storeHTTP.URL})
	if err != nil {
		t.Fatal(err)
	}
	return &fleetRun{api: promv1.NewAPI(c), start: start, end: time.Now(), rollouts: states}
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// awaitRollouts follows the rollouts through the controller's API until
// none is progressing any more.
func awaitRollouts(ctx context.Context, ctl *client.Client, keys []string) (map[string]rollout.State, error) {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	states := map[string]rollout.State{}
	for {
		// Whole states, with their history and verdicts: the list gives
		// summaries otherwise.
		var list struct{ Rollouts []rollout.State }
		if err := ctl.Do(ctx, client.Request{Method: http.MethodGet, Path: "/api/v1/rollouts?view=full"}, &list); err != nil {
			return states, fmt.Errorf("list rollouts: %w", err)
		}
		done := true
		for _, s := range list.Rollouts {
			states[s.Key] = s
		}
		for _, k := range keys {
			if s, ok := states[k]; !ok || s.Phase == rollout.Progressing {
				done = false
			}
		}
		if done {
			return states, nil
		}
		select {
		case <-ctx.Done():
			return states, fmt.Errorf("rollouts unfinished: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// summary describes the rollouts, with the time of each transition since
// start.
func summary(states map[string]rollout.State, start time.Time) string {
	var b strings.Builder
	for k, s := range states {
		fmt.Fprintf(&b, "\n  %s %s at %v%%:", k, s.Phase, s.Percent)
		for _, h := range s.History {
			fmt.Fprintf(&b, " %s@%v%% after %v (%s)", h.To, h.Percent, h.At.Sub(start).Round(time.Millisecond), h.Reason)
		}
		if s.Verdict != nil {
			fmt.Fprintf(&b, "\n    verdict: %s", s.Verdict.Summary)
		}
	}
	return b.String()
}

// rangeQuery runs expr over the whole run through the store's query API,
// as Grafana's Prometheus data source sends a panel's query.
func (r *fleetRun) rangeQuery(t *testing.T, expr string) model.Matrix {
	t.Helper()
	return r.rangeQueryStep(t, expr, queryStep)
}

func (r *fleetRun) rangeQueryStep(t *testing.T, expr string, step time.Duration) model.Matrix {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	v, _, _, err := r.api.QueryRange(ctx, expr, promv1.Range{Start: r.start, End: r.end, Step: step})
	if err != nil {
		t.Fatalf("query %s: %v", expr, err)
	}
	m, ok := v.(model.Matrix)
	if !ok {
		t.Fatalf("query %s: a %s, not a matrix", expr, v.Type())
	}
	return m
}

// points counts the samples of m that are numbers.
func points(m model.Matrix) int {
	n := 0
	for _, s := range m {
		for _, p := range s.Values {
			if !math.IsNaN(float64(p.Value)) {
				n++
			}
		}
	}
	return n
}
