package console

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/vigil-dev/vigil/analysis/judge"
	"github.com/vigil-dev/vigil/controller/rollout"
	"github.com/vigil-dev/vigil/controller/runner"
	"github.com/vigil-dev/vigil/controller/server"
	"github.com/vigil-dev/vigil/controller/store"
	"github.com/vigil-dev/vigil/sdk/flag"
)

// Overview is the body of GET /api/v1/console/overview: one page of the
// flags, by key, each with its rollout in brief.
type Overview struct {
	Flags []Row `json:"flags"`
	// Continue, when set, is what the continue parameter of the request
	// for the next page carries, as in GET /api/v1/rollouts. The last page
	// has none; a page may hold fewer flags than the limit, even none, and
	// still have one.
	Continue string `json:"continue,omitempty"`
}

// Row is one flag of the overview.
type Row struct {
	Key         string        `json:"key"`
	Description string        `json:"description,omitempty"`
	State       rollout.Phase `json:"state"`
	Percent     float64       `json:"percent"`
	// Step indexes the plan's steps (-1 before the first start); Steps is
	// how many there are.
	Step  int `json:"step"`
	Steps int `json:"steps"`
	// Outcome is the judge's latest verdict, "" when there is none.
	Outcome judge.Outcome `json:"outcome,omitempty"`
	// Checks are the latest verdict's checks in brief.
	Checks []CheckBrief `json:"checks,omitempty"`
	// SplitMismatch reports that the traffic split test found the
	// treatment's share other than the flag asks.
	SplitMismatch bool      `json:"splitMismatch,omitempty"`
	StepStartedAt time.Time `json:"stepStartedAt,omitzero"`
	// NextLookAt is when the judge is next due, while the rollout
	// progresses.
	NextLookAt   time.Time `json:"nextLookAt,omitzero"`
	PausedReason string    `json:"pausedReason,omitempty"`
	AwaitingGate *float64  `json:"awaitingGate,omitempty"`
}

// CheckBrief is one check's name and outcome.
type CheckBrief struct {
	Check   string        `json:"check"`
	Outcome judge.Outcome `json:"outcome"`
}

// overview answers GET /api/v1/console/overview with one page of flags,
// paged and filtered by state as GET /api/v1/rollouts is (limit, state,
// continue), and by find, with an ETag of its body, so that a page polling
// it is answered 304 while nothing on the page changed. It reads only the
// page's flags and their rollouts, never the whole store.
func overview(h *server.Host) gin.HandlerFunc {
	return func(c *gin.Context) {
		q, bad := runner.ParsePageQuery(c, true)
		if bad != nil {
			server.Fail(c, http.StatusBadRequest, bad.Msg, bad.Name)
			return
		}
		o, err := readOverview(c.Request.Context(), h, q)
		if err != nil {
			if store.Unavailable(err) {
				server.FailUnavailable(c, "the store is unavailable; retry")
				return
			}
			h.Logger.Error("console overview", "err", err)
			server.Fail(c, http.StatusInternalServerError, "internal error; see the controller's log", "")
			return
		}
		body, err := json.Marshal(o)
		if err != nil {
			h.Logger.Error("console overview", "err", err)
			server.Fail(c, http.StatusInternalServerError, "internal error; see the controller's log", "")
			return
		}
		sum := sha256.Sum256(body)
		tag := `"` + hex.EncodeToString(sum[:12]) + `"`
		c.Header("ETag", tag)
		c.Header("Cache-Control", "no-cache")
		if server.MatchesETag(c.GetHeader("If-None-Match"), tag) {
			c.Status(http.StatusNotModified)
			return
		}
		c.Data(http.StatusOK, "application/json", body)
	}
}

// joined is a flag with its rollout record, nil when it has none.
type joined struct {
	flag flag.Flag
	rec  *store.Rollout
}

// readOverview reads the page q asks for: the store's flags a page at a
// time, each page's rollout records by their keys, through
// runner.ScanPage, which bounds what one request reads.
func readOverview(ctx context.Context, h *server.Host, q runner.PageQuery) (Overview, error) {
	read := func(after string, n int) ([]joined, error) {
		fs, err := h.Store.FlagsPage(ctx, after, n)
		if err != nil {
			return nil, fmt.Errorf("console overview: %w", err)
		}
		keys := make([]string, len(fs))
		for i, f := range fs {
			keys[i] = f.Key
		}
		rs, err := h.Store.RolloutsOf(ctx, keys)
		if err != nil {
			return nil, fmt.Errorf("console overview: %w", err)
		}
		recs := make(map[string]*store.Rollout, len(rs))
		for i := range rs {
			recs[rs[i].Key] = &rs[i]
		}
		out := make([]joined, len(fs))
		for i, f := range fs {
			out[i] = joined{flag: f, rec: recs[f.Key]}
		}
		return out, nil
	}
	find := strings.ToLower(q.Find)
	rows, next, err := runner.ScanPage(q, read, func(j joined) string { return j.flag.Key }, func(j joined) (Row, bool) {
		if find != "" && !strings.Contains(strings.ToLower(j.flag.Key), find) && !strings.Contains(strings.ToLower(j.flag.Description), find) {
			return Row{}, false
		}
		row := rowOf(stateOf(j, h))
		row.Description = j.flag.Description
		return row, q.Wants(row.State)
	})
	if err != nil {
		return Overview{}, err
	}
	if rows == nil {
		rows = []Row{}
	}
	return Overview{Flags: rows, Continue: next}, nil
}

// stateOf is the rollout state of a flag: its record's, or, for a flag
// without one, pending at the flag's own percent. A record that cannot be
// read is logged and shown as its flag's pending state.
func stateOf(j joined, h *server.Host) rollout.State {
	if j.rec != nil {
		s, err := rollout.DecodeState(j.rec.Key, j.rec.State)
		if err == nil {
			return s
		}
		h.Logger.Error("console: skipping unreadable rollout", "err", err)
	}
	s := rollout.New(j.flag.Key)
	if j.flag.Rollout != nil {
		s.Percent = j.flag.Rollout.Percent
	}
	return s
}

// rowOf is a rollout state in brief.
func rowOf(s rollout.State) Row {
	r := Row{Key: s.Key, State: s.Phase, Percent: s.Percent, Step: s.Step, Steps: len(s.Plan.Steps),
		StepStartedAt: s.StepStartedAt, PausedReason: s.PausedReason, AwaitingGate: s.AwaitingGate}
	if v := s.Verdict; v != nil {
		r.Outcome = v.Outcome
		if v.Detail != nil {
			for _, c := range v.Detail.Checks {
				r.Checks = append(r.Checks, CheckBrief{Check: c.Check, Outcome: c.Outcome})
			}
			r.SplitMismatch = v.Detail.SampleRatio != nil && v.Detail.SampleRatio.Mismatch
		} else {
			for _, m := range v.Metrics {
				r.Checks = append(r.Checks, CheckBrief{Check: m.Name, Outcome: m.Outcome})
			}
		}
	}
	if s.Phase == rollout.Progressing && s.Plan.Interval > 0 {
		next := s.AnalysisStartsAt
		if s.Verdict != nil && s.Verdict.At.Add(s.Plan.Interval.Std()).After(next) {
			next = s.Verdict.At.Add(s.Plan.Interval.Std())
		}
		r.NextLookAt = next
	}
	return r
}
