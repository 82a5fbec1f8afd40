package crosslang

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os/exec"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-dev/vigil/controller/store"
	"github.com/vigil-dev/vigil/internal/client"
	"github.com/vigil-dev/vigil/internal/testenv/vigiltest"
	"github.com/vigil-dev/vigil/sdk"
	"github.com/vigil-dev/vigil/sdk/flag"
)

const liveAdminToken = "crosslang-admin-token-0123456789"

// liveFlags are PUT through the admin API before the clients start: one
// per value type, a rule, targets, salts, a disabled flag.
var liveFlags = map[string]string{
	"rollout": `{"variants": {"off": false, "on": true}, "control": "off", "treatment": "on", "enabled": true,
		"salt": "ünï/🙂", "targets": [{"variant": "on", "units": ["user-7"]}], "rollout": {"percent": 33.333}}`,
	"color": `{"variants": {"red": "red", "blue": "blue", "green": "green"}, "control": "red", "treatment": "blue", "enabled": true,
		"rules": [{"variant": "green", "when": [{"attribute": "plan", "op": "in", "values": ["gold"]}]}], "rollout": {"percent": 50}}`,
	"limit":  `{"variants": {"a": 10, "b": 2.5}, "control": "a", "treatment": "b", "enabled": true, "rollout": {"percent": 50}}`,
	"config": `{"variants": {"small": {"retries": 3}, "none": null}, "control": "small", "treatment": "none", "enabled": true, "salt": "shared", "rollout": {"percent": 50}}`,
	"off":    `{"variants": {"a": "A", "b": "B"}, "control": "a", "treatment": "b", "enabled": false, "rollout": {"percent": 100}}`,
}

// liveKeys are the flags every step evaluates: the ones above, one PUT
// later, and one that never exists.
var liveKeys = []string{"rollout", "color", "limit", "config", "off", "fresh", "missing"}

// liveDefaults are the callers' defaults per type, unlike every variant so
// that serving one shows.
var liveDefaults = map[string]any{
	"boolean": true, "string": "fallback", "number": 0.5, "integer": 3.0, "object": map[string]any{"fallback": true},
}

type liveCase struct {
	Flag       string         `json:"flag"`
	Type       string         `json:"type"`
	Default    any            `json:"default"`
	Key        string         `json:"key"`
	Attributes map[string]any `json:"attributes,omitempty"`
}

// liveCases asks every key for every type for units of many shapes, units
// with attributes the rule tests, and no unit at all.
func liveCases() []liveCase {
	var ctxs []liveCase
	for _, u := range crossUnits(300) {
		ctxs = append(ctxs, liveCase{Key: u})
	}
	ctxs = append(ctxs,
		liveCase{Key: "user-7"},
		liveCase{Key: "user-8", Attributes: map[string]any{"plan": "gold"}},
		liveCase{Key: "user-9", Attributes: map[string]any{"plan": "free", "n": 1.5}},
		liveCase{Key: "", Attributes: map[string]any{"plan": "gold"}})
	var out []liveCase
	for _, k := range liveKeys {
		for _, typ := range []string{"boolean", "string", "number", "integer", "object"} {
			for _, c := range ctxs {
				c.Flag, c.Type, c.Default = k, typ, liveDefaults[typ]
				out = append(out, c)
			}
		}
	}
	return out
}

// answer is one evaluation as either SDK reports it, the value as decoded
// JSON.
type answer struct {
	Value     any    `json:"value"`
	Variant   string `json:"variant"`
	Reason    string `json:"reason"`
	ErrorType string `json:"errorType"`
}

// ofAnswer is one evaluation through OpenFeature.
type ofAnswer struct {
	Value     any    `json:"value"`
	Variant   string `json:"variant"`
	Reason    string `json:"reason"`
	ErrorCode string `json:"errorCode"`
}

