package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigil-dev/vigil/analysis/cohort"
	"github.com/vigil-dev/vigil/controller/rollout"
	"github.com/vigil-dev/vigil/controller/store"
	"github.com/vigil-dev/vigil/sdk/flag"
	"github.com/vigil-dev/vigil/sdk/semconv"
)

// batchStore counts the write transactions and fails the writes of one
// rollout's state, a fault a real store does not produce on demand.
type batchStore struct {
	store.Store
	mu      sync.Mutex
	updates int
	failKey string
	// before, when set, runs before each write transaction, and
	// rolloutsOf before each read of rollouts by key.
	before     func()
	rolloutsOf func(keys []string)
}

func (s *batchStore) RolloutsOf(ctx context.Context, keys []string) ([]store.Rollout, error) {
	s.mu.Lock()
	hook := s.rolloutsOf
	s.mu.Unlock()
	if hook != nil {
		hook(keys)
	}
	return s.Store.RolloutsOf(ctx, keys)
}

func (s *batchStore) Update(ctx context.Context, actor store.Actor, fn func(tx store.Tx) error) error {
	s.mu.Lock()
	s.updates++
	fail, before := s.failKey, s.before
	s.mu.Unlock()
	if before != nil {
		before()
	}
	return s.Store.Update(ctx, actor, func(tx store.Tx) error { return fn(failingTx{Tx: tx, key: fail}) })
}

func (s *batchStore) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.updates
	s.updates = 0
	return n
}

type failingTx struct {
	store.Tx
	key string
}

func (tx failingTx) PutRollout(ctx context.Context, r store.Rollout) (int64, error) {
	if r.Key == tx.key {
		return 0, errors.New("disk full")
	}
	return tx.Tx.PutRollout(ctx, r)
}

// hookReader runs hook while the loop reads the counts: between its read
// of the rollouts and its commits.
type hookReader struct {
	Reader
	hook func()
}

func (r hookReader) Read(ctx context.Context, now time.Time, qs []cohort.FlagQuery) (map[string]cohort.Reading, error) {
	r.hook()
	return r.Reader.Read(ctx, now, qs)
}

// startMany starts n rollouts and returns their keys and revisions.
func startMany(t testing.TB, f *fixture, n int) ([]string, map[string]int64) {
	t.Helper()
	keys := make([]string, n)
	revisions := map[string]int64{}
	for i := range keys {
		keys[i] = fmt.Sprintf("flag-%03d", i)
		putFlag(t, f.st, checkoutFlag(keys[i]))
		f.tr.errRate[keys[i]] = [2]float64{0.01, 0.01}
		s, err := f.c.Command(context.Background(), keys[i], rollout.Command{Kind: rollout.Start, Actor: "a"})
		if err != nil {
			t.Fatal(err)
		}
		revisions[keys[i]] = s.Revision
	}
	return keys, revisions
}

// TestLooksCommitInBatches: a tick's 100 looks take two transactions, not
// 100; a rollout a person paused while the loop read the counts keeps the
// person's decision, and the others in its batch are stored.
func TestLooksCommitInBatches(t *testing.T) {
	bs := &batchStore{Store: openSQLite(t)}
	f := newFixture(t, bs)
	ctx := context.Background()
	keys, before := startMany(t, f, 100)
	f.c.opts.Reader = hookReader{Reader: f.tr, hook: func() {
		if _, err := f.c.Command(ctx, "flag-007", rollout.Command{Kind: rollout.Pause, Actor: "b"}); err != nil {
			t.Error(err)
		}
	}}
	f.clock.Add(time.Second)
	if err := f.tr.advance(ctx); err != nil {
		t.Fatal(err)
	}
	bs.count()
	if err := f.c.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	// The pause is one transaction; the tick's looks are two.
	if n := bs.count(); n != 3 {
		t.Errorf("the tick took %d write transactions with the pause, want 3 (the pause, and 100 looks in two)", n)
	}
	for _, k := range keys {
		s := f.state(t, k)
		switch {
		case k == "flag-007" && s.Phase != rollout.Paused:
			t.Errorf("%s is %s after the loop's look, want the person's pause kept", k, s.Phase)
		case k != "flag-007" && s.Revision != before[k]+1:
			t.Errorf("%s at revision %d after the tick, want %d: its look was not stored", k, s.Revision, before[k]+1)
		}
	}
}

