package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-dev/vigil/controller/server"
	"github.com/vigil-dev/vigil/internal/testenv/servertest"
	"github.com/vigil-dev/vigil/sdk/flag"
)

const apiToken = "rollout-api-test-token-0123456789"

// apiEnv is a real server with the rollout extension on loopback.
type apiEnv struct {
	url string
	f   *fixture
}

func startAPI(t *testing.T) *apiEnv {
	t.Helper()
	st := openSQLite(t)
	f := newFixture(t, st)
	url, _ := servertest.Run(t, func(ctx context.Context) (*server.Server, error) {
		return server.New(ctx, server.Config{
			Store: st, AdminToken: apiToken, Registry: prometheus.NewRegistry(),
			Logger:     slog.New(slog.DiscardHandler),
			Extensions: []server.Extension{Extension(Options{Reader: f.tr, Now: f.clock.Now, Holder: "api-test"})},
		})
	})
	return &apiEnv{url: url, f: f}
}

func (e *apiEnv) do(t *testing.T, method, path, body string) (int, []byte) {
	t.Helper()
	resp, out := e.send(t, method, path, body)
	return resp.StatusCode, out
}

// send makes an admin request and returns the response, whose body it has
// read and closed, with that body.
func (e *apiEnv) send(t *testing.T, method, path, body string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, e.url+path, bytes.NewBufferString(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+apiToken)
	req.Header.Set(server.ReasonHeader, "from the test")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, out
}

