// Package promtest starts a real Prometheus server for tests: the binary from
// the machine (Debian's prometheus package, /usr/bin/prometheus), on a free
// loopback port, with its data and a generated configuration in a temporary
// directory, scraping the targets the test names. The server is stopped when
// the test ends. StartVictoriaMetrics does the same with VictoriaMetrics, for
// tests that must hold against both.
//
// Typical use:
//
//	exp := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
//	t.Cleanup(exp.Close)
//	prom := promtest.Start(t, promtest.Options{Targets: []string{exp.URL + "/metrics"}})
//	prom.WaitNextScrape(t) // after changing the exporter's values
//	v := prom.Query(t, `sum(feature_flag_requests_total)`)
package promtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/vigil-dev/vigil/internal/testenv/poll"
)

// DefaultBinary is where Debian's prometheus package installs the server.
const DefaultBinary = "/usr/bin/prometheus"

// Options configure a test server. The zero value scrapes nothing.
type Options struct {
	// Targets are the URLs to scrape, such as "http://127.0.0.1:4567/metrics".
	// A bare "host:port" means http and path /metrics. All targets sharing
	// a scheme and path are one scrape job named "<prefix>-<n>"; the job
	// name is visible as the "job" label. Use Jobs for full control.
	Targets []string
	// Jobs are extra scrape_configs entries, verbatim YAML (each a list
	// item starting with "- job_name: ..."), for tests that need relabeling
	// or other settings Targets cannot express.
	Jobs []string
	// ScrapeInterval applies to every job; default 1s. The scrape timeout
	// is the same as the interval.
	ScrapeInterval time.Duration
	// EvaluationInterval is the rule evaluation interval; default 1s.
	EvaluationInterval time.Duration
	// RuleFiles are paths of rule files (recording or alerting) to load.
	RuleFiles []string
	// Args are extra command-line flags, such as
	// "--web.enable-remote-write-receiver".
	Args []string
	// Binary is the prometheus executable; default DefaultBinary, then
	// "prometheus" on PATH.
	Binary string
	// StartTimeout bounds the wait for readiness and for the first scrape
	// of every target; default 30s.
	StartTimeout time.Duration
}

// Server is a running Prometheus started by Start.
type Server struct {
	// URL is the server's base address, such as "http://127.0.0.1:41234".
	URL string
	// Dir holds the configuration (prometheus.yml), the TSDB (data/) and
	// the server's log (prometheus.log).
	Dir string

	api     v1.API
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error
	timeout time.Duration
	// readyPath answers 200 once the server serves queries; log is the
	// server's log file in Dir.
	readyPath, log string
}

// Start starts Prometheus with opts, waits until it reports ready and every
// target has been scraped at least once, and registers its shutdown with
// t.Cleanup. It fails the test if the binary is missing or the server does
// not come up; on failure the server's log is written to the test log.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.ScrapeInterval <= 0 {
		opts.ScrapeInterval = time.Second
	}
	if opts.EvaluationInterval <= 0 {
		opts.EvaluationInterval = time.Second
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 30 * time.Second
	}
	bin, err := findBinary(opts.Binary)
	if err != nil {
		t.Fatalf("promtest: %v", err)
	}
	dir := t.TempDir()
	cfg, err := Config(opts)
	if err != nil {
		t.Fatalf("promtest: %v", err)
	}
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatalf("promtest: write config: %v", err)
	}

	s := run(t, "prometheus", opts.StartTimeout, func() (*Server, error) { return launch(bin, dir, cfgPath, opts) })
	if len(opts.Targets) > 0 || len(opts.Jobs) > 0 {
		s.waitScrapes(t, time.Time{})
	}
	return s
}

func findBinary(bin string) (string, error) {
	if bin != "" {
		return bin, nil
	}
	if _, err := os.Stat(DefaultBinary); err == nil {
		return DefaultBinary, nil
	}
	p, err := exec.LookPath("prometheus")
	if err != nil {
		return "", fmt.Errorf("prometheus binary not found at %s or on PATH (install Debian's prometheus package): %w", DefaultBinary, err)
	}
	return p, nil
}

// run starts a server with start until it is ready, and stops it when the
// test ends. The free port is found by binding and releasing it; another
// process could take it in between, so a start that dies early is retried.
func run(t testing.TB, name string, timeout time.Duration, start func() (*Server, error)) *Server {
	t.Helper()
	var s *Server
	for attempt := 1; ; attempt++ {
		var err error
		if s, err = start(); err != nil {
			t.Fatalf("promtest: %v", err)
		}
		err = s.waitReady(timeout)
		if err == nil {
			break
		}
		died := s.hasExited()
		s.stop()
		if attempt == 3 || !died {
			s.dumpLog(t)
			t.Fatalf("promtest: %s did not become ready: %v", name, err)
		}
	}
	t.Cleanup(func() {
		if err := s.stop(); err != nil {
			t.Errorf("promtest: stop %s: %v", name, err)
		}
		if t.Failed() {
			s.dumpLog(t)
		}
	})
	s.timeout = timeout
	return s
}