// TestOneFailingCommitCostsTheOthersNothing: when one rollout's write fails,
// its batch is committed again one look at a time: the tick reports the
// failure by the rollout's key, and every other look is stored.
func TestOneFailingCommitCostsTheOthersNothing(t *testing.T) {
	bs := &batchStore{Store: openSQLite(t)}
	f := newFixture(t, bs)
	ctx := context.Background()
	keys, before := startMany(t, f, 100)
	bs.failKey = "flag-013"
	f.clock.Add(time.Second)
	if err := f.tr.advance(ctx); err != nil {
		t.Fatal(err)
	}
	err := f.c.Tick(ctx)
	if err == nil || !strings.Contains(err.Error(), "flag-013") || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("tick error %v, want one naming flag-013 and the store's failure", err)
	}
	if strings.Contains(err.Error(), "flag-014") {
		t.Errorf("tick error %v names a rollout whose look was stored", err)
	}
	for _, k := range keys {
		want := before[k] + 1
		if k == "flag-013" {
			want = before[k]
		}
		if got := f.state(t, k).Revision; got != want {
			t.Errorf("%s at revision %d after the tick, want %d", k, got, want)
		}
	}
}

// queryRecorder records the flag queries of each read.
type queryRecorder struct {
	Reader
	got   []cohort.FlagQuery
	reads int
}

func (r *queryRecorder) Read(ctx context.Context, now time.Time, qs []cohort.FlagQuery) (map[string]cohort.Reading, error) {
	r.got = append(r.got, qs...)
	r.reads++
	return r.Reader.Read(ctx, now, qs)
}

// TestLatencyReadOnlyWhereJudged: the loop asks for a flag's latency
// histogram only when its plan judges latency.
func TestLatencyReadOnlyWhereJudged(t *testing.T) {
	f := newFixture(t, openSQLite(t))
	rec := &queryRecorder{Reader: f.tr}
	f.c.opts.Reader = rec
	ctx := context.Background()
	withLatency := checkoutFlag("slow")
	withLatency.Rollout.Plan = json.RawMessage(`{"interval": "1s", "minStepDuration": "5s", "metrics": [{"name": "error-rate"}, {"name": "latency"}]}`)
	for _, fl := range []flag.Flag{checkoutFlag("errors-only"), withLatency} {
		putFlag(t, f.st, fl)
		f.tr.errRate[fl.Key] = [2]float64{0.01, 0.01}
		if _, err := f.c.Command(ctx, fl.Key, rollout.Command{Kind: rollout.Start, Actor: "a"}); err != nil {
			t.Fatal(err)
		}
	}
	f.clock.Add(time.Second)
	if err := f.tr.advance(ctx); err != nil {
		t.Fatal(err)
	}
	if err := f.c.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	skip := map[string]bool{}
	for _, q := range rec.got {
		skip[q.Flag] = q.SkipLatency
	}
	if len(skip) != 2 || !skip["errors-only"] || skip["slow"] {
		t.Errorf("SkipLatency by flag %v, want errors-only true and slow false", skip)
	}
}

// TestLatencyReadNarrows: once a look has settled where control's p95 and
// p99 lie, the next reads ask for the latency edges around them only.
func TestLatencyReadNarrows(t *testing.T) {
	f := newFixture(t, openSQLite(t))
	f.tr.rps = 100_000
	f.tr.slower = map[float64]float64{
		0.005: 0.7, 0.01: 0.5, 0.025: 0.2, 0.05: 0.06, 0.075: 0.03, 0.1: 0.015, 0.15: 0.014, 0.2: 0.013, 0.25: 0.009, 0.3: 0.007,
		0.4: 0.005, 0.5: 0.003, 0.75: 0.001, 1: 0.0005, 1.5: 0.0003, 2: 0.0002, 2.5: 0.0001, 5: 0, 7.5: 0, 10: 0,
	}
	look := latencyLooks(t, f)
	edges := [][]float64{look(), look()}
	// Control's p95 is nearest 50 ms (6% slower) and its p99 250 ms
	// (0.9%): each with the SDKs' bounds beside it, read after the first
	// look.
	if want := []float64{0.025, 0.05, 0.075, 0.2, 0.25, 0.3}; edges[0] != nil || !slices.Equal(edges[1], want) {
		t.Errorf("latency edges read at the first and second looks: %v, want all, then %v", edges, want)
	}
}