func TestAPI(t *testing.T) {
	e := startAPI(t)
	putFlag(t, e.f.st, checkoutFlag("checkout"))
	// search serves 30% by its definition before any rollout.
	search := checkoutFlag("search")
	search.Rollout.Percent = 30
	putFlag(t, e.f.st, search)

	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		want                     []string // substrings of the response body
	}{
		{"list empty", "GET", "/api/v1/rollouts", "", 200, []string{`"rollouts":[]`}},
		{"never started", "GET", "/api/v1/rollouts/checkout", "", 200, []string{`"state":"pending"`, `"percent":0`, `"step":-1`, `"verdict":null`, `"history":[]`}},
		{"unknown flag", "GET", "/api/v1/rollouts/nope", "", 404, []string{`"error":"flag nope: not found"`}},
		{"start unknown flag", "POST", "/api/v1/rollouts/nope/start", "", 404, []string{"flag nope: not found"}},
		{"pause pending", "POST", "/api/v1/rollouts/checkout/pause", "", 409, []string{`"error":"cannot pause rollout checkout: it is pending; only a progressing rollout can be paused"`}},
		{"bad plan", "POST", "/api/v1/rollouts/checkout/start", `{"plan":{"steps":[20,2]}}`, 400, []string{`"field":"plan.steps[1]"`, "must be greater than the step before it"}},
		{"unknown field", "POST", "/api/v1/rollouts/checkout/start", `{"plna":{}}`, 400, []string{`unknown field \"plna\"`, `"field":"plna"`}},
		{"wrong type", "POST", "/api/v1/rollouts/checkout/start", `{"plan":{"minRequests":"many"}}`, 400, []string{`"field":"plan.minRequests"`, "want int64"}},
		{"key twice", "POST", "/api/v1/rollouts/checkout/start", `{"reason":"a","reason":"b"}`, 400, []string{`"field":"reason"`, "given twice"}},
		{"explicit zero", "POST", "/api/v1/rollouts/checkout/start", `{"plan":{"steps":[2,20],"minRequests":0}}`, 400, []string{`"field":"plan.minRequests"`, "0 must be at least 1"}},
		{"explicit zero interval", "POST", "/api/v1/rollouts/checkout/start", `{"plan":{"interval":"0s"}}`, 400, []string{`"field":"plan.interval"`, "0s is shorter than the minimum of 1s"}},
		{"start", "POST", "/api/v1/rollouts/checkout/start", `{"plan":{"steps":[2,20]},"reason":"ticket 42"}`, 200, []string{`"state":"progressing"`, `"percent":2`, `"step":0`, `"startedAt":"2026-11-25T10:00:00Z"`, `started at 2% by admin: ticket 42`}},
		{"start twice", "POST", "/api/v1/rollouts/checkout/start", "", 409, []string{"cannot start rollout checkout: it is progressing; pause it, promote it, roll it back or abort it first"}},
		{"plan on pause", "POST", "/api/v1/rollouts/checkout/pause", `{"plan":{}}`, 400, []string{`"field":"plan"`}},
		{"pause", "POST", "/api/v1/rollouts/checkout/pause", "", 200, []string{`"state":"paused"`, `"pausedReason":"paused by admin: from the test"`}},
		{"resume", "POST", "/api/v1/rollouts/checkout/resume", "", 200, []string{`"state":"progressing"`, `"percent":2`}},
		{"rollback", "POST", "/api/v1/rollouts/checkout/rollback", `{"reason":"pager"}`, 200, []string{`"state":"rolled_back"`, `"percent":0`, `rolled back to 0% by admin: pager`}},
		{"abort rolled back", "POST", "/api/v1/rollouts/checkout/abort", "", 409, []string{"it is rolled_back; it has already finished"}},
		{"get", "GET", "/api/v1/rollouts/checkout", "", 200, []string{`"key":"checkout"`, `"state":"rolled_back"`, `"updatedAt":`, `"history":[{`, `"to":"paused"`}},
		{"list", "GET", "/api/v1/rollouts", "", 200, []string{`"rollouts":[{"key":"checkout"`}},
		{"pending at the flag's percent", "GET", "/api/v1/rollouts/search", "", 200, []string{`"state":"pending"`, `"percent":30`}},
		{"abort pending", "POST", "/api/v1/rollouts/search/abort", "", 200, []string{`"state":"aborted"`, `"percent":0`, `aborted by admin: from the test`}},
		{"start after abort", "POST", "/api/v1/rollouts/search/start", "", 200, []string{`"state":"progressing"`, `"percent":1`}},
		{"promote", "POST", "/api/v1/rollouts/search/promote", `{"reason":"looks good"}`, 200, []string{`"state":"promoted"`, `"percent":100`, `promoted to 100% by admin: looks good`}},
		{"promote promoted", "POST", "/api/v1/rollouts/search/promote", "", 409, []string{"cannot promote rollout search: it is promoted; only a progressing or paused rollout can be promoted"}},
		{"abort promoted", "POST", "/api/v1/rollouts/search/abort", "", 409, []string{"cannot abort rollout search: it is promoted; it has already finished"}},
		{"start after promote", "POST", "/api/v1/rollouts/search/start", "", 200, []string{`"state":"progressing"`, `"percent":1`}},
		{"abort", "POST", "/api/v1/rollouts/search/abort", "", 200, []string{`"state":"aborted"`, `"percent":0`, `"to":"aborted"`}},
		{"abort aborted", "POST", "/api/v1/rollouts/search/abort", "", 409, []string{"it is aborted; it has already finished"}},
		{"list both", "GET", "/api/v1/rollouts", "", 200, []string{`"key":"checkout"`, `"key":"search"`}},
	} {
		status, body := e.do(t, tc.method, tc.path, tc.body)
		if status != tc.status {
			t.Errorf("%s: %s %s = %d %s, want %d", tc.name, tc.method, tc.path, status, body, tc.status)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(string(body), w) {
				t.Errorf("%s: body %s lacks %s", tc.name, body, w)
			}
		}
		if strings.Contains(string(body), `"judge"`) {
			t.Errorf("%s: body shows the judge's internal state", tc.name)
		}
	}

	// The commands moved the flag itself.
	status, body := e.do(t, "GET", "/api/v1/flags/checkout", "")
	var f struct {
		Rollout struct{ Percent float64 } `json:"rollout"`
		Tracked bool                      `json:"tracked"`
	}
	if err := json.Unmarshal(body, &f); status != 200 || err != nil || f.Rollout.Percent != 0 || f.Tracked {
		t.Errorf("flag after rollback: %d %s", status, body)
	}
	status, body = e.do(t, "GET", "/api/v1/flags/search", "")
	if err := json.Unmarshal(body, &f); status != 200 || err != nil || f.Rollout.Percent != 0 || f.Tracked {
		t.Errorf("flag after abort: %d %s", status, body)
	}
	// The loop's metrics are served.
	resp, err := http.Get(e.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, name := range []string{`vigil_rollout_state{flag="checkout",state="rolled_back"} 1`, "vigil_rollout_transitions_total", "vigil_provider_query_duration_seconds"} {
		if !strings.Contains(string(metrics), name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
}

// TestFlagEditsKeepTheRolloutPercent reproduces what a person does after a
// rollout ends: PUT the flag, or apply its flags file again, with another
// percent. The flag must keep serving what the rollout says.
func TestFlagEditsKeepTheRolloutPercent(t *testing.T) {
	e := startAPI(t)
	for _, tc := range []struct {
		commands []string
		percent  float64 // the rollout's, which the flag must keep
	}{
		{[]string{"start", "rollback"}, 0},
		{[]string{"start", "promote"}, 100},
		{[]string{"start", "abort"}, 0},
		{[]string{"abort"}, 0}, // from pending, the flag at 30% by its definition
		{[]string{"start", "promote", "rollback"}, 0},
	} {
		key := strings.Join(tc.commands, "-")
		t.Run(key, func(t *testing.T) {
			fl := checkoutFlag(key)
			fl.Rollout.Percent = 30
			putFlag(t, e.f.st, fl)
			for _, c := range tc.commands {
				if status, body := e.do(t, "POST", "/api/v1/rollouts/"+key+"/"+c, ""); status != 200 {
					t.Fatalf("%s: %d %s", c, status, body)
				}
			}
			check := func(after string) {
				t.Helper()
				var f struct {
					Rollout struct{ Percent float64 } `json:"rollout"`
				}
				status, body := e.do(t, "GET", "/api/v1/flags/"+key, "")
				if err := json.Unmarshal(body, &f); status != 200 || err != nil {
					t.Fatalf("get flag: %d %s", status, body)
				}
				var s struct{ Percent float64 }
				status, body = e.do(t, "GET", "/api/v1/rollouts/"+key, "")
				if err := json.Unmarshal(body, &s); status != 200 || err != nil {
					t.Fatalf("get rollout: %d %s", status, body)
				}
				if f.Rollout.Percent != tc.percent || s.Percent != tc.percent {
					t.Errorf("after %s the flag serves %v%% and its rollout says %v%%, want %v%%", after, f.Rollout.Percent, s.Percent, tc.percent)
				}
			}
			check("the commands")
			def, err := json.Marshal(fl)
			if err != nil {
				t.Fatal(err)
			}
			if status, body := e.do(t, "PUT", "/api/v1/flags/"+key, string(def)); status != 200 {
				t.Fatalf("put: %d %s", status, body)
			}
			check("a PUT at 30%")
			for _, p := range []float64{0, 30} {
				fl.Rollout.Percent = p
				file, err := json.Marshal(map[string]any{"flags": []flag.Flag{fl}})
				if err != nil {
					t.Fatal(err)
				}
				if status, body := e.do(t, "POST", "/api/v1/apply", string(file)); status != 200 {
					t.Fatalf("apply: %d %s", status, body)
				}
				check(fmt.Sprintf("applying a file at %v%%", p))
			}
		})
	}
}
