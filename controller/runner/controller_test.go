package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vigil-dev/vigil/analysis/cohort"
	"github.com/vigil-dev/vigil/analysis/judge"
	"github.com/vigil-dev/vigil/controller/notify"
	"github.com/vigil-dev/vigil/controller/plan"
	"github.com/vigil-dev/vigil/controller/rollout"
	"github.com/vigil-dev/vigil/controller/rolloutmetrics"
	"github.com/vigil-dev/vigil/controller/store"
	"github.com/vigil-dev/vigil/internal/rolloutsim"
	"github.com/vigil-dev/vigil/internal/testenv/pgtest"
	"github.com/vigil-dev/vigil/internal/testenv/poll"
	"github.com/vigil-dev/vigil/sdk/flag"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// clock is a fake clock that tests move by hand.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// traffic is a Counter that simulates a service's cohorts: every second of
// the fake clock brings rps requests, split by the flag's percentage, with
// the given error rates. It stands in for the metric provider only where a
// real one cannot be driven by a fake clock; the end-to-end tests use a
// real Prometheus.
type traffic struct {
	st      store.Store
	clock   *clock
	rps     float64
	errRate map[string][2]float64 // flag -> treatment, control error rate
	fail    error                 // when set, every query fails with it
	flagErr map[string]error      // a flag's Reading.Err, as the reader reports a part it could not read
	forged  map[string]bool       // flags whose counts are pushed alike for both cohorts, whatever the percent
	slower  map[float64]float64   // latency edge -> share of every flag's requests slower, in both cohorts

	mu      sync.Mutex
	last    time.Time
	cum     map[string]*judge.FlagCounts
	batches int
	queries [][]cohort.FlagQuery
}

func newTraffic(st store.Store, c *clock) *traffic {
	return &traffic{st: st, clock: c, rps: 1000, errRate: map[string][2]float64{}, flagErr: map[string]error{}, forged: map[string]bool{}, cum: map[string]*judge.FlagCounts{}, last: c.Now()}
}

// advance accrues the traffic of the time since the last call at the flags'
// current percentages.
func (tr *traffic) advance(ctx context.Context) error {
	snap, err := tr.st.Snapshot(ctx)
	if err != nil {
		return err
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	now := tr.clock.Now()
	secs := now.Sub(tr.last).Seconds()
	tr.last = now
	for _, f := range snap.Flags {
		if f.Rollout == nil || !f.Tracked {
			continue
		}
		c := tr.cum[f.Key]
		if c == nil {
			c = &judge.FlagCounts{Flag: f.Key}
			tr.cum[f.Key] = c
		}
		share := f.Rollout.Percent / 100
		if tr.forged[f.Key] {
			share = 0.5
		}
		rates := tr.errRate[f.Key]
		nt, nc := math.Round(tr.rps*secs*share), math.Round(tr.rps*secs*(1-share))
		c.Treatment.Requests += nt
		c.Control.Requests += nc
		// Errors accrue as fractions, as increase() reads them: rounding
		// each second's would give treatment at 5% of 1,000 req/s (50
		// requests, 0.5 errors at 1%) one error a second, a 2% rate.
		c.Treatment.Errors += nt * rates[0]
		c.Control.Errors += nc * rates[1]
		for edge, share := range tr.slower {
			for _, co := range []struct {
				c *judge.CohortCounts
				n float64
			}{{&c.Treatment, nt}, {&c.Control, nc}} {
				if co.c.Slower == nil {
					co.c.Slower = map[float64]float64{}
				}
				co.c.Slower[edge] += math.Round(co.n * share)
			}
		}
	}
	return nil
}

func (tr *traffic) Read(ctx context.Context, now time.Time, qs []cohort.FlagQuery) (map[string]cohort.Reading, error) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.batches++
	tr.queries = append(tr.queries, qs)
	if tr.fail != nil {
		return nil, tr.fail
	}
	out := make(map[string]cohort.Reading, len(qs))
	for _, q := range qs {
		var rd cohort.Reading
		if c := tr.cum[q.Flag]; c != nil {
			rd.Counts = rolloutsim.AsRead(*c, q.LatencyEdges)
		}
		rd.Counts.Flag = q.Flag
		rd.Err = tr.flagErr[q.Flag]
		out[q.Flag] = rd
	}
	return out, nil
}

// recorder collects notifications.
type recorder struct {
	mu     sync.Mutex
	events []notify.Event
}

