package server_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/vigil-dev/vigil/controller/plan"
	"github.com/vigil-dev/vigil/controller/rollout"
	"github.com/vigil-dev/vigil/controller/server"
	"github.com/vigil-dev/vigil/controller/store"
	"github.com/vigil-dev/vigil/sdk/flag"
)

func TestFlagLifecycle(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		r := e.mustStatus(e.do("PUT", "/api/v1/flags/checkout", e.admin, flagJSON("checkout", 5), server.ReasonHeader, "first try"), http.StatusCreated)
		var f flag.Flag
		r.json(t, &f)
		if f.Version != 1 || f.Rollout.Percent != 5 || r.header.Get("ETag") != `"1"` {
			t.Fatalf("created %+v etag %s", f, r.header.Get("ETag"))
		}
		// Same content again changes nothing.
		r = e.mustStatus(e.do("PUT", "/api/v1/flags/checkout", e.admin, flagJSON("checkout", 5)), http.StatusOK)
		r.json(t, &f)
		if f.Version != 1 {
			t.Fatalf("no-op put bumped the version to %d", f.Version)
		}
		// The key may come from the path alone.
		body := flagJSON("", 10)
		delete(body, "key")
		r = e.mustStatus(e.do("PUT", "/api/v1/flags/other", e.admin, body), http.StatusCreated)
		r.json(t, &f)
		if f.Key != "other" || f.Version != 2 {
			t.Fatalf("other %+v", f)
		}
		// A conditional update with the right version.
		r = e.mustStatus(e.do("PUT", "/api/v1/flags/checkout", e.admin, flagJSON("checkout", 25), "If-Match", `"1"`), http.StatusOK)
		r.json(t, &f)
		if f.Version != 3 || f.Rollout.Percent != 25 {
			t.Fatalf("updated %+v", f)
		}
		// Stale versions conflict, by header or in the body, and change nothing.
		b := e.mustStatus(e.do("PUT", "/api/v1/flags/checkout", e.admin, flagJSON("checkout", 50), "If-Match", `"1"`), http.StatusConflict).errorBody(t)
		if !strings.Contains(b.Error, "version 3, not 1") {
			t.Fatalf("conflict message %q", b.Error)
		}
		stale := flagJSON("checkout", 50)
		stale["version"] = 2
		e.mustStatus(e.do("PUT", "/api/v1/flags/checkout", e.admin, stale), http.StatusConflict)
		e.mustStatus(e.do("DELETE", "/api/v1/flags/checkout", e.admin, nil, "If-Match", "2"), http.StatusConflict)
		r = e.mustStatus(e.do("GET", "/api/v1/flags/checkout", e.admin, nil), http.StatusOK)
		r.json(t, &f)
		if f.Version != 3 || f.Rollout.Percent != 25 || r.header.Get("ETag") != `"3"` {
			t.Fatalf("after conflicts %+v", f)
		}
		// Delete takes a version too.
		r = e.mustStatus(e.do("DELETE", "/api/v1/flags/checkout", e.admin, nil, "If-Match", `"3"`), http.StatusOK)
		var d server.Deleted
		r.json(t, &d)
		if d.Key != "checkout" || d.Version != 4 {
			t.Fatalf("deleted %+v", d)
		}
		e.mustStatus(e.do("GET", "/api/v1/flags/checkout", e.admin, nil), http.StatusNotFound).errorBody(t)
		e.mustStatus(e.do("DELETE", "/api/v1/flags/checkout", e.admin, nil), http.StatusNotFound).errorBody(t)
		var list server.FlagList
		e.mustStatus(e.do("GET", "/api/v1/flags", e.admin, nil), http.StatusOK).json(t, &list)
		if list.Revision != 4 || len(list.Flags) != 1 || list.Flags[0].Key != "other" {
			t.Fatalf("list %+v", list)
		}
		// The audit log has every change, newest first, with who and why.
		var audit server.AuditList
		e.mustStatus(e.do("GET", "/api/v1/audit?flag=checkout", e.admin, nil), http.StatusOK).json(t, &audit)
		var actions []string
		for _, a := range audit.Entries {
			actions = append(actions, a.Action)
			if a.Actor != server.AdminTokenName {
				t.Fatalf("actor %q", a.Actor)
			}
		}
		if strings.Join(actions, ",") != "delete,update,create" {
			t.Fatalf("audit actions %v", actions)
		}
		if audit.Entries[2].Message != "first try" || audit.Entries[0].Before == nil || audit.Entries[1].After == nil {
			t.Fatalf("audit entries %+v", audit.Entries)
		}
		e.mustStatus(e.do("GET", "/api/v1/audit", e.admin, nil), http.StatusOK).json(t, &audit)
		if len(audit.Entries) != 4 {
			t.Fatalf("whole audit has %d entries, want 4", len(audit.Entries))
		}
	})
}

