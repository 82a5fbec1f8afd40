package ofrep_test

import (
	"bytes"
	"context"
	"encoding/json"
	stdflag "flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-dev/vigil/controller/ofrep"
	"github.com/vigil-dev/vigil/controller/server"
	"github.com/vigil-dev/vigil/internal/testenv/jstest"
	"github.com/vigil-dev/vigil/internal/testenv/poll"
	"github.com/vigil-dev/vigil/internal/testenv/servertest"
	"github.com/vigil-dev/vigil/sdk/flag"
)

const adminSecret = "ofrep-test-admin-token-0123456789"

// flagsFile is applied to every test server.
const flagsFile = `
flags:
  - key: checkout
    variants: {off: false, on: true}
    control: off
    treatment: on
    enabled: true
    targets: [{variant: on, units: [qa-1]}]
    rollout: {percent: 37.5}
  - key: color
    variants: {red: "red", blue: "blue"}
    control: red
    treatment: blue
    enabled: true
    salt: colors-2026
    rollout: {percent: 50}
  - key: limit
    variants: {low: 10, high: 1000.5}
    control: low
    treatment: high
    enabled: true
    rules: [{variant: high, when: [{attribute: plan, op: in, values: [gold]}]}]
    rollout: {percent: 12.345}
  - key: config
    variants: {a: {retries: 3, hosts: [x, y]}, b: null}
    control: a
    treatment: b
    enabled: false
  - key: plain
    variants: {a: "A", b: "B"}
    control: a
    enabled: true
    rules: [{variant: b, when: [{attribute: version, op: semver_gte, values: ["2.0"]}]}]
`

type env struct {
	t     *testing.T
	url   string
	token string // an sdk token
}

// start runs a controller with the OFREP extension on loopback, applies
// flagsFile and mints an sdk token.
func start(t *testing.T, cfg ofrep.Config) *env {
	t.Helper()
	url, _ := servertest.Run(t, func(ctx context.Context) (*server.Server, error) {
		return server.New(ctx, server.Config{
			DataDir: t.TempDir(), AdminToken: adminSecret,
			Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
			Extensions: []server.Extension{ofrep.Extension(cfg)},
		})
	})
	e := &env{t: t, url: url}
	poll.Ready(t, 10*time.Second, url)
	e.mustStatus(e.do("POST", "/api/v1/apply", adminSecret, flagsFile, nil), 200)
	r := e.mustStatus(e.do("POST", "/api/v1/tokens", adminSecret, `{"name":"svc","role":"sdk"}`, nil), 201)
	var tok server.CreatedToken
	r.decode(t, &tok)
	e.token = tok.Token
	// The extension loads the flags in the background: wait until it
	// answers for them.
	e.eventually("the OFREP flags to load", func() bool {
		return e.do("POST", "/ofrep/v1/evaluate/flags/plain", e.token, `{}`, nil).status == 200
	})
	return e
}

