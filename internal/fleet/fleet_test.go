package fleet

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-dev/vigil/internal/testenv/poll"
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

// TestFleetReportsWhatTheCallerGot checks that Answered sees, for every
// request, the status the caller got: a failure in payments reaches the
// caller as the gateway's 502, and a request not on the failing path as 200.
func TestFleetReportsWhatTheCallerGot(t *testing.T) {
	path := filepath.Join(t.TempDir(), "flags.yaml")
	half := strings.Replace(testFlags, "rollout: {percent: 100}", "rollout: {percent: 50}", 1)
	if err := os.WriteFile(path, []byte(half), 0o644); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	variant := map[string]string{} // request -> fast-payments variant in payments
	status := map[string]int{}     // request -> gateway's status
	ctx := context.Background()
	f, err := Start(ctx, Config{
		FlagsFile: path,
		Control:   Behaviour{Latency: time.Millisecond},
		Treatment: map[string]Behaviour{FastPayments: {ErrorRate: 1, Latency: time.Millisecond}},
		Seen: func(service, flag, _, request, v string) {
			if service == "payments" && flag == FastPayments {
				mu.Lock()
				defer mu.Unlock()
				variant[request] = v
			}
		},
		Answered: func(request string, code int) {
			mu.Lock()
			defer mu.Unlock()
			if _, dup := status[request]; dup {
				t.Errorf("request %s answered twice", request)
			}
			status[request] = code
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	const n = 60
	failed := 0
	for i := range n {
		if err := f.Do(ctx, fmt.Sprintf("user-%d", i)); err != nil {
			failed++
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(status) != n {
		t.Fatalf("%d requests answered, want %d", len(status), n)
	}
	got := map[int]int{}
	for req, code := range status {
		got[code]++
		want := http.StatusOK
		if variant[req] == "on" {
			want = http.StatusBadGateway
		}
		if code != want {
			t.Errorf("request %s (fast-payments %q): gateway answered %d, want %d", req, variant[req], code, want)
		}
	}
	if got[http.StatusBadGateway] != failed || got[http.StatusOK] == 0 || failed == 0 {
		t.Errorf("statuses %v, %d requests failed for the caller; want both outcomes, the failures as 502", got, failed)
	}

	// The gateway's /metrics counts the same.
	resp, err := http.Get("http://" + f.MetricsTargets()[2] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for code, n := range got {
		if want := fmt.Sprintf("%s{code=\"%d\"} %d\n", ServedMetric, code, n); !strings.Contains(string(body), want) {
			t.Errorf("gateway /metrics lacks %q:\n%s", want, body)
		}
	}
}

// TestFleetBrokenUnitsFail checks Config.Broken: a broken unit's requests
// fail in the service named, in either variant, and reach the caller as
// that service's failure passed on (a 502 from the gateway when checkout
// failed); other units are served as usual.
func TestFleetBrokenUnitsFail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "flags.yaml")
	if err := os.WriteFile(path, []byte(testFlags), 0o644); err != nil {
		t.Fatal(err)
	}
	broken := map[string]string{"customer-gw": Gateway}
	for i := range 8 {
		broken[fmt.Sprintf("customer-%d", i)] = Checkout
	}
	if _, err := Start(context.Background(), Config{FlagsFile: path, Broken: map[string]string{"customer-x": "billing"}}); err == nil ||
		!strings.Contains(err.Error(), `Broken["customer-x"]: unknown service "billing"`) {
		t.Fatalf("Start with a broken unit in an unknown service: %v, want an error naming the unit and the service", err)
	}
	var mu sync.Mutex
	variants := map[string]bool{} // new-checkout's variants the broken units got
	ctx := context.Background()
	f, err := Start(ctx, Config{
		FlagsFile: path,
		Control:   Behaviour{Latency: time.Millisecond},
		Broken:    broken,
		Seen: func(service, flag, unit, _, variant string) {
			if _, ok := broken[unit]; ok && service == Gateway && flag == NewCheckout {
				mu.Lock()
				defer mu.Unlock()
				variants[variant] = true
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	for unit, service := range broken {
		want := "gateway: 502 Bad Gateway"
		if service == Gateway {
			want = "gateway: 500 Internal Server Error"
		}
		if err := f.Do(ctx, unit); err == nil || err.Error() != want {
			t.Errorf("unit %s broken in %s: %v, want %s", unit, service, err, want)
		}
	}
	for i := range 20 {
		if err := f.Do(ctx, fmt.Sprintf("user-%d", i)); err != nil {
			t.Errorf("user-%d, not broken: %v", i, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if !variants["on"] || !variants["off"] {
		t.Errorf("the broken units got new-checkout's variants %v; the test needs both", variants)
	}
}

// TestLoadSendsHeavyShare checks Load.Heavy: the heavy unit, broken here,
// sends about HeavyShare of the requests, so that it makes that share of
// the failures.
func TestLoadSendsHeavyShare(t *testing.T) {
	path := filepath.Join(t.TempDir(), "flags.yaml")
	if err := os.WriteFile(path, []byte(testFlags), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	f, err := Start(ctx, Config{FlagsFile: path, Control: Behaviour{Latency: time.Millisecond}, Broken: map[string]string{"bot": Gateway}})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	load := &Load{Rate: 400, Users: 100, Workers: 8, Heavy: "bot", HeavyShare: 0.25}
	loadCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { load.Run(loadCtx, f); close(done) }()
	poll.True(t, time.Minute, "800 requests", func() bool { return load.Sent() >= 800 })
	stop()
	<-done
	// Requests in flight when the load stopped count as sent but not as
	// failed: a few at most.
	if share := float64(load.Failed()) / float64(load.Sent()); share < 0.18 || share > 0.32 {
		t.Errorf("%d of %d requests failed (%.3f), want about the heavy unit's share 0.25", load.Failed(), load.Sent(), share)
	}
}

func TestDrawSpreadsTheTail(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	spread := Behaviour{Latency: 3 * time.Millisecond, TailRate: 0.5, TailLatency: 40 * time.Millisecond, TailMax: 120 * time.Millisecond}
	var fast, slow, above100 int
	for range 10000 {
		_, work := spread.Draw(r)
		switch {
		case work == spread.Latency:
			fast++
		case work >= spread.TailLatency && work < spread.TailMax:
			slow++
			if work > 100*time.Millisecond {
				above100++
			}
		default:
			t.Fatalf("drew %v, want 3 ms or 40 to 120 ms", work)
		}
	}
	// Half slow, a quarter of those above 100 ms: 5,000 ± 200 and
	// 1,250 ± 130 at four standard deviations (the draw is seeded).
	if slow < 4800 || slow > 5200 || above100 < 1120 || above100 > 1380 {
		t.Errorf("%d fast, %d slow, %d above 100 ms; want about 5,000 slow and 1,250 above 100 ms", fast, slow, above100)
	}
	exact := Behaviour{Latency: 3 * time.Millisecond, TailRate: 1, TailLatency: 60 * time.Millisecond}
	if _, work := exact.Draw(r); work != 60*time.Millisecond {
		t.Errorf("without TailMax the tail took %v, want 60ms", work)
	}
}
