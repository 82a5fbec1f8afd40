package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/vigil-dev/vigil/analysis/cohort"
	"github.com/vigil-dev/vigil/controller/plan"
	"github.com/vigil-dev/vigil/controller/rollout"
	"github.com/vigil-dev/vigil/controller/rolloutmetrics"
	"github.com/vigil-dev/vigil/controller/store"
	"github.com/vigil-dev/vigil/internal/testenv/poll"
	"github.com/vigil-dev/vigil/internal/testenv/syncbuf"
	"github.com/vigil-dev/vigil/sdk/flag"
)

// countingStore is a real store that counts the rollout records (the
// bodies a tick would decode), flag snapshots and reads of flags read
// through it.
type countingStore struct {
	store.Store
	mu        sync.Mutex
	bodies    int
	snapshots int
	histories int
	flagReads int
}

func (s *countingStore) Flag(ctx context.Context, key string) (flag.Flag, error) {
	s.add(&s.flagReads, 1)
	return s.Store.Flag(ctx, key)
}

func (s *countingStore) FlagsOf(ctx context.Context, keys []string) ([]flag.Flag, error) {
	s.add(&s.flagReads, 1)
	return s.Store.FlagsOf(ctx, keys)
}

// takeFlagReads returns and resets the count of store reads of flags.
func (s *countingStore) takeFlagReads() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.flagReads
	s.flagReads = 0
	return n
}

func (s *countingStore) add(n *int, k int) {
	s.mu.Lock()
	*n += k
	s.mu.Unlock()
}

func (s *countingStore) Rollout(ctx context.Context, key string) (store.Rollout, error) {
	r, err := s.Store.Rollout(ctx, key)
	if err == nil {
		s.add(&s.bodies, 1)
	}
	return r, err
}

func (s *countingStore) Rollouts(ctx context.Context) ([]store.Rollout, error) {
	rs, err := s.Store.Rollouts(ctx)
	s.add(&s.bodies, len(rs))
	return rs, err
}

func (s *countingStore) RolloutsOf(ctx context.Context, keys []string) ([]store.Rollout, error) {
	rs, err := s.Store.RolloutsOf(ctx, keys)
	s.add(&s.bodies, len(rs))
	return rs, err
}

func (s *countingStore) Snapshot(ctx context.Context) (store.Snapshot, error) {
	s.add(&s.snapshots, 1)
	return s.Store.Snapshot(ctx)
}

func (s *countingStore) RolloutHistory(ctx context.Context, keys []string) (map[string][]json.RawMessage, error) {
	s.add(&s.histories, 1)
	return s.Store.RolloutHistory(ctx, keys)
}

// reads returns and resets the counts.
func (s *countingStore) reads() (bodies, snapshots, histories int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	bodies, snapshots, histories = s.bodies, s.snapshots, s.histories
	s.bodies, s.snapshots, s.histories = 0, 0, 0
	return
}