// TestRolloutOwnsPercentAfterStart: from a rollout's first start on, in
// every phase, a person's PUT or apply keeps the percent the rollout set, and
// tracked while the rollout is active; a flag never rolled out takes what
// the edit says.
func TestRolloutOwnsPercentAfterStart(t *testing.T) {
	for _, tc := range []struct {
		phase   rollout.Phase // "" for no rollout record
		percent float64       // what the rollout set
		tracked bool
		want    float64 // the percent after an edit that says 30
	}{
		{"", 0, false, 30},
		{rollout.Progressing, 10, true, 10},
		{rollout.Paused, 10, true, 10},
		{rollout.Promoted, 100, false, 100},
		{rollout.RolledBack, 0, false, 0},
		{rollout.Aborted, 0, false, 0},
	} {
		name := string(tc.phase)
		if name == "" {
			name = "never started"
		}
		t.Run(name, func(t *testing.T) {
			e := start(t, server.Config{})
			e.mustStatus(e.do("PUT", "/api/v1/flags/a", e.admin, flagJSON("a", 0)), http.StatusCreated)
			if tc.phase != "" {
				// What the rollout controller does at a transition: the
				// state and the flag in one transaction.
				ctx := t.Context()
				if err := e.srv.Store().Update(ctx, store.Actor{Name: "rollout"}, func(tx store.Tx) error {
					f, err := tx.Flag(ctx, "a")
					if err != nil {
						return err
					}
					f.Tracked, f.Rollout.Percent = tc.tracked, tc.percent
					if _, err := tx.PutFlag(ctx, f); err != nil {
						return err
					}
					st := rollout.New("a")
					st.Phase, st.Percent, st.Step = tc.phase, tc.percent, 1
					raw, err := json.Marshal(st)
					if err != nil {
						return err
					}
					_, err = tx.PutRollout(ctx, store.Rollout{Key: "a", State: raw})
					return err
				}); err != nil {
					t.Fatal(err)
				}
			}
			// A person's PUT keeps both.
			body := flagJSON("a", 30)
			body["description"] = "edited"
			body["tracked"] = !tc.tracked
			var f flag.Flag
			e.mustStatus(e.do("PUT", "/api/v1/flags/a", e.admin, body), http.StatusOK).json(t, &f)
			if f.Tracked != tc.tracked || f.Rollout.Percent != tc.want || f.Description != "edited" {
				t.Fatalf("after PUT: tracked %v at %v%% %q, want tracked %v at %v%%", f.Tracked, f.Rollout.Percent, f.Description, tc.tracked, tc.want)
			}
			// So does applying a flags file, dry run or not; one that says
			// 50% changes nothing but the percent, which stays.
			file := `{"flags": [{"key": "a", "description": "edited", "variants": {"on": true, "off": false},
				"control": "off", "treatment": "on", "enabled": true, "rollout": {"percent": 50}}]}`
			for _, path := range []string{"/api/v1/apply?dryRun=true", "/api/v1/apply"} {
				var r server.ApplyResult
				e.mustStatus(e.do("POST", path, e.admin, file), http.StatusOK).json(t, &r)
				changed := fmt.Sprint(r.Updated) == "[a]"
				if changed != (tc.phase == "") {
					t.Errorf("%s: %+v", path, r)
				}
			}
			e.mustStatus(e.do("GET", "/api/v1/flags/a", e.admin, nil), http.StatusOK).json(t, &f)
			want := tc.want
			if tc.phase == "" {
				want = 50
			}
			if f.Tracked != tc.tracked || f.Rollout.Percent != want {
				t.Errorf("after apply: tracked %v at %v%%, want tracked %v at %v%%", f.Tracked, f.Rollout.Percent, tc.tracked, want)
			}
			// The rollout's record outlives the flag: created again, the
			// flag takes the rollout's percent.
			e.mustStatus(e.do("DELETE", "/api/v1/flags/a", e.admin, nil), http.StatusOK)
			e.mustStatus(e.do("PUT", "/api/v1/flags/a", e.admin, body), http.StatusCreated).json(t, &f)
			if f.Tracked != tc.tracked || f.Rollout.Percent != tc.want {
				t.Errorf("created again: tracked %v at %v%%, want tracked %v at %v%%", f.Tracked, f.Rollout.Percent, tc.tracked, tc.want)
			}
		})
	}
}

