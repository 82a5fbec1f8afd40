package console

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/vigil-dev/vigil/analysis/judge"
	"github.com/vigil-dev/vigil/controller/rollout"
	"github.com/vigil-dev/vigil/controller/server"
	"github.com/vigil-dev/vigil/controller/store"
)

// Look is the judge's verdict at one look at a rollout, with the rollout's
// place when it was given.
type Look struct {
	At        time.Time     `json:"at"`
	State     rollout.Phase `json:"state"`
	Percent   float64       `json:"percent"`
	Step      int           `json:"step"`
	Outcome   judge.Outcome `json:"outcome"`
	Summary   string        `json:"summary"`
	EValue    float64       `json:"eValue"`
	Threshold float64       `json:"threshold"`
	// Checks are the judge's verdicts per check, as in the rollout's
	// verdict detail.
	Checks      []judge.CheckVerdict `json:"checks"`
	SampleRatio *judge.SampleRatio   `json:"sampleRatio,omitempty"`
}

// Looks is the body of GET /api/v1/console/rollouts/{key}/looks.
type Looks struct {
	Key string `json:"key"`
	// Looks are oldest first, since the rollout's current start.
	Looks []Look `json:"looks"`
}

// recorder keeps the looks of every rollout in memory. A rollout's state
// holds only the latest verdict (and the one behind each transition), so
// the recorder reads the states at every Sample and keeps each new
// verdict. A replica that starts late has only the transitions' verdicts
// from before it started.
type recorder struct {
	store store.Store
	log   *slog.Logger
	max   int

	mu    sync.Mutex
	looks map[string][]Look
}

func newRecorder(st store.Store, log *slog.Logger, max int) *recorder {
	return &recorder{store: st, log: log, max: max, looks: map[string][]Look{}}
}

// run reads the rollouts every interval until ctx ends.
func (r *recorder) run(ctx context.Context, every time.Duration) error {
	t := time.NewTicker(every)
	defer t.Stop()
	failing := false
	for {
		// Once per outage, not once a second.
		switch err := r.sample(ctx); {
		case err != nil && ctx.Err() == nil && !failing:
			r.log.Warn("console: cannot read the rollouts; the charts miss the looks until it can", "err", err)
			failing = true
		case err == nil && failing:
			r.log.Info("console: reading the rollouts again")
			failing = false
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// sample reads every rollout once and keeps the verdicts it has not seen.
func (r *recorder) sample(ctx context.Context) error {
	rs, err := r.store.Rollouts(ctx)
	if err != nil {
		return err
	}
	states := make([]rollout.State, 0, len(rs))
	var first []string
	r.mu.Lock()
	for _, rec := range rs {
		s, err := rollout.DecodeState(rec.Key, rec.State)
		if err != nil {
			continue
		}
		states = append(states, s)
		if _, known := r.looks[s.Key]; !known {
			first = append(first, s.Key)
		}
	}
	r.mu.Unlock()
	// The verdicts behind the transitions of the rollouts first seen: the
	// history is stored apart from the states, and read only for them.
	var hs map[string][]json.RawMessage
	if len(first) > 0 {
		if hs, err = r.store.RolloutHistory(ctx, first); err != nil {
			return err
		}
	}
	seen := make(map[string]bool, len(states))
	for _, s := range states {
		seen[s.Key] = true
		if s.History, err = rollout.DecodeHistory(s.Key, hs[s.Key]); err != nil {
			r.log.Warn("console: unreadable rollout history", "key", s.Key, "err", err)
		}
		r.record(s)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for k := range r.looks {
		if !seen[k] {
			delete(r.looks, k)
		}
	}
	return nil
}

// record adds s's verdicts that are newer than the last look kept: on the
// first sight of a rollout, those behind its transitions too.
func (r *recorder) record(s rollout.State) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ls, known := r.looks[s.Key]
	var fresh []Look
	if !known {
		for _, t := range s.History {
			if t.Evidence != nil {
				fresh = append(fresh, lookOf(*t.Evidence, t.From, t.Percent, t.Step))
			}
		}
	}
	if s.Verdict != nil {
		fresh = append(fresh, lookOf(*s.Verdict, s.Phase, s.Percent, s.Step))
	}
	slices.SortStableFunc(fresh, func(a, b Look) int { return a.At.Compare(b.At) })
	for _, l := range fresh {
		if n := len(ls); n > 0 && !l.At.After(ls[n-1].At) {
			continue
		}
		ls = append(ls, l)
	}
	if len(ls) > r.max {
		ls = slices.Clone(ls[len(ls)-r.max:])
	}
	r.looks[s.Key] = ls
}

// lookOf is verdict v given at the rollout's place in phase p.
func lookOf(v rollout.Verdict, p rollout.Phase, percent float64, step int) Look {
	l := Look{At: v.At, State: p, Percent: percent, Step: step, Outcome: v.Outcome, Summary: v.Summary}
	if d := v.Detail; d != nil {
		l.EValue, l.Threshold, l.Checks, l.SampleRatio = d.EValue, d.Threshold, d.Checks, d.SampleRatio
	}
	return l
}

// serve answers the looks at one rollout since its current start.
func (r *recorder) serve(c *gin.Context) {
	key := c.Param("key")
	var since time.Time
	rec, err := r.store.Rollout(c.Request.Context(), key)
	switch {
	case err == nil:
		s, err := rollout.DecodeState(key, rec.State)
		if err != nil {
			server.Fail(c, http.StatusInternalServerError, "internal error; see the controller's log", "")
			r.log.Error("console: unreadable rollout", "key", key, "err", err)
			return
		}
		since = s.StartedAt
	case store.Unavailable(err):
		server.FailUnavailable(c, "the store is unavailable; retry")
		return
	default:
		// No rollout yet: no looks, whether or not the flag exists.
		c.JSON(http.StatusOK, Looks{Key: key, Looks: []Look{}})
		return
	}
	r.mu.Lock()
	out := []Look{}
	for _, l := range r.looks[key] {
		if !l.At.Before(since) {
			out = append(out, l)
		}
	}
	r.mu.Unlock()
	c.Header("Cache-Control", "no-cache")
	c.JSON(http.StatusOK, Looks{Key: key, Looks: out})
}
