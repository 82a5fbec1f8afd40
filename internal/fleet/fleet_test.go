package fleet

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

const testFlags = `
flags:
  - key: new-checkout
    variants: {off: false, on: true}
    control: off
    treatment: on
    enabled: true
    tracked: true
    rollout: {percent: 50}
  - key: fast-payments
    variants: {off: false, on: true}
    control: off
    treatment: on
    enabled: true
    tracked: true
    rollout: {percent: 100}
`

func TestFleetPinsVariantsAndExposesCohortMetrics(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "flags.yaml")
	if err := os.WriteFile(path, []byte(testFlags), 0o644); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[string]map[string]string{} // flag/unit -> service -> variant
	ctx := context.Background()
	f, err := Start(ctx, Config{
		FlagsFile: path,
		Control:   Behaviour{Latency: time.Millisecond},
		// Every treatment request of fast-payments fails in payments.
		Treatment: map[string]Behaviour{FastPayments: {ErrorRate: 1, Latency: time.Millisecond}},
		Seen: func(service, flag, unit, _, variant string) {
			mu.Lock()
			defer mu.Unlock()
			k := flag + "/" + unit
			if seen[k] == nil {
				seen[k] = map[string]string{}
			}
			seen[k][service] = variant
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	for i := 0; i < 40; i++ {
		if err := f.Do(ctx, "user-"+string(rune('a'+i%26))+strings.Repeat("x", i)); err == nil {
			t.Fatal("a request succeeded although fast-payments is at 100% and its treatment always fails")
		}
	}
	mu.Lock()
	for k, by := range seen {
		variants := map[string]bool{}
		for _, v := range by {
			variants[v] = true
		}
		if len(variants) != 1 {
			t.Errorf("%s saw different variants across services: %v", k, by)
		}
		if strings.HasPrefix(k, NewCheckout+"/") && len(by) != 3 {
			t.Errorf("%s evaluated in %d services, want 3", k, len(by))
		}
	}
	mu.Unlock()

	resp, err := http.Get("http://" + f.MetricsTargets()[0] + "/metrics") // payments
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`feature_flag_requests_total{error_type="500",feature_flag_key="fast-payments",feature_flag_result_reason="split",feature_flag_result_variant="on"`,
		`feature_flag_request_duration_seconds_bucket{error_type="500",feature_flag_key="new-checkout",feature_flag_result_reason="split"`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("payments /metrics lacks %s\n%s", want, body)
		}
	}
}