const flagsYAML = `
flags:
  - key: alpha
    variants: {on: true, off: false}
    control: off
    treatment: on
    enabled: true
    rollout: {percent: 5}
  - key: beta
    variants: {on: true, off: false}
    control: off
    enabled: false
`

func TestApply(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		e.mustStatus(e.do("PUT", "/api/v1/flags/gamma", e.admin, flagJSON("gamma", 1)), http.StatusCreated)
		var r server.ApplyResult
		e.mustStatus(e.do("POST", "/api/v1/apply?dryRun=true", e.admin, flagsYAML), http.StatusOK).json(t, &r)
		if !r.DryRun || fmt.Sprint(r.Created) != "[alpha beta]" || len(r.Updated)+len(r.Deleted) != 0 || fmt.Sprint(r.Unchanged) != "[gamma]" {
			t.Fatalf("dry run %+v", r)
		}
		var list server.FlagList
		e.mustStatus(e.do("GET", "/api/v1/flags", e.admin, nil), http.StatusOK).json(t, &list)
		if len(list.Flags) != 1 {
			t.Fatalf("dry run wrote: %+v", list)
		}
		e.mustStatus(e.do("POST", "/api/v1/apply", e.admin, flagsYAML), http.StatusOK).json(t, &r)
		if r.DryRun || fmt.Sprint(r.Created) != "[alpha beta]" || r.Revision != 3 {
			t.Fatalf("apply %+v", r)
		}
		// Applying again is a no-op; a changed file updates; prune deletes.
		e.mustStatus(e.do("POST", "/api/v1/apply", e.admin, flagsYAML), http.StatusOK).json(t, &r)
		if len(r.Created)+len(r.Updated) != 0 || r.Revision != 3 {
			t.Fatalf("re-apply %+v", r)
		}
		changed := strings.Replace(flagsYAML, "percent: 5", "percent: 50", 1)
		e.mustStatus(e.do("POST", "/api/v1/apply?prune=true&dryRun=true", e.admin, changed), http.StatusOK).json(t, &r)
		if fmt.Sprint(r.Updated) != "[alpha]" || fmt.Sprint(r.Deleted) != "[gamma]" || fmt.Sprint(r.Unchanged) != "[beta]" {
			t.Fatalf("prune dry run %+v", r)
		}
		e.mustStatus(e.do("POST", "/api/v1/apply?prune=true", e.admin, changed), http.StatusOK).json(t, &r)
		if r.Revision != 5 {
			t.Fatalf("prune apply %+v", r)
		}
		e.mustStatus(e.do("GET", "/api/v1/flags", e.admin, nil), http.StatusOK).json(t, &list)
		if len(list.Flags) != 2 || list.Flags[0].Rollout.Percent != 50 {
			t.Fatalf("after prune %+v", list)
		}
		// JSON works too.
		js, _ := json.Marshal(map[string]any{"flags": []any{flagJSON("delta", 1)}})
		e.mustStatus(e.do("POST", "/api/v1/apply", e.admin, js), http.StatusOK).json(t, &r)
		if fmt.Sprint(r.Created) != "[delta]" {
			t.Fatalf("json apply %+v", r)
		}
	})
}

