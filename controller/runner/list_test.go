package runner

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-dev/vigil/controller/rollout"
	"github.com/vigil-dev/vigil/controller/server"
	"github.com/vigil-dev/vigil/controller/store"
	"github.com/vigil-dev/vigil/internal/testenv/servertest"
)

// startListAPI is a real server with the rollout routes on loopback but no
// loop, so that the rollouts a test stores stay as it stored them.
func startListAPI(t *testing.T) (*apiEnv, store.Store) {
	t.Helper()
	st := openSQLite(t)
	url, _ := servertest.Run(t, func(ctx context.Context) (*server.Server, error) {
		routes := func(h *server.Host) error {
			c, err := New(Options{Store: h.Store, Reader: newTraffic(st, &clock{}), Holder: "list-test", Logger: h.Logger})
			if err != nil {
				return err
			}
			c.Routes(h.Read, h.Write)
			return nil
		}
		return server.New(ctx, server.Config{Store: st, AdminToken: apiToken, Registry: prometheus.NewRegistry(),
			Logger: slog.New(slog.DiscardHandler), Extensions: []server.Extension{routes}})
	})
	return &apiEnv{url: url}, st
}

// storeStates writes rollout states straight into the store, in one
// transaction, as the loop writes them: each with its history.
func storeStates(t *testing.T, st store.Store, ss ...rollout.State) {
	t.Helper()
	err := st.Update(context.Background(), store.Actor{Name: "test"}, func(tx store.Tx) error {
		for _, s := range ss {
			var acts []rollout.Action
			for _, h := range s.History {
				acts = append(acts, rollout.Notify{Key: s.Key, Transition: h})
			}
			if _, err := write(context.Background(), tx, s, acts); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// stateIn is a stored rollout in phase p, with a history and a verdict
// with the judge's evidence, which the summary leaves out.
func stateIn(key string, p rollout.Phase) rollout.State {
	s := rollout.New(key)
	s.Phase, s.Percent, s.Step = p, 5, 1
	s.Plan.Steps = []float64{1, 5, 25}
	at := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	s.Verdict = &rollout.Verdict{At: at, Outcome: "inconclusive", Summary: "needs more requests",
		Metrics: []rollout.MetricVerdict{{Name: "error-rate", Outcome: "inconclusive"}}}
	s.History = []rollout.Transition{{At: at, From: rollout.Pending, To: p, Percent: 5, Step: 1, Actor: "alice", Reason: "history of " + key}}
	s.Judge = json.RawMessage(`{"secret":"judge"}`)
	return s
}

// page is one answer of GET /api/v1/rollouts, decoded loosely so that the
// test sees what the JSON holds.
type page struct {
	Rollouts []map[string]any `json:"rollouts"`
	Continue string           `json:"continue"`
}

func (e *apiEnv) listPage(t *testing.T, query url.Values) (page, string) {
	t.Helper()
	status, body := e.do(t, "GET", "/api/v1/rollouts?"+query.Encode(), "")
	if status != 200 {
		t.Fatalf("GET /api/v1/rollouts?%s: %d %s", query.Encode(), status, body)
	}
	var p page
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("GET /api/v1/rollouts?%s: %v: %s", query.Encode(), err, body)
	}
	return p, string(body)
}

// listAll pages through GET /api/v1/rollouts with query, and returns the
// keys in the order listed and how many pages it took.
func (e *apiEnv) listAll(t *testing.T, query url.Values) ([]string, int) {
	t.Helper()
	return servertest.Pages(t, func(cont string) ([]string, string) {
		if cont != "" {
			query.Set("continue", cont)
		}
		p, _ := e.listPage(t, query)
		keys := make([]string, len(p.Rollouts))
		for i, r := range p.Rollouts {
			keys[i] = r["key"].(string)
		}
		return keys, p.Continue
	})
}

func TestListPagesSummariesAndFilters(t *testing.T) {
	e, st := startListAPI(t)
	var all []rollout.State
	var want []string
	byPhase := map[rollout.Phase][]string{}
	for i := range 23 {
		p := rollout.Phases[i%len(rollout.Phases)]
		key := fmt.Sprintf("flag-%02d", i)
		all = append(all, stateIn(key, p))
		want = append(want, key)
		byPhase[p] = append(byPhase[p], key)
	}
	storeStates(t, st, all...)

	// Pages of 5: every rollout once, by key, five pages, the last without
	// a continue token.
	keys, pages := e.listAll(t, url.Values{"limit": {"5"}})
	if !slices.Equal(keys, want) || pages != 5 {
		t.Errorf("limit 5: %d pages of %v, want 5 pages of %v", pages, keys, want)
	}
	// The default page holds all 23.
	if keys, pages := e.listAll(t, url.Values{}); len(keys) != 23 || pages != 1 {
		t.Errorf("default limit: %d pages of %d rollouts, want one of 23", pages, len(keys))
	}

	// A summary by default: no history, plan, evidence or judge state, but
	// the step count and the verdict's line.
	p, body := e.listPage(t, url.Values{"limit": {"1"}})
	for _, leak := range []string{`"history"`, `"plan"`, `"metrics"`, `"judge"`, "history of"} {
		if strings.Contains(body, leak) {
			t.Errorf("summary shows %s: %s", leak, body)
		}
	}
	for _, w := range []string{`"key":"flag-00"`, `"state":"pending"`, `"steps":3`, `"step":1`, `"outcome":"inconclusive"`, `"summary":"needs more requests"`} {
		if !strings.Contains(body, w) {
			t.Errorf("summary lacks %s: %s", w, body)
		}
	}
	if len(p.Rollouts) != 1 || p.Continue == "" {
		t.Errorf("limit 1: %d rollouts, continue %q; want 1 and a token", len(p.Rollouts), p.Continue)
	}
	// The whole record with view=full, still without the judge's state.
	_, body = e.listPage(t, url.Values{"limit": {"1"}, "view": {"full"}})
	for _, w := range []string{`"history":[{`, "history of flag-00", `"plan":{`, `"metrics":[{`} {
		if !strings.Contains(body, w) {
			t.Errorf("view=full lacks %s: %s", w, body)
		}
	}
	if strings.Contains(body, `"judge"`) {
		t.Errorf("view=full shows the judge's state: %s", body)
	}

	// A filter, comma-separated or repeated, pages through its states only.
	for _, q := range []url.Values{
		{"state": {"paused,rolled_back"}, "limit": {"2"}},
		{"state": {"rolled_back", "paused"}, "limit": {"2"}},
	} {
		keys, _ := e.listAll(t, q)
		wantKeys := slices.Sorted(slices.Values(append(slices.Clone(byPhase[rollout.Paused]), byPhase[rollout.RolledBack]...)))
		if !slices.Equal(keys, wantKeys) {
			t.Errorf("%v: %v, want %v", q, keys, wantKeys)
		}
	}
	// A token carries its filter: used with another, it is refused.
	p, _ = e.listPage(t, url.Values{"state": {"paused"}, "limit": {"1"}})
	status, out := e.do(t, "GET", "/api/v1/rollouts?"+url.Values{"state": {"promoted"}, "continue": {p.Continue}}.Encode(), "")
	if status != 400 || !strings.Contains(string(out), `"field":"continue"`) {
		t.Errorf("token of another filter: %d %s, want 400 naming continue", status, out)
	}
}

// TestListFilterScansInBounds: a filter that matches only rollouts far
// down the keys does not read every record in one request. The first page
// ends empty after listScanBudget records, with a token; the next finds
// the rollouts.
func TestListFilterScansInBounds(t *testing.T) {
	e, st := startListAPI(t)
	var ss []rollout.State
	for i := range listScanBudget + 10 {
		s := rollout.New(fmt.Sprintf("k%05d", i))
		s.Phase = rollout.Promoted
		if i >= listScanBudget+5 {
			s.Phase = rollout.Paused
		}
		ss = append(ss, s)
	}
	storeStates(t, st, ss...)
	p, _ := e.listPage(t, url.Values{"state": {"paused"}, "limit": {"10"}})
	if len(p.Rollouts) != 0 || p.Continue == "" {
		t.Fatalf("first page: %d rollouts, continue %q; want none and a token", len(p.Rollouts), p.Continue)
	}
	keys, _ := e.listAll(t, url.Values{"state": {"paused"}, "limit": {"10"}})
	want := []string{"k02005", "k02006", "k02007", "k02008", "k02009"}
	if !slices.Equal(keys, want) {
		t.Errorf("paused: %v, want %v", keys, want)
	}
}

// TestListBadParameters: each bad parameter is a 400 that names it.
func TestListBadParameters(t *testing.T) {
	e, _ := startListAPI(t)
	for _, tc := range []struct{ query, field, msg string }{
		{"limit=0", "limit", "from 1 to 1000"},
		{"limit=1001", "limit", "from 1 to 1000"},
		{"limit=ten", "limit", `limit=\"ten\"`},
		{"view=brief", "view", "summary (the default) or full"},
		{"state=done", "state", `\"done\" is not a state; want one or more of pending, progressing, paused, promoted, rolled_back, aborted`},
		{"state=paused,", "state", `\"\" is not a state`},
		{"continue=%21%21", "continue", "not a token this controller issued"},
		{"continue=", "continue", "not a token"},
		{"continue=" + continueToken{After: "a"}.encode() + "&state=paused", "continue", `the token is for state=\"\", not \"paused\"`},
	} {
		status, body := e.do(t, "GET", "/api/v1/rollouts?"+tc.query, "")
		if status != 400 || !strings.Contains(string(body), `"field":"`+tc.field+`"`) || !strings.Contains(string(body), tc.msg) {
			t.Errorf("%s: %d %s; want 400 naming %s with %s", tc.query, status, body, tc.field, tc.msg)
		}
	}
}

// TestListWhileRolloutsChange pages through the API, two at a time, while
// commands start, pause and abort other rollouts and delete records: every
// rollout that exists throughout is listed exactly once.
func TestListWhileRolloutsChange(t *testing.T) {
	e, st := startListAPI(t)
	var stay []string
	var ss []rollout.State
	for i := range 40 {
		key := fmt.Sprintf("r%02d-stay", i)
		stay = append(stay, key)
		ss = append(ss, stateIn(key, rollout.Paused), stateIn(fmt.Sprintf("r%02d-churn", i), rollout.Promoted))
	}
	storeStates(t, st, ss...)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wrote := make(chan struct{})
	stopped := make(chan error, 1)
	go func() {
		for w := 0; ; w++ {
			if ctx.Err() != nil {
				stopped <- nil
				return
			}
			// A rollout that stays changes phase; one that churns is
			// deleted or created again.
			s := stateIn(stay[w%len(stay)], rollout.Phases[w%len(rollout.Phases)])
			churn := fmt.Sprintf("r%02d-churn", (w*7)%len(stay))
			err := st.Update(ctx, store.Actor{Name: "test"}, func(tx store.Tx) error {
				b, _ := json.Marshal(s)
				if _, err := tx.PutRollout(ctx, store.Rollout{Key: s.Key, State: b}); err != nil {
					return err
				}
				if err := tx.DeleteRollout(ctx, churn); err == nil {
					return nil
				}
				b, _ = json.Marshal(stateIn(churn, rollout.Progressing))
				_, err := tx.PutRollout(ctx, store.Rollout{Key: churn, State: b})
				return err
			})
			if err != nil && ctx.Err() == nil {
				stopped <- err
				return
			}
			select {
			case wrote <- struct{}{}:
			default:
			}
		}
	}()

	seen := map[string]int{}
	q := url.Values{"limit": {"2"}}
	last := ""
	for pages := 0; ; pages++ {
		p, _ := e.listPage(t, q)
		for _, r := range p.Rollouts {
			k := r["key"].(string)
			if k <= last {
				t.Errorf("%s listed after %s", k, last)
			}
			seen[k]++
			last = k
		}
		if p.Continue == "" {
			break
		}
		q.Set("continue", p.Continue)
		for range 2 {
			select {
			case <-wrote:
			case err := <-stopped:
				t.Fatalf("the writer stopped: %v", err)
			}
		}
	}
	cancel()
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	for _, k := range stay {
		if seen[k] != 1 {
			t.Errorf("%s listed %d times, want once", k, seen[k])
		}
	}
}

// TestScanPageReadsFilteredRecordsInBatches: a filtered scan for a page of
// one reads the store a batch of records at a time, not two at a time,
// and still resumes right after the record it kept.
func TestScanPageReadsFilteredRecordsInBatches(t *testing.T) {
	var keys []string
	for i := range 250 {
		keys = append(keys, fmt.Sprintf("k%03d", i))
	}
	reads := 0
	read := func(after string, n int) ([]string, error) {
		reads++
		i, _ := slices.BinarySearch(keys, after)
		if i < len(keys) && keys[i] == after {
			i++
		}
		return keys[i:min(len(keys), i+n)], nil
	}
	same := func(k string) string { return k }
	q := PageQuery{Limit: 1, Phases: []rollout.Phase{rollout.Paused}}
	page, tok, err := ScanPage(q, read, same, func(k string) (string, bool) { return k, k == "k240" })
	if err != nil || !slices.Equal(page, []string{"k240"}) || tok == "" {
		t.Fatalf("page %v, token %q, %v; want k240 and a token", page, tok, err)
	}
	if reads > 3 {
		t.Errorf("%d store reads for 241 records, want at most 3", reads)
	}
	var next continueToken
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err == nil {
		err = json.Unmarshal(b, &next)
	}
	if err != nil || next.After != "k240" {
		t.Fatalf("the token resumes after %q (%v), want k240", next.After, err)
	}
}