func asJSON(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// goAnswer evaluates c with the Go SDK's typed method for its type.
func goAnswer(t *testing.T, client *sdk.Client, c liveCase) answer {
	t.Helper()
	ctx := context.Background()
	ec := sdk.EvalContext{Key: c.Key, Attributes: c.Attributes}
	var d sdk.Detail
	switch c.Type {
	case "boolean":
		_, d = client.BoolDetail(ctx, c.Flag, ec, c.Default.(bool))
	case "string":
		_, d = client.StringDetail(ctx, c.Flag, ec, c.Default.(string))
	case "number":
		_, d = client.FloatDetail(ctx, c.Flag, ec, c.Default.(float64))
	case "integer":
		_, d = client.IntDetail(ctx, c.Flag, ec, int64(c.Default.(float64)))
	case "object":
		_, d = client.JSONDetail(ctx, c.Flag, ec, c.Default)
	default:
		t.Fatalf("unknown type %q", c.Type)
	}
	return answer{Value: asJSON(t, d.Value), Variant: d.Variant, Reason: string(d.Reason), ErrorType: string(d.ErrorType)}
}

// ofExpected is what OpenFeature makes of the Go SDK's answer a: on any
// error the caller's default without a variant, as OpenFeature serves it,
// and the reasons and error codes in its upper case.
func ofExpected(c liveCase, a answer) ofAnswer {
	if a.ErrorType != "" {
		return ofAnswer{Value: c.Default, Reason: "ERROR", ErrorCode: strings.ToUpper(a.ErrorType)}
	}
	return ofAnswer{Value: a.Value, Variant: a.Variant, Reason: strings.ToUpper(a.Reason)}
}

// liveNode is sdk/js/dist/tools/live.js, driven one command at a time.
type liveNode struct {
	t      *testing.T
	cmd    *exec.Cmd
	in     io.WriteCloser
	out    *bufio.Reader
	stderr *bytes.Buffer
}

func startNode(t *testing.T) *liveNode {
	t.Helper()
	n := &liveNode{t: t, stderr: new(bytes.Buffer)}
	n.cmd = exec.Command("node", tool(t, "live.js"))
	n.cmd.Stderr = n.stderr
	var err error
	if n.in, err = n.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := n.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	n.out = bufio.NewReaderSize(stdout, 1<<20)
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		n.in.Close()
		n.cmd.Process.Kill()
		n.cmd.Wait()
	})
	return n
}

// call sends one command and decodes its answer into out.
func (n *liveNode) call(cmd map[string]any, out any) {
	n.t.Helper()
	line, err := json.Marshal(cmd)
	if err != nil {
		n.t.Fatal(err)
	}
	if _, err := n.in.Write(append(line, '\n')); err != nil {
		n.t.Fatalf("node %s: %v\n%s", cmd["cmd"], err, n.stderr)
	}
	reply, err := n.out.ReadBytes('\n')
	if err != nil {
		n.t.Fatalf("node %s: %v\n%s", cmd["cmd"], err, n.stderr)
	}
	var failed struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(reply, &failed) == nil && failed.Error != "" {
		n.t.Fatalf("node %s: %s\n%s", cmd["cmd"], failed.Error, n.stderr)
	}
	if out != nil {
		if err := json.Unmarshal(reply, out); err != nil {
			n.t.Fatalf("node %s: decode %s: %v", cmd["cmd"], reply, err)
		}
	}
}

// putFlag writes a flag, given as JSON without its key, through the admin
// API client the CLI uses, and returns the version the controller gave it.
func putFlag(t *testing.T, c *client.Client, key, body string) int64 {
	t.Helper()
	var f flag.Flag
	if err := json.Unmarshal([]byte(body), &f); err != nil {
		t.Fatalf("flag %s: %v", key, err)
	}
	f.Key = key
	out, err := c.PutFlag(context.Background(), f, 0, "")
	if err != nil {
		t.Fatalf("put flag %s: %v", key, err)
	}
	return out.Version
}

// waitRevision waits until c holds revision rev, on its Updated channel.
func waitRevision(t *testing.T, c *sdk.Client, rev int64) {
	t.Helper()
	deadline := time.After(time.Minute)
	for {
		next := c.Updated()
		if s := c.Snapshot(); s != nil && s.Revision() >= rev {
			return
		}
		select {
		case <-next:
		case <-deadline:
			t.Fatalf("Go client did not reach revision %d", rev)
		}
	}
}

// statusRecorder is an http.RoundTripper that closes refused when a
// response is 401, so that a test can wait for the controller to refuse a
// token.
type statusRecorder struct {
	once    sync.Once
	refused chan struct{}
}

func (s *statusRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err == nil && resp.StatusCode == http.StatusUnauthorized {
		s.once.Do(func() { close(s.refused) })
	}
	return resp, err
}

type liveRequest struct {
	Method      string `json:"method"`
	Path        string `json:"path"`
	IfNoneMatch string `json:"ifNoneMatch"`
	Status      int    `json:"status"`
	ETag        string `json:"etag"`
	Local       bool   `json:"local"`
}

type liveObserved struct {
	Requests []liveRequest `json:"requests"`
	Errors   []string      `json:"errors"`
	Stale    []string      `json:"stale"`
	Log      []string      `json:"log"`
}

// startLive starts `vigil serve` from bin with its data in dir and returns
// it, an admin client of it, and an sdk token it minted.
func startLive(t *testing.T, bin, dir string) (*vigiltest.Process, *client.Client, string) {
	t.Helper()
	p := vigiltest.Start(t, bin, liveEnv, "--data", dir)
	ctl, err := client.New(p.URL, liveAdminToken)
	if err != nil {
		t.Fatal(err)
	}
	minted, err := ctl.CreateToken(context.Background(), "crosslang", store.RoleSDK)
	if err != nil {
		t.Fatal(err)
	}
	return p, ctl, minted.Token
}

