package promtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/vigil-dev/vigil/internal/testenv/poll"
)

// VictoriaMetricsBinary is where Debian's victoria-metrics package installs
// the single-node server.
const VictoriaMetricsBinary = "/usr/bin/victoria-metrics"

// StartVictoriaMetrics starts single-node VictoriaMetrics scraping
// opts.Targets every opts.ScrapeInterval, for tests that must hold against
// it as well as against Prometheus: it serves the same query API at URL.
// RuleFiles and EvaluationInterval do not apply; Args are extra flags and
// Binary defaults to VictoriaMetricsBinary, then "victoria-metrics" on PATH.
//
// Queries see samples at once (-search.latencyOffset=0s; VictoriaMetrics's
// default hides the last 30 s). It waits until the server is healthy and
// every target has been scraped successfully; WaitNextScrape is for
// Prometheus only, so wait for values with WaitFor.
func StartVictoriaMetrics(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.ScrapeInterval <= 0 {
		opts.ScrapeInterval = time.Second
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 30 * time.Second
	}
	bin := opts.Binary
	if bin == "" {
		bin = VictoriaMetricsBinary
		if _, err := os.Stat(bin); err != nil {
			p, err := exec.LookPath("victoria-metrics")
			if err != nil {
				t.Fatalf("promtest: victoria-metrics not found at %s or on PATH (install Debian's victoria-metrics package): %v", VictoriaMetricsBinary, err)
			}
			bin = p
		}
	}
	// Prometheus's rule settings are not part of a scrape configuration,
	// and VictoriaMetrics refuses fields it does not know.
	cfg, err := render(opts, false)
	if err != nil {
		t.Fatalf("promtest: %v", err)
	}
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "scrape.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatalf("promtest: write config: %v", err)
	}
	s := run(t, "victoria-metrics", opts.StartTimeout, func() (*Server, error) {
		addr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		return spawn(bin, dir, addr, "victoria-metrics.log", "/health", append([]string{
			"-httpListenAddr=" + addr,
			"-storageDataPath=" + filepath.Join(dir, "data"),
			"-promscrape.config=" + cfgPath,
			"-search.latencyOffset=0s",
			"-retentionPeriod=1d",
			"-loggerLevel=WARN",
		}, opts.Args...))
	})
	if n := len(opts.Targets); n > 0 {
		poll.Until(t, s.timeout, "promtest: victoria-metrics to scrape every target", func() error {
			v := s.Query(t, "sum(up)")
			if !hasValue(v, float64(n)) {
				return fmt.Errorf("sum(up) = %v, want %d", v, n)
			}
			return nil
		})
	}
	return s
}

// hasValue reports whether v is one sample of value want.
func hasValue(v model.Value, want float64) bool {
	vec, ok := v.(model.Vector)
	return ok && len(vec) == 1 && float64(vec[0].Value) == want
}
