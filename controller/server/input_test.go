package server_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/vigil-dev/vigil/controller/server"
)

// TestBadInput sends malformed requests: each gets a 4xx with a message and
// the field at fault, and changes nothing.
func TestBadInput(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		e.mustStatus(e.do("PUT", "/api/v1/flags/keep", e.admin, flagJSON("keep", 1)), http.StatusCreated)
		unknownField := flagJSON("x", 1)
		unknownField["colour"] = "red"
		badPercent := flagJSON("x", 101)
		badVariant := flagJSON("x", 1)
		badVariant["control"] = "nope"
		wrongType := flagJSON("x", 1)
		wrongType["enabled"] = "yes"
		cases := []struct {
			name         string
			method, path string
			body         any
			headers      []string
			status       int
			field        string
			msg          string
		}{
			{"unknown field", "PUT", "/api/v1/flags/x", unknownField, nil, 400, "colour", "unknown field"},
			{"percent out of range", "PUT", "/api/v1/flags/x", badPercent, nil, 400, "rollout.percent", "out of range"},
			{"unknown variant", "PUT", "/api/v1/flags/x", badVariant, nil, 400, "control", `unknown variant "nope"`},
			{"wrong type", "PUT", "/api/v1/flags/x", wrongType, nil, 400, "enabled", "want bool"},
			{"key mismatch", "PUT", "/api/v1/flags/x", flagJSON("y", 1), nil, 400, "key", "differs"},
			{"bad key", "PUT", "/api/v1/flags/-x", flagJSON("-x", 1), nil, 400, "key", "letters, digits"},
			{"not json", "PUT", "/api/v1/flags/x", "{not json", nil, 400, "", "invalid JSON"},
			{"empty body", "PUT", "/api/v1/flags/x", "", nil, 400, "", "empty"},
			{"trailing data", "PUT", "/api/v1/flags/x", `{"key":"x"} {}`, nil, 400, "", "after the JSON value"},
			{"bad If-Match", "PUT", "/api/v1/flags/keep", flagJSON("keep", 2), []string{"If-Match", "latest"}, 400, "If-Match", "not a flag version"},
			{"apply bad yaml", "POST", "/api/v1/apply", "flags: [", nil, 400, "", "yaml"},
			{"apply empty", "POST", "/api/v1/apply", "", nil, 400, "", "empty"},
			{"apply unknown field", "POST", "/api/v1/apply", "flags:\n  - key: a\n    colour: red\n", nil, 400, "colour", "unknown field"},
			{"apply duplicate", "POST", "/api/v1/apply", "flags:\n  - {key: a, variants: {on: 1}, control: on}\n  - {key: a, variants: {on: 1}, control: on}\n", nil, 400, "key", "duplicate"},
			{"apply bad dryRun", "POST", "/api/v1/apply?dryRun=maybe", flagsYAML, nil, 400, "dryRun", "true or false"},
			{"token bad role", "POST", "/api/v1/tokens", map[string]any{"name": "n", "role": "root"}, nil, 400, "role", "admin, reader, sdk or ingest"},
			{"token bad name", "POST", "/api/v1/tokens", map[string]any{"name": "a b", "role": "sdk"}, nil, 400, "name", "letters"},
			{"token unknown field", "POST", "/api/v1/tokens", map[string]any{"name": "n", "role": "sdk", "ttl": 3}, nil, 400, "ttl", "unknown field"},
			{"duplicate key", "PUT", "/api/v1/flags/x", `{"key":"x","key":"y","variants":{"on":true},"control":"on"}`, nil, 400, "key", "twice"},
			{"duplicate nested key", "PUT", "/api/v1/flags/x", `{"key":"x","variants":{"on":true,"on":false},"control":"on"}`, nil, 400, "variants.on", "twice"},
			{"NUL in a name", "PUT", "/api/v1/flags/x", `{"key":"x","variants":{"on\u0000":true},"control":"on"}`, nil, 400, "variants.on\x00", "NUL"},
			{"NUL in a value", "PUT", "/api/v1/flags/x", `{"key":"x","description":"a\u0000b","variants":{"on":true},"control":"on"}`, nil, 400, "description", "NUL"},
			{"NUL byte", "PUT", "/api/v1/flags/x", "{\"key\":\"x\x00\"}", nil, 400, "", "NUL byte at byte 9"},
			{"invalid UTF-8", "PUT", "/api/v1/flags/x", "{\"key\":\"x\",\"description\":\"\xff\"}", nil, 400, "", "not valid UTF-8 at byte 26"},
			{"not JSON content", "PUT", "/api/v1/flags/x", flagJSON("x", 1), []string{"Content-Type", "text/plain"}, 415, "Content-Type", "application/json"},
			{"apply NUL byte", "POST", "/api/v1/apply", "flags:\n  - {key: \"a\x00\", variants: {on: 1}, control: on}\n", nil, 400, "", "NUL byte"},
			{"apply form content", "POST", "/api/v1/apply", flagsYAML, []string{"Content-Type", "application/x-www-form-urlencoded"}, 415, "Content-Type", "application/yaml"},
			{"token duplicate key", "POST", "/api/v1/tokens", `{"name":"n","role":"sdk","role":"admin"}`, nil, 400, "role", "twice"},
			{"null percent", "PUT", "/api/v1/flags/x", `{"key":"x","variants":{"on":true},"control":"on","treatment":"on","rollout":{"percent":null}}`, nil, 400, "rollout.percent", "null is not a value"},
			{"null enabled", "PUT", "/api/v1/flags/x", `{"key":"x","variants":{"on":true},"control":"on","enabled":null}`, nil, 400, "enabled", "null is not a value"},
			{"null control", "PUT", "/api/v1/flags/x", `{"key":"x","variants":{"on":true},"control":null}`, nil, 400, "control", "null is not a value"},
			{"null unit", "PUT", "/api/v1/flags/x", `{"key":"x","variants":{"on":true},"control":"on","targets":[{"variant":"on","units":["qa",null]}]}`, nil, 400, "targets[0].units[1]", "null is not a value"},
			{"null clause value", "PUT", "/api/v1/flags/x", `{"key":"x","variants":{"on":true},"control":"on","rules":[{"variant":"on","when":[{"attribute":"plan","op":"in","values":[null]}]}]}`, nil, 400, "rules[0].when[0].values[0]", "null is not a value"},
			{"null target", "PUT", "/api/v1/flags/x", `{"key":"x","variants":{"on":true},"control":"on","targets":[null]}`, nil, 400, "targets[0]", "null is not a value"},
			{"apply null percent", "POST", "/api/v1/apply", "flags:\n  - {key: a, variants: {on: 1}, control: on, treatment: on, rollout: {percent: null}}\n", nil, 400, "rollout.percent", "null is not a value"},
			{"apply empty enabled", "POST", "/api/v1/apply", "flags:\n  - key: a\n    variants: {on: 1}\n    control: on\n    enabled:\n", nil, 400, "enabled", "null is not a value"},
			{"apply null unit", "POST", "/api/v1/apply", "flags:\n  - {key: a, variants: {on: 1}, control: on, targets: [{variant: on, units: [~]}]}\n", nil, 400, "targets[0].units[0]", "null is not a value"},
			{"apply JSON null clause value", "POST", "/api/v1/apply", `{"flags":[{"key":"a","variants":{"on":1},"control":"on","rules":[{"variant":"on","when":[{"attribute":"plan","op":"in","values":["a",null]}]}]}]}`, []string{"Content-Type", "application/json"}, 400, "rules[0].when[0].values[1]", "null is not a value"},
			{"apply key twice", "POST", "/api/v1/apply", "flags:\n  - {key: a, variants: {on: 1, off: 0, on: 2}, control: on}\n", nil, 400, "variants.on", "the key is given twice"},
			{"apply nested unknown field", "POST", "/api/v1/apply", "flags:\n  - {key: a, variants: {on: 1}, control: on, rollout: {percnt: 5}}\n", nil, 400, "rollout.percnt", "unknown field"},
			{"apply NUL escape in a name", "POST", "/api/v1/apply", "flags:\n  - {key: a, variants: {\"on\\0\": 1, on: 2}, control: on}\n", nil, 400, "variants.on\x00", "NUL character"},
			{"apply JSON NUL escape", "POST", "/api/v1/apply", `{"flags":[{"key":"a","description":"x\u0000","variants":{"on":1},"control":"on"}]}`, []string{"Content-Type", "application/json"}, 400, "description", "NUL character"},
			{"audit bad limit", "GET", "/api/v1/audit?limit=0", nil, nil, 400, "limit", "whole number"},
			{"no route", "GET", "/api/v1/nothing", nil, nil, 404, "", "no such endpoint"},
			{"wrong method", "PATCH", "/api/v1/flags/keep", nil, nil, 405, "", "not allowed"},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				r := e.do(c.method, c.path, e.admin, c.body, c.headers...)
				if r.status != c.status {
					t.Fatalf("status %d, want %d: %s", r.status, c.status, r.body)
				}
				b := r.errorBody(t)
				if b.Field != c.field || !strings.Contains(b.Error, c.msg) {
					t.Fatalf("error %+v, want field %q and a message with %q", b, c.field, c.msg)
				}
			})
		}
		var list server.FlagList
		e.mustStatus(e.do("GET", "/api/v1/flags", e.admin, nil), http.StatusOK).json(t, &list)
		if len(list.Flags) != 1 || list.Revision != 1 {
			t.Fatalf("bad input changed flags: %+v", list)
		}
	})
}

