package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vigil-dev/vigil/analysis/cohort"
	"github.com/vigil-dev/vigil/controller/rollout"
	"github.com/vigil-dev/vigil/controller/server"
	"github.com/vigil-dev/vigil/controller/store"
	"github.com/vigil-dev/vigil/internal/testenv/pgtest"
	"github.com/vigil-dev/vigil/internal/testenv/poll"
	"github.com/vigil-dev/vigil/internal/testenv/promtest"
	"github.com/vigil-dev/vigil/internal/testenv/servertest"
)

// TestReadyzFollowsTheMetricSource: a controller whose metric source (a real
// Prometheus) goes away is degraded, and /readyz says why; it still answers
// 200, since SDK delivery goes on, and only /readyz?strict=true fails.
func TestReadyzFollowsTheMetricSource(t *testing.T) {
	prom := promtest.Start(t, promtest.Options{})
	provider, err := cohort.NewHTTPProvider(cohort.HTTPOptions{URL: prom.URL, Timeout: time.Second, Retries: -1})
	if err != nil {
		t.Fatal(err)
	}
	st := openSQLite(t)
	url, _ := servertest.Run(t, func(ctx context.Context) (*server.Server, error) {
		return server.New(ctx, server.Config{
			Store: st, AdminToken: apiToken, Registry: prometheus.NewRegistry(), Logger: slog.New(slog.DiscardHandler),
			Extensions: []server.Extension{Extension(Options{Reader: cohort.NewReader(provider), Holder: "readyz-test"})},
		})
	})
	readyz := func(query string) (int, string) {
		resp, err := http.Get(url + "/readyz" + query)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	poll.Ready(t, 10*time.Second, url)
	if code, body := readyz(""); code != http.StatusOK || !strings.Contains(body, `"metrics":"ok"`) {
		t.Fatalf("with Prometheus up: %d %s, want 200 with the metrics check ok", code, body)
	}
	prom.Stop(t)
	if code, body := readyz(""); code != http.StatusOK || !strings.Contains(body, `"status":"degraded"`) || !strings.Contains(body, `"metrics":"metric source:`) {
		t.Fatalf("with Prometheus stopped: %d %s, want 200 degraded naming the metric source", code, body)
	}
	if code, body := readyz("?strict=true"); code != http.StatusServiceUnavailable || !strings.Contains(body, `"metrics":"metric source:`) {
		t.Fatalf("strict, with Prometheus stopped: %d %s, want 503 naming the metric source", code, body)
	}
}

// TestLoopLogsFailedReadsOnce: the first failed read of the metric source
// is logged at once, a source that keeps failing at most once a minute, and
// its recovery once.
func TestLoopLogsFailedReadsOnce(t *testing.T) {
	f := newFixture(t, openSQLite(t))
	var logs bytes.Buffer
	f.c.log = slog.New(slog.NewTextHandler(&logs, nil))
	ctx := context.Background()
	fl := checkoutFlag("checkout")
	fl.Rollout.Plan = json.RawMessage(`{"interval": "1s", "maxStepDuration": "1h", "onProviderError": {"after": 1000}, "metrics": [{"name": "error-rate"}]}`)
	putFlag(t, f.st, fl)
	if _, err := f.c.Command(ctx, "checkout", rollout.Command{Kind: rollout.Start}); err != nil {
		t.Fatal(err)
	}
	f.tr.fail = errors.New("connection refused")
	f.run(t, 30*time.Second, func() bool { return false })
	if n := strings.Count(logs.String(), "metric source read failed"); n != 1 {
		t.Errorf("first failure logged %d times in 30 s of failing looks, want once:\n%s", n, logs.String())
	}
	if strings.Contains(logs.String(), "still failing") {
		t.Errorf("logged again within a minute:\n%s", logs.String())
	}
	f.run(t, 61*time.Second, func() bool { return strings.Contains(logs.String(), "still failing") })
	if !strings.Contains(logs.String(), "still failing") {
		t.Errorf("a source failing for over a minute was not logged again:\n%s", logs.String())
	}
	f.tr.fail = nil
	f.run(t, 5*time.Second, func() bool { return strings.Contains(logs.String(), "metric source reads again") })
	if !strings.Contains(logs.String(), "metric source reads again") {
		t.Errorf("recovery not logged:\n%s", logs.String())
	}
	if got := testutil.ToFloat64(f.c.opts.Metrics.leader); got != 1 {
		t.Errorf("%s = %v on the only replica, want 1", "vigil_rollout_leader", got)
	}
}

// hungReader is a metric source that never answers: each read waits until
// its context ends.
type hungReader struct{}

func (hungReader) Read(ctx context.Context, _ time.Time, _ []cohort.FlagQuery) (map[string]cohort.Reading, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// TestHungMetricSourceFailsTheLook: a read that never answers ends at the
// tick's read budget, and each such look counts toward onProviderError at
// once: after 5 of them the rollout pauses, naming the deadline. Without a
// budget the first tick would never return.
func TestHungMetricSourceFailsTheLook(t *testing.T) {
	f := newFixture(t, openSQLite(t))
	f.c.opts.Reader = hungReader{}
	ctx := context.Background()
	putFlag(t, f.st, checkoutFlag("checkout"))
	if _, err := f.c.Command(ctx, "checkout", rollout.Command{Kind: rollout.Start}); err != nil {
		t.Fatal(err)
	}
	if got := f.c.readBudget([]rollout.State{f.state(t, "checkout")}); got != 800*time.Millisecond {
		t.Errorf("read budget %v for a 1 s interval, want 800ms", got)
	}
	f.run(t, 10*time.Second, func() bool { return f.state(t, "checkout").Phase != rollout.Progressing })
	s := f.state(t, "checkout")
	if s.Phase != rollout.Paused || s.ProviderErrors != 5 || !strings.Contains(s.PausedReason, "deadline exceeded") {
		t.Fatalf("%s after %d provider errors: %q; want paused after 5 looks that hit the deadline", s.Phase, s.ProviderErrors, s.PausedReason)
	}
}

// TestRolloutAPIDuringDatabaseOutage: while PostgreSQL is down the rollout
// API answers 503 with Retry-After, as the rest of the admin API does, and
// changes nothing; afterwards it answers again.
func TestRolloutAPIDuringDatabaseOutage(t *testing.T) {
	dbURL := pgtest.Database(t)
	st, err := store.OpenPostgres(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	putFlag(t, st, checkoutFlag("checkout"))
	f := newFixture(t, st)
	url, _ := servertest.Run(t, func(ctx context.Context) (*server.Server, error) {
		return server.New(ctx, server.Config{
			Store: st, AdminToken: apiToken, Registry: prometheus.NewRegistry(), Logger: slog.New(slog.DiscardHandler),
			Extensions: []server.Extension{Extension(Options{Reader: f.tr, Now: f.clock.Now, Holder: "outage-test"})},
		})
	})
	e := &apiEnv{url: url, f: f}
	if code, body := e.do(t, "POST", "/api/v1/rollouts/checkout/start", ""); code != http.StatusOK {
		t.Fatalf("start: %d %s", code, body)
	}
	pgtest.SetOutage(t, dbURL, true)
	t.Cleanup(func() { pgtest.SetOutage(t, dbURL, false) })
	for _, req := range []struct{ method, path string }{
		{"GET", "/api/v1/rollouts"},
		{"GET", "/api/v1/rollouts/checkout"},
		{"POST", "/api/v1/rollouts/checkout/pause"},
	} {
		resp, _ := e.send(t, req.method, req.path, "")
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
			t.Errorf("%s %s during the outage: %d (Retry-After %q), want 503 with Retry-After", req.method, req.path, resp.StatusCode, resp.Header.Get("Retry-After"))
		}
	}
	pgtest.SetOutage(t, dbURL, false)
	poll.Until(t, 15*time.Second, "the rollout API to answer again", func() error {
		if code, body := e.do(t, "GET", "/api/v1/rollouts/checkout", ""); code != http.StatusOK || !strings.Contains(string(body), `"state":"progressing"`) {
			return fmt.Errorf("%d %s", code, body)
		}
		return nil
	})
}
