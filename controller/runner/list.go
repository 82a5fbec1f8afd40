package runner

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/vigil-dev/vigil/analysis/judge"
	"github.com/vigil-dev/vigil/controller/rollout"
	"github.com/vigil-dev/vigil/controller/server"
)

// The limits of GET /api/v1/rollouts.
const (
	// DefaultListLimit is how many rollouts a page holds when the request
	// gives no limit.
	DefaultListLimit = 100
	// MaxListLimit is the largest limit a request may give.
	MaxListLimit = 1000
	// listScanBudget bounds the records one request reads while a state
	// filter skips most of them; the page then ends short, with a
	// continue token that resumes the scan.
	listScanBudget = 2000
)

// RolloutList is the body of GET /api/v1/rollouts: one page of rollouts,
// by key, as Summary values or, with view=full, whole states.
type RolloutList[T Summary | rollout.State] struct {
	Rollouts []T `json:"rollouts"`
	// Continue, when set, is what the continue parameter of the request
	// for the next page carries. The last page has none; a page may hold
	// fewer rollouts than the limit, even none, and still have one.
	Continue string `json:"continue,omitempty"`
}

// Summary is a rollout in brief, as the list shows it by default: the
// state without its history and plan, and the latest verdict without the
// judge's evidence. GET /api/v1/rollouts/{key} has the rest.
type Summary struct {
	Key   string        `json:"key"`
	Phase rollout.Phase `json:"state"`
	// Percent is the treatment share the SDKs serve.
	Percent float64 `json:"percent"`
	// Step indexes the plan's steps, -1 before the first start; Steps is
	// how many the plan has.
	Step           int             `json:"step"`
	Steps          int             `json:"steps"`
	Revision       int64           `json:"revision"`
	StartedAt      time.Time       `json:"startedAt,omitzero"`
	StepStartedAt  time.Time       `json:"stepStartedAt,omitzero"`
	UpdatedAt      time.Time       `json:"updatedAt,omitzero"`
	ProviderErrors int             `json:"providerErrors"`
	PausedReason   string          `json:"pausedReason,omitempty"`
	AwaitingGate   *float64        `json:"awaitingGate,omitempty"`
	Cohorts        rollout.Cohorts `json:"cohorts"`
	// Verdict is the judge's latest answer in one line, nil before the
	// first.
	Verdict *VerdictBrief `json:"verdict"`
}

// VerdictBrief is a verdict's time, outcome and one-line summary.
type VerdictBrief struct {
	At      time.Time     `json:"at"`
	Outcome judge.Outcome `json:"outcome"`
	Summary string        `json:"summary"`
}

// Summarize returns s in brief.
func Summarize(s rollout.State) Summary {
	out := Summary{Key: s.Key, Phase: s.Phase, Percent: s.Percent, Step: s.Step, Steps: len(s.Plan.Steps),
		Revision: s.Revision, StartedAt: s.StartedAt, StepStartedAt: s.StepStartedAt, UpdatedAt: s.UpdatedAt,
		ProviderErrors: s.ProviderErrors, PausedReason: s.PausedReason, AwaitingGate: s.AwaitingGate, Cohorts: s.Cohorts}
	if v := s.Verdict; v != nil {
		out.Verdict = &VerdictBrief{At: v.At, Outcome: v.Outcome, Summary: v.Summary}
	}
	return out
}

// listQuery is a parsed GET /api/v1/rollouts.
type listQuery struct {
	limit int
	// phases are the states asked for, in the order of rollout.Phases;
	// none means every state.
	phases []rollout.Phase
	full   bool
	// after is the last key the previous page covered.
	after string
}

// continueToken is what a continue token encodes: where the scan stopped,
// and under which filter, so that a token is not used with another.
type continueToken struct {
	After string `json:"after"`
	State string `json:"state,omitempty"`
}

