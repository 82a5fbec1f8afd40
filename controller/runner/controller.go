package runner

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/vigil-dev/vigil/analysis/cohort"
	"github.com/vigil-dev/vigil/analysis/judge"
	"github.com/vigil-dev/vigil/controller/notify"
	"github.com/vigil-dev/vigil/controller/plan"
	"github.com/vigil-dev/vigil/controller/rollout"
	"github.com/vigil-dev/vigil/controller/rolloutmetrics"
	"github.com/vigil-dev/vigil/controller/store"
	"github.com/vigil-dev/vigil/sdk/flag"
	"github.com/vigil-dev/vigil/sdk/semconv"
)

// LeaseName is the store lease whose holder runs the rollout loop.
const LeaseName = "rollout-loop"

// Reader reads cumulative cohort counts for many rollouts at once, with
// one query per metric for the whole batch; *cohort.Reader is one.
type Reader interface {
	// Read returns each flag's counts since its Since. The error reports a
	// query that failed as a whole.
	Read(ctx context.Context, now time.Time, flags []cohort.FlagQuery) (map[string]cohort.Reading, error)
}

// Notifier takes transitions after they are committed.
type Notifier interface {
	Notify(notify.Event)
}

// Options configure a Controller.
type Options struct {
	Store store.Store
	// Reader reads the cohorts' counts from the metric provider.
	Reader Reader
	// Notifier receives every transition; nil sends none.
	Notifier Notifier
	// Metrics are the controller's Prometheus metrics; nil records none.
	Metrics *Metrics
	Logger  *slog.Logger
	// Tick is how often the loop looks for due rollouts (default 1s, the
	// shortest interval a plan may have).
	Tick time.Duration
	// LeaseTTL is how long the loop's lease outlives its holder (default
	// 15s): after a crash, another process takes over within it.
	LeaseTTL time.Duration
	// Holder names this process in the lease (default host, pid and a
	// random suffix).
	Holder string
	// Now is the clock (default time.Now); tests may replace it.
	Now func() time.Time
	// MaxLooks is how many of the judge's looks are stored per rollout,
	// for the console's charts, oldest dropped first (default 2000).
	MaxLooks int
}

// Controller runs rollouts: the loop and the commands.
type Controller struct {
	opts Options
	log  *slog.Logger

	mu     sync.Mutex
	leader bool

	// readFailing is when the metric source's reads began to fail (zero
	// while they succeed), and readLogged when that was last logged.
	readFailing, readLogged time.Time

	// chunk is how many due rollouts are read, judged and committed
	// together: lookChunk, smaller in tests.
	chunk int

	looks lookCache
	// scrapes holds the latest sample each rollout's last look read, so
	// that a look finding no newer one can wait for the next tick.
	scrapes scrapes
	// due indexes when each progressing rollout is next due, so that a
	// tick reads only the rollouts that are due.
	due dueIndex

	// synced reports that the index, the plan cache and the state gauges
	// have read every rollout since the controller started, or since the
	// store's change notices lapsed; tick and follow keep them current
	// from then on. Only the goroutine that ticks uses it.
	synced bool

	// pending are the rollouts that changed in the store, through this
	// replica or another, since the last tick, each key with the revision
	// of its latest change (store.AddChange); pendingAll that notices may
	// have been missed.
	pendingMu  sync.Mutex
	pending    map[string]int64
	pendingAll bool

	// trackMu keeps tracked together with what it describes: the index,
	// the plan cache and the gauges change under it when they take a
	// rollout's state from a commit or a read.
	trackMu sync.Mutex
	// tracked is, by key, the revision of the stored rollout record whose
	// state the index, the plan cache and the gauges hold, where known:
	// that of this replica's own commit, or of the record it read. A
	// notice of a change at that revision or before tells of nothing they
	// lack, so follow does not read the record again (unseen); most
	// notices are of the leader's own commits.
	tracked map[string]int64
	// fresh are the progressing rollouts not judged yet, for warm.
	fresh map[string]newRollout
}

// New returns a Controller; Run starts its loop.
func New(opts Options) (*Controller, error) {
	if opts.Store == nil || opts.Reader == nil {
		return nil, errors.New("rollout controller: a store and a metrics reader are required")
	}
	if opts.Tick <= 0 {
		opts.Tick = time.Second
	}
	if opts.LeaseTTL <= 0 {
		opts.LeaseTTL = 15 * time.Second
	}
	if opts.Holder == "" {
		host, _ := os.Hostname()
		var b [4]byte
		_, _ = rand.Read(b[:])
		opts.Holder = fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b[:]))
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxLooks <= 0 {
		opts.MaxLooks = 2000
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Controller{opts: opts, log: opts.Logger.With("component", "rollout"), chunk: lookChunk}, nil
}

// Leader reports whether this process held the loop's lease at its last
// tick.
func (c *Controller) Leader() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.leader
}