// TestApplyIsAllOrNothing: one bad flag in a file rejects the whole file.
func TestApplyIsAllOrNothing(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		bad := flagsYAML + `
  - key: broken
    variants: {on: true}
    control: missing
`
		b := e.mustStatus(e.do("POST", "/api/v1/apply", e.admin, bad), http.StatusBadRequest).errorBody(t)
		if b.Flag != "broken" || b.Field != "control" || !strings.Contains(b.Error, `unknown variant "missing"`) {
			t.Fatalf("error %+v", b)
		}
		var list server.FlagList
		e.mustStatus(e.do("GET", "/api/v1/flags", e.admin, nil), http.StatusOK).json(t, &list)
		if len(list.Flags) != 0 || list.Revision != 0 {
			t.Fatalf("half applied: %+v", list)
		}
	})
}

// TestExplicitZeroInPlanIsRefused: a zero written in a plan is a value, never
// "not set" silently replaced by the default. A zero the plan cannot take
// (interval: 0s would bake for the default 30s) is refused by PUT and apply,
// naming the flag and field, and changes nothing; a zero it can take
// (minStepDuration: 0s) is kept as written, not read as the default 5m.
func TestExplicitZeroInPlanIsRefused(t *testing.T) {
	e := start(t, server.Config{})
	body := flagJSON("a", 0)
	body["rollout"] = map[string]any{"percent": 0, "plan": map[string]any{"interval": "0s", "minRequests": 10}}
	b := e.mustStatus(e.do("PUT", "/api/v1/flags/a", e.admin, body), http.StatusBadRequest).errorBody(t)
	if b.Flag != "a" || b.Field != "rollout.plan.interval" || !strings.Contains(b.Error, "0s is shorter than the minimum of 1s") {
		t.Errorf("PUT: %+v", b)
	}
	file := strings.Replace(flagsYAML, "rollout: {percent: 5}", "rollout: {percent: 5, plan: {minRequests: 0, onProviderError: {after: 0}}}", 1)
	b = e.mustStatus(e.do("POST", "/api/v1/apply", e.admin, file), http.StatusBadRequest).errorBody(t)
	if len(b.Errors) != 2 || b.Flag != "alpha" || b.Field != "rollout.plan.minRequests" || b.Errors[1].Field != "rollout.plan.onProviderError.after" ||
		!strings.Contains(b.Error, "a step must never pass on no data") {
		t.Errorf("apply: %+v", b)
	}
	var list server.FlagList
	e.mustStatus(e.do("GET", "/api/v1/flags", e.admin, nil), http.StatusOK).json(t, &list)
	if len(list.Flags) != 0 {
		t.Errorf("a refused change was stored: %+v", list.Flags)
	}
	// A zero the plan can take is stored as written and resolves to zero.
	body["rollout"] = map[string]any{"percent": 0, "plan": map[string]any{"minStepDuration": "0s", "minRequests": 10}}
	var f flag.Flag
	e.mustStatus(e.do("PUT", "/api/v1/flags/a", e.admin, body), http.StatusCreated).json(t, &f)
	spec, err := plan.OfFlag(f)
	if err != nil || spec == nil {
		t.Fatalf("stored plan %s: %v", f.Rollout.Plan, err)
	}
	if p, err := plan.Resolve(spec); err != nil || p.MinStepDuration != 0 || p.MinRequests != 10 {
		t.Errorf("stored plan %s resolves to %+v, %v; want minStepDuration 0s kept", f.Rollout.Plan, p, err)
	}
	// A plan without zeros is taken.
	file = strings.Replace(flagsYAML, "rollout: {percent: 5}", "rollout: {percent: 5, plan: {minRequests: 1, minStepDuration: 1s}}", 1)
	e.mustStatus(e.do("POST", "/api/v1/apply", e.admin, file), http.StatusOK)
}

