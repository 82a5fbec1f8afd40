package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/vigil-dev/vigil/controller/server"
)

// configureMetrics runs the metric provider option on args as `vigil serve`
// would.
func configureMetrics(t *testing.T, args ...string) (*metricsOptions, server.Config, error) {
	t.Helper()
	m := &metricsOptions{}
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	m.serveOption().Flags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	cfg := server.Config{DataDir: t.TempDir()}
	err := m.configure(context.Background(), &cfg)
	return m, cfg, err
}

func TestPrometheusHTTPConfig(t *testing.T) {
	var auth string
	prom := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth = r.Header.Get("Authorization")
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"7"]}]}}`))
	}))
	t.Cleanup(prom.Close)
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte("authorization:\n  type: Bearer\n  credentials: s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	m, cfg, err := configureMetrics(t, "--prometheus-url", prom.URL, "--prometheus-http-config", good)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Extensions) != 0 {
		t.Error("with --prometheus-url the embedded store was mounted too")
	}
	v, err := m.Provider().Query(context.Background(), "vector(7)", time.Now())
	if err != nil || len(v) != 1 || v[0].Value != 7 {
		t.Fatalf("query through the configured client: %v %v", v, err)
	}
	if auth != "Bearer s3cret" {
		t.Errorf("Authorization %q, want the configured bearer token", auth)
	}

	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("bearer_tokn: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--prometheus-url", prom.URL, "--prometheus-http-config", bad}, "bad.yaml"},
		{[]string{"--prometheus-url", prom.URL, "--prometheus-http-config", filepath.Join(dir, "missing.yaml")}, "--prometheus-http-config"},
		{[]string{"--prometheus-url", prom.URL, "--scrape-target", "127.0.0.1:9"}, "--scrape-target"},
	} {
		if _, _, err := configureMetrics(t, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one naming %s", tc.args, err, tc.want)
		}
	}
}
