package console

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vigil-dev/vigil/analysis/judge"
	"github.com/vigil-dev/vigil/controller/rollout"
	"github.com/vigil-dev/vigil/controller/server"
	"github.com/vigil-dev/vigil/controller/store"
	"github.com/vigil-dev/vigil/internal/explain"
	"github.com/vigil-dev/vigil/internal/testenv/servertest"
	"github.com/vigil-dev/vigil/sdk/flag"
)

const testAdmin = "console-unit-admin-token-0123456789"

func TestNormalizePath(t *testing.T) {
	for in, want := range map[string]string{"": "/", "/": "/", "/console": "/console/", "/console/": "/console/", "/a/b": "/a/b/"} {
		got, err := NormalizePath(in)
		if err != nil || got != want {
			t.Errorf("NormalizePath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"console", "/a/../b", "/a?b", "/a#b", "/:key", "/*x", "/a//b"} {
		if got, err := NormalizePath(bad); err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("NormalizePath(%q) = %q, %v; want an error naming it", bad, got, err)
		}
	}
}

// start runs a server with the console at path on SQLite in a temp dir.
func start(t *testing.T, path string) string {
	t.Helper()
	url, _ := servertest.Run(t, func(ctx context.Context) (*server.Server, error) {
		return server.New(ctx, server.Config{DataDir: t.TempDir(), AdminToken: testAdmin,
			Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
			Extensions: []server.Extension{Extension(Config{Path: path})}})
	})
	return url
}

// send makes one request: with a bearer token, a JSON body and an
// If-None-Match header when given; it returns the answer with its body read.
func send(t testing.TB, method, url, token, body, etag string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func get(t testing.TB, url, token, etag string) (*http.Response, string) {
	t.Helper()
	return send(t, http.MethodGet, url, token, "", etag)
}

func post(t *testing.T, url, token, body string) (int, string) {
	t.Helper()
	resp, b := send(t, http.MethodPost, url, token, body, "")
	return resp.StatusCode, b
}

// TestServedUnderPath serves the console at /ops/console/: the page there
// points back to the API by a relative path, so that it works behind a
// proxy that adds a prefix of its own, and its assets are served under it.
func TestServedUnderPath(t *testing.T) {
	url := start(t, "/ops/console")
	resp, body := get(t, url+"/ops/console/", "", "")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `<meta name="vigil-root" content="./../../">`) {
		t.Fatalf("page: %d %s", resp.StatusCode, body)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("page's Content-Security-Policy %q", csp)
	}
	for file, want := range map[string]string{"app.js": "vigilConsole", "app.css": ".badge", "vendor/uPlot.iife.min.js": "uPlot"} {
		resp, body := get(t, url+"/ops/console/assets/"+file, "", "")
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, want) || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: %d, %d bytes, nosniff %q", file, resp.StatusCode, len(body), resp.Header.Get("X-Content-Type-Options"))
		}
	}
	if resp, _ := get(t, url+"/ops/console/assets/nothing.js", "", ""); resp.StatusCode != http.StatusNotFound {
		t.Errorf("a missing asset: %d, want 404", resp.StatusCode)
	}
	// The root is the API's 404 then, not the console.
	if resp, body := get(t, url+"/", "", ""); resp.StatusCode != http.StatusNotFound {
		t.Errorf("/ with the console elsewhere: %d %s", resp.StatusCode, body)
	}
}

// TestOverviewETag answers 304 to a poll while nothing changed and the
// new overview once a flag changes.
func TestOverviewETag(t *testing.T) {
	url := start(t, "/")
	resp, body := get(t, url+"/api/v1/console/overview", testAdmin, "")
	tag := resp.Header.Get("ETag")
	if resp.StatusCode != http.StatusOK || tag == "" || body != `{"flags":[]}` {
		t.Fatalf("overview: %d %q %s", resp.StatusCode, tag, body)
	}
	if resp, body := get(t, url+"/api/v1/console/overview", testAdmin, tag); resp.StatusCode != http.StatusNotModified || body != "" {
		t.Fatalf("overview with its ETag: %d %s, want 304", resp.StatusCode, body)
	}
	if put, body := send(t, http.MethodPut, url+"/api/v1/flags/f", testAdmin, `{"variants":{"off":false,"on":true},"control":"off","treatment":"on","enabled":true,"rollout":{"percent":12}}`, ""); put.StatusCode != http.StatusCreated {
		t.Fatalf("put flag: %d %s", put.StatusCode, body)
	}
	resp, body = get(t, url+"/api/v1/console/overview", testAdmin, tag)
	var o Overview
	if err := json.Unmarshal([]byte(body), &o); resp.StatusCode != http.StatusOK || err != nil || resp.Header.Get("ETag") == tag {
		t.Fatalf("overview after a change: %d %s %v", resp.StatusCode, body, err)
	}
	if len(o.Flags) != 1 || o.Flags[0].Key != "f" || o.Flags[0].State != rollout.Pending || o.Flags[0].Percent != 12 || o.Flags[0].Step != -1 {
		t.Fatalf("overview: %+v", o.Flags)
	}
}

