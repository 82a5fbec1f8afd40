// The end-to-end tests drive a fleet of services under load and judge
// latencies measured on loopback. Under the race detector the same load
// needs several times the CPU, and on two shared cores queueing then drowns
// the latency difference these tests must see; so they build without it,
// and `make test` runs them in a pass of their own (make test-e2e).

//go:build !race

package runner_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-dev/vigil/analysis/cohort"
	"github.com/vigil-dev/vigil/analysis/judge"
	"github.com/vigil-dev/vigil/controller/plan"
	"github.com/vigil-dev/vigil/controller/rollout"
	"github.com/vigil-dev/vigil/controller/runner"
	"github.com/vigil-dev/vigil/controller/server"
	"github.com/vigil-dev/vigil/controller/store"
	"github.com/vigil-dev/vigil/internal/fleet"
	"github.com/vigil-dev/vigil/internal/testenv/poll"
	"github.com/vigil-dev/vigil/internal/testenv/promtest"
	"github.com/vigil-dev/vigil/sdk/flag"
)

const e2eToken = "end-to-end-admin-token-0123456789"

// lateReader is the controller's metrics reader, connected once Prometheus
// is up: Prometheus scrapes the fleet, and the fleet needs the controller
// running first. No rollout starts before it is connected.
type lateReader struct {
	mu sync.Mutex
	r  *cohort.Reader
}

func (l *lateReader) Read(ctx context.Context, now time.Time, qs []cohort.FlagQuery) (map[string]cohort.Reading, error) {
	l.mu.Lock()
	r := l.r
	l.mu.Unlock()
	if r == nil {
		return nil, fmt.Errorf("no metric provider yet")
	}
	return r.Read(ctx, now, qs)
}

// e2eFlag is a flag of the fleet with a compressed plan: a look every
// second and steps that bake for 20 s, so that a whole rollout takes about
// a minute and a half.
func e2eFlag(key string) flag.Flag {
	return flag.Flag{
		Key:       key,
		Variants:  map[string]json.RawMessage{"on": json.RawMessage("true"), "off": json.RawMessage("false")},
		Control:   "off",
		Treatment: "on",
		Enabled:   true,
		Rollout:   &flag.Rollout{Plan: e2ePlan().Raw()},
	}
}

// e2ePlan is the plan of e2eFlag. Its harm bounds are 2 for errors and 3
// for latency (which must hold at the p99 edge too, where slow requests
// are fewest) rather than the default 1.5: the fleet's traffic, about 30
// treatment requests a second at 10%, shows that within a step, where
// bounding the ratios below 1.5 would take minutes. A harmful treatment
// never passes 10% then, so it must be rolled back there. A step may last
// 5 minutes for the evidence: at the p99 edge (500 ms, 0.3% of requests,
// each counted by up to three services) a healthy 10% step took over 3
// minutes to bound the ratio below 3 in 0.9% of simulated runs, and in
// one CI run of TestEndToEnd (see TestEndToEndPlanOnTheFleetsTraffic).
func e2ePlan() plan.Spec {
	return plan.Spec{
		Steps:           &[]float64{10, 25, 50, 100},
		Interval:        new(plan.Duration(time.Second)),
		MinStepDuration: new(plan.Duration(20 * time.Second)),
		MaxStepDuration: new(plan.Duration(5 * time.Minute)),
		MinRequests:     new(int64(150)),
		Metrics: &[]plan.MetricSpec{
			{Name: plan.MetricErrorRate, MaxRatio: new(2.0)},
			{Name: plan.MetricLatency, MaxRatio: new(3.0)},
		},
	}
}

// e2eHeavy is one customer with broken data: it sends e2eHeavyShare of
// the fleet's requests, and the gateway fails every one of them, whatever
// variants they get. Beside the 10% that the gateway fails of the other
// 96%, that is about 30% of the failures the gateway raises itself.
//
// It is new-checkout's test, and the harmful flags' tests stay as they
// were without it: it fails in the gateway, which decides new-checkout,
// rather than in checkout, where new-checkout's treatment runs, because
// checkout evaluates fast-payments too; and slow-search, which the gateway
// evaluates, targets it to control, so that its requests are not in the
// cohorts slow-search is judged on (a heavy failing unit makes the error
// check's unit dispersion large, and its interval too wide to pass).
//
// A heavy failing unit in treatment makes treatment look several times
// worse, and no harm bound can be shown then, whatever the judge does; so
// e2eHeavy is a key that new-checkout's bucketing places in control at
// each step it is judged at (10, 25 and 50%). TestEndToEnd checks that
// placement, so that a change of bucketing fails there rather than change
// the scenario.
const (
	e2eHeavy      = "customer-1"
	e2eHeavyShare = 0.04
)