func TestBodyLimit(t *testing.T) {
	e := start(t, server.Config{MaxBodyBytes: 4096})
	big := flagJSON("big", 1)
	big["description"] = strings.Repeat("x", 5000)
	b := e.mustStatus(e.do("PUT", "/api/v1/flags/big", e.admin, big), http.StatusRequestEntityTooLarge).errorBody(t)
	if !strings.Contains(b.Error, "4096") {
		t.Fatalf("message %q does not name the limit", b.Error)
	}
	e.mustStatus(e.do("POST", "/api/v1/apply", e.admin, "flags: []\n# "+strings.Repeat("x", 5000)), http.StatusRequestEntityTooLarge)
	e.mustStatus(e.do("GET", "/api/v1/flags/big", e.admin, nil), http.StatusNotFound)
}

func TestDefaultBodyLimitIsOneMiB(t *testing.T) {
	e := start(t, server.Config{})
	big := flagJSON("big", 1)
	big["description"] = strings.Repeat("x", 1<<20)
	e.mustStatus(e.do("PUT", "/api/v1/flags/big", e.admin, big), http.StatusRequestEntityTooLarge)
	big["description"] = strings.Repeat("x", 1<<19)
	e.mustStatus(e.do("PUT", "/api/v1/flags/big", e.admin, big), http.StatusCreated)
}