// TestIdleTickReadsNoRollouts: once the loop has read the rollouts at its
// start, a tick with nothing due reads no rollout record, no history and
// no flags, however many rollouts are stored; a tick with one due reads
// that one.
func TestIdleTickReadsNoRollouts(t *testing.T) {
	cs := &countingStore{Store: openSQLite(t)}
	f := newFixture(t, cs)
	ctx := context.Background()
	const n = 30
	for i := range n {
		key := "f" + string(rune('a'+i/26)) + string(rune('a'+i%26))
		putFlag(t, cs, checkoutFlag(key))
		for _, k := range []rollout.CommandKind{rollout.Start, rollout.Promote} {
			if _, err := f.c.Command(ctx, key, rollout.Command{Kind: k, Actor: "a"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := f.c.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if bodies, _, _ := cs.reads(); bodies < n {
		t.Fatalf("the first tick read %d rollouts, want all %d", bodies, n)
	}
	for range 3 {
		f.clock.Add(time.Hour)
		if err := f.c.Tick(ctx); err != nil {
			t.Fatal(err)
		}
		if bodies, snaps, hists := cs.reads(); bodies+snaps+hists != 0 {
			t.Fatalf("an idle tick read %d rollouts, %d flag snapshots and %d histories, want none", bodies, snaps, hists)
		}
	}

	putFlag(t, cs, checkoutFlag("live"))
	if _, err := f.c.Command(ctx, "live", rollout.Command{Kind: rollout.Start, Actor: "a"}); err != nil {
		t.Fatal(err)
	}
	cs.reads()
	f.clock.Add(2 * time.Second)
	if err := f.c.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if bodies, snaps, _ := cs.reads(); bodies != 1 || snaps != 0 {
		t.Fatalf("a tick with one rollout due read %d rollouts and %d flag snapshots, want 1 and 0", bodies, snaps)
	}
	if got := f.state(t, "live").Revision; got != 2 {
		t.Fatalf("the due rollout is at revision %d after its look, want 2", got)
	}
	if due := testutil.ToFloat64(f.c.opts.Metrics.looksDue); due != 1 {
		t.Errorf("vigil_rollout_looks_due_total = %v after five ticks with one look, want 1", due)
	}
}

// slowReader reads the counts and then moves the fake clock on, as a slow
// metric source would: whatever the tick decides is committed later than
// the tick began.
type slowReader struct {
	Reader
	clock *clock
	took  time.Duration
}

func (r slowReader) Read(ctx context.Context, now time.Time, qs []cohort.FlagQuery) (map[string]cohort.Reading, error) {
	defer r.clock.Add(r.took)
	return r.Reader.Read(ctx, now, qs)
}

// TestTransitionStampedWhenCommitted: a look that holds and a transition
// are both stamped with the time they are committed, after the slow read,
// not when the tick began; so the next look is due after the commit, not
// in the past.
func TestTransitionStampedWhenCommitted(t *testing.T) {
	f := newFixture(t, openSQLite(t))
	const took = 700 * time.Millisecond
	f.c.opts.Reader = slowReader{Reader: f.tr, clock: f.clock, took: took}
	ctx := context.Background()
	putFlag(t, f.st, checkoutFlag("checkout"))
	f.tr.errRate["checkout"] = [2]float64{0.2, 0.01}
	if _, err := f.c.Command(ctx, "checkout", rollout.Command{Kind: rollout.Start, Actor: "a"}); err != nil {
		t.Fatal(err)
	}
	held := false
	for range 120 {
		f.clock.Add(time.Second)
		if err := f.tr.advance(ctx); err != nil {
			t.Fatal(err)
		}
		before := f.state(t, "checkout")
		began := f.clock.Now()
		if err := f.c.Tick(ctx); err != nil {
			t.Fatal(err)
		}
		s := f.state(t, "checkout")
		if s.Revision == before.Revision {
			continue
		}
		if !s.UpdatedAt.Equal(began.Add(took)) {
			t.Fatalf("look committed after the read was stamped %v, want %v (the tick began at %v)", s.UpdatedAt, began.Add(took), began)
		}
		if s.Phase == rollout.Progressing {
			held = true
			// The plan's interval is 1 s: the next look is the first
			// second of the step's clock after the commit.
			commit := began.Add(took)
			due := s.NextLook()
			if !due.After(commit) || due.Sub(commit) > time.Second || due.Sub(s.StepStartedAt)%time.Second != 0 {
				t.Fatalf("next look due %v, want the first point of the step's clock (from %v, every 1 s) after the commit at %v", due, s.StepStartedAt, commit)
			}
			continue
		}
		last := s.History[len(s.History)-1]
		if last.To != rollout.RolledBack || !last.At.Equal(began.Add(took)) {
			t.Fatalf("transition %s stamped %v, want %s at %v", last.To, last.At, rollout.RolledBack, began.Add(took))
		}
		if !held {
			t.Fatal("no look held before the rollback")
		}
		return
	}
	t.Fatalf("no rollback: %s", f.state(t, "checkout").Phase)
}

// TestTickOverrunIsCountedAndLogged: a tick longer than the loop's
// interval (here a nanosecond, which any tick takes longer than) is
// counted and logged with where its time went.
func TestTickOverrunIsCountedAndLogged(t *testing.T) {
	f := newFixture(t, openSQLite(t))
	var log syncbuf.Buffer
	f.c.log = slog.New(slog.NewTextHandler(&log, nil))
	f.c.opts.Tick = time.Nanosecond
	if err := f.c.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(f.c.opts.Metrics.overruns); got != 1 {
		t.Errorf("vigil_rollout_tick_overruns_total = %v, want 1", got)
	}
	if !strings.Contains(log.String(), "rollout tick overran its interval") {
		t.Errorf("log %q does not tell of the overrun", log.String())
	}
	for _, phase := range []string{"reading_states=", "reading_metrics=", "judging=", "committing="} {
		if !strings.Contains(log.String(), phase) {
			t.Errorf("log %q does not say how long the tick spent %s", log.String(), strings.TrimSuffix(phase, "="))
		}
	}
}

// listeningReplicas are two replicas on one database (replicaStores): a,
// whose reads are counted and which follows the store's notices until the
// test ends, and b, another replica.
type listeningReplicas struct {
	a, b  *fixture
	reads *countingStore
	ctx   context.Context
}

func newListeningReplicas(t *testing.T, open func(t *testing.T) (store.Store, store.Store)) *listeningReplicas {
	t.Helper()
	st1, st2 := open(t)
	cs := &countingStore{Store: st1}
	p := &listeningReplicas{a: newFixture(t, cs), b: newFixture(t, st2), reads: cs}
	p.b.c.opts.Holder = "test-2"
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	p.ctx = ctx
	p.a.c.watch(ctx)
	return p
}

// pending is a copy of the notices a holds for its next tick.
func (p *listeningReplicas) pending() map[string]int64 {
	p.a.c.pendingMu.Lock()
	defer p.a.c.pendingMu.Unlock()
	return maps.Clone(p.a.c.pending)
}

// noticed reports whether a holds a notice of key for its next tick.
func (p *listeningReplicas) noticed(key string) bool {
	_, ok := p.pending()[key]
	return ok
}

// hear writes through b until a hears it: a's listener may still be
// connecting (on PostgreSQL), and what b does after this is then heard for
// certain, with no reconnection making a read everything.
func (p *listeningReplicas) hear(t *testing.T) {
	t.Helper()
	poll.True(t, 10*time.Second, "a's listener to hear b", func() bool {
		err := p.b.st.Update(p.ctx, store.Actor{Name: "test"}, func(tx store.Tx) error {
			_, err := tx.PutRollout(p.ctx, store.Rollout{Key: "warm-up", State: json.RawMessage(`{"key":"warm-up","state":"aborted"}`)})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return p.noticed("warm-up")
	})
}

// TestLeaderSeesAnotherReplicasCommand: a rollout started through another
// replica, on one SQLite store or two connections to one PostgreSQL, is
// noticed by the leader, which looks at it when it is due, without reading
// every rollout again.
func TestLeaderSeesAnotherReplicasCommand(t *testing.T) {
	for name, open := range replicaStores() {
		t.Run(name, func(t *testing.T) {
			p := newListeningReplicas(t, open)
			a, b, cs, ctx := p.a, p.b, p.reads, p.ctx
			putFlag(t, cs, checkoutFlag("checkout"))
			// Finished rollouts that a tick following one change must not
			// read.
			err := cs.Update(ctx, store.Actor{Name: "test"}, func(tx store.Tx) error {
				for i := range 20 {
					key := fmt.Sprintf("done-%02d", i)
					if _, err := tx.PutRollout(ctx, store.Rollout{Key: key, State: json.RawMessage(`{"key":"` + key + `","state":"promoted"}`)}); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			p.hear(t)
			if err := a.c.Tick(ctx); err != nil || !a.c.Leader() {
				t.Fatalf("a did not lead: %v", err)
			}
			if _, err := b.c.Command(ctx, "checkout", rollout.Command{Kind: rollout.Start, Actor: "b"}); err != nil {
				t.Fatal(err)
			}
			poll.True(t, 10*time.Second, "a to notice b's start", func() bool { return p.noticed("checkout") })
			cs.reads()
			a.clock.Add(time.Hour)
			if err := a.c.Tick(ctx); err != nil {
				t.Fatal(err)
			}
			if got := a.state(t, "checkout"); got.Revision != 2 {
				t.Fatalf("the leader did not look at the rollout b started: revision %d", got.Revision)
			}
			// The notices (b's start, and a late one of the warm-up) and
			// the look: a few records, not the 22 stored.
			if bodies, snaps, _ := cs.reads(); bodies > 5 || snaps != 0 {
				t.Errorf("the leader read %d rollouts and %d snapshots to follow one", bodies, snaps)
			}
		})
	}
}

// TestLeaderDoesNotReadBackItsOwnCommits: the notices of the looks the
// leader committed are not read back at its next tick, since it holds the
// states it committed; a command given through another replica on one of
// those rollouts, after the leader's commit and before its next tick, is
// read (that rollout alone), and the leader's index follows it.
func TestLeaderDoesNotReadBackItsOwnCommits(t *testing.T) {
	for name, open := range replicaStores() {
		t.Run(name, func(t *testing.T) {
			p := newListeningReplicas(t, open)
			a, b, cs, ctx := p.a, p.b, p.reads, p.ctx
			p.hear(t)
			const n = 20
			keys := make([]string, n)
			for i := range keys {
				keys[i] = fmt.Sprintf("r%02d", i)
				putFlag(t, cs, checkoutFlag(keys[i]))
				if _, err := a.c.Command(ctx, keys[i], rollout.Command{Kind: rollout.Start, Actor: "a"}); err != nil {
					t.Fatal(err)
				}
			}
			// The first tick reads every rollout: it takes the notices of
			// the starts along.
			poll.True(t, 10*time.Second, "a to notice its starts", func() bool { return len(p.pending()) == n+1 })
			if err := a.c.Tick(ctx); err != nil || !a.c.Leader() {
				t.Fatalf("a did not lead: %v", err)
			}
			a.clock.Add(2 * time.Second)
			cs.reads()
			cs.takeFlagReads()
			if err := a.c.Tick(ctx); err != nil {
				t.Fatal(err)
			}
			if bodies, _, _ := cs.reads(); bodies != n {
				t.Fatalf("the tick with %d rollouts due read %d", n, bodies)
			}
			if reads := cs.takeFlagReads(); reads != 1 {
				t.Fatalf("the tick with %d rollouts due read their flags in %d store reads, want one", n, reads)
			}
			if due := testutil.ToFloat64(a.c.opts.Metrics.looksDue); due != n {
				t.Fatalf("%v looks due, want %d", due, n)
			}
			// b pauses the first rollout after a's look at it: its notice
			// and that of a's commit are one.
			paused, err := b.c.Command(ctx, keys[0], rollout.Command{Kind: rollout.Pause, Actor: "b"})
			if err != nil {
				t.Fatal(err)
			}
			if paused.Revision != 3 {
				t.Fatalf("b paused %s at revision %d, want 3: after a's look", keys[0], paused.Revision)
			}
			poll.True(t, 10*time.Second, "a to notice its commits and b's pause", func() bool {
				pending := p.pending()
				a.c.trackMu.Lock()
				defer a.c.trackMu.Unlock()
				for i, k := range keys {
					rev, ok := pending[k]
					if !ok || (i == 0) != (rev > a.c.tracked[k]) {
						return false
					}
				}
				return true
			})
			if err := a.c.Tick(ctx); err != nil {
				t.Fatal(err)
			}
			if bodies, snaps, _ := cs.reads(); bodies != 1 || snaps != 0 {
				t.Fatalf("the tick after a's commits and b's pause read %d rollouts and %d snapshots, want b's one alone", bodies, snaps)
			}
			// a's index holds its own commits and b's pause: the next looks
			// are of the other rollouts, and the paused one is left alone.
			a.clock.Add(2 * time.Second)
			if err := a.c.Tick(ctx); err != nil {
				t.Fatal(err)
			}
			if bodies, _, _ := cs.reads(); bodies != n-1 {
				t.Fatalf("the next tick read %d rollouts, want the %d due", bodies, n-1)
			}
			if due := testutil.ToFloat64(a.c.opts.Metrics.looksDue); due != 2*n-1 {
				t.Fatalf("%v looks due after the next tick, want %d", due, 2*n-1)
			}
			for i, k := range keys {
				want := rollout.Progressing
				if i == 0 {
					want = rollout.Paused
				}
				if s := b.state(t, k); s.Phase != want || s.Revision != 3 {
					t.Errorf("%s is %s at revision %d, want %s at 3", k, s.Phase, s.Revision, want)
				}
			}
		})
	}
}

// TestUnseen: a notice tells of something to read when its revision is
// unknown or past the one tracked for its key, and not when it is at or
// before it.
func TestUnseen(t *testing.T) {
	tracked := map[string]int64{"own": 7, "older": 7, "later": 7, "unknown": 7}
	changed := map[string]int64{"own": 7, "older": 5, "later": 9, "unknown": 0, "untracked": 3}
	if got := unseen(changed, tracked); !slices.Equal(got, []string{"later", "unknown", "untracked"}) {
		t.Errorf("unseen %v, want later, unknown and untracked", got)
	}
	if got := unseen(nil, tracked); got != nil {
		t.Errorf("unseen of no change: %v", got)
	}
}

// TestTrackKeepsTheLaterRevision: a read that a commit overtook does not
// put the older state back in the index, and a state whose revision is
// not known (a record from before revisions) always goes in.
func TestTrackKeepsTheLaterRevision(t *testing.T) {
	f := newFixture(t, openSQLite(t))
	at := f.clock.Now()
	state := func(due time.Duration) rollout.State {
		s := rollout.New("a")
		s.Phase, s.Plan.Interval = rollout.Progressing, plan.Duration(time.Minute)
		s.UpdatedAt = at.Add(due - time.Minute)
		return s
	}
	dueAt := func() time.Time {
		f.c.due.mu.Lock()
		defer f.c.due.mu.Unlock()
		return f.c.due.at["a"]
	}
	f.c.track(state(9*time.Second), 9)
	f.c.track(state(8*time.Second), 8)
	if got := dueAt(); !got.Equal(at.Add(9 * time.Second)) {
		t.Fatalf("due at %v after a stale read, want revision 9's %v", got, at.Add(9*time.Second))
	}
	f.c.track(state(5*time.Second), 0)
	if got := dueAt(); !got.Equal(at.Add(5*time.Second)) || f.c.tracked["a"] != 0 {
		t.Fatalf("due at %v, tracked at %d after a state of unknown revision, want it in at %v, untracked", got, f.c.tracked["a"], at.Add(5*time.Second))
	}
	f.c.track(state(9*time.Second), 9)
	f.c.untrack("a")
	if got := dueAt(); !got.IsZero() || len(f.c.tracked) != 0 {
		t.Fatalf("due at %v, tracked %v after the rollout was found gone", got, f.c.tracked)
	}
}

// TestLoopStoresEachLook: every verdict the judge gives is stored as a
// look, at the rollout's place when it was judged, newest MaxLooks kept.
func TestLoopStoresEachLook(t *testing.T) {
	f := newFixture(t, openSQLite(t))
	f.c.opts.MaxLooks = 4
	ctx := context.Background()
	putFlag(t, f.st, checkoutFlag("checkout"))
	f.tr.errRate["checkout"] = [2]float64{0.01, 0.01}
	if _, err := f.c.Command(ctx, "checkout", rollout.Command{Kind: rollout.Start, Actor: "a"}); err != nil {
		t.Fatal(err)
	}
	f.run(t, 3*time.Minute, func() bool { return f.state(t, "checkout").Step >= 1 })
	judged := testutil.ToFloat64(f.c.opts.Metrics.looksJudged)
	raws, err := f.st.RolloutLooks(ctx, "checkout", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if judged < 5 || len(raws) != 4 {
		t.Fatalf("%d looks stored after %v judged, want the newest 4", len(raws), judged)
	}
	s := f.state(t, "checkout")
	var last rollout.Look
	for i, raw := range raws {
		var l rollout.Look
		if err := json.Unmarshal(raw, &l); err != nil {
			t.Fatal(err)
		}
		if i > 0 && !l.At.After(last.At) {
			t.Fatalf("look %d at %v, not after %v", i, l.At, last.At)
		}
		last = l
	}
	// The look that passed step 1 was taken at step 1's place.
	if !last.At.Equal(s.Verdict.At) || last.Step != s.Step-1 || last.Outcome != s.Verdict.Outcome {
		t.Fatalf("last look %+v, want the verdict that advanced the rollout, at step %d", last, s.Step-1)
	}
}

// TestNewLeaderReadsDueTimes: a replica that takes the lease reads the
// due times afresh, so it looks at a rollout started while another led,
// even one it was not told of.
func TestNewLeaderReadsDueTimes(t *testing.T) {
	st := openSQLite(t)
	a, b := newFixture(t, st), newFixture(t, st)
	b.c.opts.Holder, b.c.opts.Now, b.c.opts.Reader = "test-2", a.clock.Now, a.tr
	ctx := context.Background()
	for _, c := range []*Controller{a.c, b.c} {
		if err := c.Tick(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if !a.c.Leader() || b.c.Leader() {
		t.Fatal("a should lead")
	}
	putFlag(t, st, checkoutFlag("checkout"))
	if _, err := a.c.Command(ctx, "checkout", rollout.Command{Kind: rollout.Start, Actor: "a"}); err != nil {
		t.Fatal(err)
	}
	if err := st.ReleaseLease(ctx, LeaseName, "test-1"); err != nil {
		t.Fatal(err)
	}
	a.clock.Add(2 * time.Second)
	if err := b.c.Tick(ctx); err != nil || !b.c.Leader() {
		t.Fatalf("b did not take the lease: %v", err)
	}
	if got := b.state(t, "checkout").Revision; got != 2 {
		t.Fatalf("the new leader did not look at the rollout started under the old one: revision %d", got)
	}
}

// scrapeReader reports every reading's latest sample at *latest, the time
// of the metric source's last scrape as the test sets it, and counts its
// reads in *reads if set.
type scrapeReader struct {
	Reader
	latest *time.Time
	// every is the interval the reads show between consecutive samples;
	// nil for none.
	every *time.Duration
	reads *int
}

func (r scrapeReader) Read(ctx context.Context, now time.Time, qs []cohort.FlagQuery) (map[string]cohort.Reading, error) {
	if r.reads != nil {
		*r.reads++
	}
	out, err := r.Reader.Read(ctx, now, qs)
	for k, rd := range out {
		rd.Latest = *r.latest
		if r.every != nil {
			rd.Every = *r.every
		}
		out[k] = rd
	}
	return out, err
}

// longStepFlag is checkoutFlag with looks every 10 s in steps of at least
// five minutes, so that a test's looks come one an interval and none
// passes a step.
func longStepFlag(key string) flag.Flag {
	f := checkoutFlag(key)
	f.Rollout.Plan = json.RawMessage(`{"interval": "10s", "minStepDuration": "5m", "maxStepDuration": "10m",
		"minRequests": 200, "metrics": [{"name": "error-rate", "tolerance": 1.2, "maxRatio": 0}]}`)
	return f
}

// startRollout starts a rollout of fl, whose cohorts fail alike, on a new
// fixture.
func startRollout(t *testing.T, fl flag.Flag) (*fixture, rollout.State) {
	t.Helper()
	f := newFixture(t, openSQLite(t))
	putFlag(t, f.st, fl)
	f.tr.errRate[fl.Key] = [2]float64{0.01, 0.01}
	s, err := f.c.Command(context.Background(), fl.Key, rollout.Command{Kind: rollout.Start, Actor: "a"})
	if err != nil {
		t.Fatal(err)
	}
	return f, s
}

// TestLookWaitsForANewScrape: a due look whose read shows no sample newer
// than the last look's is not recorded but taken again later; once half an
// interval has passed it is recorded all the same.
func TestLookWaitsForANewScrape(t *testing.T) {
	f, s := startRollout(t, longStepFlag("checkout"))
	ctx := context.Background()
	var latest time.Time
	f.c.opts.Reader = scrapeReader{Reader: f.tr, latest: &latest}
	looks := 0
	rev := s.Revision
	tick := func(d time.Duration, wantLook bool) {
		t.Helper()
		f.clock.Add(d)
		if err := f.tr.advance(ctx); err != nil {
			t.Fatal(err)
		}
		if err := f.c.Tick(ctx); err != nil {
			t.Fatal(err)
		}
		at := f.clock.Now().Sub(s.StartedAt)
		switch got := f.state(t, "checkout").Revision; {
		case wantLook && got != rev+1:
			t.Fatalf("at %v: revision %d, want %d: the look was not recorded", at, got, rev+1)
		case !wantLook && got != rev:
			t.Fatalf("at %v: revision %d, want %d: a look was recorded without a new scrape", at, got, rev)
		}
		rev = f.state(t, "checkout").Revision
		if wantLook {
			looks++
		}
	}
	// Scrapes every 10 s, as often as the looks; the one at 20 s is
	// committed a second late.
	latest = f.clock.Now().Add(10 * time.Second)
	tick(10*time.Second, true) // the first look
	tick(10*time.Second, false)
	latest = f.clock.Now()
	tick(time.Second, true) // a second late, with the new scrape
	tick(9*time.Second, false)
	for range 4 {
		tick(time.Second, false)
	}
	tick(time.Second, true) // half an interval late: recorded without one
	if looks != 3 {
		t.Errorf("%d looks recorded, want 3", looks)
	}
}

// TestLookWaitsForTheNextScrape: with scrapes every 15 s and looks every
// 10 s, a look whose next scrape is due after it waits for that scrape
// rather than reading nothing new and reading again at every tick: 5 reads
// in the first 62 s, each with a new scrape, where reads at every tick
// took 15 and recorded a look with nothing new at 45 s.
func TestLookWaitsForTheNextScrape(t *testing.T) {
	f, s := startRollout(t, longStepFlag("checkout"))
	var latest time.Time
	var every time.Duration
	reads := 0
	f.c.opts.Reader = scrapeReader{Reader: f.tr, latest: &latest, every: &every, reads: &reads}
	var looks []time.Duration
	rev := s.Revision
	tickScrapedEvery15s(t, f, s, &latest, &every, 62, func(at time.Duration) bool {
		if got := f.state(t, "checkout").Revision; got != rev {
			looks, rev = append(looks, at), got
		}
		return true
	})
	// Once the first two looks (10 s and 20 s) have shown scrapes 15 s
	// apart, the look due at 30 s waits for the scrape at 32 s, the one at
	// 40 s for 47 s, and the one at 50 s for 62 s.
	want := []time.Duration{10 * time.Second, 20 * time.Second, 32 * time.Second, 47 * time.Second, 62 * time.Second}
	if !slices.Equal(looks, want) {
		t.Errorf("looks recorded at %v, want %v", looks, want)
	}
	// One a look; reading at every look's interval and then at every tick
	// while it waits adds 30, 31, 40 to 44, 50, 60 and 61 s.
	if reads != len(want) {
		t.Errorf("%d reads, want %d", reads, len(want))
	}
}

// TestLookThatOpensTheStepIsNotPutOff: with scrapes every 15 s and looks
// every 10 s in steps of at least 2 minutes, the looks wait for the scrapes
// (32, 47, ... 107 s), but the one due at 110 s is taken at 120 s, the
// first moment a pass can move the step on, on the scrape of 107 s that the
// look before it read, rather than put off to the scrape at 122 s; it
// passes the step there.
func TestLookThatOpensTheStepIsNotPutOff(t *testing.T) {
	fl := checkoutFlag("checkout")
	fl.Rollout.Plan = json.RawMessage(`{"interval": "10s", "minStepDuration": "2m", "maxStepDuration": "10m",
		"minRequests": 200, "metrics": [{"name": "error-rate", "tolerance": 1.2, "maxRatio": 0}]}`)
	f, s := startRollout(t, fl)
	var latest time.Time
	var every time.Duration
	reads := 0
	f.c.opts.Reader = scrapeReader{Reader: f.tr, latest: &latest, every: &every, reads: &reads}
	tickScrapedEvery15s(t, f, s, &latest, &every, 125, func(time.Duration) bool {
		return f.state(t, "checkout").Step == 0
	})
	st := f.state(t, "checkout")
	if st.Step == 0 {
		t.Fatalf("the first step was not passed in 125 s: %s, %+v", st.Phase, st.Verdict)
	}
	if held := st.StepStartedAt.Sub(s.StepStartedAt); held != 2*time.Minute {
		t.Fatalf("the first step was held %v, want 2m0s (%d reads)", held, reads)
	}
}

// tickScrapedEvery15s ticks f's loop once a second of fake time, for up to
// n seconds, while the metric source scrapes every 15 s from 2 s after s
// started, each scrape stored (*latest) the moment it is taken, and the
// reads show the interval (*every) from the second scrape on. It calls
// after with the time since s started after each tick, and stops when
// after returns false.
func tickScrapedEvery15s(t *testing.T, f *fixture, s rollout.State, latest *time.Time, every *time.Duration, n int, after func(at time.Duration) bool) {
	t.Helper()
	const firstScrape, scrapeEvery = 2 * time.Second, 15 * time.Second
	ctx := context.Background()
	for range n {
		f.clock.Add(time.Second)
		at := f.clock.Now().Sub(s.StartedAt)
		if at >= firstScrape {
			*latest = s.StartedAt.Add(firstScrape + (at-firstScrape)/scrapeEvery*scrapeEvery)
		}
		if at >= firstScrape+scrapeEvery {
			*every = scrapeEvery
		}
		if err := f.tr.advance(ctx); err != nil {
			t.Fatal(err)
		}
		if err := f.c.Tick(ctx); err != nil {
			t.Fatal(err)
		}
		if !after(at) {
			return
		}
	}
}

// scrapesCase is the rollout the scrapes tests look at: its step began
// 30 s before due, when its next look is due, two looks ago (10 s
// interval); last is the latest sample its last look read.
func scrapesCase() (s rollout.State, due, last time.Time) {
	due = time.Date(2026, 12, 6, 10, 0, 30, 0, time.UTC)
	start := due.Add(-30 * time.Second)
	s = rollout.State{Key: "k", StartedAt: start, StepStartedAt: start, UpdatedAt: due.Add(-9 * time.Second), Phase: rollout.Progressing,
		Plan: plan.Plan{Interval: plan.Duration(10 * time.Second)}}
	return s, due, due.Add(-12 * time.Second)
}

// lookedAt returns scrapes that have taken looks at s, one every 10 s up
// to 10 s before due, whose reads showed latest samples seen, the last
// one last, and samples every apart (zero for not known).
func lookedAt(t *testing.T, s rollout.State, due time.Time, every time.Duration, seen ...time.Time) *scrapes {
	t.Helper()
	var sc scrapes
	for i, latest := range seen {
		at := due.Add(time.Duration(i-len(seen)) * 10 * time.Second)
		if !sc.take(s, cohort.Reading{Latest: latest, Every: every}, at, false, time.Second).IsZero() {
			t.Fatalf("look %d (latest sample %v) was not taken", i, latest)
		}
	}
	return &sc
}

// TestScrapesTake: a look is taken again later only when it is not
// decisive, its read shows no newer sample than the last look's or was
// deferred, and it is less than half an interval late, or, where looks
// have shown scrapes slower than themselves, less than half an interval
// past the next scrape.
func TestScrapesTake(t *testing.T) {
	s, due, last := scrapesCase()
	deferred := cohort.Reading{Deferred: true}
	for _, tc := range []struct {
		name     string
		rd       cohort.Reading
		now      time.Time
		decisive bool
		want     bool
	}{
		{"no newer sample", cohort.Reading{Latest: last}, due.Add(time.Second), false, false},
		{"a newer sample", cohort.Reading{Latest: last.Add(10 * time.Second)}, due.Add(time.Second), false, true},
		{"no newer sample, half an interval late", cohort.Reading{Latest: last}, due.Add(5 * time.Second), false, true},
		{"no newer sample, decisive", cohort.Reading{Latest: last}, due.Add(time.Second), true, true},
		{"no sample at all", cohort.Reading{}, due.Add(time.Second), false, true},
		{"deferred", deferred, due.Add(time.Second), false, false},
		{"deferred, half an interval late", deferred, due.Add(5 * time.Second), false, true},
	} {
		sc := lookedAt(t, s, due, 0, last)
		if got := sc.take(s, tc.rd, tc.now, tc.decisive, time.Second).IsZero(); got != tc.want {
			t.Errorf("%s: take = %v, want %v", tc.name, got, tc.want)
		}
	}
	// Where reads have shown scrapes 15 s apart, the next is due 3 s after
	// the look, and a look with nothing new waits until half an interval
	// past it.
	sc := lookedAt(t, s, due, 15*time.Second, last)
	for _, tc := range []struct {
		late time.Duration
		want bool
	}{{5 * time.Second, false}, {7900 * time.Millisecond, false}, {8 * time.Second, true}} {
		if got := sc.take(s, cohort.Reading{Latest: last}, due.Add(tc.late), false, time.Second).IsZero(); got != tc.want {
			t.Errorf("scrapes slower than the looks, no newer sample %v late: take = %v, want %v", tc.late, got, tc.want)
		}
	}
}

// TestScrapesAgain: a look set aside is taken again when the source's next
// scrape is due, once the reads have shown scrapes slower than the looks, even
// more than half an interval after the look was due, but not after a pass
// can first move the step on; at the next tick before that, with scrapes as
// fast as the looks, when that scrape is late, or when the read was
// deferred.
func TestScrapesAgain(t *testing.T) {
	const tick = time.Second
	s, due, last := scrapesCase()
	for _, tc := range []struct {
		name string
		// every is the interval the reads showed between samples; seen
		// the latest samples of the looks taken before, the last one
		// last.
		every time.Duration
		seen  []time.Time
		rd    cohort.Reading
		now   time.Time
		want  time.Time
	}{
		{"interval not known yet", 0, []time.Time{last}, cohort.Reading{Latest: last}, due, due.Add(tick)},
		{"scrapes as fast as the looks", 10 * time.Second, []time.Time{last.Add(-10 * time.Second), last}, cohort.Reading{Latest: last}, due, due.Add(tick)},
		{"scrapes less than a tenth of an interval slower", 10900 * time.Millisecond, []time.Time{last.Add(-10900 * time.Millisecond), last}, cohort.Reading{Latest: last}, due.Add(-3 * time.Second), due.Add(-2 * time.Second)},
		{"next scrape due after the next tick", 15 * time.Second, []time.Time{last.Add(-15 * time.Second), last}, cohort.Reading{Latest: last}, due, last.Add(15 * time.Second)},
		// A look a moment before a scrape was committed read the one
		// before: its looks' latest samples are 20 s apart, the scrapes
		// 10 s, and the scrape after last is already late.
		{"the reads' interval, not the looks' gaps", 10 * time.Second, []time.Time{last.Add(-20 * time.Second), last}, cohort.Reading{Latest: last}, due, due.Add(tick)},
		{"next scrape late", 15 * time.Second, []time.Time{last.Add(-15 * time.Second), last}, cohort.Reading{Latest: last}, due.Add(3500 * time.Millisecond), due.Add(4500 * time.Millisecond)},
		{"next scrape due more than half an interval late", 30 * time.Second, []time.Time{last.Add(-30 * time.Second), last}, cohort.Reading{Latest: last}, due, last.Add(30 * time.Second)},
		{"deferred", 15 * time.Second, []time.Time{last.Add(-15 * time.Second), last}, cohort.Reading{Deferred: true}, due, due.Add(tick)},
	} {
		sc := lookedAt(t, s, due, tc.every, tc.seen...)
		got := sc.take(s, tc.rd, tc.now, false, tick)
		if got.IsZero() {
			t.Fatalf("%s: the look was taken, want it set aside", tc.name)
		}
		if !got.Equal(tc.want) {
			t.Errorf("%s: again at %v, want %v", tc.name, got.Sub(due), tc.want.Sub(due))
		}
	}
	// With scrapes 15 s apart the next is due 3 s after the look, but a
	// pass can move the step on 1 s after it (a minimum of 31 s): a look
	// tried before then is taken again then; one tried then waits for the
	// scrape.
	gated := s
	gated.Plan.MinStepDuration = plan.Duration(31 * time.Second)
	const short = 500 * time.Millisecond
	sc := lookedAt(t, gated, due, 15*time.Second, last.Add(-15*time.Second), last)
	rd := cohort.Reading{Latest: last}
	if got := sc.take(gated, rd, due, false, short); !got.Equal(due.Add(time.Second)) {
		t.Errorf("tried before a pass can move the step on: again at %v, want 1s", got.Sub(due))
	}
	if got := sc.take(gated, rd, due.Add(time.Second), false, short); !got.Equal(due.Add(3 * time.Second)) {
		t.Errorf("tried when a pass can move the step on: again at %v, want 3s", got.Sub(due))
	}
	// A minimum of 34 s: the scrape is due a second before a pass can move
	// the step on; a look then could not pass, and the look waits for that
	// moment.
	gated.Plan.MinStepDuration = plan.Duration(34 * time.Second)
	if got := sc.take(gated, rd, due, false, short); !got.Equal(due.Add(4 * time.Second)) {
		t.Errorf("the scrape due just before a pass can move the step on: again at %v, want 4s", got.Sub(due))
	}
}

// warmReader is the test's Reader with a Warm that records its calls and
// follows the flags it is given while follows is set.
type warmReader struct {
	Reader
	calls   *[][]cohort.FlagQuery
	follows *bool
}

func (r warmReader) Warm(_ context.Context, _ time.Time, qs []cohort.FlagQuery) ([]string, error) {
	*r.calls = append(*r.calls, qs)
	if !*r.follows {
		return nil, errors.New("source down")
	}
	var keys []string
	for _, q := range qs {
		keys = append(keys, q.Flag)
	}
	return keys, nil
}

// TestNewRolloutsAreWarmedBeforeTheirFirstLook: the ticks before a new
// rollout's first look have the Reader catch it up, until it follows it
// (a failed attempt is made again at the next tick); once judged, the
// rollout is not warmed again.
func TestNewRolloutsAreWarmedBeforeTheirFirstLook(t *testing.T) {
	f := newFixture(t, openSQLite(t))
	ctx := context.Background()
	putFlag(t, f.st, longStepFlag("checkout"))
	var calls [][]cohort.FlagQuery
	follows := false
	f.c.opts.Reader = warmReader{Reader: f.tr, calls: &calls, follows: &follows}
	s, err := f.c.Command(ctx, "checkout", rollout.Command{Kind: rollout.Start, Actor: "a"})
	if err != nil {
		t.Fatal(err)
	}
	tick := func(wantCalls int) {
		t.Helper()
		f.clock.Add(time.Second)
		if err := f.tr.advance(ctx); err != nil {
			t.Fatal(err)
		}
		if err := f.c.Tick(ctx); err != nil {
			t.Fatal(err)
		}
		if len(calls) != wantCalls {
			t.Fatalf("at %v: %d calls to Warm, want %d", f.clock.Now().Sub(s.StartedAt), len(calls), wantCalls)
		}
	}
	tick(1) // the source is down: not followed
	// The catch-up is counted among the metric source's reads, and its
	// failure, which the look will make good, is no provider error.
	if n, errs := reads(t, f.c.opts.Metrics, rolloutmetrics.ReadCatchUp), testutil.ToFloat64(f.c.opts.Metrics.provErrors); n != 1 || errs != 0 {
		t.Fatalf("after a failed catch-up: %d catch-up reads and %v provider errors, want 1 and 0", n, errs)
	}
	want := cohort.FlagQuery{Flag: "checkout", Treatment: "on", Control: "off", Since: s.StartedAt}
	if q := calls[0]; len(q) != 1 || q[0].Flag != want.Flag || q[0].Treatment != want.Treatment || q[0].Control != want.Control || !q[0].Since.Equal(want.Since) || !q[0].SkipLatency {
		t.Fatalf("Warm asked %+v, want %+v without latency", q, want)
	}
	follows = true
	tick(2)
	for range 7 {
		tick(2) // followed: not asked again
	}
	tick(2) // the first look, judged
	if st := f.state(t, "checkout"); len(st.Judge) == 0 {
		t.Fatalf("no judge state after the first look: %+v", st.Verdict)
	}
	if catchUps, looks := reads(t, f.c.opts.Metrics, rolloutmetrics.ReadCatchUp), reads(t, f.c.opts.Metrics, rolloutmetrics.ReadLook); catchUps != 2 || looks != 1 {
		t.Errorf("%d catch-up reads and %d looks' reads, want 2 and 1", catchUps, looks)
	}
	if len(f.c.fresh) != 0 {
		t.Errorf("still kept for warming after its first look: %v", f.c.fresh)
	}
}

// reads is how many reads of the metric source of kind read (a
// rolloutmetrics.LabelRead value) m has counted.
func reads(t *testing.T, m *Metrics, read string) uint64 {
	t.Helper()
	var out dto.Metric
	h, err := m.queryTime.GetMetricWithLabelValues(read)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.(prometheus.Histogram).Write(&out); err != nil {
		t.Fatal(err)
	}
	return out.GetHistogram().GetSampleCount()
}