func launch(bin, dir, cfgPath string, opts Options) (*Server, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	return spawn(bin, dir, addr, "prometheus.log", "/-/ready", append([]string{
		"--config.file=" + cfgPath,
		"--storage.tsdb.path=" + filepath.Join(dir, "data"),
		"--web.listen-address=" + addr,
		"--web.enable-admin-api",
		"--web.enable-lifecycle",
		"--log.level=info",
	}, opts.Args...))
}

// spawn starts a server listening on addr, logging to logName in dir.
func spawn(bin, dir, addr, logName, readyPath string, args []string) (*Server, error) {
	logf, err := os.OpenFile(filepath.Join(dir, logName), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open log: %w", err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout = logf
	cmd.Stderr = logf
	// Its own process group, so that a test's signal handling or a Ctrl-C
	// in the terminal does not race with Cleanup.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	base := "http://" + addr
	client, err := api.NewClient(api.Config{Address: base})
	if err != nil {
		return nil, fmt.Errorf("api client for %s: %w", base, err)
	}
	s := &Server{URL: base, Dir: dir, api: v1.NewAPI(client), cmd: cmd, exited: make(chan struct{}), readyPath: readyPath, log: logName}
	go func() {
		s.waitErr = cmd.Wait()
		logf.Close()
		close(s.exited)
	}()
	return s, nil
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// Config renders the prometheus.yml that Start writes for opts. It is
// exported so that tests can check it with promtool or reuse it.
func Config(opts Options) (string, error) {
	return render(opts, true)
}

// render writes the configuration; without the rule settings (evaluation
// interval, rule files) for servers that only scrape.
func render(opts Options, rules bool) (string, error) {
	interval := opts.ScrapeInterval
	if interval <= 0 {
		interval = time.Second
	}
	eval := opts.EvaluationInterval
	if eval <= 0 {
		eval = time.Second
	}
	var b strings.Builder
	fmt.Fprintf(&b, "global:\n  scrape_interval: %s\n  scrape_timeout: %s\n", model.Duration(interval), model.Duration(interval))
	if rules {
		fmt.Fprintf(&b, "  evaluation_interval: %s\n", model.Duration(eval))
	}
	if rules && len(opts.RuleFiles) > 0 {
		b.WriteString("rule_files:\n")
		for _, f := range opts.RuleFiles {
			fmt.Fprintf(&b, "  - %q\n", f)
		}
	}
	type job struct {
		scheme, path string
		hosts        []string
	}
	jobs := map[string]*job{}
	for _, target := range opts.Targets {
		raw := target
		if !strings.Contains(raw, "://") {
			raw = "http://" + raw
		}
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" {
			return "", fmt.Errorf("target %q: not a URL or host:port", target)
		}
		if u.RawQuery != "" || u.User != nil {
			return "", fmt.Errorf("target %q: query strings and credentials are not supported; use Options.Jobs", target)
		}
		path := u.Path
		if path == "" {
			path = "/metrics"
		}
		key := u.Scheme + " " + path
		if jobs[key] == nil {
			jobs[key] = &job{scheme: u.Scheme, path: path}
		}
		jobs[key].hosts = append(jobs[key].hosts, u.Host)
	}
	keys := make([]string, 0, len(jobs))
	for k := range jobs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if len(keys) > 0 || len(opts.Jobs) > 0 {
		b.WriteString("scrape_configs:\n")
	}
	for i, k := range keys {
		j := jobs[k]
		fmt.Fprintf(&b, "  - job_name: %q\n    scheme: %s\n    metrics_path: %q\n    static_configs:\n      - targets:\n",
			fmt.Sprintf("promtest-%d", i), j.scheme, j.path)
		for _, h := range j.hosts {
			fmt.Fprintf(&b, "          - %q\n", h)
		}
	}
	for _, j := range opts.Jobs {
		for _, line := range strings.Split(strings.TrimRight(j, "\n"), "\n") {
			b.WriteString("  " + line + "\n")
		}
	}
	return b.String(), nil
}

func (s *Server) hasExited() bool {
	select {
	case <-s.exited:
		return true
	default:
		return false
	}
}

func (s *Server) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: time.Second}
	var last error
	for time.Now().Before(deadline) {
		if s.hasExited() {
			return fmt.Errorf("%s exited: %v", filepath.Base(s.cmd.Path), s.waitErr)
		}
		resp, err := client.Get(s.URL + s.readyPath)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s: %s", s.readyPath, resp.Status)
		}
		last = err
		pause()
	}
	return fmt.Errorf("not ready after %s: %v", timeout, last)
}

