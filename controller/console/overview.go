package console

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/vigil-dev/vigil/analysis/judge"
	"github.com/vigil-dev/vigil/controller/rollout"
	"github.com/vigil-dev/vigil/controller/server"
	"github.com/vigil-dev/vigil/controller/store"
	"github.com/vigil-dev/vigil/sdk/flag"
)

// Overview is the body of GET /api/v1/console/overview: every flag with
// its rollout in brief.
type Overview struct {
	Flags []Row `json:"flags"`
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

// overview answers GET /api/v1/console/overview with an ETag of its body,
// so that a page polling it is answered 304 while nothing changed.
func overview(h *server.Host) gin.HandlerFunc {
	return func(c *gin.Context) {
		ctx := c.Request.Context()
		snap, err := h.Store.Snapshot(ctx)
		if err == nil {
			var rs []store.Rollout
			rs, err = h.Store.Rollouts(ctx)
			if err == nil {
				body, tag, err := encodeOverview(buildOverview(snap.Flags, rs, h))
				if err != nil {
					h.Logger.Error("console overview", "err", err)
					server.Fail(c, http.StatusInternalServerError, "internal error; see the controller's log", "")
					return
				}
				c.Header("ETag", tag)
				c.Header("Cache-Control", "no-cache")
				if server.MatchesETag(c.GetHeader("If-None-Match"), tag) {
					c.Status(http.StatusNotModified)
					return
				}
				c.Data(http.StatusOK, "application/json", body)
				return
			}
		}
		if store.Unavailable(err) {
			server.FailUnavailable(c, "the store is unavailable; retry")
			return
		}
		h.Logger.Error("console overview", "err", err)
		server.Fail(c, http.StatusInternalServerError, "internal error; see the controller's log", "")
	}
}

func encodeOverview(o Overview) ([]byte, string, error) {
	body, err := json.Marshal(o)
	if err != nil {
		return nil, "", err
	}
	sum := sha256.Sum256(body)
	return body, `"` + hex.EncodeToString(sum[:12]) + `"`, nil
}

// buildOverview joins the flags with their rollouts: a flag without a
// rollout record is pending at its own percent. A record that cannot be
// read is logged and shown as its flag's pending state.
func buildOverview(flags []flag.Flag, rs []store.Rollout, h *server.Host) Overview {
	states := make(map[string]rollout.State, len(rs))
	for _, r := range rs {
		s, err := rollout.DecodeState(r.Key, r.State)
		if err != nil {
			h.Logger.Error("console: skipping unreadable rollout", "err", err)
			continue
		}
		states[r.Key] = s
	}
	o := Overview{Flags: make([]Row, 0, len(flags))}
	for _, f := range flags {
		s, ok := states[f.Key]
		if !ok {
			s = rollout.New(f.Key)
			if f.Rollout != nil {
				s.Percent = f.Rollout.Percent
			}
		}
		row := rowOf(s)
		row.Description = f.Description
		o.Flags = append(o.Flags, row)
	}
	slices.SortFunc(o.Flags, func(a, b Row) int { return strings.Compare(a.Key, b.Key) })
	return o
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