// liveEnv is the environment of the `vigil serve` the live tests start.
var liveEnv = []string{"VIGIL_ADMIN_TOKEN=" + liveAdminToken}

// TestTypeScriptClientAgainstVigilServe runs the TypeScript SDK against a
// real `vigil serve`, next to the Go SDK: the first snapshot, a flag
// changed, one created and one deleted through the admin API, each arriving
// on the stream, in a client polling with If-None-Match and in the
// OpenFeature provider's configuration-changed event, and a token the
// controller refuses. After every step each TypeScript answer, for every
// flag, type and unit, must be the Go SDK's.
func TestTypeScriptClientAgainstVigilServe(t *testing.T) {
	p, ctl, token := startLive(t, vigiltest.Build(t), t.TempDir())
	var rev int64
	for _, k := range []string{"rollout", "color", "limit", "config", "off"} {
		rev = putFlag(t, ctl, k, liveFlags[k])
	}

	quiet := slog.New(slog.DiscardHandler)
	goc, err := sdk.New(context.Background(), sdk.Config{ServerURL: p.URL, Token: token, Logger: quiet, InitTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { goc.Close() })
	recorder := &statusRecorder{refused: make(chan struct{})}
	goRefused, err := sdk.New(context.Background(), sdk.Config{ServerURL: p.URL, Token: "not-a-token", Logger: quiet,
		InitTimeout: -1, HTTPClient: &http.Client{Transport: recorder}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { goRefused.Close() })

	js := startNode(t)
	var started struct {
		Ready   map[string]bool `json:"ready"`
		Refused string          `json:"refused"`
	}
	js.call(map[string]any{"cmd": "start", "serverURL": p.URL, "token": token, "badToken": "not-a-token"}, &started)
	if !started.Ready["stream"] || !started.Ready["poll"] {
		t.Fatalf("TypeScript clients not ready: %v", started.Ready)
	}
	if !strings.Contains(started.Refused, "HTTP 401") {
		t.Fatalf("refused client: %q, want the controller's 401", started.Refused)
	}
	select {
	case <-recorder.refused:
	case <-time.After(time.Minute):
		t.Fatal("the controller did not refuse the Go client's token")
	}

	cases := liveCases()
	compare := func(step string) {
		t.Helper()
		var got struct {
			Stream      []answer    `json:"stream"`
			Poll        []answer    `json:"poll"`
			Refused     []answer    `json:"refused"`
			OpenFeature []*ofAnswer `json:"openfeature"`
		}
		js.call(map[string]any{"cmd": "eval", "cases": cases}, &got)
		if len(got.Stream) != len(cases) || len(got.Poll) != len(cases) || len(got.Refused) != len(cases) || len(got.OpenFeature) != len(cases) {
			t.Fatalf("%s: TypeScript answered %d/%d/%d/%d of %d cases", step, len(got.Stream), len(got.Poll), len(got.Refused), len(got.OpenFeature), len(cases))
		}
		bad := 0
		report := func(format string, args ...any) {
			if bad++; bad <= 20 {
				t.Errorf(step+": "+format, args...)
			}
		}
		seen := map[string]bool{}
		for i, c := range cases {
			want := goAnswer(t, goc, c)
			seen[want.ErrorType] = true
			for name, a := range map[string]answer{"stream": got.Stream[i], "poll": got.Poll[i]} {
				if !reflect.DeepEqual(a, want) {
					report("%s %s for %q %v: TypeScript %s client %+v, Go %+v", c.Type, c.Flag, c.Key, c.Attributes, name, a, want)
				}
			}
			// A refused token leaves both SDKs without flags.
			if wantRefused := goAnswer(t, goRefused, c); wantRefused.ErrorType != "provider_not_ready" || !reflect.DeepEqual(got.Refused[i], wantRefused) {
				report("%s %s with a refused token: TypeScript %+v, Go %+v, want provider_not_ready", c.Type, c.Flag, got.Refused[i], wantRefused)
			}
			of := got.OpenFeature[i]
			if c.Type == "integer" {
				if of != nil {
					report("integer %s through OpenFeature, which has no integer type: %+v", c.Flag, of)
				}
				continue
			}
			if wantOF := ofExpected(c, want); of == nil || !reflect.DeepEqual(*of, asJSONOf(t, wantOF)) {
				report("%s %s for %q through OpenFeature: %+v, want %+v", c.Type, c.Flag, c.Key, of, wantOF)
			}
		}
		if bad > 0 {
			t.Fatalf("%s: %d answers differ between Go and TypeScript", step, bad)
		}
		// The comparison means something only if the answers vary.
		for _, e := range []string{"", "flag_not_found", "targeting_key_missing", "type_mismatch"} {
			if !seen[e] {
				t.Errorf("%s: no answer with error type %q", step, e)
			}
		}
	}
	type changes struct {
		Stream      [][]string `json:"stream"`
		Poll        [][]string `json:"poll"`
		OpenFeature [][]string `json:"openfeature"`
	}
	// step changes a flag, waits for both SDKs to hold the new revision,
	// and requires every TypeScript client to have announced exactly that
	// flag's change.
	step := func(name, key string, rev int64) {
		t.Helper()
		waitRevision(t, goc, rev)
		var ch changes
		js.call(map[string]any{"cmd": "wait", "revision": rev, "key": key}, &ch)
		want := [][]string{{key}}
		if !reflect.DeepEqual(ch.Stream, want) || !reflect.DeepEqual(ch.Poll, want) || !reflect.DeepEqual(ch.OpenFeature, want) {
			t.Fatalf("%s: changes announced: stream %v, poll %v, OpenFeature %v; want %v each", name, ch.Stream, ch.Poll, ch.OpenFeature, want)
		}
		compare(name)
	}

	waitRevision(t, goc, rev)
	var none changes
	js.call(map[string]any{"cmd": "wait", "revision": rev}, &none)
	if len(none.Stream)+len(none.Poll)+len(none.OpenFeature) != 0 {
		t.Fatalf("changes announced before any change: %+v", none)
	}
	compare("first snapshot")
	// The polling client holds the snapshot; its next poll must be a 304.
	etag := fmt.Sprintf("%q", fmt.Sprint(rev))
	js.call(map[string]any{"cmd": "waitNotModified", "etag": etag}, nil)

	step("rollout raised", "rollout", putFlag(t, ctl, "rollout", strings.Replace(liveFlags["rollout"], "33.333", "66.667", 1)))
	step("flag created", "fresh", putFlag(t, ctl, "fresh",
		`{"variants": {"off": false, "on": true}, "control": "off", "treatment": "on", "enabled": true, "rollout": {"percent": 100}}`))
	deleted, err := ctl.DeleteFlag(context.Background(), "color", 0, "")
	if err != nil {
		t.Fatal(err)
	}
	step("flag deleted", "color", deleted.Version)
	last := fmt.Sprintf("%q", fmt.Sprint(deleted.Version))
	js.call(map[string]any{"cmd": "waitNotModified", "etag": last}, nil)

	var rep struct {
		Stream            liveObserved `json:"stream"`
		Poll              liveObserved `json:"poll"`
		OpenFeatureErrors []string     `json:"openfeatureErrors"`
	}
	js.call(map[string]any{"cmd": "report"}, &rep)
	for name, o := range map[string]liveObserved{"stream": rep.Stream, "poll": rep.Poll} {
		if len(o.Errors)+len(o.Stale) != 0 {
			t.Errorf("%s client: errors %v, stale %v; log %v", name, o.Errors, o.Stale, o.Log)
		}
	}
	if len(rep.OpenFeatureErrors) != 0 {
		t.Errorf("OpenFeature provider errors: %v", rep.OpenFeatureErrors)
	}
	// Every change reached the streaming client on its one stream: it never
	// polled.
	if r := rep.Stream.Requests; len(r) != 1 || r[0].Path != "/sdk/v1/stream" || r[0].Status != http.StatusOK {
		t.Errorf("streaming client's requests: %+v, want one stream, answered 200", r)
	}
	// The polling client saw each change as a 200 whose ETag is the
	// revision it brings, and asked with the ETag it held.
	etags := map[string]bool{}
	held := ""
	for _, r := range rep.Poll.Requests {
		if r.Path != "/sdk/v1/snapshot" {
			if !r.Local {
				t.Errorf("polling client's stream request reached the controller: %+v", r)
			}
			continue
		}
		if r.IfNoneMatch != held {
			t.Errorf("poll %+v: sent If-None-Match %s, held %s", r, r.IfNoneMatch, held)
		}
		switch r.Status {
		case http.StatusOK:
			held = r.ETag
			etags[r.ETag] = true
		case http.StatusNotModified:
		default:
			t.Errorf("poll %+v: status %d", r, r.Status)
		}
	}
	for _, v := range []string{etag, last} {
		if !etags[v] {
			t.Errorf("no poll answered 200 with ETag %s: %+v", v, rep.Poll.Requests)
		}
	}
	js.call(map[string]any{"cmd": "close"}, nil)
}

// asJSONOf gives want's value the shape decoded JSON has, as the answer
// from node has.
func asJSONOf(t *testing.T, want ofAnswer) ofAnswer {
	want.Value = asJSON(t, want.Value)
	return want
}