func verdictAt(at time.Time, outcome judge.Outcome) *rollout.Verdict {
	return &rollout.Verdict{At: at, Outcome: outcome, Summary: string(outcome),
		Detail: &judge.Verdict{Outcome: outcome, EValue: 2, Threshold: 100,
			Checks: []judge.CheckVerdict{{Check: "error-rate", Outcome: outcome, Ratio: 1.1, CILow: 0.9, CIHigh: 1.4}}}}
}

// TestEvaluateForAUnit answers what `vigil eval` would for the stored flag:
// the same detail and bucket, by the same code; and names what is wrong
// with a bad request.
func TestEvaluateForAUnit(t *testing.T) {
	url := start(t, "/")
	f := `{"variants":{"off":false,"on":true},"control":"off","treatment":"on","enabled":true,
		"targets":[{"variant":"on","units":["qa-1"]}],
		"rules":[{"when":[{"attribute":"plan","op":"in","values":["beta"]}],"variant":"on"}],
		"rollout":{"percent":30}}`
	put, body := send(t, http.MethodPut, url+"/api/v1/flags/f", testAdmin, f, "")
	var stored flag.Flag
	if err := json.Unmarshal([]byte(body), &stored); put.StatusCode != http.StatusCreated || err != nil {
		t.Fatalf("put flag: %d %s", put.StatusCode, body)
	}
	snap, err := flag.NewSnapshot(stored.Version, []flag.Flag{stored})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		body   string
		ctx    flag.Context
		reason flag.Reason
	}{
		{`{"unit":"qa-1"}`, flag.Context{Key: "qa-1"}, flag.ReasonTargetingMatch},
		{`{"unit":"user-7","attributes":{"plan":"beta"}}`, flag.Context{Key: "user-7", Attributes: map[string]any{"plan": "beta"}}, flag.ReasonTargetingMatch},
		{`{"unit":"user-7"}`, flag.Context{Key: "user-7"}, flag.ReasonSplit},
	} {
		code, body := post(t, url+"/api/v1/console/flags/f/evaluate", testAdmin, tc.body)
		want, _ := json.Marshal(explain.Evaluate(snap, "f", tc.ctx))
		if code != http.StatusOK || body != string(want) {
			t.Errorf("evaluate %s: %d %s\nwant %s", tc.body, code, body, want)
		}
		var got explain.Result
		if err := json.Unmarshal([]byte(body), &got); err != nil || got.Reason != tc.reason || got.Bucket == nil {
			t.Errorf("evaluate %s: reason %q bucket %v, want %q with a bucket", tc.body, got.Reason, got.Bucket, tc.reason)
		}
	}
	for body, want := range map[string]string{
		`{"unit":"u","colour":"red"}`: `unknown field \"colour\"`,
		`{"unit":7}`:                  `unit`,
		``:                            `request body is empty`,
	} {
		if code, got := post(t, url+"/api/v1/console/flags/f/evaluate", testAdmin, body); code != http.StatusBadRequest || !strings.Contains(got, want) {
			t.Errorf("evaluate %q: %d %s; want 400 saying %s", body, code, got, want)
		}
	}
	if code, got := post(t, url+"/api/v1/console/flags/nope/evaluate", testAdmin, `{"unit":"u"}`); code != http.StatusNotFound || !strings.Contains(got, `flag \"nope\" does not exist`) {
		t.Errorf("evaluate a missing flag: %d %s", code, got)
	}
}