func (t continueToken) encode() string {
	b, err := json.Marshal(t)
	if err != nil {
		panic(err) // two strings always marshal
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// PhaseNames lists the names of rollout.Phases, which the state filter
// takes, for messages and help texts.
func PhaseNames() []string {
	names := make([]string, len(rollout.Phases))
	for i, p := range rollout.Phases {
		names[i] = string(p)
	}
	return names
}

// parseListQuery reads the parameters of GET /api/v1/rollouts. A bad one
// is a *paramError naming it.
func parseListQuery(g *gin.Context) (listQuery, *paramError) {
	q := listQuery{limit: DefaultListLimit}
	if v, ok := g.GetQuery("limit"); ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxListLimit {
			return q, &paramError{"limit", fmt.Sprintf("limit=%q: want a whole number from 1 to %d", v, MaxListLimit)}
		}
		q.limit = n
	}
	switch v := g.Query("view"); v {
	case "", "summary":
	case "full":
		q.full = true
	default:
		return q, &paramError{"view", fmt.Sprintf("view=%q: want summary (the default) or full", v)}
	}
	for _, v := range g.QueryArray("state") {
		for p := range strings.SplitSeq(v, ",") {
			phase := rollout.Phase(strings.TrimSpace(p))
			if !slices.Contains(rollout.Phases, phase) {
				return q, &paramError{"state", fmt.Sprintf("state=%q: %q is not a state; want one or more of %s, comma-separated", v, p, strings.Join(PhaseNames(), ", "))}
			}
			if !slices.Contains(q.phases, phase) {
				q.phases = append(q.phases, phase)
			}
		}
	}
	slices.SortFunc(q.phases, func(a, b rollout.Phase) int {
		return slices.Index(rollout.Phases, a) - slices.Index(rollout.Phases, b)
	})
	filter := q.filter()
	if v, ok := g.GetQuery("continue"); ok {
		var tok continueToken
		b, err := base64.RawURLEncoding.DecodeString(v)
		if err == nil {
			err = json.Unmarshal(b, &tok)
		}
		if err != nil || v == "" {
			return q, &paramError{"continue", "continue: not a token this controller issued; pass the continue value of the page before as it is"}
		}
		if tok.State != filter {
			return q, &paramError{"continue", fmt.Sprintf("continue: the token is for state=%q, not %q; page with the filter of the first page", tok.State, filter)}
		}
		q.after = tok.After
	}
	return q, nil
}

// filter is the state filter in its canonical form, as tokens carry it.
func (q listQuery) filter() string {
	names := make([]string, len(q.phases))
	for i, p := range q.phases {
		names[i] = string(p)
	}
	return strings.Join(names, ",")
}

// paramError is a bad query parameter.
type paramError struct{ name, msg string }

// list answers GET /api/v1/rollouts with one page. It reads the store a
// page at a time from where the continue token left off, skipping the
// rollouts the state filter leaves out, until the page is full, the
// rollouts end, or it has read listScanBudget records.
func (c *Controller) list(g *gin.Context) {
	q, bad := parseListQuery(g)
	if bad != nil {
		server.Fail(g, http.StatusBadRequest, bad.msg, bad.name)
		return
	}
	ctx := g.Request.Context()
	var page []rollout.State
	after, next, scanned := q.after, "", 0
scan:
	for {
		// One more than the page holds, to learn whether more follow.
		rs, err := c.opts.Store.RolloutsPage(ctx, after, q.limit+1)
		if err != nil {
			c.fail(g, fmt.Errorf("list rollouts: %w", err))
			return
		}
		for _, r := range rs {
			if len(page) == q.limit {
				next = page[len(page)-1].Key
				break scan
			}
			after = r.Key
			scanned++
			s, err := decode(r)
			if err != nil {
				c.log.Error("skipping unreadable rollout", "err", err)
				continue
			}
			if len(q.phases) == 0 || slices.Contains(q.phases, s.Phase) {
				page = append(page, s)
			}
		}
		switch {
		case len(rs) <= q.limit:
			break scan // the last records
		case scanned >= listScanBudget:
			next = after
			break scan
		}
	}
	var tok string
	if next != "" {
		tok = continueToken{After: next, State: q.filter()}.encode()
	}
	if q.full {
		// The history is stored apart from the states: read the page's.
		keys := make([]string, len(page))
		for i, s := range page {
			keys[i] = s.Key
		}
		hs, err := c.opts.Store.RolloutHistory(ctx, keys)
		if err != nil {
			c.fail(g, fmt.Errorf("list rollouts: %w", err))
			return
		}
		out := RolloutList[rollout.State]{Rollouts: make([]rollout.State, len(page)), Continue: tok}
		for i, s := range page {
			if s.History, err = rollout.DecodeHistory(s.Key, hs[s.Key]); err != nil {
				c.fail(g, fmt.Errorf("list rollouts: %w", err))
				return
			}
			out.Rollouts[i] = view(s)
		}
		g.JSON(http.StatusOK, out)
		return
	}
	out := RolloutList[Summary]{Rollouts: make([]Summary, len(page)), Continue: tok}
	for i, s := range page {
		out.Rollouts[i] = Summarize(s)
	}
	g.JSON(http.StatusOK, out)
}