// Run runs the loop until ctx is done, then gives up the lease.
func (c *Controller) Run(ctx context.Context) error {
	c.watch(ctx)
	t := time.NewTicker(c.opts.Tick)
	defer t.Stop()
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := c.opts.Store.ReleaseLease(rctx, LeaseName, c.opts.Holder); err != nil {
			c.log.Warn("release lease", "err", err)
		}
	}()
	for {
		if err := c.Tick(ctx); err != nil && ctx.Err() == nil {
			c.log.Error("rollout tick", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// watch follows the store's notices of changed rollouts until ctx is
// done, for the next tick to read: a command given through another
// replica changes what is due here.
func (c *Controller) watch(ctx context.Context) {
	ch := c.opts.Store.WatchRollouts(ctx)
	go func() {
		for changes := range ch {
			c.pendingMu.Lock()
			if changes == nil {
				c.pendingAll = true
			}
			for _, change := range changes {
				if c.pending == nil {
					c.pending = map[string]int64{}
				}
				store.AddChange(c.pending, change)
			}
			c.pendingMu.Unlock()
		}
	}()
}

// takePending returns and forgets the changes noticed since the last
// call, each key with the revision of its latest change, and whether
// notices may have been missed.
func (c *Controller) takePending() (map[string]int64, bool) {
	c.pendingMu.Lock()
	defer c.pendingMu.Unlock()
	changed, all := c.pending, c.pendingAll
	c.pending, c.pendingAll = nil, false
	return changed, all
}

// Tick runs the loop once: takes or renews the lease, catches up with the
// rollouts changed meanwhile and, if it holds the lease, moves every
// progressing rollout whose interval has passed since its last update.
// It reads the states of those rollouts only: the others' due times are
// indexed in memory.
func (c *Controller) Tick(ctx context.Context) error {
	start := time.Now()
	held, err := c.opts.Store.AcquireLease(ctx, LeaseName, c.opts.Holder, c.opts.LeaseTTL)
	held = held && err == nil
	c.mu.Lock()
	gained := held && !c.leader
	c.leader = held
	c.mu.Unlock()
	c.opts.Metrics.observeLeader(held)
	if err != nil {
		return fmt.Errorf("acquire lease %s: %w", LeaseName, err)
	}
	changed, all := c.takePending()
	switch {
	case !c.synced || all:
		if err := c.sync(ctx); err != nil {
			return err
		}
		gained = false // the index was just read whole
	case len(changed) > 0:
		if err := c.follow(ctx, changed); err != nil {
			return err
		}
	}
	if gained {
		// Another replica ran the loop until now: what this one noticed
		// meanwhile is all it knows, so it reads the due times afresh.
		dues, err := c.opts.Store.RolloutDueTimes(ctx)
		if err != nil {
			c.mu.Lock()
			c.leader = false // so that the next tick reads them again
			c.mu.Unlock()
			return fmt.Errorf("read due times: %w", err)
		}
		c.trackMu.Lock()
		c.due.reset(dues)
		// The due times read may be older than a commit tracked
		// meanwhile, whose notice must then be read.
		c.tracked = nil
		c.trackMu.Unlock()
	}
	if !held {
		return nil
	}
	rep, err := c.look(ctx)
	began := time.Now()
	c.warm(ctx, c.opts.Now())
	rep.warming = time.Since(began)
	took := time.Since(start)
	c.opts.Metrics.observeTick(took, rep.due, rep.judged)
	if took > c.opts.Tick {
		c.opts.Metrics.observeOverrun()
		c.log.Warn("rollout tick overran its interval; looks due meanwhile wait for the next tick",
			"took", took.Round(time.Millisecond), "interval", c.opts.Tick, "due", rep.due, "judged", rep.judged, "unscraped", rep.unscraped,
			"reading_states", rep.states.Round(time.Millisecond), "reading_metrics", rep.read.Round(time.Millisecond),
			"judging", rep.judging.Round(time.Millisecond), "committing", rep.commit.Round(time.Millisecond),
			"warming", rep.warming.Round(time.Millisecond))
	}
	return err
}

// tickReport is what a tick's look did: how many rollouts were due, how
// many of them the judge was asked about, and where its time went, which an
// overrun tick's warning names. The phases are summed over the tick's
// chunks, whose reads overlap with commits, so they may add up to more than
// the tick took.
type tickReport struct {
	// unscraped are the due rollouts whose read showed no new scrape,
	// looked at again later (scrapes.take).
	due, judged, unscraped        int
	states, read, judging, commit time.Duration
	// warming is the time spent catching up rollouts before their first
	// looks (warm).
	warming time.Duration
}

// lookChunk is how many due rollouts are read, judged and committed
// together. A tick's chunks go through three stages at once: while one
// chunk's decisions commit, the next chunk's metrics are read and judged,
// and the states and flags of the one after it are read. A tick with
// thousands of rollouts due then takes about as long as its slowest stage
// rather than all of them one after the other. A chunk is still one query
// per metric.
const lookChunk = 1000

// dueChunk is one chunk of a tick's due rollouts on its way through the
// stages.
type dueChunk struct {
	// due are the rollouts to judge, with the records they were decoded
	// from and their flags.
	due    []rollout.State
	stored [][]byte
	flags  map[string]flag.Flag
	// ds are the decisions to commit: the abandonments of rollouts whose
	// flag was deleted, then the judged rollouts' looks.
	ds  []decision
	rep tickReport
	err error
}

// look moves every rollout that is due.
func (c *Controller) look(ctx context.Context) (tickReport, error) {
	var rep tickReport
	now := c.opts.Now()
	keys := c.due.upTo(now)
	if len(keys) == 0 {
		return rep, nil
	}
	read, judged := make(chan dueChunk, 1), make(chan dueChunk, 1)
	go func() {
		defer close(read)
		for lo := 0; lo < len(keys); lo += c.chunk {
			read <- c.readDue(ctx, keys[lo:min(lo+c.chunk, len(keys))], now)
		}
	}()
	go func() {
		defer close(judged)
		var reads tickReads
		for ch := range read {
			judged <- c.judgeDue(ctx, &reads, ch, now)
		}
	}()
	var errs []error
	for ch := range judged {
		rep.due += ch.rep.due
		rep.judged += ch.rep.judged
		rep.unscraped += ch.rep.unscraped
		rep.states += ch.rep.states
		rep.read += ch.rep.read
		rep.judging += ch.rep.judging
		errs = append(errs, ch.err)
		if len(ch.ds) > 0 {
			began := time.Now()
			errs = append(errs, c.commit(ctx, ch.ds...))
			rep.commit += time.Since(began)
		}
	}
	return rep, errors.Join(errs...)
}

// readDue reads the rollouts of keys, which were due at now, and their
// flags. A rollout whose flag was deleted is decided on at once: it is
// abandoned.
func (c *Controller) readDue(ctx context.Context, keys []string, now time.Time) dueChunk {
	began := time.Now()
	var ch dueChunk
	rs, err := c.opts.Store.RolloutsOf(ctx, keys)
	if err != nil {
		ch.err = fmt.Errorf("read due rollouts: %w", err)
		return ch
	}
	seen := make(map[string]bool, len(rs))
	var due []rollout.State
	var stored [][]byte
	for _, r := range rs {
		seen[r.Key] = true
		s, err := decode(r)
		if err != nil {
			// Not indexed again until it changes: it would fail alike.
			c.log.Error("skipping unreadable rollout", "err", err)
			c.untrack(r.Key)
			continue
		}
		if !rollout.Due(s, now) {
			// A record migrated from before due times were stored, or
			// one that changed since it was indexed.
			c.track(s, r.Revision)
			continue
		}
		due = append(due, s)
		stored = append(stored, r.State)
	}
	for _, k := range keys {
		if !seen[k] {
			c.untrack(k)
		}
	}
	flags, err := c.flagsOf(ctx, due)
	if err != nil {
		ch.err = fmt.Errorf("read due rollouts: %w", err)
		return ch
	}
	ch.flags = flags
	for i, s := range due {
		if _, ok := flags[s.Key]; !ok {
			ch.ds = append(ch.ds, abandonment(s))
			continue
		}
		ch.due = append(ch.due, s)
		ch.stored = append(ch.stored, stored[i])
	}
	ch.rep.states = time.Since(began)
	return ch
}

// flagsOf reads the flags of rollouts ss in one store read, by key; a
// rollout whose flag was deleted has none. With no rollouts it reads
// nothing: a chunk whose due rollouts all turned out decided has none.
func (c *Controller) flagsOf(ctx context.Context, ss []rollout.State) (map[string]flag.Flag, error) {
	if len(ss) == 0 {
		return nil, nil
	}
	keys := make([]string, len(ss))
	for i, s := range ss {
		keys[i] = s.Key
	}
	fs, err := c.opts.Store.FlagsOf(ctx, keys)
	if err != nil {
		return nil, fmt.Errorf("read their flags: %w", err)
	}
	out := make(map[string]flag.Flag, len(fs))
	for _, f := range fs {
		out[f.Key] = f
	}
	return out, nil
}

// judgeDue reads the metrics of ch's due rollouts, judges them and adds
// their looks to ch's decisions.
func (c *Controller) judgeDue(ctx context.Context, reads *tickReads, ch dueChunk, now time.Time) dueChunk {
	if len(ch.due) == 0 {
		return ch
	}
	ch.rep.due = len(ch.due)
	began := time.Now()
	obs, again, read := c.observe(ctx, reads, ch.due, ch.flags, now)
	ch.rep.read, ch.rep.judging = read, time.Since(began)-read
	for i, s := range ch.due {
		if !again[i].IsZero() {
			ch.rep.unscraped++
			c.trackMu.Lock()
			c.due.set(s.Key, again[i])
			c.trackMu.Unlock()
			continue
		}
		if obs[i].Verdict != nil {
			ch.rep.judged++
		}
		ch.ds = append(ch.ds, decision{s: s, stored: ch.stored[i], decide: func(at time.Time) (rollout.State, []rollout.Action, error) {
			next, acts := rollout.Step(s, obs[i], at)
			return next, acts, nil
		}})
	}
	return ch
}

// sync reads every rollout: their due times, their plans and their gauges.
// The controller does so when it starts and when the store's notices may
// have missed a change; from then on it follows the changes.
func (c *Controller) sync(ctx context.Context) error {
	states, revs, err := c.states(ctx)
	if err != nil {
		return err
	}
	dues := make(map[string]time.Time, len(states))
	for _, s := range states {
		if next := s.NextLook(); !next.IsZero() {
			dues[s.Key] = next
		}
	}
	c.trackMu.Lock()
	defer c.trackMu.Unlock()
	c.opts.Metrics.observeStates(states)
	c.looks.keep(states)
	c.due.reset(dues)
	clear(c.fresh)
	for _, s := range states {
		c.noteNew(s)
	}
	// Each state goes in with the revision it was read at, not past it:
	// the notice of a command committed since the read, whose state the
	// reset may have replaced, is read.
	c.tracked = revs
	c.synced = true
	return nil
}

// follow reads the rollouts that changed in the store (changed, each key
// with the revision of its latest change) into the index, the plan cache
// and the gauges; a rollout no longer stored leaves the index. It reads
// none whose latest change they hold already: mostly the leader's own
// commits of the last tick.
func (c *Controller) follow(ctx context.Context, changed map[string]int64) error {
	c.trackMu.Lock()
	keys := unseen(changed, c.tracked)
	c.trackMu.Unlock()
	if len(keys) == 0 {
		return nil
	}
	rs, err := c.opts.Store.RolloutsOf(ctx, keys)
	if err != nil {
		c.synced = false // read everything at the next tick instead
		return fmt.Errorf("read changed rollouts: %w", err)
	}
	seen := make(map[string]bool, len(rs))
	for _, r := range rs {
		seen[r.Key] = true
		s, err := decode(r)
		if err != nil {
			c.log.Error("skipping unreadable rollout", "err", err)
			continue
		}
		c.track(s, r.Revision)
	}
	for _, k := range keys {
		if !seen[k] {
			c.untrack(k)
		}
	}
	return nil
}

// unseen returns, sorted, the keys of changed (each with the revision of
// its latest change) whose change the index may lack: one told without
// its revision, or with a revision past the one tracked for its key. A
// change at the tracked revision or before is in the state tracked: the
// store's rollout revisions grow with every put and delete and are never
// issued twice.
func unseen(changed, tracked map[string]int64) []string {
	var keys []string
	for k, rev := range changed {
		if rev == 0 || rev > tracked[k] {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// track records a rollout's current state, stored at revision rev (0 when
// not known), in the index, the plan cache and the gauges, unless they
// hold a later revision of it already: a read that a commit overtook.
func (c *Controller) track(s rollout.State, rev int64) {
	c.trackMu.Lock()
	defer c.trackMu.Unlock()
	switch {
	case rev != 0 && rev < c.tracked[s.Key]:
		return
	case rev == 0:
		delete(c.tracked, s.Key)
	default:
		if c.tracked == nil {
			c.tracked = map[string]int64{}
		}
		c.tracked[s.Key] = rev
	}
	c.due.set(s.Key, c.scrapes.nextLook(s))
	c.noteNew(s)
	if s.Phase != rollout.Progressing {
		c.looks.drop(s.Key)
		c.scrapes.forget(s.Key)
	}
	c.opts.Metrics.observeStates([]rollout.State{s})
}

// untrack removes key's rollout, which a read found gone or unreadable,
// from the index and the plan cache, and forgets its revision, so that
// the notice of any later change of it is read.
func (c *Controller) untrack(key string) {
	c.trackMu.Lock()
	defer c.trackMu.Unlock()
	delete(c.tracked, key)
	delete(c.fresh, key)
	c.due.set(key, time.Time{})
	c.looks.drop(key)
	c.scrapes.forget(key)
}

// observe reads the counts of every due rollout, in reads of at most a
// chunk's weight (readParts), and judges each rollout past its warm-up; it
// returns the observations and how long the reads took. A query that
// failed is a provider error for every rollout it was asked for: a
// built-in query for its whole read, a
// custom metric's query for the rollouts whose plans name it, each of
// which holds and counts toward its onProviderError. A series that is
// missing or not finite (no traffic yet in a cohort) is not: the judge reads
// it as unreadable, which holds the rollout as inconclusive until
// maxStepDuration.
func (c *Controller) observe(ctx context.Context, reads *tickReads, due []rollout.State, flags map[string]flag.Flag, now time.Time) ([]rollout.Observation, []time.Time, time.Duration) {
	obs := make([]rollout.Observation, len(due))
	again := make([]time.Time, len(due))
	plans := make([]*plan.Prepared, len(due))
	var qs []cohort.FlagQuery
	for i, s := range due {
		f := flags[s.Key]
		p, err := c.looks.get(s)
		plans[i] = p
		switch {
		case err != nil:
			obs[i].Err = fmt.Errorf("plan of %s: %w", s.Key, err)
		case f.Treatment == "" || f.Treatment == f.Control:
			obs[i].Err = fmt.Errorf("flag %s: treatment %q and control %q must be two different variants", s.Key, f.Treatment, f.Control)
		default:
			q := flagQuery(s, f, p)
			if !q.SkipLatency {
				// A state that cannot be read fails the look in judge;
				// the read is then of every edge.
				if prev, err := c.looks.judgeState(s); err == nil {
					q.LatencyEdges = prev.LatencyEdges(p.Judge, semconv.DurationBuckets)
				}
			}
			qs = append(qs, q)
		}
	}
	if len(qs) == 0 {
		return obs, again, 0
	}
	start := time.Now()
	readings := make(map[string]cohort.Reading, len(qs))
	// readErr is why a rollout's counts could not be read: its whole
	// read failed, or a query for it. A part counts as one failed read
	// when a query for only some of its rollouts failed, too.
	readErr := map[string]error{}
	var failed error
	for _, part := range readParts(qs, c.chunk) {
		began := time.Now()
		err := reads.timedOut
		var rs map[string]cohort.Reading
		if err == nil {
			rctx, cancel := context.WithTimeout(ctx, c.readBudget(due))
			rs, err = c.opts.Reader.Read(rctx, now, part)
			cancel()
			if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
				reads.timedOut = err
			}
		}
		partFailed := err
		for _, q := range part {
			rd, ok := rs[q.Flag]
			switch {
			case err != nil:
				readErr[q.Flag] = err
			case ok:
				readings[q.Flag] = rd
				if rerr := readError(rd.Err); rerr != nil {
					readErr[q.Flag] = fmt.Errorf("read metrics of %s: %w", q.Flag, rerr)
					partFailed = cmp.Or(partFailed, readErr[q.Flag])
				}
			}
		}
		failed = cmp.Or(failed, partFailed)
		c.opts.Metrics.observeRead(rolloutmetrics.ReadLook, time.Since(began), len(part), partFailed)
	}
	took := time.Since(start)
	defer c.logRead(failed, now)
	for i, s := range due {
		if obs[i].Err != nil {
			continue
		}
		rd, ok := readings[s.Key]
		switch {
		case readErr[s.Key] != nil:
			obs[i].Err = readErr[s.Key]
			continue
		case !ok:
			obs[i].Err = fmt.Errorf("the metrics reader returned nothing for %s", s.Key)
			continue
		}
		cum := rd.Counts
		obs[i].Requests = judge.RequestCounts{
			Treatment: finiteOr(cum.Treatment.Requests, s.Cohorts.Total.Treatment),
			Control:   finiteOr(cum.Control.Requests, s.Cohorts.Total.Control),
		}
		if !s.Analyzing(now) {
			again[i] = c.scrapes.take(s, rd, now, false, c.opts.Tick)
			continue
		}
		v, next, raw, jerr := c.judge(s, plans[i], cum, now)
		if jerr != nil {
			obs[i].Err = jerr
			continue
		}
		if again[i] = c.scrapes.take(s, rd, now, v.Outcome != judge.Inconclusive, c.opts.Tick); !again[i].IsZero() {
			continue
		}
		c.looks.keepJudge(s, raw, next)
		obs[i].Verdict, obs[i].Judge = v, raw
	}
	return obs, again, took
}

// tickReads is what the chunks of one tick share of their reads: a read
// that ran out of its budget fails the later chunks' reads too, as one
// read of all of them would have, rather than each chunk waiting out the
// budget again.
type tickReads struct {
	timedOut error
}

// scrapes remembers, for each progressing rollout, what the reads of its
// looks showed of the metric source's scrapes.
type scrapes struct {
	mu sync.Mutex
	at map[string]scraped
}

// scraped is what the looks taken at one rollout showed of its scrapes.
type scraped struct {
	// latest is the latest sample the last look taken read.
	latest time.Time
	// every is how often the source scrapes the rollout's series, as its
	// reads have shown (cohort.Reading.Every); zero until known. It is
	// not taken from the gaps between the looks' latest samples: a look
	// a moment before a scrape is committed sees the one before, and two
	// such gaps read twice the interval (3 steps of 20,000 at 10,000
	// rollouts then waited a whole interval for a scrape already in).
	every time.Duration
}

// take records a look at s taken at now, on a read rd whose verdict is
// decisive or not, remembering rd's latest sample, and returns the zero
// time; or it sets the look aside and returns when it is taken again. A
// read that shows no sample newer than the last look's found the metric
// source not scraped since (a scrape slower than the look interval, or one
// committed late), and a deferred read (other rollouts were being caught
// up) read nothing: an inconclusive look on either would be recorded with
// nothing new and the next look would be an interval away, so it is set
// aside (see again), until its limit (see limit); then it is recorded as
// it is, so that a source that stopped still shows in the rollout's looks.
// A decisive verdict (a pass once the step's time is up, or a fail) is
// taken at once. Setting a look aside leaves the judge's state as it was,
// as if the look had not been taken, which its sequential test allows.
func (sc *scrapes) take(s rollout.State, rd cohort.Reading, now time.Time, decisive bool, tick time.Duration) time.Time {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	prev, seen := sc.at[s.Key]
	stale := rd.Deferred || (seen && !rd.Latest.IsZero() && !rd.Latest.After(prev.latest))
	if !decisive && stale && now.Before(prev.limit(s)) {
		return prev.again(s, rd, now, tick)
	}
	if sc.at == nil {
		sc.at = map[string]scraped{}
	}
	sc.at[s.Key] = scraped{latest: rd.Latest, every: cmp.Or(rd.Every, prev.every)}
	return time.Time{}
}

// again is when a look at s set aside at now, on read rd, is taken again.
// Where the reads have shown scrapes slower than the looks (see slower),
// that is when the next scrape is due (see notBefore), since reading
// before then would show nothing new: retrying at every tick read the
// store up to five times a look. Otherwise, or when that scrape is late or
// the read was deferred, the next tick: with scrapes as fast as the looks
// or faster, the spacing of the looks' samples is the looks', not the
// scrapes', and a missing scrape is a late one.
func (seen scraped) again(s rollout.State, rd cohort.Reading, now time.Time, tick time.Duration) time.Time {
	at := now.Add(tick)
	if rd.Deferred {
		return at
	}
	return seen.notBefore(s, now, at)
}

// nextLook is when the next look at s is due: at its interval
// (s.NextLook), or, where its reads have shown scrapes slower than the
// looks and the next scrape is due after that, at that scrape, since
// a read before it would show nothing new.
func (sc *scrapes) nextLook(s rollout.State) time.Time {
	due := s.NextLook()
	if due.IsZero() {
		return due
	}
	return sc.of(s.Key).notBefore(s, s.UpdatedAt, due)
}

// of returns what the looks taken at key's rollout showed.
func (sc *scrapes) of(key string) scraped {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return sc.at[key]
}

// notBefore returns t, or the time s's next scrape is due if the looks
// have shown scrapes slower than themselves and it is due after t.
//
// For a look last tried at tried, before a pass can first move the step
// on (rollout.State.PassFrom), a scrape due after that moment or less than
// half an interval before it is waited for only until that moment: a look
// then may pass on the counts already read, while one a moment before it
// cannot pass, and its commit, stamped after that moment, moves the step's
// next look an interval on. With 15 s scrapes and 10 s looks, the scale
// benchmark held 400 of its 2,000 steps more than an interval past their
// minimum before this rule; after it, 1 to 3 in four runs of six and
// about 100 in the others, which the judge's split check held
// (docs/benchmarks.md).
func (seen scraped) notBefore(s rollout.State, tried, t time.Time) time.Time {
	next := seen.latest.Add(seen.every)
	if !seen.slower(s) || !next.After(t) {
		return t
	}
	if from := s.PassFrom(); tried.Before(from) && next.After(from.Add(-s.Plan.Interval.Std()/2)) {
		if t.After(from) {
			return t
		}
		return from
	}
	return next
}

// slower reports whether the reads of the looks at s have shown scrapes
// slower than the looks: samples more than a tenth of an interval farther
// apart than the interval. Scrapes as often as the looks are stamped a few
// milliseconds off their interval on a busy machine, and such a drift
// takes hundreds of looks to leave one with nothing new.
func (seen scraped) slower(s rollout.State) bool {
	every := s.Plan.Interval.Std()
	return seen.every > every+every/10
}

// limit is how long a look at s may wait for a new scrape: half an interval
// past its due time, or past the next scrape where the reads have shown
// scrapes slower than the looks and that is later. A scrape slower than
// the looks leaves some looks nothing new for most of an interval; such a
// look then waits for the scrape rather than being recorded with nothing
// new a moment before it comes.
func (seen scraped) limit(s rollout.State) time.Time {
	half := s.Plan.Interval.Std() / 2
	limit := s.NextLook().Add(half)
	if scrape := seen.latest.Add(seen.every + half); seen.slower(s) && scrape.After(limit) {
		return scrape
	}
	return limit
}

// forget drops what is remembered of key's rollout.
func (sc *scrapes) forget(key string) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	delete(sc.at, key)
}

// flagQuery is what the Reader is asked for s's rollout of flag f under
// its prepared plan p.
func flagQuery(s rollout.State, f flag.Flag, p *plan.Prepared) cohort.FlagQuery {
	return cohort.FlagQuery{Flag: s.Key, Treatment: f.Treatment, Control: f.Control, Since: s.StartedAt, Custom: p.Custom,
		SkipLatency: !judgesLatency(p.Judge)}
}

// latencyReadWeight is what a rollout whose plan judges latency counts
// toward a read part, against 1 for one that does not: the latency
// histogram is 336 of a flag's 368 series a process, so its read is about
// ten times larger.
const latencyReadWeight = 10

// readWeight is what q counts toward a read part: 1 for the requests
// counter's 32 series a process, and for the latency histogram 16 series
// (two cohorts of eight unit buckets) a bound read.
func readWeight(q cohort.FlagQuery) int {
	switch {
	case q.SkipLatency:
		return 1
	case q.LatencyEdges == nil:
		return latencyReadWeight
	}
	return 1 + (len(q.LatencyEdges)+2)/2
}

// readParts splits a chunk's flag queries into reads of at most limit
// weight each, so that a read of rollouts that judge latency is no larger
// than one of a chunk that does not, and each stays within its budget: a
// thousand such rollouts in one read took 4 to 5 s from a busy Prometheus
// and ran out of the 5 s budget, failing every look of the chunk.
func readParts(qs []cohort.FlagQuery, limit int) [][]cohort.FlagQuery {
	var parts [][]cohort.FlagQuery
	lo, weight := 0, 0
	for i, q := range qs {
		w := readWeight(q)
		if weight+w > limit && i > lo {
			parts = append(parts, qs[lo:i])
			lo, weight = i, 0
		}
		weight += w
	}
	if lo < len(qs) {
		parts = append(parts, qs[lo:])
	}
	return parts
}

// judgesLatency reports whether a plan has a latency check, the only
// reader of the latency histogram.
func judgesLatency(c judge.Config) bool {
	return slices.ContainsFunc(c.Metrics, func(m judge.MetricConfig) bool { return m.Kind == judge.KindLatency })
}

// readBudget bounds one tick's read of the metric source, every query and
// retry included: 80% of the shortest interval among the due rollouts, and
// at most a third of the lease, so that a hung source fails the look (which
// counts toward onProviderError at once) instead of stalling the loop past
// its next looks and its lease.
func (c *Controller) readBudget(due []rollout.State) time.Duration {
	budget := c.opts.LeaseTTL / 3
	for _, s := range due {
		budget = min(budget, s.Plan.Interval.Std()*4/5)
	}
	return budget
}

// readLogEvery is how often a metric source that keeps failing is logged
// again after its first failure.
const readLogEvery = time.Minute

// logRead logs the first failed read of the metric source at once, then at
// most once every readLogEvery while it keeps failing, and its recovery.
func (c *Controller) logRead(err error, now time.Time) {
	switch {
	case err == nil && !c.readFailing.IsZero():
		c.log.Info("metric source reads again", "failing for", now.Sub(c.readFailing).Round(time.Second))
		c.readFailing = time.Time{}
	case err == nil:
	case c.readFailing.IsZero():
		c.readFailing, c.readLogged = now, now
		attrs := []any{"err", err}
		if qe := (*cohort.QueryError)(nil); errors.As(err, &qe) {
			attrs = append(attrs, "query", qe.Query) // the error shows its start only
		}
		c.log.Warn("metric source read failed; rollouts hold and count it toward onProviderError", attrs...)
	case now.Sub(c.readLogged) >= readLogEvery:
		c.readLogged = now
		c.log.Warn("metric source still failing", "since", c.readFailing, "err", err)
	}
}

// readError returns the parts of a flag's read error that are failures, not
// missing data: a query the provider refused (*cohort.QueryError) or one
// that could not be built for the flag. Nil when every part is
// cohort.ErrNoData, which only means no traffic yet.
func readError(err error) error {
	if err == nil {
		return nil
	}
	parts := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		parts = j.Unwrap()
	}
	var failed []error
	for _, e := range parts {
		if !errors.Is(e, cohort.ErrNoData) {
			failed = append(failed, e)
		}
	}
	return errors.Join(failed...)
}

// finiteOr returns v, or last when v could not be read.
func finiteOr(v, last float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return last
	}
	return v
}

// judge folds one tick's counts into the rollout's judge state, under the
// rollout's prepared plan p; it returns the verdict and the next state,
// decoded and as stored.
func (c *Controller) judge(s rollout.State, p *plan.Prepared, cum judge.FlagCounts, now time.Time) (*judge.Verdict, judge.State, json.RawMessage, error) {
	prev, err := c.looks.judgeState(s)
	if err != nil {
		return nil, judge.State{}, nil, err
	}
	cum.Flag = s.Key
	next, v, err := judge.Judge(p.Judge, prev, cum, s.StepProgress(now))
	if err != nil {
		return nil, judge.State{}, nil, fmt.Errorf("judge %s: %w", s.Key, err)
	}
	raw, err := json.Marshal(next)
	if err != nil {
		return nil, judge.State{}, nil, fmt.Errorf("judge state of %s: %w", s.Key, err)
	}
	c.opts.Metrics.observeVerdict(s.Key, v)
	return &v, next, raw, nil
}

// errLeaseLost reports a decision taken by a leader whose lease expired
// before it could store it: another replica may have taken the lease and
// decided on the same rollout, so only the lease's holder writes.
var errLeaseLost = errors.New("the rollout loop's lease is no longer held")

// commitBatch is how many of a tick's decisions share a transaction: one
// transaction a look would spend most of a look's commit on beginning,
// checking the lease and committing, while a batch too large holds the
// store's writers for long.
const commitBatch = 64

// decision is what the loop decides on one rollout, to be committed.
type decision struct {
	// s is the state decided on.
	s rollout.State
	// stored is the stored record s was decoded from, nil when not at
	// hand: while the store holds the same bytes, s has not changed,
	// and the commit need not decode the record again to know it.
	stored []byte
	// decide takes the decision at the time of the transaction.
	decide func(now time.Time) (rollout.State, []rollout.Action, error)
}

// commit stores the decisions, with their actions, commitBatch to a
// transaction fenced by the loop's lease (all are dropped when this
// replica no longer holds it; one whose rollout changed meanwhile is
// dropped alone), then sends their notifications. decide is given the
// time inside that transaction, so that a transition is stamped when it
// is committed, and the next look is due after the commit
// (State.NextLook), not after the start of a long tick. A batch that
// fails is committed again one decision to a transaction, so that one
// rollout's failure costs the others nothing.
func (c *Controller) commit(ctx context.Context, ds ...decision) error {
	var errs []error
	for lo := 0; lo < len(ds); lo += commitBatch {
		batch := ds[lo:min(lo+commitBatch, len(ds))]
		err := c.commitEach(ctx, batch)
		if errors.Is(err, errLeaseLost) {
			c.log.Warn("decisions dropped: this replica's lease on the rollout loop expired during the tick", "dropped", len(ds)-lo)
			break
		}
		if err != nil && (ctx.Err() != nil || store.Unavailable(err)) {
			// One at a time would fail alike, each taking its time.
			errs = append(errs, err)
			break
		}
		if err != nil && len(batch) > 1 {
			for _, d := range batch {
				if err := c.commitEach(ctx, []decision{d}); err != nil && !errors.Is(err, errLeaseLost) {
					errs = append(errs, err)
				}
			}
			continue
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// commitEach commits ds in one transaction.
func (c *Controller) commitEach(ctx context.Context, ds []decision) error {
	type committed struct {
		next rollout.State
		rev  int64
		acts []rollout.Action
	}
	var done []committed
	var key string
	err := c.opts.Store.Update(ctx, store.Actor{Name: rollout.ControllerActor}, func(tx store.Tx) error {
		done = done[:0]
		held, err := tx.HoldsLease(ctx, LeaseName, c.opts.Holder)
		if err != nil {
			return err
		}
		if !held {
			return errLeaseLost
		}
		for _, d := range ds {
			key = d.s.Key
			fresh, err := unchanged(ctx, tx, d)
			if err != nil {
				return err
			}
			if !fresh {
				c.log.Info("decision dropped: the rollout changed meanwhile", "flag", d.s.Key)
				continue
			}
			next, acts, err := d.decide(c.opts.Now())
			if err != nil {
				return err
			}
			rev, err := write(ctx, tx, next, acts)
			if err != nil {
				return err
			}
			done = append(done, committed{next, rev, acts})
			look, ok := rollout.NewLook(d.s, next)
			if !ok {
				continue
			}
			raw, err := json.Marshal(look)
			if err != nil {
				return fmt.Errorf("encode a look at %s: %w", d.s.Key, err)
			}
			if err := tx.AppendRolloutLook(ctx, d.s.Key, look.At, raw, c.opts.MaxLooks); err != nil {
				return err
			}
		}
		return nil
	})
	switch {
	case errors.Is(err, errLeaseLost):
		return err
	case err != nil && len(ds) == 1:
		return fmt.Errorf("store rollout %s: %w", key, err)
	case err != nil:
		return fmt.Errorf("store %d rollouts (at %s): %w", len(ds), key, err)
	}
	for _, d := range done {
		c.after(d.next, d.rev, d.acts)
	}
	return nil
}

// unchanged reports whether the rollout d decided on is stored as it was
// read: the same bytes, or failing that the same revision.
func unchanged(ctx context.Context, tx store.Tx, d decision) (bool, error) {
	r, err := tx.Rollout(ctx, d.s.Key)
	if err == nil && d.stored != nil && bytes.Equal(r.State, d.stored) {
		return true, nil
	}
	cur, err := stateOf(d.s.Key, r, err)
	if err != nil {
		return false, err
	}
	return cur.Revision == d.s.Revision, nil
}

// abandonment is the decision to abort the rollout of a flag that was
// deleted: there is no percentage left to set, only the record to close.
func abandonment(s rollout.State) decision {
	return decision{s: s, decide: func(now time.Time) (rollout.State, []rollout.Action, error) {
		next, acts, err := rollout.Apply(s, rollout.Command{Kind: rollout.Abort, Actor: rollout.ControllerActor, Reason: "the flag was deleted"}, now)
		if err != nil {
			return rollout.State{}, nil, err
		}
		kept := acts[:0:0]
		for _, a := range acts {
			switch a.(type) {
			case rollout.SetPercent, rollout.SetTracked:
			default:
				kept = append(kept, a)
			}
		}
		return next, kept, nil
	}}
}

// after reports committed actions to the metrics and the webhooks, and
// tracks the state committed, stored at revision rev, so that the notice
// of the commit is not read back.
func (c *Controller) after(s rollout.State, rev int64, acts []rollout.Action) {
	for _, a := range acts {
		if n, ok := a.(rollout.Notify); ok {
			c.opts.Metrics.observeTransition(n.Key, n.Transition)
			c.log.Info("rollout transition", "flag", n.Key, "from", n.Transition.From, "to", n.Transition.To,
				"percent", n.Transition.Percent, "reason", n.Transition.Reason)
			if c.opts.Notifier != nil {
				c.opts.Notifier.Notify(notify.NewEvent(n.Key, n.Transition))
			}
		}
	}
	c.track(s, rev)
}

// write stores the state and carries out its actions inside tx, and
// returns the revision the stored record took. The state is stored
// without its history, the transitions of acts (those Notify carries)
// being appended to the rollout's history apart, and without the judge's
// state, which the record keeps beside it (store.Rollout.Judge).
func write(ctx context.Context, tx store.Tx, s rollout.State, acts []rollout.Action) (int64, error) {
	var f *flag.Flag
	loadFlag := func() error {
		if f != nil {
			return nil
		}
		got, err := tx.Flag(ctx, s.Key)
		if err != nil {
			return fmt.Errorf("flag %s: %w", s.Key, err)
		}
		f = &got
		return nil
	}
	flagChanged := false
	var entries []json.RawMessage
	for _, a := range acts {
		switch a := a.(type) {
		case rollout.Notify:
			e, err := json.Marshal(a.Transition)
			if err != nil {
				return 0, fmt.Errorf("encode a transition of %s: %w", s.Key, err)
			}
			entries = append(entries, e)
		case rollout.SetPercent:
			if err := loadFlag(); err != nil {
				return 0, err
			}
			// A flag already at the percentage keeps its version, so that
			// the SDKs are not sent a change that changes nothing.
			if f.Rollout == nil && a.Percent != 0 {
				f.Rollout = &flag.Rollout{}
			}
			if f.Rollout != nil && f.Rollout.Percent != a.Percent {
				f.Rollout.Percent = a.Percent
				flagChanged = true
			}
		case rollout.SetTracked:
			if err := loadFlag(); err != nil {
				return 0, err
			}
			if f.Tracked != a.Tracked {
				f.Tracked = a.Tracked
				flagChanged = true
			}
		case rollout.Audit:
			if err := tx.AppendAudit(ctx, store.AuditEntry{Actor: a.Actor, Action: "rollout", Flag: s.Key, Message: a.Message}); err != nil {
				return 0, fmt.Errorf("audit: %w", err)
			}
		}
	}
	if flagChanged {
		if _, err := tx.PutFlag(ctx, *f); err != nil {
			return 0, fmt.Errorf("update flag %s: %w", s.Key, err)
		}
	}
	judgeState := s.Judge
	s.History, s.Judge = nil, nil
	raw, err := json.Marshal(s)
	if err != nil {
		return 0, fmt.Errorf("encode rollout %s: %w", s.Key, err)
	}
	rev, err := tx.PutRollout(ctx, store.Rollout{Key: s.Key, State: raw, Judge: judgeState, DueAt: s.NextLook()})
	if err != nil {
		return 0, err
	}
	return rev, tx.AppendRolloutHistory(ctx, s.Key, entries...)
}

// readState reads a flag's rollout inside tx; a flag never rolled out is
// pending.
func readState(ctx context.Context, tx store.Tx, key string) (rollout.State, error) {
	r, err := tx.Rollout(ctx, key)
	return stateOf(key, r, err)
}

// stateOf is the state a read of key's rollout record (r, err) gives.
func stateOf(key string, r store.Rollout, err error) (rollout.State, error) {
	if errors.Is(err, store.ErrNotFound) {
		return rollout.New(key), nil
	}
	if err != nil {
		return rollout.State{}, fmt.Errorf("read rollout %s: %w", key, err)
	}
	return decode(r)
}

// pendingState is the rollout of a flag never rolled out: pending, at the
// percentage its definition gives it, which is what its SDKs serve.
func pendingState(f flag.Flag) rollout.State {
	s := rollout.New(f.Key)
	if f.Rollout != nil {
		s.Percent = f.Rollout.Percent
	}
	return s
}

// decode reads a stored rollout record: its state, with the judge's state
// kept beside it (or, in a record stored before that, in it).
func decode(r store.Rollout) (rollout.State, error) {
	s, err := rollout.DecodeState(r.Key, r.State)
	if err == nil && len(r.Judge) > 0 {
		s.Judge = r.Judge
	}
	return s, err
}

// withHistory returns s with the history stored for it.
func (c *Controller) withHistory(ctx context.Context, s rollout.State) (rollout.State, error) {
	hs, err := c.opts.Store.RolloutHistory(ctx, []string{s.Key})
	if err != nil {
		return rollout.State{}, err
	}
	s.History, err = rollout.DecodeHistory(s.Key, hs[s.Key])
	return s, err
}

// states reads every stored rollout, and the revision of each that has
// one.
func (c *Controller) states(ctx context.Context) ([]rollout.State, map[string]int64, error) {
	rs, err := c.opts.Store.Rollouts(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("list rollouts: %w", err)
	}
	out := make([]rollout.State, 0, len(rs))
	revs := make(map[string]int64, len(rs))
	for _, r := range rs {
		s, err := decode(r)
		if err != nil {
			c.log.Error("skipping unreadable rollout", "err", err)
			continue
		}
		out = append(out, s)
		if r.Revision != 0 {
			revs[r.Key] = r.Revision
		}
	}
	return out, revs, nil
}

// Rollout returns one flag's rollout with its history: pending if it was
// never started, or store.ErrNotFound if the flag does not exist.
func (c *Controller) Rollout(ctx context.Context, key string) (rollout.State, error) {
	r, err := c.opts.Store.Rollout(ctx, key)
	if err == nil {
		s, err := decode(r)
		if err != nil {
			return rollout.State{}, err
		}
		return c.withHistory(ctx, s)
	}
	if !errors.Is(err, store.ErrNotFound) {
		return rollout.State{}, fmt.Errorf("read rollout %s: %w", key, err)
	}
	f, err := c.opts.Store.Flag(ctx, key)
	if err != nil {
		return rollout.State{}, fmt.Errorf("flag %s: %w", key, err)
	}
	return pendingState(f), nil
}

// FlagError says the flag cannot be rolled out as it is; the API answers
// 409 Conflict.
type FlagError struct {
	Key    string
	Reason string
}

// Error describes the problem in one line.
func (e *FlagError) Error() string {
	return fmt.Sprintf("cannot start rollout %s: %s", e.Key, e.Reason)
}

// Command carries out a person's command in one transaction and returns the
// new state. Errors: store.ErrNotFound (wrapped) for an unknown flag,
// *rollout.RefusedError for a command the rollout's phase does not allow,
// *flag.FieldError values (joined) for a bad plan, *FlagError for a flag that cannot be
// rolled out.
func (c *Controller) Command(ctx context.Context, key string, cmd rollout.Command) (rollout.State, error) {
	return c.apply(ctx, key, cmd, store.Actor{Name: cmd.Actor, Message: cmd.Reason})
}

func (c *Controller) apply(ctx context.Context, key string, cmd rollout.Command, actor store.Actor) (rollout.State, error) {
	var next rollout.State
	var acts []rollout.Action
	var rev int64
	err := c.opts.Store.Update(ctx, actor, func(tx store.Tx) error {
		f, err := tx.Flag(ctx, key)
		if err != nil {
			return fmt.Errorf("flag %s: %w", key, err)
		}
		cur, err := readState(ctx, tx, key)
		if err != nil {
			return err
		}
		if cur.Phase == rollout.Pending {
			cur = pendingState(f)
		}
		if cmd.Kind == rollout.Start {
			if err := startable(f); err != nil {
				return err
			}
			if cmd.FlagPlan, err = plan.OfFlag(f); err != nil {
				return err
			}
		}
		next, acts, err = rollout.Apply(cur, cmd, c.opts.Now())
		if err != nil {
			return err
		}
		rev, err = write(ctx, tx, next, acts)
		return err
	})
	if err != nil {
		return rollout.State{}, err
	}
	c.after(next, rev, acts)
	// The command is stored; a history that cannot be read now is the
	// only thing missing from the answer.
	full, err := c.withHistory(ctx, next)
	if err != nil {
		c.log.Warn("read the history of a rollout after a command", "flag", key, "err", err)
		return next, nil
	}
	return full, nil
}

// startable checks that a flag can be rolled out: a rollout ramps its
// treatment variant, and only an enabled flag serves it.
func startable(f flag.Flag) error {
	switch {
	case f.Treatment == "":
		return &FlagError{Key: f.Key, Reason: "the flag has no treatment variant to roll out; set \"treatment\""}
	case f.Treatment == f.Control:
		return &FlagError{Key: f.Key, Reason: fmt.Sprintf("treatment and control are the same variant %q", f.Control)}
	case !f.Enabled:
		return &FlagError{Key: f.Key, Reason: "the flag is disabled, so every unit gets control; enable it first"}
	}
	return nil
}

// lookCache keeps what the looks at a progressing rollout derive from its
// stored state and would otherwise derive again at every look: its
// prepared plan, made once per rollout (a rollout's plan never changes
// after its start), and its judge state as the last look here stored it,
// decoded. A latency-judged rollout's judge state is thousands of numbers;
// decoding it at every look was 9% of the controller's CPU at 1,000 such
// rollouts.
type lookCache struct {
	mu sync.Mutex
	m  map[string]cachedLook
}

type cachedLook struct {
	startedAt time.Time
	prepared  *plan.Prepared
	// judge is the judge state whose JSON has the xxHash judgeSum, when
	// hasJudge: the one a look stored. The hash stands for the bytes,
	// which would double what the cache holds.
	judge    judge.State
	judgeSum uint64
	hasJudge bool
}

// get returns the prepared plan of s's rollout.
func (c *lookCache) get(s rollout.State) (*plan.Prepared, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[s.Key]; ok && e.startedAt.Equal(s.StartedAt) {
		return e.prepared, nil
	}
	p, err := plan.Prepare(s.Plan)
	if err != nil {
		return nil, err
	}
	if c.m == nil {
		c.m = make(map[string]cachedLook)
	}
	c.m[s.Key] = cachedLook{startedAt: s.StartedAt, prepared: p}
	return p, nil
}

// judgeState returns s's judge state: the one kept when s carries the
// bytes it was stored as, else decoded. The state kept is shared: Judge
// never changes its input.
func (c *lookCache) judgeState(s rollout.State) (judge.State, error) {
	var st judge.State
	if len(s.Judge) == 0 {
		return st, nil
	}
	sum := xxhash.Sum64(s.Judge)
	c.mu.Lock()
	e, ok := c.m[s.Key]
	c.mu.Unlock()
	if ok && e.hasJudge && e.judgeSum == sum && e.startedAt.Equal(s.StartedAt) {
		return e.judge, nil
	}
	if err := json.Unmarshal(s.Judge, &st); err != nil {
		return judge.State{}, fmt.Errorf("judge state of %s: %w", s.Key, err)
	}
	return st, nil
}

// keepJudge keeps st, stored as raw, as the judge state of s's rollout.
func (c *lookCache) keepJudge(s rollout.State, raw []byte, st judge.State) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[s.Key]; ok && e.startedAt.Equal(s.StartedAt) {
		e.judge, e.judgeSum, e.hasJudge = st, xxhash.Sum64(raw), true
		c.m[s.Key] = e
	}
}

// drop forgets key's rollout.
func (c *lookCache) drop(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, key)
}

// keep forgets the rollouts that are no longer progressing.
func (c *lookCache) keep(states []rollout.State) {
	c.mu.Lock()
	defer c.mu.Unlock()
	live := make(map[string]bool, len(states))
	for _, s := range states {
		if s.Phase == rollout.Progressing {
			live[s.Key] = true
		}
	}
	for k := range c.m {
		if !live[k] {
			delete(c.m, k)
		}
	}
}

// dueIndex holds when each progressing rollout is next due: only those, so
// that the rollouts that finished cost a tick nothing.
type dueIndex struct {
	mu sync.Mutex
	at map[string]time.Time
}

// set records when key's rollout is next due; zero removes it.
func (d *dueIndex) set(key string, at time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if at.IsZero() {
		delete(d.at, key)
		return
	}
	if d.at == nil {
		d.at = map[string]time.Time{}
	}
	d.at[key] = at
}

// reset replaces the index with dues.
func (d *dueIndex) reset(dues map[string]time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.at = dues
}

// upTo returns the keys due at or before t, sorted.
func (d *dueIndex) upTo(t time.Time) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var keys []string
	for k, at := range d.at {
		if !at.After(t) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}