// pause is the polling period: short enough to keep tests fast, long
// enough not to busy-loop a 2-core machine.
func pause() { time.Sleep(50 * time.Millisecond) }

// Stop stops Prometheus before the test ends, for tests of what happens
// when it goes away; the cleanup then has nothing left to do.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	if err := s.stop(); err != nil {
		t.Fatalf("promtest: stop prometheus: %v", err)
	}
}

func (s *Server) stop() error {
	if s.hasExited() {
		return nil
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
		return nil
	case <-time.After(15 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
		return errors.New("prometheus ignored SIGTERM for 15s and was killed")
	}
}

func (s *Server) dumpLog(t testing.TB) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.Dir, s.log))
	if err != nil {
		t.Logf("promtest: read %s: %v", s.log, err)
		return
	}
	if len(b) > 8000 {
		b = append([]byte("...\n"), b[len(b)-8000:]...)
	}
	t.Logf("promtest: %s (%s):\n%s", s.log, s.Dir, bytes.TrimSpace(b))
}

// API returns a client for the server's HTTP API.
func (s *Server) API() v1.API { return s.api }

// Query evaluates an instant query at the current time and fails the test on
// error.
func (s *Server) Query(t testing.TB, query string) model.Value {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, _, _, err := s.api.Query(ctx, query, time.Now())
	if err != nil {
		t.Fatalf("promtest: query %q: %v", query, err)
	}
	return v
}

// WaitNextScrape waits until every active target has been scraped
// successfully after the moment of the call, so that values an exporter
// exposed before the call are in the TSDB. It fails the test after the
// start timeout.
func (s *Server) WaitNextScrape(t testing.TB) {
	t.Helper()
	s.waitScrapes(t, time.Now())
}

func (s *Server) waitScrapes(t testing.TB, after time.Time) {
	t.Helper()
	poll.Until(t, s.timeout, "promtest: targets to be scraped", func() error {
		ok, reason, err := s.scrapedAfter(after)
		if err != nil || ok {
			return err
		}
		return errors.New(reason)
	})
}

// scrapedAfter reports whether every active target's last scrape started
// after the given time, succeeded and is stored. A scrape that started
// before the call may have read the exporter before the test's change, so it
// does not count; and a target reports its scrape before the samples are
// committed, so the fresh up samples are counted as well.
func (s *Server) scrapedAfter(after time.Time) (bool, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	res, err := s.api.Targets(ctx)
	if err != nil {
		return false, "", fmt.Errorf("list targets: %w", err)
	}
	if len(res.Active) == 0 {
		return false, "no active targets yet", nil
	}
	for _, tg := range res.Active {
		if tg.LastScrape.IsZero() || !tg.LastScrape.After(after) {
			return false, fmt.Sprintf("target %s not scraped since %s", tg.ScrapeURL, after.Format(time.RFC3339Nano)), nil
		}
		if tg.Health != v1.HealthGood {
			return false, fmt.Sprintf("target %s is %s: %s", tg.ScrapeURL, tg.Health, tg.LastError), nil
		}
	}
	// timestamp() gives a sample's own time only when applied to a
	// selector, hence the "and".
	q := fmt.Sprintf("count(timestamp(up) > %.3f and up == 1)", float64(after.UnixMilli())/1000)
	v, _, _, err := s.api.Query(ctx, q, time.Now())
	if err != nil {
		return false, "", fmt.Errorf("query %s: %w", q, err)
	}
	if vec, ok := v.(model.Vector); !ok || len(vec) != 1 || int(vec[0].Value) < len(res.Active) {
		return false, fmt.Sprintf("fresh up samples not all stored yet: %v", v), nil
	}
	return true, "", nil
}

// WaitFor polls query until ok accepts its result, and fails the test with
// the last result after the start timeout. Use it instead of sleeping.
func (s *Server) WaitFor(t testing.TB, query string, ok func(model.Value) bool) model.Value {
	t.Helper()
	var v model.Value
	poll.Until(t, s.timeout, fmt.Sprintf("promtest: %q as expected", query), func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		var err error
		if v, _, _, err = s.api.Query(ctx, query, time.Now()); err != nil {
			return err
		}
		if !ok(v) {
			return fmt.Errorf("last result %v", v)
		}
		return nil
	})
	return v
}