func (r *recorder) Notify(e notify.Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

func (r *recorder) tos() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.events {
		out = append(out, fmt.Sprintf("%s:%s@%v", e.Flag, e.To, e.Percent))
	}
	return out
}

// fixture is a controller on a real store with simulated traffic.
type fixture struct {
	st    store.Store
	clock *clock
	tr    *traffic
	rec   *recorder
	reg   *prometheus.Registry
	c     *Controller
}

func newFixture(t testing.TB, st store.Store) *fixture {
	t.Helper()
	f := &fixture{st: st, clock: &clock{now: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)}, rec: &recorder{}, reg: prometheus.NewRegistry()}
	f.tr = newTraffic(st, f.clock)
	m, err := NewMetrics(f.reg)
	if err != nil {
		t.Fatal(err)
	}
	f.c, err = New(Options{Store: st, Reader: f.tr, Notifier: f.rec, Metrics: m, Now: f.clock.Now, Holder: "test-1", LeaseTTL: time.Minute,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func openSQLite(t testing.TB) store.Store {
	t.Helper()
	st, err := store.OpenSQLite(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func putFlag(t testing.TB, st store.Store, f flag.Flag) {
	t.Helper()
	err := st.Update(context.Background(), store.Actor{Name: "test"}, func(tx store.Tx) error {
		_, err := tx.PutFlag(context.Background(), f)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func checkoutFlag(key string) flag.Flag {
	return flag.Flag{
		Key:       key,
		Variants:  map[string]json.RawMessage{"on": json.RawMessage("true"), "off": json.RawMessage("false")},
		Control:   "off",
		Treatment: "on",
		Enabled:   true,
		Rollout: &flag.Rollout{Plan: json.RawMessage(`{"interval": "1s", "minStepDuration": "5s", "maxStepDuration": "1m",
			"minRequests": 200, "metrics": [{"name": "error-rate", "tolerance": 1.2, "maxRatio": 0}]}`)},
	}
}

// boundedFlag is checkoutFlag under the default harm bound and floor: a
// step passes only on evidence that treatment is less than 1.5 times
// worse. The loop's other tests turn the bound off (maxRatio: 0), since
// they test its mechanics with a minute's traffic, too little to bound a
// ratio.
func boundedFlag(key string) flag.Flag {
	f := checkoutFlag(key)
	f.Rollout.Plan = json.RawMessage(`{"interval": "1s", "minStepDuration": "5s", "maxStepDuration": "5m",
		"minRequests": 200, "metrics": [{"name": "error-rate", "tolerance": 1.2}]}`)
	return f
}

// run ticks the loop once a second of fake time until done reports true or
// the fake time runs out.
func (f *fixture) run(t *testing.T, limit time.Duration, done func() bool) {
	t.Helper()
	ctx := context.Background()
	for end := f.clock.Now().Add(limit); f.clock.Now().Before(end); {
		f.clock.Add(time.Second)
		if err := f.tr.advance(ctx); err != nil {
			t.Fatal(err)
		}
		if err := f.c.Tick(ctx); err != nil {
			t.Fatal(err)
		}
		if done() {
			return
		}
	}
}

func (f *fixture) state(t *testing.T, key string) rollout.State {
	t.Helper()
	s, err := f.c.Rollout(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (f *fixture) flag(t *testing.T, key string) flag.Flag {
	t.Helper()
	fl, err := f.st.Flag(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	return fl
}

// TestLoopHoldsForgedCounts: counts pushed alike for both cohorts (an sdk
// token may push OTLP metrics to the embedded store) are identical, so no
// ratio test can object to them, and with the harm bound off they would
// promote the flag. The traffic split gives them away: treatment has half
// the requests where the flag sends 1%, and the rollout holds at 1% until
// its step times out.
func TestLoopHoldsForgedCounts(t *testing.T) {
	f := newFixture(t, openSQLite(t))
	putFlag(t, f.st, checkoutFlag("forged"))
	f.tr.forged["forged"] = true
	f.tr.errRate["forged"] = [2]float64{0.01, 0.01}
	if _, err := f.c.Command(context.Background(), "forged", rollout.Command{Kind: rollout.Start, Actor: "alice"}); err != nil {
		t.Fatal(err)
	}
	f.run(t, 2*time.Minute, func() bool { return f.state(t, "forged").Phase != rollout.Progressing })
	s := f.state(t, "forged")
	if s.Phase != rollout.Paused || s.Percent != 1 {
		t.Fatalf("forged counts: %s at %v%%, want paused at 1%% (%s)", s.Phase, s.Percent, s.PausedReason)
	}
	d := s.Verdict.Detail
	if d == nil || d.SampleRatio == nil || !d.SampleRatio.Mismatch || !strings.Contains(s.Verdict.Summary, "sample ratio mismatch") {
		t.Errorf("verdict %+v, want a sample ratio mismatch", s.Verdict)
	}
}

func TestLoopPromotesHealthyAndRollsBackHarmful(t *testing.T) {
	f := newFixture(t, openSQLite(t))
	ctx := context.Background()
	// 20,000 requests a second: at 1% treatment has 2 errors a second,
	// enough to bound its ratio below 1.5 within a couple of minutes.
	f.tr.rps = 20000
	putFlag(t, f.st, boundedFlag("healthy"))
	putFlag(t, f.st, boundedFlag("harmful"))
	f.tr.errRate["healthy"] = [2]float64{0.01, 0.01}
	f.tr.errRate["harmful"] = [2]float64{0.05, 0.01}
	for _, key := range []string{"healthy", "harmful"} {
		s, err := f.c.Command(ctx, key, rollout.Command{Kind: rollout.Start, Actor: "alice"})
		if err != nil {
			t.Fatal(err)
		}
		if s.Phase != rollout.Progressing || s.Percent != 1 {
			t.Fatalf("%s started %s at %v%%", key, s.Phase, s.Percent)
		}
		if fl := f.flag(t, key); fl.Rollout.Percent != 1 || !fl.Tracked {
			t.Fatalf("%s flag at %v%% tracked %v after start", key, fl.Rollout.Percent, fl.Tracked)
		}
	}
	var harmfulMax float64
	f.run(t, 10*time.Minute, func() bool {
		h := f.state(t, "harmful")
		harmfulMax = max(harmfulMax, h.Percent)
		return f.state(t, "healthy").Phase == rollout.Promoted && h.Phase == rollout.RolledBack
	})
	healthy, harmful := f.state(t, "healthy"), f.state(t, "harmful")
	if healthy.Phase != rollout.Promoted || harmful.Phase != rollout.RolledBack {
		t.Fatalf("healthy %s at %v%%, harmful %s at %v%%", healthy.Phase, healthy.Percent, harmful.Phase, harmful.Percent)
	}
	if harmfulMax > 5 {
		t.Errorf("the harmful rollout reached %v%% before rolling back", harmfulMax)
	}
	if fl := f.flag(t, "healthy"); fl.Rollout.Percent != 100 || fl.Tracked {
		t.Errorf("promoted flag at %v%% tracked %v", fl.Rollout.Percent, fl.Tracked)
	}
	if fl := f.flag(t, "harmful"); fl.Rollout.Percent != 0 || fl.Tracked {
		t.Errorf("rolled-back flag at %v%% tracked %v", fl.Rollout.Percent, fl.Tracked)
	}
	last := harmful.History[len(harmful.History)-1]
	if last.Evidence == nil || last.Evidence.Outcome != judge.Fail || last.Evidence.Summary == "" || last.Evidence.Detail == nil || len(last.Evidence.Detail.Checks) == 0 {
		t.Errorf("rollback without its evidence: %+v", last.Evidence)
	}
	// One batched query per tick, never one per flag.
	for _, qs := range f.tr.queries {
		seen := map[string]bool{}
		for _, q := range qs {
			if seen[q.Flag] {
				t.Fatalf("flag %s twice in one batch", q.Flag)
			}
			seen[q.Flag] = true
		}
	}
	if f.tr.batches > 10*60 {
		t.Errorf("%d batches in 600 ticks", f.tr.batches)
	}
	// Notifications and metrics follow the transitions.
	tos := strings.Join(f.rec.tos(), " ")
	for _, want := range []string{"healthy:progressing@1", "healthy:progressing@5", "healthy:promoted@100", "harmful:rolled_back@0"} {
		if !strings.Contains(tos, want) {
			t.Errorf("notifications %s lack %s", tos, want)
		}
	}
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{rolloutmetrics.State, []string{"flag", "harmful", "state", "rolled_back"}, 1},
		{rolloutmetrics.State, []string{"flag", "harmful", "state", "progressing"}, 0},
		{rolloutmetrics.Percent, []string{"flag", "healthy"}, 100},
		{rolloutmetrics.Transitions, []string{"flag", "harmful", "to", "rolled_back"}, 1},
		{rolloutmetrics.Verdicts, []string{"flag", "harmful", "metric", "all", "verdict", "fail"}, 1},
		{rolloutmetrics.EvidenceThreshold, []string{"flag", "harmful"}, 100},
	} {
		if got := gathered(t, f.reg, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	// The audit log has each transition.
	entries, err := f.st.Audit(ctx, store.AuditQuery{Flag: "harmful", Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var msgs []string
	for _, e := range entries {
		if e.Action == "rollout" {
			msgs = append(msgs, e.Message)
		}
	}
	if len(msgs) != len(harmful.History) || !strings.Contains(msgs[0], "progressing -> rolled_back at 0%") {
		t.Errorf("audit %q for %d transitions", msgs, len(harmful.History))
	}
}

func TestLoopPausesAfterProviderErrors(t *testing.T) {
	f := newFixture(t, openSQLite(t))
	putFlag(t, f.st, checkoutFlag("checkout"))
	if _, err := f.c.Command(context.Background(), "checkout", rollout.Command{Kind: rollout.Start, Actor: "a"}); err != nil {
		t.Fatal(err)
	}
	f.tr.fail = errors.New("prometheus: 503 service unavailable")
	f.run(t, 30*time.Second, func() bool { return f.state(t, "checkout").Phase != rollout.Progressing })
	s := f.state(t, "checkout")
	if s.Phase != rollout.Paused || !strings.Contains(s.PausedReason, "503 service unavailable") || s.ProviderErrors != 5 {
		t.Fatalf("%s after provider errors (%d): %q", s.Phase, s.ProviderErrors, s.PausedReason)
	}
	if fl := f.flag(t, "checkout"); fl.Rollout.Percent != 1 || !fl.Tracked {
		t.Errorf("paused flag at %v%% tracked %v", fl.Rollout.Percent, fl.Tracked)
	}
	if got := testutil.ToFloat64(f.c.opts.Metrics.provErrors); got != 5 {
		t.Errorf("vigil_provider_errors_total = %v, want 5", got)
	}
}

// TestLoopCountsAFailedCustomQuery: a custom metric's query that fails
// fails only for the rollouts whose plans name it, and the reader then
// reports no error for the batch, only in those rollouts' readings. Each is a
// provider error for its rollout, up to onProviderError; missing data is
// not.
func TestLoopCountsAFailedCustomQuery(t *testing.T) {
	f := newFixture(t, openSQLite(t))
	ctx := context.Background()
	withConversion := json.RawMessage(`{"interval": "1s", "minStepDuration": "5s", "maxStepDuration": "1m", "minRequests": 200,
		"metrics": [{"name": "error-rate", "tolerance": 1.2}, {"name": "conversion", "direction": "lower-is-worse", "tolerance": 0.9,
			"query": "sum by (feature_flag_result_variant) (increase(checkouts_total{feature_flag_key=\"{{flag}}\"}[{{window}}]))"}]}`)
	for _, key := range []string{"custom", "quiet", "plain"} {
		fl := checkoutFlag(key)
		if key != "plain" {
			fl.Rollout.Plan = withConversion
		}
		putFlag(t, f.st, fl)
		f.tr.errRate[key] = [2]float64{0.01, 0.01}
		if _, err := f.c.Command(ctx, key, rollout.Command{Kind: rollout.Start, Actor: "a"}); err != nil {
			t.Fatal(err)
		}
	}
	// What cohort.Reader reports for a custom query the provider refused,
	// and for a custom metric without any series yet.
	f.tr.flagErr["custom"] = errors.Join(&cohort.QueryError{Metric: "conversion", Query: "...", Err: errors.New("bad_data: many-to-many matching not allowed")})
	f.tr.flagErr["quiet"] = errors.Join(fmt.Errorf(`flag quiet variant "on": custom metric "conversion": %w: no sample`, cohort.ErrNoData))
	f.run(t, 30*time.Second, func() bool { return f.state(t, "custom").Phase != rollout.Progressing })
	s := f.state(t, "custom")
	if s.Phase != rollout.Paused || s.ProviderErrors != 5 || !strings.Contains(s.PausedReason, "many-to-many matching not allowed") {
		t.Fatalf("custom: %s after %d provider errors: %q", s.Phase, s.ProviderErrors, s.PausedReason)
	}
	for _, key := range []string{"quiet", "plain"} {
		if s := f.state(t, key); s.Phase != rollout.Progressing || s.ProviderErrors != 0 {
			t.Errorf("%s: %s with %d provider errors, want progressing with none", key, s.Phase, s.ProviderErrors)
		}
	}
	if got := testutil.ToFloat64(f.c.opts.Metrics.provErrors); got != 5 {
		t.Errorf("vigil_provider_errors_total = %v, want 5", got)
	}
}

// replicaStores are the ways to open the stores of two replicas: one SQLite
// store both use, or two connections to one PostgreSQL database.
func replicaStores() map[string]func(t *testing.T) (store.Store, store.Store) {
	return map[string]func(t *testing.T) (store.Store, store.Store){
		"sqlite": func(t *testing.T) (store.Store, store.Store) { st := openSQLite(t); return st, st },
		"postgres": func(t *testing.T) (store.Store, store.Store) {
			url := pgtest.Database(t)
			var out [2]store.Store
			for i := range out {
				st, err := store.OpenPostgres(context.Background(), url)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { st.Close() })
				out[i] = st
			}
			return out[0], out[1]
		},
	}
}

func TestLoopOnlyLeaderActs(t *testing.T) {
	for name, open := range replicaStores() {
		t.Run(name, func(t *testing.T) {
			st1, st2 := open(t)
			a := newFixture(t, st1)
			b := newFixture(t, st2)
			b.c.opts.Holder = "test-2"
			b.c.opts.Now = a.clock.Now
			b.tr = a.tr
			b.c.opts.Reader = a.tr
			putFlag(t, st1, checkoutFlag("checkout"))
			ctx := context.Background()
			if _, err := a.c.Command(ctx, "checkout", rollout.Command{Kind: rollout.Start, Actor: "a"}); err != nil {
				t.Fatal(err)
			}
			for range 20 {
				a.clock.Add(time.Second)
				if err := a.tr.advance(ctx); err != nil {
					t.Fatal(err)
				}
				for _, c := range []*Controller{a.c, b.c} {
					if err := c.Tick(ctx); err != nil {
						t.Fatal(err)
					}
				}
				if !a.c.Leader() || b.c.Leader() {
					t.Fatalf("leaders: a %v b %v", a.c.Leader(), b.c.Leader())
				}
			}
			if la, lb := testutil.ToFloat64(a.c.opts.Metrics.leader), testutil.ToFloat64(b.c.opts.Metrics.leader); la != 1 || lb != 0 {
				t.Errorf("vigil_rollout_leader: %v on the leader, %v on the other, want 1 and 0", la, lb)
			}
			if n := len(b.rec.tos()); n != 0 {
				t.Errorf("the follower sent %d notifications", n)
			}
			if a.state(t, "checkout").Step < 1 {
				t.Errorf("the leader did not advance the rollout")
			}
			// The leader stops; the follower takes over once the lease lapses.
			if err := st1.ReleaseLease(ctx, LeaseName, "test-1"); err != nil {
				t.Fatal(err)
			}
			if err := b.c.Tick(ctx); err != nil {
				t.Fatal(err)
			}
			if !b.c.Leader() {
				t.Error("the follower did not take the released lease")
			}
		})
	}
}

func TestLoopCarriesOnAfterRestart(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	st, err := store.OpenSQLite(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, st)
	// The lease outlives a killed holder by its TTL, in real time.
	f.c.opts.LeaseTTL = 300 * time.Millisecond
	putFlag(t, st, checkoutFlag("checkout"))
	f.tr.errRate["checkout"] = [2]float64{0.01, 0.01}
	if _, err := f.c.Command(ctx, "checkout", rollout.Command{Kind: rollout.Start, Actor: "a"}); err != nil {
		t.Fatal(err)
	}
	f.run(t, 3*time.Minute, func() bool { return f.state(t, "checkout").Step >= 2 })
	before := f.state(t, "checkout")
	st.Close()

	// A new process: a new store handle and controller, the same data and
	// clock, and a lease it must wait out.
	st2, err := store.OpenSQLite(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st2.Close() })
	g := newFixture(t, st2)
	g.clock, g.tr = f.clock, f.tr
	g.tr.st = st2
	g.c.opts.Now, g.c.opts.Reader, g.c.opts.Holder = f.clock.Now, f.tr, "test-2"
	// The first controller's lease runs out in real time: tick until the
	// new one takes it, and make sure nothing moved meanwhile.
	poll.True(t, 10*time.Second, "the new controller to take the lease", func() bool {
		if g.c.Leader() {
			return true
		}
		if err := g.c.Tick(ctx); err != nil {
			t.Fatal(err)
		}
		if got := g.state(t, "checkout"); got.Revision != before.Revision && !g.c.Leader() {
			t.Fatalf("revision changed from %d to %d while no one held the lease", before.Revision, got.Revision)
		}
		return false
	})
	g.run(t, 10*time.Minute, func() bool { return g.state(t, "checkout").Phase == rollout.Promoted })
	after := g.state(t, "checkout")
	if after.Phase != rollout.Promoted || !after.StartedAt.Equal(before.StartedAt) {
		t.Fatalf("after restart: %s, started %v (was %v)", after.Phase, after.StartedAt, before.StartedAt)
	}
	var percents []float64
	for _, h := range after.History {
		percents = append(percents, h.Percent)
	}
	if fmt.Sprint(percents) != "[1 5 10 25 50 100]" {
		t.Errorf("history percents %v: a step repeated or skipped across the restart", percents)
	}
}

func TestLoopAbortsRolloutOfDeletedFlag(t *testing.T) {
	f := newFixture(t, openSQLite(t))
	ctx := context.Background()
	putFlag(t, f.st, checkoutFlag("checkout"))
	if _, err := f.c.Command(ctx, "checkout", rollout.Command{Kind: rollout.Start, Actor: "a"}); err != nil {
		t.Fatal(err)
	}
	err := f.st.Update(ctx, store.Actor{Name: "test"}, func(tx store.Tx) error {
		_, err := tx.DeleteFlag(ctx, "checkout")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	f.run(t, 5*time.Second, func() bool { return false })
	s := f.state(t, "checkout")
	if s.Phase != rollout.Aborted || !strings.Contains(s.History[len(s.History)-1].Reason, "the flag was deleted") {
		t.Errorf("rollout of a deleted flag is %s", s.Phase)
	}
}

// failAt decides that the judge failed the rollout.
func failAt(s rollout.State) func(now time.Time) (rollout.State, []rollout.Action, error) {
	return func(now time.Time) (rollout.State, []rollout.Action, error) {
		next, acts := rollout.Step(s, rollout.Observation{Verdict: &judge.Verdict{Outcome: judge.Fail}}, now)
		return next, acts, nil
	}
}

func TestStaleDecisionIsDropped(t *testing.T) {
	f := newFixture(t, openSQLite(t))
	ctx := context.Background()
	putFlag(t, f.st, checkoutFlag("checkout"))
	s, err := f.c.Command(ctx, "checkout", rollout.Command{Kind: rollout.Start, Actor: "a"})
	if err != nil {
		t.Fatal(err)
	}
	// A person pauses between the loop's read and its write.
	if _, err := f.c.Command(ctx, "checkout", rollout.Command{Kind: rollout.Pause, Actor: "b"}); err != nil {
		t.Fatal(err)
	}
	if err := f.c.commit(ctx, decision{s: s, decide: failAt(s)}); err != nil {
		t.Fatal(err)
	}
	if got := f.state(t, "checkout"); got.Phase != rollout.Paused {
		t.Errorf("a decision on a stale state was stored: %s", got.Phase)
	}
}

func TestCommandErrors(t *testing.T) {
	f := newFixture(t, openSQLite(t))
	ctx := context.Background()
	putFlag(t, f.st, checkoutFlag("checkout"))
	noTreatment := checkoutFlag("plain")
	noTreatment.Treatment, noTreatment.Rollout = "", nil
	putFlag(t, f.st, noTreatment)
	disabled := checkoutFlag("off")
	disabled.Enabled = false
	putFlag(t, f.st, disabled)

	var fe *FlagError
	if _, err := f.c.Command(ctx, "plain", rollout.Command{Kind: rollout.Start}); !errors.As(err, &fe) || !strings.Contains(err.Error(), "no treatment variant") {
		t.Errorf("start without treatment: %v", err)
	}
	if _, err := f.c.Command(ctx, "off", rollout.Command{Kind: rollout.Start}); !errors.As(err, &fe) || !strings.Contains(err.Error(), "disabled") {
		t.Errorf("start of a disabled flag: %v", err)
	}
	if _, err := f.c.Command(ctx, "nope", rollout.Command{Kind: rollout.Start}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("start of an unknown flag: %v", err)
	}
	var re *rollout.RefusedError
	if _, err := f.c.Command(ctx, "checkout", rollout.Command{Kind: rollout.Pause}); !errors.As(err, &re) {
		t.Errorf("pause of a pending rollout: %v", err)
	}
	var pe *flag.FieldError
	if _, err := f.c.Command(ctx, "checkout", rollout.Command{Kind: rollout.Start, Plan: &plan.Spec{Steps: &[]float64{5, 1}}}); !errors.As(err, &pe) || pe.Field != "plan.steps[1]" {
		t.Errorf("start with a bad plan: %v", err)
	}
	badQuery, err := plan.Decode([]byte(`{"metrics": [{"name": "conversion", "query": "sum(rate(x[{{window}}]", "direction": "lower-is-worse"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.c.Command(ctx, "checkout", rollout.Command{Kind: rollout.Start, Plan: badQuery}); !errors.As(err, &pe) || pe.Field != "plan.metrics[0].query" || !strings.Contains(err.Error(), "conversion") {
		t.Errorf("start with an unparsable custom query: %v", err)
	}
	if _, err := f.st.Rollout(ctx, "checkout"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a failed command stored a rollout: %v", err)
	}
	if fl := f.flag(t, "checkout"); fl.Rollout.Percent != 0 || fl.Tracked {
		t.Errorf("a failed command changed the flag: %v%%", fl.Rollout.Percent)
	}
	if s, err := f.c.Rollout(ctx, "checkout"); err != nil || s.Phase != rollout.Pending {
		t.Errorf("never-started rollout: %+v %v", s, err)
	}
}

// TestLoopPreparesPlanOnce: a rollout's plan is resolved and validated when
// it starts and its custom queries are parsed once, not at every look: the
// reader gets the very same parsed template at every tick, until a new
// start brings a new plan.
func TestLoopPreparesPlanOnce(t *testing.T) {
	f := newFixture(t, openSQLite(t))
	ctx := context.Background()
	fl := checkoutFlag("custom")
	fl.Rollout.Plan = json.RawMessage(`{"interval": "1s", "minStepDuration": "5s", "maxStepDuration": "1m", "minRequests": 200,
		"metrics": [{"name": "conversion", "direction": "lower-is-worse", "tolerance": 0.9,
			"query": "sum by (feature_flag_result_variant) (increase(checkouts_total{feature_flag_key=\"{{flag}}\"}[{{window}}]))"}]}`)
	putFlag(t, f.st, fl)
	if _, err := f.c.Command(ctx, "custom", rollout.Command{Kind: rollout.Start}); err != nil {
		t.Fatal(err)
	}
	f.run(t, 10*time.Second, func() bool { return false })
	var seen []*cohort.QueryTemplate
	for _, batch := range f.tr.queries {
		for _, q := range batch {
			if len(q.Custom) != 1 {
				t.Fatalf("query %+v: want the one custom template", q)
			}
			seen = append(seen, q.Custom[0])
		}
	}
	if len(seen) < 5 {
		t.Fatalf("%d looks in 10 s of 1 s intervals", len(seen))
	}
	for i, tmpl := range seen {
		if tmpl != seen[0] {
			t.Fatalf("look %d got a template parsed again (%p, first %p)", i, tmpl, seen[0])
		}
	}
	for _, cmd := range []rollout.CommandKind{rollout.Abort, rollout.Start} {
		if _, err := f.c.Command(ctx, "custom", rollout.Command{Kind: cmd}); err != nil {
			t.Fatal(err)
		}
	}
	f.tr.queries = nil
	f.run(t, 3*time.Second, func() bool { return len(f.tr.queries) > 0 })
	if len(f.tr.queries) == 0 || f.tr.queries[0][0].Custom[0] == seen[0] {
		t.Error("a new start kept the last rollout's prepared plan")
	}
}

// TestLoopKeepsTheJudgeStateItStored: a look judges from the judge state
// the last look stored, kept decoded, while the rollout's record holds the
// bytes it was stored as, beside the rollout's state; a record changed
// since (another writer's, here one that kept the judge's state inside
// the rollout's, as records stored before the store kept it apart) is
// decoded. The kept state is marked (its tick count raised) so that the
// stored states show which was used.
func TestLoopKeepsTheJudgeStateItStored(t *testing.T) {
	f := newFixture(t, openSQLite(t))
	ctx := context.Background()
	fl := checkoutFlag("checkout")
	fl.Rollout.Plan = json.RawMessage(`{"interval": "1s", "minStepDuration": "1m", "maxStepDuration": "5m", "minRequests": 200,
		"metrics": [{"name": "error-rate", "tolerance": 1.2, "maxRatio": 0}]}`)
	putFlag(t, f.st, fl)
	if _, err := f.c.Command(ctx, "checkout", rollout.Command{Kind: rollout.Start}); err != nil {
		t.Fatal(err)
	}
	ticks := func() int {
		t.Helper()
		var js judge.State
		if err := json.Unmarshal(f.state(t, "checkout").Judge, &js); err != nil {
			t.Fatalf("stored judge state: %v", err)
		}
		return js.Ticks
	}
	f.run(t, 5*time.Second, func() bool { return len(f.state(t, "checkout").Judge) > 0 })
	before := ticks()

	f.c.looks.mu.Lock()
	e := f.c.looks.m["checkout"]
	if !e.hasJudge {
		f.c.looks.mu.Unlock()
		t.Fatal("no judge state kept after a look")
	}
	e.judge.Ticks += 1000
	f.c.looks.m["checkout"] = e
	f.c.looks.mu.Unlock()
	f.run(t, time.Second, func() bool { return true })
	if got := ticks(); got != before+1001 {
		t.Fatalf("judge state ticks %d after one look from %d, want %d: the kept state was not used", got, before, before+1001)
	}

	r, err := f.st.Rollout(ctx, "checkout")
	if err != nil || len(r.Judge) == 0 || strings.Contains(string(r.State), `"judge"`) {
		t.Fatalf("stored record %s / judge %.40s (%v), want the judge state beside the state", r.State, r.Judge, err)
	}
	// Another writer, of a release that kept the judge's state inside
	// the rollout's, changes it.
	s := f.state(t, "checkout")
	var js judge.State
	if err := json.Unmarshal(s.Judge, &js); err != nil {
		t.Fatal(err)
	}
	js.Ticks = 7
	if s.Judge, err = json.Marshal(js); err != nil {
		t.Fatal(err)
	}
	s.Revision++
	s.History = nil
	old, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	err = f.st.Update(ctx, store.Actor{Name: "test"}, func(tx store.Tx) error {
		_, err := tx.PutRollout(ctx, store.Rollout{Key: "checkout", State: old, DueAt: s.NextLook()})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	f.run(t, time.Second, func() bool { return true })
	if got := ticks(); got != 8 {
		t.Fatalf("judge state ticks %d after one look from a record changed to 7, want 8: the changed record was not read", got)
	}
}

// TestLoopWritesOnlyUnderItsLease: a decision taken by a leader whose lease
// ran out, and was taken by another replica, before the decision could be
// stored is dropped: the write is fenced by the lease in its transaction,
// on SQLite and on two replicas of one PostgreSQL.
func TestLoopWritesOnlyUnderItsLease(t *testing.T) {
	for name, open := range replicaStores() {
		t.Run(name, func(t *testing.T) {
			st1, st2 := open(t)
			a := newFixture(t, st1)
			a.c.opts.LeaseTTL = time.Second
			putFlag(t, st1, checkoutFlag("checkout"))
			ctx := context.Background()
			if _, err := a.c.Command(ctx, "checkout", rollout.Command{Kind: rollout.Start, Actor: "a"}); err != nil {
				t.Fatal(err)
			}
			if err := a.c.Tick(ctx); err != nil || !a.c.Leader() {
				t.Fatalf("a did not take the lease: %v", err)
			}
			s := a.state(t, "checkout")
			poll.True(t, 10*time.Second, "another replica takes the expired lease", func() bool {
				held, err := st2.AcquireLease(ctx, LeaseName, "test-2", time.Minute)
				return err == nil && held
			})
			if err := a.c.commit(ctx, decision{s: s, decide: failAt(s)}); err != nil {
				t.Fatal(err)
			}
			if got := a.state(t, "checkout"); got.Phase != rollout.Progressing || got.Revision != s.Revision {
				t.Errorf("a decision without the lease was stored: %s at revision %d", got.Phase, got.Revision)
			}
			if tos := a.rec.tos(); len(tos) != 1 {
				t.Errorf("notifications %v, want only the start's", tos)
			}
		})
	}
}
