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
	"github.com/vigil-dev/vigil/controller/store"
)

// The limits of GET /api/v1/rollouts, which the console's overview
// shares through ParsePageQuery and ScanPage.
const (
	// DefaultListLimit is how many items a page holds when the request
	// gives no limit.
	DefaultListLimit = 100
	// MaxListLimit is the largest limit a request may give.
	MaxListLimit = 1000
	// listScanBudget bounds the records one request reads while a filter
	// skips most of them; the page then ends short, with a
	// continue token that resumes the scan.
	listScanBudget = 2000
	// filteredScanBatch is the least a filtered scan reads from the store
	// at a time: a page's worth plus one, for a page of one, would be a
	// store read for every other record the filter skips.
	filteredScanBatch = 100
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

// PageQuery is what the paged lists of rollouts share: GET
// /api/v1/rollouts and the console's overview. ParsePageQuery reads it.
type PageQuery struct {
	// Limit is how many items a page holds at most.
	Limit int
	// Phases are the states asked for, in the order of rollout.Phases;
	// none means every state.
	Phases []rollout.Phase
	// Find is the text a list that takes find was asked for, "" for none.
	Find string
	// After is the last key the previous page covered.
	After string
}

// listQuery is a parsed GET /api/v1/rollouts.
type listQuery struct {
	PageQuery
	full bool
}

// continueToken is what a continue token encodes: where the scan stopped,
// and under which filter, so that a token is not used with another.
type continueToken struct {
	After string `json:"after"`
	State string `json:"state,omitempty"`
	Find  string `json:"find,omitempty"`
}

func (t continueToken) encode() string {
	b, err := json.Marshal(t)
	if err != nil {
		panic(err) // three strings always marshal
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

// ParsePageQuery reads the parameters limit, state and continue, and find
// when the list takes it (a list that does not ignores it). A bad one is
// a *ParamError naming it.
func ParsePageQuery(g *gin.Context, find bool) (PageQuery, *ParamError) {
	q := PageQuery{Limit: DefaultListLimit}
	if v, ok := g.GetQuery("limit"); ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxListLimit {
			return q, &ParamError{"limit", fmt.Sprintf("limit=%q: want a whole number from 1 to %d", v, MaxListLimit)}
		}
		q.Limit = n
	}
	for _, v := range g.QueryArray("state") {
		for p := range strings.SplitSeq(v, ",") {
			phase := rollout.Phase(strings.TrimSpace(p))
			if !slices.Contains(rollout.Phases, phase) {
				return q, &ParamError{"state", fmt.Sprintf("state=%q: %q is not a state; want one or more of %s, comma-separated", v, p, strings.Join(PhaseNames(), ", "))}
			}
			if !slices.Contains(q.Phases, phase) {
				q.Phases = append(q.Phases, phase)
			}
		}
	}
	slices.SortFunc(q.Phases, func(a, b rollout.Phase) int {
		return slices.Index(rollout.Phases, a) - slices.Index(rollout.Phases, b)
	})
	if find {
		q.Find = strings.TrimSpace(g.Query("find"))
	}
	filter := q.filter()
	if v, ok := g.GetQuery("continue"); ok {
		var tok continueToken
		b, err := base64.RawURLEncoding.DecodeString(v)
		if err == nil {
			err = json.Unmarshal(b, &tok)
		}
		if err != nil || v == "" {
			return q, &ParamError{"continue", "continue: not a token this controller issued; pass the continue value of the page before as it is"}
		}
		if tok.State != filter {
			return q, &ParamError{"continue", fmt.Sprintf("continue: the token is for state=%q, not %q; page with the filter of the first page", tok.State, filter)}
		}
		if tok.Find != q.Find {
			return q, &ParamError{"continue", fmt.Sprintf("continue: the token is for find=%q, not %q; page with the filter of the first page", tok.Find, q.Find)}
		}
		q.After = tok.After
	}
	return q, nil
}

// parseListQuery reads the parameters of GET /api/v1/rollouts. A bad one
// is a *ParamError naming it.
func parseListQuery(g *gin.Context) (listQuery, *ParamError) {
	pq, bad := ParsePageQuery(g, false)
	q := listQuery{PageQuery: pq}
	if bad != nil {
		return q, bad
	}
	switch v := g.Query("view"); v {
	case "", "summary":
	case "full":
		q.full = true
	default:
		return q, &ParamError{"view", fmt.Sprintf("view=%q: want summary (the default) or full", v)}
	}
	return q, nil
}

// filter is the state filter in its canonical form, as tokens carry it.
func (q PageQuery) filter() string {
	names := make([]string, len(q.Phases))
	for i, p := range q.Phases {
		names[i] = string(p)
	}
	return strings.Join(names, ",")
}

// Wants reports whether the state filter keeps a rollout in phase p.
func (q PageQuery) Wants(p rollout.Phase) bool {
	return len(q.Phases) == 0 || slices.Contains(q.Phases, p)
}

// ParamError is a bad query parameter: Name names it, Msg says what is
// wrong with it, for a 400.
type ParamError struct{ Name, Msg string }

// Error returns the message.
func (e *ParamError) Error() string { return e.Msg }

// ScanPage reads one page for q: from where q.After left off, it reads
// records a store page at a time through read (at most n records whose
// keys sort after after, by key), keeping what keep turns into an item,
// until the page holds q.Limit items, the records end, or it has read
// listScanBudget records: a filter that skips most records still reads a
// bounded number per request, and the page then ends short. It returns
// the page and the continue token for the next one, "" after the last.
func ScanPage[R, T any](q PageQuery, read func(after string, n int) ([]R, error), key func(R) string, keep func(R) (T, bool)) ([]T, string, error) {
	var page []T
	after, more, scanned := q.After, false, 0
	// One more than the page holds, to learn whether more follow.
	n := q.Limit + 1
	if len(q.Phases) > 0 || q.Find != "" {
		n = max(n, filteredScanBatch)
	}
scan:
	for {
		rs, err := read(after, n)
		if err != nil {
			return nil, "", err
		}
		for _, r := range rs {
			if len(page) == q.Limit {
				more = true
				break scan
			}
			after = key(r)
			scanned++
			if item, ok := keep(r); ok {
				page = append(page, item)
			}
		}
		switch {
		case len(rs) < n:
			break scan // the last records
		case scanned >= listScanBudget:
			more = true
			break scan
		}
	}
	if !more {
		return page, "", nil
	}
	return page, continueToken{After: after, State: q.filter(), Find: q.Find}.encode(), nil
}

// list answers GET /api/v1/rollouts with one page, read by ScanPage,
// skipping the rollouts the state filter leaves out.
func (c *Controller) list(g *gin.Context) {
	q, bad := parseListQuery(g)
	if bad != nil {
		server.Fail(g, http.StatusBadRequest, bad.Msg, bad.Name)
		return
	}
	ctx := g.Request.Context()
	read := func(after string, n int) ([]store.Rollout, error) { return c.opts.Store.RolloutsPage(ctx, after, n) }
	page, tok, err := ScanPage(q.PageQuery, read, func(r store.Rollout) string { return r.Key }, func(r store.Rollout) (rollout.State, bool) {
		s, err := decode(r)
		if err != nil {
			c.log.Error("skipping unreadable rollout", "err", err)
			return s, false
		}
		return s, q.Wants(s.Phase)
	})
	if err != nil {
		c.fail(g, fmt.Errorf("list rollouts: %w", err))
		return
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