// TestLatencyReadFollowsAGap: the first look sees no slow tail and
// narrows the reads to the edges around 25 ms; then control's latencies
// gain a tail at 400 ms, 5% of requests, which leaves a gap: as many are
// slower than 50 ms as than 400. The narrowed read no longer settles where
// the p99 lies, so the next read is of every bound, and the p99 slot
// finds 500 ms beyond the gap, which the reads then cover. (Moving one
// bound a look from 50 ms, it would stay at the gap's foot for good.)
func TestLatencyReadFollowsAGap(t *testing.T) {
	f := newFixture(t, openSQLite(t))
	f.tr.rps = 100_000
	shares := func(tail bool) map[float64]float64 {
		out := map[float64]float64{}
		for _, e := range semconv.DurationBuckets {
			out[e] = 0
			switch {
			case e < 0.025:
				out[e] = 0.5
			case e < 0.05:
				out[e] = 0.2
			}
			if tail && e <= 0.4 {
				out[e] += 0.05
			} else if tail && e <= 0.5 {
				out[e] += 0.005
			}
		}
		return out
	}
	f.tr.slower = shares(false)
	look := latencyLooks(t, f)
	var edges [][]float64
	tailAt := -1
	for i := range 12 {
		if tailAt < 0 && i > 0 && edges[i-1] != nil {
			tailAt = i
			f.tr.slower = shares(true)
		}
		edges = append(edges, look())
	}
	if tailAt < 0 || tailAt+1 >= len(edges) {
		t.Fatalf("no look narrowed the reads early enough to follow the tail: %v", edges)
	}
	// The look that first counts the tail was asked for before it.
	if want := []float64{0.01, 0.025, 0.05}; !slices.Equal(edges[tailAt-1], want) || !slices.Equal(edges[tailAt], want) {
		t.Errorf("looks %d and %d read %v and %v, want %v (around 25 ms)", tailAt-1, tailAt, edges[tailAt-1], edges[tailAt], want)
	}
	if edges[tailAt+1] != nil {
		t.Errorf("look %d read %v, want every bound: the tail unsettled the p99", tailAt+1, edges[tailAt+1])
	}
	if last := edges[len(edges)-1]; !slices.Contains(last, 0.5) {
		t.Errorf("reads at each look %v: the last, %v, leaves out 500 ms, control's p99", edges, last)
	}
}

// latencyLooks starts a rollout of a flag that judges latency alone, a
// look a second, and returns a function that takes the next look and
// returns the latency edges its read asked for.
func latencyLooks(t *testing.T, f *fixture) func() []float64 {
	rec := &queryRecorder{Reader: f.tr}
	f.c.opts.Reader = rec
	ctx := context.Background()
	fl := checkoutFlag("slow")
	fl.Rollout.Plan = json.RawMessage(`{"interval": "1s", "minStepDuration": "60s", "metrics": [{"name": "latency"}]}`)
	putFlag(t, f.st, fl)
	if _, err := f.c.Command(ctx, fl.Key, rollout.Command{Kind: rollout.Start, Actor: "a"}); err != nil {
		t.Fatal(err)
	}
	return func() []float64 {
		t.Helper()
		f.run(t, time.Second, func() bool { return true })
		return rec.got[len(rec.got)-1].LatencyEdges
	}
}

// TestLatencyReadsAreSmaller: rollouts that judge latency are read a tenth
// as many at a time as a chunk, and each gets its look.
func TestLatencyReadsAreSmaller(t *testing.T) {
	f := newFixture(t, openSQLite(t))
	f.c.chunk = 50
	rec := &queryRecorder{Reader: f.tr}
	f.c.opts.Reader = rec
	ctx := context.Background()
	before := map[string]int64{}
	for i := range 12 {
		fl := checkoutFlag(fmt.Sprintf("slow-%02d", i))
		fl.Rollout.Plan = json.RawMessage(`{"interval": "1s", "minStepDuration": "5s", "metrics": [{"name": "error-rate"}, {"name": "latency"}]}`)
		putFlag(t, f.st, fl)
		f.tr.errRate[fl.Key] = [2]float64{0.01, 0.01}
		s, err := f.c.Command(ctx, fl.Key, rollout.Command{Kind: rollout.Start, Actor: "a"})
		if err != nil {
			t.Fatal(err)
		}
		before[fl.Key] = s.Revision
	}
	f.clock.Add(time.Second)
	if err := f.tr.advance(ctx); err != nil {
		t.Fatal(err)
	}
	if err := f.c.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if rec.reads != 3 || len(rec.got) != 12 {
		t.Errorf("12 rollouts judging latency read in %d reads of %d rollouts in all, want 3 reads of 12", rec.reads, len(rec.got))
	}
	for k, rev := range before {
		if got := f.state(t, k).Revision; got != rev+1 {
			t.Errorf("%s at revision %d, want %d: its look was not stored", k, got, rev+1)
		}
	}
}