// TestEndToEnd rolls out three flags of a real fleet of services that use
// the real SDK, under load on loopback, judged from a real Prometheus: a
// healthy treatment is promoted although one heavy customer fails in every
// variant (e2eHeavy), and one that fails three times as often and one that is 50%
// slower in the slow tail are rolled back before they pass 10%.
func TestEndToEnd(t *testing.T) {
	steps := *e2ePlan().Steps
	for _, percent := range steps[:len(steps)-1] {
		f := e2eFlag(fleet.NewCheckout)
		f.Rollout.Percent = percent
		snap, err := flag.NewSnapshot(1, []flag.Flag{f})
		if err != nil {
			t.Fatal(err)
		}
		if d := snap.Evaluate(f.Key, flag.Context{Key: e2eHeavy}); d.Variant != f.Control || d.Reason != flag.ReasonSplit {
			t.Fatalf("the heavy customer %s gets %s (%s) of %s at %v%%; the scenario needs it in control: choose another key", e2eHeavy, d.Variant, d.Reason, f.Key, percent)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := store.OpenSQLite(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for _, key := range []string{fleet.NewCheckout, fleet.FastPayments, fleet.SlowSearch} {
		f := e2eFlag(key)
		if key == fleet.SlowSearch {
			// Out of slow-search's judged cohorts: see e2eHeavy.
			f.Targets = []flag.Target{{Variant: f.Control, Units: []string{e2eHeavy}}}
		}
		err := st.Update(ctx, store.Actor{Name: "test"}, func(tx store.Tx) error {
			_, err := tx.PutFlag(ctx, f)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	reader := &lateReader{}
	srv, err := server.New(ctx, server.Config{
		Store: st, AdminToken: e2eToken, Registry: prometheus.NewRegistry(), Logger: slog.New(slog.DiscardHandler),
		Extensions: []server.Extension{runner.Extension(runner.Options{Reader: reader, Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})},
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srvCtx, stopSrv := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(srvCtx, ln) }()
	t.Cleanup(func() {
		stopSrv()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	base := "http://" + ln.Addr().String()

	control, treatment := e2eBehaviours()
	// The gateway's own failures (a 500; a 502 passes on checkout's), all
	// and the heavy customer's, by the unit of each request it evaluated.
	var (
		mu                  sync.Mutex
		unitOf              = map[string]string{}
		raised, raisedHeavy int
	)
	fl, err := fleet.Start(ctx, fleet.Config{
		ControllerURL: base, Token: e2eToken, Control: control, Treatment: treatment,
		Broken: map[string]string{e2eHeavy: fleet.Gateway},
		Seen: func(service, key, unit, request, _ string) {
			if service == fleet.Gateway && key == fleet.NewCheckout {
				mu.Lock()
				defer mu.Unlock()
				unitOf[request] = unit
			}
		},
		Answered: func(request string, status int) {
			mu.Lock()
			defer mu.Unlock()
			if status == http.StatusInternalServerError {
				raised++
				if unitOf[request] == e2eHeavy {
					raisedHeavy++
				}
			}
			delete(unitOf, request)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fl.Close)
	prom := promtest.Start(t, promtest.Options{Targets: fl.MetricsTargets()})
	provider, err := cohort.NewHTTPProvider(cohort.HTTPOptions{URL: prom.URL})
	if err != nil {
		t.Fatal(err)
	}
	reader.mu.Lock()
	reader.r = cohort.NewReader(provider)
	reader.mu.Unlock()

	loadCtx, stopLoad := context.WithCancel(ctx)
	load := e2eLoad()
	load.Heavy, load.HeavyShare = e2eHeavy, e2eHeavyShare
	loaded := make(chan struct{})
	go func() { load.Run(loadCtx, fl); close(loaded) }()
	t.Cleanup(func() { stopLoad(); <-loaded })

	began := time.Now()
	for _, key := range []string{fleet.NewCheckout, fleet.FastPayments, fleet.SlowSearch} {
		if status, body := post(t, base+"/api/v1/rollouts/"+key+"/start"); status != http.StatusOK {
			t.Fatalf("start %s: %d %s", key, status, body)
		}
	}

	// Follow the rollouts through the API until all three are finished.
	var final map[string]rollout.State
	poll.Until(t, 8*time.Minute, "the three rollouts to finish", func() error {
		final = map[string]rollout.State{}
		var list struct{ Rollouts []rollout.State }
		getJSON(t, base+"/api/v1/rollouts?view=full", &list)
		done := true
		for _, s := range list.Rollouts {
			final[s.Key] = s
			if s.Phase == rollout.Progressing {
				done = false
			}
		}
		if done && len(final) == 3 {
			return nil
		}
		return fmt.Errorf("unfinished after %v: %s", time.Since(began).Round(time.Second), summary(final))
	})
	t.Logf("finished in %v with %d requests (%d failed): %s", time.Since(began).Round(time.Second), load.Sent(), load.Failed(), summary(final))
	for _, key := range []string{fleet.NewCheckout, fleet.FastPayments, fleet.SlowSearch} {
		t.Logf("%s's verdicts at the end of each step:%s", key, stepVerdicts(final[key]))
		t.Logf("%s's latency slots at the end:%s", key, latencySlots(t, st, key))
	}

	if s := final[fleet.NewCheckout]; s.Phase != rollout.Promoted || s.Percent != 100 {
		t.Errorf("healthy %s ended %s at %v%%: %s", s.Key, s.Phase, s.Percent, lastReason(s))
	}
	mu.Lock()
	share := float64(raisedHeavy) / float64(raised)
	mu.Unlock()
	t.Logf("the heavy customer %s made %d of the gateway's %d own failures (%.0f%%)", e2eHeavy, raisedHeavy, raised, 100*share)
	if share < 0.2 || share > 0.4 {
		t.Errorf("the heavy customer made %.0f%% of the gateway's own failures, want about 30%%", 100*share)
	}
	for key, metric := range map[string]string{fleet.FastPayments: "error-rate", fleet.SlowSearch: "latency"} {
		s := final[key]
		if s.Phase != rollout.RolledBack || s.Percent != 0 {
			t.Errorf("harmful %s ended %s at %v%%: %s", key, s.Phase, s.Percent, lastReason(s))
			continue
		}
		// The history has every transition, so a step past 10% cannot hide
		// between two polls.
		highest := 0.0
		for _, h := range s.History {
			highest = max(highest, h.Percent)
		}
		if highest > 10 || s.History[len(s.History)-1].From != rollout.Progressing {
			t.Errorf("%s rolled back only after reaching %v%%:%s", key, highest, historyText(s))
		}
		ev := s.History[len(s.History)-1].Evidence
		failed := false
		for _, m := range ev.Metrics {
			failed = failed || (m.Name == metric && m.Outcome == judge.Fail)
		}
		if ev.Outcome != judge.Fail || !failed {
			t.Errorf("%s rolled back without %s failing: %+v", key, metric, ev)
		}
	}
	// The SDKs serve the outcome: the flags' percentages in the snapshot.
	var snap struct{ Flags []flag.Flag }
	getJSON(t, base+"/sdk/v1/snapshot", &snap)
	want := map[string]float64{fleet.NewCheckout: 100, fleet.FastPayments: 0, fleet.SlowSearch: 0}
	for _, f := range snap.Flags {
		if f.Rollout == nil || f.Rollout.Percent != want[f.Key] || f.Tracked {
			t.Errorf("snapshot has %s at %+v tracked %v, want %v%% untracked", f.Key, f.Rollout, f.Tracked, want[f.Key])
		}
	}
}

// e2eBehaviours are the fleet's paths: 10% errors and a 5% slow tail at
// 400 ms in every service; the treatment of fast-payments fails three
// times as often in payments, and that of slow-search takes 1.2 s instead
// of 400 ms in the gateway's slow tail. The judge sums every service's
// counts, so payments' 2× was read as 1.45 to 1.65: around √(1.2·2),
// where the interval may fall below the harm bound of 2 before it rises
// above the tolerance of 1.2, and the flag passed 10% in one run; 3× reads
// as about 2. Queueing on two shared cores stretches control's tail past
// the 0.5 to 1 s edges the judge then counts at: a 600 ms tail read as a
// ratio of 1 to 3 there, within latency's harm bound of 3, and was
// promoted in 4 of 8 runs at load average 8 to 15.
func e2eBehaviours() (control fleet.Behaviour, treatment map[string]fleet.Behaviour) {
	control = fleet.Behaviour{ErrorRate: 0.10, Latency: 2 * time.Millisecond, TailRate: 0.05, TailLatency: 400 * time.Millisecond}
	slow := control
	slow.TailLatency = 1200 * time.Millisecond
	failing := control
	failing.ErrorRate = 0.30
	return control, map[string]fleet.Behaviour{fleet.NewCheckout: control, fleet.FastPayments: failing, fleet.SlowSearch: slow}
}

// e2eLoad is the load on the fleet: as much as two shared cores serve with
// service times that stay near the configured ones.
func e2eLoad() *fleet.Load {
	return &fleet.Load{Rate: 300, Users: 20000, Workers: 60}
}

func summary(ss map[string]rollout.State) string {
	out := ""
	for k, s := range ss {
		out += fmt.Sprintf("\n  %s %s at %v%%: %s\n    history:%s", k, s.Phase, s.Percent, lastReason(s), historyText(s))
		if s.Verdict != nil {
			out += "\n    verdict: " + s.Verdict.Summary
		}
	}
	return out
}

// stepVerdicts is the judge's verdict that ended each step of s: each
// check's ratio, interval and over-dispersion, and the cohorts' counts
// since the rollout began.
func stepVerdicts(s rollout.State) string {
	out, percent := "", 0.0
	for _, h := range s.History {
		from := percent
		percent = h.Percent
		if h.Evidence == nil || h.Evidence.Detail == nil {
			continue
		}
		out += fmt.Sprintf("\n  at %v%%, %s, then %s at %v%%:", from, h.Evidence.Outcome, h.To, h.Percent)
		for _, c := range h.Evidence.Detail.Checks {
			edge := ""
			if c.Edge > 0 {
				edge = fmt.Sprintf(" (slower than %gs)", c.Edge)
			}
			out += fmt.Sprintf("\n    %s%s %s: ratio %.2f, CI %.2f to %.2f, dispersion %.1f, treatment %.0f/%.0f, control %.0f/%.0f",
				c.Check, edge, c.Outcome, c.Ratio, c.CILow, c.CIHigh, c.Dispersion, c.Treatment.Events, c.Treatment.Requests, c.Control.Events, c.Control.Requests)
		}
	}
	return out
}

// latencySlots describes the latency check's slots in the judge state the
// store holds for key: the edges each slot judged at, for how many looks,
// the cohorts' counts slower than its last edge since the rollout began,
// and the over-dispersion there, which widens its interval. A healthy
// flag that pauses has a slot whose interval did not fall below the harm
// bound; this says whether it lacked events, sat on a thin edge, or met
// clustering.
func latencySlots(t *testing.T, st store.Store, key string) string {
	t.Helper()
	r, err := st.Rollout(context.Background(), key)
	if err != nil {
		return fmt.Sprintf(" unreadable: %v", err)
	}
	if len(r.Judge) == 0 {
		return " none kept"
	}
	var js judge.State
	if err := json.Unmarshal(r.Judge, &js); err != nil {
		return fmt.Sprintf(" unreadable judge state: %v", err)
	}
	slowerAt := func(c judge.CohortSnapshot, edge float64) float64 {
		for _, ec := range c.Slower {
			if ec.Edge == edge {
				return ec.Count
			}
		}
		return math.NaN()
	}
	out := ""
	for _, cs := range js.Checks {
		if cs.Name != plan.MetricLatency {
			continue
		}
		for _, sl := range cs.Slots {
			var d judge.EdgeDispersion
			for _, ed := range cs.Dispersion {
				if ed.Edge == sl.Edge {
					d = ed
				}
			}
			looks := ""
			for _, et := range sl.EdgeTicks {
				looks += fmt.Sprintf(" %gs×%.0f", et.Edge, et.Count)
			}
			out += fmt.Sprintf("\n  target %g: at %gs (looks by edge:%s), treatment %.0f/%.0f, control %.0f/%.0f slower, dispersion %.1f (units %.1f on %d dof, looks %.1f on %d)",
				sl.Target, sl.Edge, looks,
				slowerAt(js.Last.Treatment, sl.Edge), js.Last.Treatment.Requests, slowerAt(js.Last.Control, sl.Edge), js.Last.Control.Requests,
				d.Phi(), d.Units.Phi(), d.Units.DOF, d.Dispersion.Phi(), d.Dispersion.Ticks)
		}
	}
	return out
}

func historyText(s rollout.State) string {
	out := ""
	for _, h := range s.History {
		out += fmt.Sprintf(" %s@%v", h.To, h.Percent)
	}
	return out
}

func lastReason(s rollout.State) string {
	if len(s.History) == 0 {
		return ""
	}
	r := s.History[len(s.History)-1].Reason
	if s.Verdict != nil && s.Verdict.Detail != nil {
		r += " (last verdict: " + s.Verdict.Detail.Explanation + ")"
	}
	return r
}

func post(t *testing.T, url string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(nil))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+e2eToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+e2eToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: %v: %s", url, err, body)
	}
}

func putFlagHTTP(t *testing.T, base string, f flag.Flag) {
	t.Helper()
	body, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPut, base+"/api/v1/flags/"+f.Key, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+e2eToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(resp.Body)
		t.Fatalf("put flag %s: %d %s", f.Key, resp.StatusCode, msg)
	}
}
