package metricstore

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/scrape"
)

// scrapeConfig builds the configuration of Prometheus's scrape manager for
// static targets, or nil when there are none. It is rendered as YAML and
// loaded by Prometheus's own loader so that every scrape setting gets the
// same default as in a Prometheus server.
func scrapeConfig(targets []string, interval time.Duration) (*scrapeSetup, error) {
	if len(targets) == 0 {
		return nil, nil
	}
	type job struct {
		scheme, path string
		hosts        []string
	}
	var jobs []*job
	for _, target := range targets {
		raw := target
		if !strings.Contains(raw, "://") {
			raw = "http://" + raw
		}
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			return nil, fmt.Errorf("scrape target %q: want http(s)://host:port/path or host:port", target)
		}
		if u.RawQuery != "" || u.User != nil || u.Fragment != "" {
			return nil, fmt.Errorf("scrape target %q: query strings, fragments and credentials are not supported", target)
		}
		path := u.Path
		if path == "" {
			path = "/metrics"
		}
		i := slices.IndexFunc(jobs, func(j *job) bool { return j.scheme == u.Scheme && j.path == path })
		if i < 0 {
			jobs = append(jobs, &job{scheme: u.Scheme, path: path})
			i = len(jobs) - 1
		}
		if !slices.Contains(jobs[i].hosts, u.Host) {
			jobs[i].hosts = append(jobs[i].hosts, u.Host)
		}
	}
	protocols := make([]string, len(config.DefaultProtoFirstScrapeProtocols))
	for i, p := range config.DefaultProtoFirstScrapeProtocols {
		protocols[i] = string(p)
	}
	var b strings.Builder
	// Legacy name validation makes the scraper ask for underscore-escaped
	// names, as a Prometheus 2 server would, so that queries written for
	// one work on the other. Classic histograms are stored as native
	// histograms with custom buckets and read back as classic ones (see
	// classicQueryable).
	//
	// The protobuf format is asked for first (client_golang's handler, and
	// so the Go SDK's services, serve it): it carries a histogram as one
	// message, which becomes a native histogram as it is decoded. The text
	// formats, still accepted, have one line a bucket, and Prometheus
	// builds the labels of every line to regroup them: about ten times the
	// CPU a scrape (docs/benchmarks.md).
	fmt.Fprintf(&b, "global:\n  scrape_interval: %s\n  scrape_timeout: %s\n  metric_name_validation_scheme: legacy\n  convert_classic_histograms_to_nhcb: true\n  scrape_protocols: [%s]\nscrape_configs:\n",
		model.Duration(interval), model.Duration(interval), strings.Join(protocols, ", "))
	for i, j := range jobs {
		fmt.Fprintf(&b, "  - job_name: %q\n    scheme: %s\n    metrics_path: %q\n", jobName(i), j.scheme, j.path)
	}
	cfg, err := config.Load(b.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("scrape configuration: %w", err)
	}
	// The targets reach the manager as target groups, the way Prometheus's
	// discovery hands them over, so no discovery manager is needed.
	groups := make(map[string][]*targetgroup.Group, len(jobs))
	for i, j := range jobs {
		tg := &targetgroup.Group{Source: "static"}
		for _, h := range j.hosts {
			tg.Targets = append(tg.Targets, model.LabelSet{model.AddressLabel: model.LabelValue(h)})
		}
		groups[jobName(i)] = []*targetgroup.Group{tg}
	}
	return &scrapeSetup{cfg: cfg, groups: groups}, nil
}

// scrapeSetup is what the scrape manager needs: its configuration and the
// targets of each job.
type scrapeSetup struct {
	cfg    *config.Config
	groups map[string][]*targetgroup.Group
}

func jobName(i int) string {
	if i == 0 {
		return "scrape"
	}
	return fmt.Sprintf("scrape-%d", i+1)
}

func (s *Store) startScraping(setup *scrapeSetup) error {
	m, err := scrape.NewManager(&scrape.Options{
		// Without this the first scrape waits for the manager's 5 s
		// reload tick.
		DiscoveryReloadOnStartup: true,
	}, s.log.With("component", "scrape"), nil, nil, s.db, s.opts.Registerer)
	if err != nil {
		return fmt.Errorf("scrape manager: %w", err)
	}
	if err := m.ApplyConfig(setup.cfg); err != nil {
		return fmt.Errorf("apply scrape configuration: %w", err)
	}
	tsets := make(chan map[string][]*targetgroup.Group, 1)
	tsets <- setup.groups
	s.scraper = m
	s.scraperDone = make(chan struct{})
	go func() {
		defer close(s.scraperDone)
		if err := m.Run(tsets); err != nil {
			s.log.Error("scrape manager stopped", "err", err)
		}
	}()
	return nil
}

// TargetStatus is the state of one scrape target.
type TargetStatus struct {
	// URL is the address scraped.
	URL string
	// Job is the value of the job label of its series.
	Job string
	// Health is "up", "down" or "unknown" (not scraped yet).
	Health string
	// LastScrape is when the last scrape started; zero before the first.
	LastScrape time.Time
	// LastError is the last scrape's error, if it failed.
	LastError string
}

// Targets reports the state of every scrape target, ordered by job and URL.
func (s *Store) Targets() []TargetStatus {
	if s.scraper == nil {
		return nil
	}
	var out []TargetStatus
	for job, targets := range s.scraper.TargetsActive() {
		for _, t := range targets {
			st := TargetStatus{
				URL:        t.URL().String(),
				Job:        job,
				Health:     string(t.Health()),
				LastScrape: t.LastScrape(),
			}
			if err := t.LastError(); err != nil {
				st.LastError = err.Error()
			}
			out = append(out, st)
		}
	}
	slices.SortFunc(out, func(a, b TargetStatus) int {
		if c := strings.Compare(a.Job, b.Job); c != 0 {
			return c
		}
		return strings.Compare(a.URL, b.URL)
	})
	return out
}

// WaitScraped blocks until every scrape target has been scraped successfully
// by a scrape that started after the given time and whose samples are
// stored, so that what a target exposed before then can be queried. It
// returns ctx's error, with the last state seen, if that does not happen
// first.
func (s *Store) WaitScraped(ctx context.Context, after time.Time) error {
	if s.scraper == nil {
		return errors.New("metricstore: no scrape targets")
	}
	// A target reports its scrape before the scrape's samples are
	// committed; the up sample is committed with them, so counting fresh
	// up samples proves the data is there.
	// timestamp() gives a sample's own time only when applied to a
	// selector, hence the "and".
	query := fmt.Sprintf("count(timestamp(up) > %s and up == 1)", formatTime(after.UnixMilli()))
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		want := len(s.Targets())
		v, err := s.Query(ctx, query, time.Now())
		why := ""
		switch {
		case err != nil:
			why = err.Error()
		case want == 0:
			why = "no active targets yet"
		case len(v) != 1 || int(v[0].Value) < want:
			why = fmt.Sprintf("%d of %d targets scraped since %s; targets: %+v", countOf(v), want, after.Format(time.RFC3339Nano), s.Targets())
		default:
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for scrape: %s: %w", why, ctx.Err())
		case <-tick.C:
		}
	}
}

func countOf(v model.Vector) int {
	if len(v) == 0 {
		return 0
	}
	return int(v[0].Value)
}