func (e *env) eventually(what string, cond func() bool) {
	e.t.Helper()
	poll.True(e.t, 10*time.Second, what, cond)
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

func (e *env) do(method, path, token, body string, headers map[string]string) response {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return response{status: -1}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

func (e *env) mustStatus(r response, status int) response {
	e.t.Helper()
	if r.status != status {
		e.t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	return r
}

func TestSingleFlag(t *testing.T) {
	e := start(t, ofrep.Config{})
	ok := func(key, body string) ofrep.Success {
		t.Helper()
		var s ofrep.Success
		e.mustStatus(e.do("POST", "/ofrep/v1/evaluate/flags/"+key, e.token, body, nil), 200).decode(t, &s)
		return s
	}
	if s := ok("checkout", `{"context":{"targetingKey":"qa-1"}}`); s.Value != true || s.Variant != "on" || s.Reason != "TARGETING_MATCH" || s.Key != "checkout" {
		t.Errorf("checkout for qa-1: %+v", s)
	}
	if s := ok("limit", `{"context":{"targetingKey":"u","plan":"gold"}}`); s.Value != 1000.5 || s.Reason != "TARGETING_MATCH" {
		t.Errorf("limit for gold: %+v", s)
	}
	if s := ok("config", `{"context":{"targetingKey":"u"}}`); s.Reason != "DISABLED" || s.Metadata["version"] == nil {
		t.Errorf("config: %+v", s)
	}
	if s := ok("plain", ``); s.Value != "A" || s.Reason != "DEFAULT" {
		t.Errorf("plain without a body: %+v", s)
	}
	if s := ok("plain", `{"context":{"version":"v2.1"}}`); s.Value != "B" {
		t.Errorf("plain for version 2.1: %+v", s)
	}
	s := ok("color", `{"context":{"targetingKey":"user-1"}}`)
	want := evalGo(t, "color", flag.Context{Key: "user-1"})
	if s.Variant != want.Variant || s.Reason != "SPLIT" {
		t.Errorf("color for user-1: %+v, Go says %+v", s, want)
	}

	for _, tc := range []struct {
		name, key, body string
		status          int
		code, details   string
	}{
		{"unknown flag", "nope", `{"context":{"targetingKey":"u"}}`, 404, "FLAG_NOT_FOUND", ""},
		{"rollout without a targeting key", "checkout", `{"context":{"plan":"gold"}}`, 400, "TARGETING_KEY_MISSING", ""},
		{"not JSON", "checkout", `{"context":`, 400, "PARSE_ERROR", ""},
		{"context not an object", "checkout", `{"context":["u"]}`, 400, "INVALID_CONTEXT", ""},
		{"targeting key not a string", "checkout", `{"context":{"targetingKey":42}}`, 400, "INVALID_CONTEXT", ""},
		{"key given twice", "checkout", `{"context":{"targetingKey":"qa-1","targetingKey":"u"}}`, 400, "PARSE_ERROR", "context.targetingKey: the key is given twice"},
		{"NUL in an attribute", "checkout", `{"context":{"targetingKey":"u","plan":"gold\u0000"}}`, 400, "PARSE_ERROR", "context.plan: the string holds a NUL"},
		{"invalid UTF-8", "checkout", "{\"context\":{\"targetingKey\":\"\xff\"}}", 400, "PARSE_ERROR", "not valid UTF-8 at byte 28"},
		{"not JSON content", "checkout", `{"context":{"targetingKey":"u"}}`, 415, "PARSE_ERROR", "Content-Type \"text/plain\""},
	} {
		headers := map[string]string{}
		if tc.status == 415 {
			headers["Content-Type"] = "text/plain"
		}
		r := e.do("POST", "/ofrep/v1/evaluate/flags/"+tc.key, e.token, tc.body, headers)
		var f ofrep.Failure
		r.decode(t, &f)
		if r.status != tc.status || f.ErrorCode != tc.code || f.Key != tc.key || f.ErrorDetails == "" || !strings.Contains(f.ErrorDetails, tc.details) {
			t.Errorf("%s: %d %+v, want %d %s with key and details %q", tc.name, r.status, f, tc.status, tc.code, tc.details)
		}
	}
	if r := e.do("POST", "/ofrep/v1/evaluate/flags/checkout", "", `{}`, nil); r.status != 401 {
		t.Errorf("no token: %d, want 401", r.status)
	}
	if r := e.do("POST", "/ofrep/v1/evaluate/flags/checkout", "vgl_wrong", `{}`, nil); r.status != 401 {
		t.Errorf("bad token: %d, want 401", r.status)
	}
}

func TestBulkETag(t *testing.T) {
	e := start(t, ofrep.Config{})
	body := `{"context":{"targetingKey":"user-7","plan":"gold"}}`
	r := e.mustStatus(e.do("POST", "/ofrep/v1/evaluate/flags", e.token, body, nil), 200)
	var bulk struct {
		Flags []map[string]any `json:"flags"`
	}
	r.decode(t, &bulk)
	var keys []string
	for _, f := range bulk.Flags {
		keys = append(keys, f["key"].(string))
	}
	if strings.Join(keys, ",") != "checkout,color,config,limit,plain" {
		t.Errorf("bulk keys %v", keys)
	}
	tag := r.header.Get("ETag")
	if tag == "" {
		t.Fatal("no ETag")
	}
	if r := e.do("POST", "/ofrep/v1/evaluate/flags", e.token, body, map[string]string{"If-None-Match": tag}); r.status != 304 || r.header.Get("ETag") != tag {
		t.Errorf("same flags and context: %d %q, want 304 with the ETag", r.status, r.header.Get("ETag"))
	}
	other := e.do("POST", "/ofrep/v1/evaluate/flags", e.token, `{"context":{"targetingKey":"user-8"}}`, map[string]string{"If-None-Match": tag})
	if other.status != 200 || other.header.Get("ETag") == tag {
		t.Errorf("another context: %d %q, want 200 with another ETag", other.status, other.header.Get("ETag"))
	}
	// Without a targeting key the rollout flags fail one by one; the rest answer.
	var partial struct {
		Flags []map[string]any `json:"flags"`
	}
	e.mustStatus(e.do("POST", "/ofrep/v1/evaluate/flags", e.token, `{}`, nil), 200).decode(t, &partial)
	codes := map[string]any{}
	for _, f := range partial.Flags {
		codes[f["key"].(string)] = f["errorCode"]
	}
	if codes["checkout"] != "TARGETING_KEY_MISSING" || codes["plain"] != nil || codes["config"] != nil {
		t.Errorf("bulk without a targeting key: %v", codes)
	}
	if r := e.do("POST", "/ofrep/v1/evaluate/flags", e.token, `nope`, nil); r.status != 400 || !bytes.Contains(r.body, []byte("PARSE_ERROR")) {
		t.Errorf("bad body: %d %s", r.status, r.body)
	}
	// A change to the flags changes the ETag.
	e.mustStatus(e.do("PUT", "/api/v1/flags/plain", adminSecret,
		`{"key":"plain","variants":{"a":"A2"},"control":"a","enabled":true}`, nil), 200)
	e.eventually("the change to reach OFREP", func() bool {
		r := e.do("POST", "/ofrep/v1/evaluate/flags", e.token, body, map[string]string{"If-None-Match": tag})
		return r.status == 200 && r.header.Get("ETag") != tag && bytes.Contains(r.body, []byte(`"A2"`))
	})
}

func TestRateLimit(t *testing.T) {
	e := start(t, ofrep.Config{RequestsPerSecond: 0.5, Burst: 3})
	// start used one request of the burst to wait for the flags; spend the
	// rest, then the next is refused.
	var last response
	for i := 0; i < 4; i++ {
		last = e.do("POST", "/ofrep/v1/evaluate/flags/plain", e.token, `{}`, nil)
		if last.status == 429 {
			break
		}
	}
	if last.status != 429 {
		t.Fatalf("status %d after the burst, want 429", last.status)
	}
	if s, err := strconv.Atoi(last.header.Get("Retry-After")); err != nil || s < 1 || s > 2 {
		t.Errorf("Retry-After %q, want 1 or 2 seconds", last.header.Get("Retry-After"))
	}
	var f ofrep.Failure
	last.decode(t, &f)
	if !strings.Contains(f.ErrorDetails, "rate limit") {
		t.Errorf("429 body %s", last.body)
	}
}

// goSnapshot is flagsFile as `vigil eval` reads it: parsed and compiled
// by sdk/flag.
var goSnapshot = sync.OnceValues(func() (*flag.Snapshot, error) {
	f, err := flag.Parse([]byte(flagsFile))
	if err != nil {
		return nil, err
	}
	return flag.NewSnapshot(1, f.Flags)
})

// evalGo evaluates as `vigil eval` does.
func evalGo(t *testing.T, key string, ctx flag.Context) flag.Detail {
	t.Helper()
	snap, err := goSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	return snap.Evaluate(key, ctx)
}

// ofrepUnits is how many units TestOpenFeatureJavaScriptOFREP evaluates
// for each flag: every evaluation is an HTTP request through the
// OpenFeature SDK, about 40 s for 10,000 units and four flags under the
// race detector on 2 cores; -ofrep-units=1000 for a quick local run.
var ofrepUnits = stdflag.Int("ofrep-units", 10000, "units per flag in TestOpenFeatureJavaScriptOFREP")

// TestOpenFeatureJavaScriptOFREP evaluates units for several flags through
// the real @openfeature/server-sdk and @openfeature/ofrep-provider against
// the controller, and requires the answers of `vigil eval`.
func TestOpenFeatureJavaScriptOFREP(t *testing.T) {
	sdkJS := jstest.Modules(t)
	// Without the race detector the SDK sends thousands of requests a
	// second; the rate limit is tested on its own.
	e := start(t, ofrep.Config{RequestsPerSecond: 1e6})
	n := *ofrepUnits
	if n < 4 {
		t.Fatalf("-ofrep-units %d: want at least 4", n)
	}
	units := make([]map[string]any, n)
	for i := range units {
		u := map[string]any{"targetingKey": fmt.Sprintf("user-%d", i*7919)}
		switch i % 4 {
		case 1:
			u["plan"] = "gold"
		case 2:
			u["targetingKey"] = fmt.Sprintf("ünï-%d-🙂", i)
		}
		units[i] = u
	}
	units[0] = map[string]any{"targetingKey": "qa-1"}
	units[3] = map[string]any{"plan": "gold"} // no targeting key
	flags := []map[string]any{
		{"key": "checkout", "type": "boolean", "default": false},
		{"key": "color", "type": "string", "default": "none"},
		{"key": "limit", "type": "number", "default": -1},
		{"key": "config", "type": "object", "default": map[string]any{}},
	}
	input, _ := json.Marshal(map[string]any{"baseUrl": e.url, "token": e.token, "flags": flags, "units": units})
	path := filepath.Join(t.TempDir(), "input.json")
	if err := os.WriteFile(path, input, 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("node", filepath.Join("testdata", "ofrep-eval.cjs"), sdkJS, path)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("node ofrep-eval.cjs: %v\n%s", err, stderr.String())
	}
	var got map[string][]string
	if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
		t.Fatalf("decode node output: %v", err)
	}
	mismatches := 0
	for _, f := range flags {
		key := f["key"].(string)
		if len(got[key]) != n {
			t.Fatalf("flag %s: %d answers, want %d", key, len(got[key]), n)
		}
		for i, u := range units {
			ctx := flag.Context{Attributes: map[string]any{}}
			for k, v := range u {
				if k == "targetingKey" {
					ctx.Key = v.(string)
				} else {
					ctx.Attributes[k] = v
				}
			}
			want := expected(evalGo(t, key, ctx), f["default"])
			if got[key][i] != want {
				mismatches++
				if mismatches <= 10 {
					t.Errorf("flag %s unit %v: OFREP %s, vigil eval %s", key, u, got[key][i], want)
				}
			}
		}
	}
	if mismatches > 0 {
		t.Fatalf("%d answers differ", mismatches)
	}
}

// expected is what OpenFeature reports for a Go evaluation:
// variant|REASON|ERROR_CODE|value.
func expected(d flag.Detail, def any) string {
	reason := map[flag.Reason]string{flag.ReasonDisabled: "DISABLED", flag.ReasonTargetingMatch: "TARGETING_MATCH",
		flag.ReasonSplit: "SPLIT", flag.ReasonDefault: "DEFAULT"}
	if d.ErrorType != "" {
		v, _ := json.Marshal(def)
		return "|ERROR|" + strings.ToUpper(string(d.ErrorType)) + "|" + string(v)
	}
	v, _ := json.Marshal(d.Value)
	return d.Variant + "|" + reason[d.Reason] + "||" + string(v)
}