// TestBadMetricQueryIsRefused: a custom metric's PromQL is parsed when the
// flag is written, so a typo is refused by PUT and apply, naming the flag
// and the field, instead of surfacing when a rollout starts.
func TestBadMetricQueryIsRefused(t *testing.T) {
	e := start(t, server.Config{})
	body := flagJSON("a", 0)
	body["rollout"] = map[string]any{"percent": 0, "plan": map[string]any{"metrics": []any{
		map[string]any{"name": "conversion", "direction": "lower-is-worse", "tolerance": 0.95,
			"query": `sum(increase(checkout_total{feature_flag_key="{{flag}}"}[{{window}}])`},
	}}}
	b := e.mustStatus(e.do("PUT", "/api/v1/flags/a", e.admin, body), http.StatusBadRequest).errorBody(t)
	if b.Flag != "a" || b.Field != "rollout.plan.metrics[0].query" || !strings.Contains(b.Error, "conversion") {
		t.Errorf("PUT: %+v", b)
	}
	file := strings.Replace(flagsYAML, "rollout: {percent: 5}", "rollout: {percent: 5, plan: {metrics: [{name: conversion, direction: lower-is-worse, tolerance: 0.95}]}}", 1)
	b = e.mustStatus(e.do("POST", "/api/v1/apply", e.admin, file), http.StatusBadRequest).errorBody(t)
	if b.Flag != "alpha" || b.Field != "rollout.plan.metrics[0].query" || !strings.Contains(b.Error, "needs a query") {
		t.Errorf("apply: %+v", b)
	}
	var list server.FlagList
	e.mustStatus(e.do("GET", "/api/v1/flags", e.admin, nil), http.StatusOK).json(t, &list)
	if len(list.Flags) != 0 {
		t.Errorf("a refused change was stored: %+v", list.Flags)
	}
}

func TestTokens(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		sdk := e.token("checkout-svc", store.RoleSDK)
		if !strings.HasPrefix(sdk, "vgl_") || len(sdk) < 40 {
			t.Fatalf("token %q", sdk)
		}
		e.mustStatus(e.do("GET", "/sdk/v1/snapshot", sdk, nil), http.StatusOK)
		e.mustStatus(e.do("POST", "/api/v1/tokens", e.admin, map[string]any{"name": "checkout-svc", "role": "sdk"}), http.StatusConflict).errorBody(t)
		// Reserved whatever the case, so that no "Admin" passes for the
		// admin token and no "Controller" for the rollout loop.
		for _, name := range []string{"admin", "Admin", "ADMIN", "controller", "Controller", "CONTROLLER"} {
			if b := e.mustStatus(e.do("POST", "/api/v1/tokens", e.admin, map[string]any{"name": name, "role": "sdk"}), http.StatusConflict).errorBody(t); b.Field != "name" || !strings.Contains(b.Error, "reserved") {
				t.Errorf("token named %s: %+v", name, b)
			}
		}
		var list server.TokenList
		r := e.mustStatus(e.do("GET", "/api/v1/tokens", e.admin, nil), http.StatusOK)
		r.json(t, &list)
		if len(list.Tokens) != 1 || list.Tokens[0].Name != "checkout-svc" || list.Tokens[0].Role != store.RoleSDK || list.Tokens[0].CreatedBy != "admin" {
			t.Fatalf("tokens %+v", list)
		}
		if strings.Contains(string(r.body), sdk) || strings.Contains(string(r.body), server.HashToken(sdk)) {
			t.Fatal("token list shows the secret or its hash")
		}
		e.mustStatus(e.do("DELETE", "/api/v1/tokens/checkout-svc", e.admin, nil), http.StatusNoContent)
		e.mustStatus(e.do("GET", "/sdk/v1/snapshot", sdk, nil), http.StatusUnauthorized).errorBody(t)
		e.mustStatus(e.do("DELETE", "/api/v1/tokens/checkout-svc", e.admin, nil), http.StatusNotFound).errorBody(t)
		var audit server.AuditList
		e.mustStatus(e.do("GET", "/api/v1/audit", e.admin, nil), http.StatusOK).json(t, &audit)
		if len(audit.Entries) != 2 || audit.Entries[0].Action != "token.revoke" || audit.Entries[1].Action != "token.create" {
			t.Fatalf("audit %+v", audit.Entries)
		}
	})
}

