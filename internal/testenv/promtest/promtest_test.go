package promtest

import (
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/model"
)

// thingsTarget serves promtest_things_total, at 7, on loopback and returns
// the counter with its scrape URL.
func thingsTarget(t *testing.T) (prometheus.Counter, string) {
	t.Helper()
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "promtest_things_total", Help: "Things."})
	reg.MustRegister(c)
	c.Add(7)
	exp := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(exp.Close)
	return c, exp.URL + "/metrics"
}

func TestStartScrapesTarget(t *testing.T) {
	c, target := thingsTarget(t)

	prom := Start(t, Options{Targets: []string{target}})
	v := prom.Query(t, "promtest_things_total")
	vec, ok := v.(model.Vector)
	if !ok || len(vec) != 1 || vec[0].Value != 7 {
		t.Fatalf("after first scrape got %v, want one sample of 7", v)
	}

	c.Add(5)
	prom.WaitNextScrape(t)
	vec = prom.Query(t, "promtest_things_total").(model.Vector)
	if len(vec) != 1 || vec[0].Value != 12 {
		t.Fatalf("after next scrape got %v, want 12", vec)
	}
	prom.WaitFor(t, "sum(up)", func(v model.Value) bool {
		vec, ok := v.(model.Vector)
		return ok && len(vec) == 1 && vec[0].Value == 1
	})
}

func TestStartVictoriaMetricsScrapesTarget(t *testing.T) {
	c, target := thingsTarget(t)

	vm := StartVictoriaMetrics(t, Options{Targets: []string{target}})
	c.Add(5)
	vm.WaitFor(t, "promtest_things_total", func(v model.Value) bool { return hasValue(v, 12) })
}

func TestConfig(t *testing.T) {
	cfg, err := Config(Options{Targets: []string{"127.0.0.1:1", "http://127.0.0.1:2/m", "127.0.0.1:3/metrics"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`job_name: "promtest-0"`, `metrics_path: "/m"`, `"127.0.0.1:1"`, `"127.0.0.1:3"`, "scrape_interval: 1s"} {
		if !strings.Contains(cfg, want) {
			t.Errorf("config lacks %s:\n%s", want, cfg)
		}
	}
	if _, err := Config(Options{Targets: []string{"http://u:p@127.0.0.1:1/"}}); err == nil {
		t.Error("credentials in a target were accepted")
	}
}

func TestConfigIsValidForPromtool(t *testing.T) {
	cfg, err := Config(Options{Targets: []string{"127.0.0.1:1"}, Jobs: []string{"- job_name: extra\n  static_configs:\n    - targets: [\"127.0.0.1:9\"]"}})
	if err != nil {
		t.Fatal(err)
	}
	path := t.TempDir() + "/prometheus.yml"
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("promtool", "check", "config", path).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check config: %v\n%s\n%s", err, out, cfg)
	}
}