// TestChunksReadWhileOthersCommit: a tick with more rollouts due than a
// chunk reads the next chunk's metrics while the last chunk's looks commit,
// and the states of the chunk after that while the metrics are read; every
// look is stored.
func TestChunksReadWhileOthersCommit(t *testing.T) {
	bs := &batchStore{Store: openSQLite(t)}
	f := newFixture(t, bs)
	f.c.chunk = 50
	ctx := context.Background()
	keys, before := startMany(t, f, 150)
	// The starts' notices are read now, so that the tick below reads
	// rollouts for its chunks only.
	if err := f.c.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	wait := func(ch <-chan struct{}, what string) {
		select {
		case <-ch:
		case <-time.After(10 * time.Second):
			t.Error(what)
		}
	}
	secondRead, thirdStates := make(chan struct{}), make(chan struct{})
	var reads atomic.Int32
	f.c.opts.Reader = hookReader{Reader: f.tr, hook: func() {
		if reads.Add(1) == 2 {
			close(secondRead)
			wait(thirdStates, "the third chunk's states were not read while the second chunk's metrics were")
		}
	}}
	bs.rolloutsOf = func(keys []string) {
		if slices.Contains(keys, "flag-100") {
			close(thirdStates)
		}
	}
	var once sync.Once
	bs.before = func() {
		once.Do(func() {
			wait(secondRead, "the second chunk's metrics were not read while the first chunk's looks committed")
		})
	}
	f.clock.Add(time.Second)
	if err := f.tr.advance(ctx); err != nil {
		t.Fatal(err)
	}
	if err := f.c.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if n := reads.Load(); n != 3 {
		t.Errorf("the tick read the metrics %d times, want 3 (150 rollouts, 50 a chunk)", n)
	}
	for _, k := range keys {
		if s := f.state(t, k); s.Revision != before[k]+1 {
			t.Errorf("%s at revision %d after the tick, want %d: its look was not stored", k, s.Revision, before[k]+1)
		}
	}
}

// hangingReader answers no read until its context ends.
type hangingReader struct{ reads *atomic.Int32 }

func (r hangingReader) Read(ctx context.Context, _ time.Time, _ []cohort.FlagQuery) (map[string]cohort.Reading, error) {
	r.reads.Add(1)
	<-ctx.Done()
	return nil, fmt.Errorf("metric source: %w", ctx.Err())
}

// TestTimedOutReadFailsTheTicksLaterChunks: when a chunk's read runs out of
// its budget, the tick's later chunks take that failure as theirs without
// waiting out the budget again, and every look records it.
func TestTimedOutReadFailsTheTicksLaterChunks(t *testing.T) {
	f := newFixture(t, openSQLite(t))
	f.c.chunk = 50
	ctx := context.Background()
	keys, before := startMany(t, f, 150)
	var reads atomic.Int32
	f.c.opts.Reader = hangingReader{&reads}
	f.clock.Add(time.Second)
	if err := f.c.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if n := reads.Load(); n != 1 {
		t.Errorf("the tick asked the source %d times, want once: the later chunks waited out the budget again", n)
	}
	for _, k := range keys {
		s := f.state(t, k)
		if s.Revision != before[k]+1 || s.ProviderErrors != 1 {
			t.Errorf("%s at revision %d with %d provider errors, want %d and 1", k, s.Revision, s.ProviderErrors, before[k]+1)
		}
	}
}

// TestReadParts: a chunk's reads hold at most its weight, a rollout that
// judges latency weighing ten (four when read at five edges), in order, and a rollout heavier than the
// limit is read alone.
func TestReadParts(t *testing.T) {
	qs := func(spec string) []cohort.FlagQuery {
		var out []cohort.FlagQuery
		for i, c := range spec {
			q := cohort.FlagQuery{Flag: fmt.Sprintf("f%02d", i), SkipLatency: c == 'e'}
			if c == 'n' {
				q.LatencyEdges = []float64{0.025, 0.05, 0.1, 0.25, 0.5}
			}
			out = append(out, q)
		}
		return out
	}
	for _, tc := range []struct {
		spec  string
		limit int
		want  []int
	}{
		{"eeeee", 5, []int{5}},
		{"eeeeee", 5, []int{5, 1}},
		{"LLLLLLLLLLLL", 50, []int{5, 5, 2}},
		{"eeLeeLee", 12, []int{3, 3, 2}},
		{"LL", 5, []int{1, 1}},
		// Five edges and +Inf: 96 of the histogram's 336 series, and
		// the requests' 32.
		{"nnnnn", 8, []int{2, 2, 1}},
		{"", 5, nil},
	} {
		var got []int
		seen := 0
		for _, p := range readParts(qs(tc.spec), tc.limit) {
			got = append(got, len(p))
			if p[0].Flag != fmt.Sprintf("f%02d", seen) {
				t.Errorf("%s: a part begins with %s, want f%02d", tc.spec, p[0].Flag, seen)
			}
			seen += len(p)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s, limit %d: parts of %v, want %v", tc.spec, tc.limit, got, tc.want)
		}
	}
}