// TestRoles tries every role, and no token and a bad one, on every route.
func TestRoles(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		tokens := map[string]string{
			"none":   "",
			"bad":    "vgl_not-a-real-token",
			"admin":  e.admin,
			"reader": e.token("r", store.RoleReader),
			"sdk":    e.token("s", store.RoleSDK),
		}
		e.mustStatus(e.do("PUT", "/api/v1/flags/existing", e.admin, flagJSON("existing", 1)), http.StatusCreated)
		n := 0
		routes := []struct {
			method, path string
			body         func() any
			allowed      []string
			okStatus     int
		}{
			{"GET", "/api/v1/flags", nil, []string{"admin", "reader"}, 200},
			{"GET", "/api/v1/flags/existing", nil, []string{"admin", "reader"}, 200},
			{"PUT", "/api/v1/flags/f", func() any { n++; return flagJSON("f", float64(n)) }, []string{"admin"}, 0},
			{"DELETE", "/api/v1/flags/gone", nil, []string{"admin"}, 404},
			{"POST", "/api/v1/apply?dryRun=true", func() any { return flagsYAML }, []string{"admin"}, 200},
			{"GET", "/api/v1/audit", nil, []string{"admin", "reader"}, 200},
			{"GET", "/api/v1/tokens", nil, []string{"admin"}, 200},
			{"POST", "/api/v1/tokens", func() any { n++; return map[string]any{"name": fmt.Sprintf("t%d", n), "role": "sdk"} }, []string{"admin"}, 201},
			{"DELETE", "/api/v1/tokens/nobody", nil, []string{"admin"}, 404},
			{"GET", "/sdk/v1/snapshot", nil, []string{"admin", "reader", "sdk"}, 200},
		}
		for _, rt := range routes {
			for who, tok := range tokens {
				var body any
				if rt.body != nil {
					body = rt.body()
				}
				r := e.do(rt.method, rt.path, tok, body)
				allowed := false
				for _, a := range rt.allowed {
					allowed = allowed || a == who
				}
				switch {
				case who == "none" || who == "bad":
					if r.status != http.StatusUnauthorized {
						t.Errorf("%s %s as %s: %d, want 401", rt.method, rt.path, who, r.status)
					}
					r.errorBody(t)
				case !allowed:
					if r.status != http.StatusForbidden {
						t.Errorf("%s %s as %s: %d, want 403", rt.method, rt.path, who, r.status)
					}
					r.errorBody(t)
				case rt.okStatus != 0 && r.status != rt.okStatus:
					t.Errorf("%s %s as %s: %d, want %d: %s", rt.method, rt.path, who, r.status, rt.okStatus, r.body)
				case rt.okStatus == 0 && r.status >= 300:
					t.Errorf("%s %s as %s: %d: %s", rt.method, rt.path, who, r.status, r.body)
				}
			}
		}
		// The stream: every role may read it; no token or a bad one may not.
		for _, who := range []string{"none", "bad"} {
			e.mustStatus(e.do("GET", "/sdk/v1/stream", tokens[who], nil), http.StatusUnauthorized).errorBody(t)
		}
		for _, who := range []string{"admin", "reader", "sdk"} {
			ev, err := e.openStream(tokens[who]).next()
			if err != nil || ev.event != "snapshot" {
				t.Errorf("stream as %s: %+v %v", who, ev, err)
			}
		}
	})
}
