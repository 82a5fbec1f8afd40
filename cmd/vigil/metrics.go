package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/common/config"
	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"

	"github.com/vigil-dev/vigil/analysis/cohort"
	"github.com/vigil-dev/vigil/analysis/metricstore"
	"github.com/vigil-dev/vigil/controller/server"
	"github.com/vigil-dev/vigil/controller/store"
)

// metricsOptions choose the controller's metric provider: a Prometheus
// compatible HTTP API with --prometheus-url, or else the embedded metric
// store, which scrapes --scrape-target and receives OTLP pushes.
type metricsOptions struct {
	prometheusURL    string
	prometheusConfig string
	queryTimeout     time.Duration
	dir              string
	retention        time.Duration
	scrapeTargets    []string
	scrapeInterval   time.Duration
	leaseTTL         time.Duration

	provider cohort.Provider
}

// serveOption registers the flags and, once they are parsed, opens the
// provider; Provider then returns it (nil before).
func (m *metricsOptions) serveOption() serveOption {
	return serveOption{
		Flags: func(fs *pflag.FlagSet) {
			fs.StringVar(&m.prometheusURL, "prometheus-url", "", "base URL of a Prometheus-compatible query API (Prometheus, Thanos, Mimir, VictoriaMetrics); default: the embedded metric store")
			fs.StringVar(&m.prometheusConfig, "prometheus-http-config", "", "YAML file of HTTP client settings for --prometheus-url (bearer_token_file, basic_auth, tls_config, http_headers), as in a Prometheus scrape config")
			fs.DurationVar(&m.queryTimeout, "prometheus-timeout", cohort.DefaultQueryTimeout, "timeout of one query to --prometheus-url")
			fs.StringVar(&m.dir, "metrics-dir", "", "directory of the embedded metric store (default <data>/metrics)")
			fs.DurationVar(&m.retention, "metrics-retention", metricstore.DefaultRetention, "how long the embedded metric store keeps samples")
			fs.StringArrayVar(&m.scrapeTargets, "scrape-target", nil, "host:port or URL of a /metrics endpoint the embedded store scrapes (repeatable)")
			fs.DurationVar(&m.scrapeInterval, "scrape-interval", metricstore.DefaultScrapeInterval, "how often the embedded store scrapes each target")
			fs.DurationVar(&m.leaseTTL, "metrics-lease-ttl", 15*time.Second, "with --database and no --prometheus-url: how long the embedded store's lease, which keeps other replicas from running their own, outlives a crashed replica")
		},
		Configure: m.configure,
	}
}

// Provider is the provider configure opened.
func (m *metricsOptions) Provider() cohort.Provider { return m.provider }

func (m *metricsOptions) configure(ctx context.Context, cfg *server.Config) error {
	if cfg.Registry == nil {
		cfg.Registry = server.NewRegistry()
	}
	var (
		p   cohort.Provider
		ext server.Extension
	)
	if m.prometheusURL != "" {
		if len(m.scrapeTargets) > 0 {
			return errors.New("--scrape-target feeds the embedded metric store; with --prometheus-url, let that Prometheus scrape them")
		}
		opts := cohort.HTTPOptions{URL: m.prometheusURL, Timeout: m.queryTimeout}
		if m.prometheusConfig != "" {
			data, err := os.ReadFile(m.prometheusConfig)
			if err != nil {
				return fmt.Errorf("--prometheus-http-config: %w", err)
			}
			dec := yaml.NewDecoder(bytes.NewReader(data))
			dec.KnownFields(true)
			if err := dec.Decode(&opts.Client); err != nil {
				return fmt.Errorf("--prometheus-http-config %s: %w", m.prometheusConfig, err)
			}
			if err := opts.Client.Validate(); err != nil {
				return fmt.Errorf("--prometheus-http-config %s: %w", m.prometheusConfig, err)
			}
		} else {
			opts.Client = config.DefaultHTTPClientConfig
		}
		hp, err := cohort.NewHTTPProvider(opts)
		if err != nil {
			return fmt.Errorf("--prometheus-url: %w", err)
		}
		p = hp
	} else {
		dir := m.dir
		if dir == "" {
			dir = filepath.Join(cfg.DataDir, "metrics")
		}
		ms, err := metricstore.Open(ctx, metricstore.Options{
			Dir: dir, Retention: m.retention, ScrapeTargets: m.scrapeTargets, ScrapeInterval: m.scrapeInterval,
			Logger: cfg.Logger, Registerer: cfg.Registry,
		})
		if err != nil {
			return fmt.Errorf("open the embedded metric store: %w", err)
		}
		p = ms
		ext = mountMetricStore(ms)
		if cfg.DatabaseURL != "" {
			// Replicas share the database but not this store.
			if m.leaseTTL < time.Second {
				return fmt.Errorf("--metrics-lease-ttl %v: want at least 1s", m.leaseTTL)
			}
			cfg.Extensions = append(cfg.Extensions, singleEmbeddedStore(m.leaseTTL))
		}
	}
	m.provider = p
	if ext != nil {
		cfg.Extensions = append(cfg.Extensions, ext)
	}
	return nil
}

// mountMetricStore serves the embedded store's Prometheus query API to
// readers and admins, so Grafana can use the controller as a Prometheus data
// source, and its OTLP receiver to ingest tokens; it closes the store at
// shutdown.
func mountMetricStore(ms *metricstore.Store) server.Extension {
	return func(h *server.Host) error {
		api := gin.WrapH(ms.APIHandler())
		read := h.Group("/api/v1", store.RoleAdmin, store.RoleReader)
		for _, path := range []string{"/query", "/query_range", "/series", "/labels", "/label/:name/values", "/metadata", "/query_exemplars"} {
			read.GET(path, api)
		}
		// As in Prometheus, label values and metadata are GET only.
		for _, path := range []string{"/query", "/query_range", "/series", "/labels", "/query_exemplars"} {
			read.POST(path, api)
		}
		otlp := gin.WrapH(ms.OTLPHandler())
		h.Group("/v1", store.RoleAdmin, store.RoleIngest).POST("/metrics", otlp)
		h.Group("/api/v1/otlp/v1", store.RoleAdmin, store.RoleIngest).POST("/metrics", otlp)
		h.Go("metric store", func(ctx context.Context) error {
			<-ctx.Done()
			return ms.Close()
		})
		return nil
	}
}