func TestShortAdminTokenRefused(t *testing.T) {
	_, err := server.New(t.Context(), server.Config{DataDir: t.TempDir(), AdminToken: "secret", Logger: quietLogger()})
	if err == nil || !strings.Contains(err.Error(), "at least 16") {
		t.Fatalf("err %v", err)
	}
}

// TestNullWhereLeftOut: null is still taken where it means what leaving
// the field out means, and as a variant's value, which may be any JSON
// value (docs/bucketing.md); a flag as the controller serves it, with a
// rule that has no clauses ("when": null), can be written back as it is.
func TestNullWhereLeftOut(t *testing.T) {
	e := start(t, server.Config{})
	body := `{"key":"n","description":null,"variants":{"none":null,"on":{"limit":null}},"control":"none","treatment":null,` +
		`"targets":null,"rules":[{"variant":"on","when":null}],"rollout":null,"salt":null}`
	e.mustStatus(e.do("PUT", "/api/v1/flags/n", e.admin, body), http.StatusCreated)
	r := e.mustStatus(e.do("GET", "/api/v1/flags/n", e.admin, nil), http.StatusOK)
	if !strings.Contains(string(r.body), `"none":null`) || !strings.Contains(string(r.body), `"when":null`) {
		t.Fatalf("stored %s", r.body)
	}
	e.mustStatus(e.do("PUT", "/api/v1/flags/n", e.admin, r.body), http.StatusOK)
	e.mustStatus(e.do("POST", "/api/v1/apply", e.admin, "flags:\n  - key: m\n    variants: {none: null, on: 1}\n    control: none\n    description:\n    rollout:\n"), http.StatusOK)
}
