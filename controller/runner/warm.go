package runner

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/vigil-dev/vigil/analysis/cohort"
	"github.com/vigil-dev/vigil/controller/rollout"
	"github.com/vigil-dev/vigil/controller/rolloutmetrics"
)

// Warmer is a Reader that can catch up rollouts before their first look
// (*cohort.Reader can): their first read otherwise reaches back five
// minutes before the start for every series, which for a thousand rollouts
// started together is more than a tick's read budget, so their first looks
// would be deferred, and a look deferred is one the judge lacks.
type Warmer interface {
	Warm(ctx context.Context, now time.Time, flags []cohort.FlagQuery) ([]string, error)
}

// newRollout is a progressing rollout the judge has not looked at yet.
type newRollout struct {
	s rollout.State
	// warmed is set once the Reader follows it.
	warmed bool
}

// noteNew keeps the rollouts not judged yet for warm, forgetting each once
// judged or no longer progressing. c.trackMu is held.
func (c *Controller) noteNew(s rollout.State) {
	if s.Phase != rollout.Progressing || len(s.Judge) > 0 {
		delete(c.fresh, s.Key)
		return
	}
	if c.fresh == nil {
		c.fresh = map[string]newRollout{}
	}
	prev, ok := c.fresh[s.Key]
	c.fresh[s.Key] = newRollout{s: s, warmed: ok && prev.warmed && prev.s.StartedAt.Equal(s.StartedAt)}
}

// warm has the Reader catch up the rollouts not judged yet, those whose
// next look comes first, up to a chunk of them a tick; the Reader takes as
// many as its catch-up budget allows and the others wait for the next tick.
// A failure only leaves the look to catch up as it would have.
func (c *Controller) warm(ctx context.Context, now time.Time) {
	w, ok := c.opts.Reader.(Warmer)
	if !ok {
		return
	}
	c.trackMu.Lock()
	var todo []rollout.State
	for _, r := range c.fresh {
		if !r.warmed && r.s.StartedAt.Before(now.Add(-time.Millisecond)) {
			todo = append(todo, r.s)
		}
	}
	c.trackMu.Unlock()
	if len(todo) == 0 {
		return
	}
	slices.SortFunc(todo, func(a, b rollout.State) int {
		return cmp.Or(a.NextLook().Compare(b.NextLook()), cmp.Compare(a.Key, b.Key))
	})
	todo = todo[:min(len(todo), c.chunk)]
	flags, err := c.flagsOf(ctx, todo)
	if err != nil {
		c.log.Debug("warm: read flags", "err", err)
		return
	}
	var qs []cohort.FlagQuery
	for _, s := range todo {
		f, ok := flags[s.Key]
		if !ok {
			continue // deleted: its look will abandon it
		}
		p, err := c.looks.get(s)
		if err != nil || f.Treatment == "" || f.Treatment == f.Control {
			continue // its look will say why
		}
		qs = append(qs, flagQuery(s, f, p))
	}
	if len(qs) == 0 {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, c.readBudget(todo))
	began := time.Now()
	followed, err := w.Warm(rctx, now, qs)
	cancel()
	c.opts.Metrics.observeRead(rolloutmetrics.ReadCatchUp, time.Since(began), len(qs), err)
	if err != nil {
		c.log.Debug("warm: read", "err", err)
	}
	c.trackMu.Lock()
	defer c.trackMu.Unlock()
	for _, k := range followed {
		if r, ok := c.fresh[k]; ok {
			r.warmed = true
			c.fresh[k] = r
		}
	}
}