// TestLooksSinceTheCurrentStart answers the looks the loop stored, only
// those since the rollout's current start, and the same from every
// replica of the store, whenever it started.
func TestLooksSinceTheCurrentStart(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, t.TempDir(), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	serve := func() string {
		url, _ := servertest.Run(t, func(ctx context.Context) (*server.Server, error) {
			return server.New(ctx, server.Config{Store: st, AdminToken: testAdmin,
				Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
				Extensions: []server.Extension{Extension(Config{})}})
		})
		return url
	}
	first := serve()
	put := func(s rollout.State, looks ...time.Time) {
		t.Helper()
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Update(ctx, store.Actor{Name: "test"}, func(tx store.Tx) error {
			if _, err := tx.PutRollout(ctx, store.Rollout{Key: s.Key, State: b}); err != nil {
				return err
			}
			for _, at := range looks {
				l, _ := json.Marshal(rollout.LookOf(*verdictAt(at, judge.Inconclusive), s.Phase, s.Percent, s.Step))
				if err := tx.AppendRolloutLook(ctx, s.Key, at, l, 100); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	looksAt := func(url string, want ...time.Time) {
		t.Helper()
		resp, body := get(t, url+"/api/v1/console/rollouts/k/looks", testAdmin, "")
		var got Looks
		if err := json.Unmarshal([]byte(body), &got); resp.StatusCode != http.StatusOK || err != nil {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		if len(got.Looks) != len(want) {
			t.Fatalf("looks %+v, want %d", got.Looks, len(want))
		}
		for i, l := range got.Looks {
			if !l.At.Equal(want[i]) || len(l.Checks) != 1 || l.Checks[0].CIHigh != 1.4 || l.Percent != 5 {
				t.Fatalf("look %d: %+v", i, l)
			}
		}
	}
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	s := rollout.New("k")
	s.Phase, s.Percent, s.Step, s.StartedAt = rollout.Progressing, 5, 0, t0
	put(s, t0.Add(time.Second))
	looksAt(first, t0.Add(time.Second))
	put(s, t0.Add(2*time.Second))
	looksAt(first, t0.Add(time.Second), t0.Add(2*time.Second))
	// A replica started now answers the same looks.
	looksAt(serve(), t0.Add(time.Second), t0.Add(2*time.Second))
	// A new start: the looks of the last rollout are no longer its.
	s.StartedAt = t0.Add(3 * time.Second)
	put(s, t0.Add(4*time.Second))
	looksAt(first, t0.Add(4*time.Second))

	if resp, body := get(t, first+"/api/v1/console/rollouts/never/looks", testAdmin, ""); resp.StatusCode != http.StatusOK || body != `{"key":"never","looks":[]}` {
		t.Errorf("looks of a rollout never started: %d %s", resp.StatusCode, body)
	}
}

// TestPlanPreview answers the plan a start would follow: the flag's plan
// and the overrides over the defaults; and refuses a bad override as the
// start would, naming the flag and the field, or a bad request naming what
// is wrong in it.
func TestPlanPreview(t *testing.T) {
	url := start(t, "/")
	f := `{"variants":{"off":false,"on":true},"control":"off","treatment":"on","enabled":true,
		"rollout":{"percent":0,"plan":{"steps":[5,50],"interval":"10s"}}}`
	if put, body := send(t, http.MethodPut, url+"/api/v1/flags/f", testAdmin, f, ""); put.StatusCode != http.StatusCreated {
		t.Fatalf("put flag: %d %s", put.StatusCode, body)
	}
	preview := func(body string) (int, PlanPreview, server.ErrorBody) {
		t.Helper()
		code, got := post(t, url+"/api/v1/console/flags/f/plan", testAdmin, body)
		var p PlanPreview
		var e server.ErrorBody
		out := any(&p)
		if code != http.StatusOK {
			out = &e
		}
		if err := json.Unmarshal([]byte(got), out); err != nil {
			t.Fatalf("preview %s: %d %s: %v", body, code, got, err)
		}
		return code, p, e
	}

	code, p, _ := preview(`{}`)
	if code != http.StatusOK || p.Key != "f" || p.Written == nil || p.Written.Steps == nil || len(*p.Written.Steps) != 2 ||
		fmt.Sprint(p.Plan.Steps) != "[5 50 100]" || p.Plan.Interval.Std() != 10*time.Second || p.Plan.Warmup.Std() != 10*time.Second || p.Plan.MinRequests != 500 {
		t.Fatalf("the flag's own plan: %d %+v", code, p)
	}
	code, p, _ = preview(`{"plan":{"steps":[10,20],"minRequests":100,"onTimeout":"rollback","gates":[20]}}`)
	if code != http.StatusOK || fmt.Sprint(p.Plan.Steps) != "[10 20 100]" || p.Plan.MinRequests != 100 || p.Plan.OnTimeout != "rollback" ||
		fmt.Sprint(p.Plan.Gates) != "[20]" || p.Plan.Interval.Std() != 10*time.Second {
		t.Fatalf("with overrides: %d %+v", code, p)
	}

	for body, field := range map[string]string{
		`{"plan":{"steps":[10,5]}}`:                                  `plan.steps[1]`,
		`{"plan":{"minRequests":0}}`:                                 `plan.minRequests`,
		`{"plan":{"metrics":[{"name":"error-rate","tolerance":0}]}}`: `plan.metrics[0].tolerance`,
		`{"plan":{"minRequests":"many"}}`:                            `plan.minRequests`,
		`{"plan":{"colour":"red"}}`:                                  `colour`,
	} {
		code, _, e := preview(body)
		if code != http.StatusBadRequest || e.Field != field || !strings.Contains(e.Error, field) {
			t.Errorf("preview %s: %d %+v; want 400 naming %s", body, code, e, field)
		}
	}
	if _, _, e := preview(`{"plan":{"steps":[10,5]}}`); e.Flag != "f" {
		t.Errorf("a bad step: %+v; want the flag named", e)
	}
	if code, got := post(t, url+"/api/v1/console/flags/nope/plan", testAdmin, `{}`); code != http.StatusNotFound || !strings.Contains(got, `flag \"nope\" does not exist`) {
		t.Errorf("the plan of a missing flag: %d %s", code, got)
	}
}
