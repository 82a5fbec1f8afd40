package server_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"
	"unicode/utf8"

	"github.com/vigil-dev/vigil/controller/server"
)

// FuzzAdminInput sends arbitrary bodies to the endpoints that parse them:
// the controller answers every one with a success or a 4xx that has a
// message, never a 5xx, and never accepts invalid UTF-8 or a NUL byte.
func FuzzAdminInput(f *testing.F) {
	for _, seed := range []string{
		`{"key":"fz","variants":{"on":true,"off":false},"control":"off","treatment":"on","enabled":true,"rollout":{"percent":5}}`,
		`{"key":"fz","variants":{"a":1},"control":"a","rules":[{"variant":"a","when":[{"attribute":"v","op":"semver_gte","values":["1.2.3"]}]}]}`,
		`{"key":"fz","variants":{"a":1},"control":"a","rollout":{"percent":1,"plan":{"steps":[1,50],"interval":"1s","metrics":[{"name":"x"}]}}}`,
		`{"key":"fz","variants":{"a":1},"control":"a","version":-3}`,
		flagsYAML,
		"flags:\n  - key: a\n    variants: {on: 1}\n    control: on\n    rules: [{variant: on, when: [{attribute: x, op: matches, values: ['(']}]}]\n",
		`{"flags":[{"key":"a"}]}`,
		`{"key":"fz","key":"fz","variants":{"a":1},"control":"a"}`,
		`{"key":"fz","variants":{"a":1,"a":2},"control":"a"}`,
		`{"key":"fz","variants":{"a\u0000":1},"control":"a\u0000"}`,
		"{\"key\":\"fz\",\"description\":\"\xff\xfe\",\"variants\":{\"a\":1},\"control\":\"a\"}",
		`{"name":"n","role":"sdk","name":"m"}`,
		`{"key":"fz","variants":{"a":null,"b":[null]},"control":"a","treatment":null,"enabled":null,"rollout":{"percent":null,"plan":null}}`,
		`{"key":null,"variants":{"a":1},"control":"a","targets":[{"variant":"a","units":["u",null]}],"rules":[{"variant":"a","when":[{"attribute":"x","op":"in","values":[null]}]},{"variant":"a","when":null}]}`,
		"flags:\n  - {key: a, variants: {on: ~}, control: on, enabled: , targets: [null]}\n",
		`{"name":null,"role":"sdk"}`,
		"flags:\n  - {key: a, description: \"\\x00\", variants: {\"on\\0\": 1, on: 2}, control: on}\n",
		`[]`, `null`, `"x"`, `{`, "\x00", "",
	} {
		f.Add([]byte(seed))
	}
	e := start(f, server.Config{})
	f.Fuzz(func(t *testing.T, body []byte) {
		e := &env{t: t, url: e.url, srv: e.srv, admin: e.admin}
		for _, req := range []struct{ method, path string }{
			{"PUT", "/api/v1/flags/fz"},
			{"POST", "/api/v1/apply?dryRun=true"},
			{"POST", "/api/v1/tokens"},
		} {
			r := e.do(req.method, req.path, e.admin, body)
			if r.status >= 500 {
				t.Fatalf("%s %s: %d %s", req.method, req.path, r.status, r.body)
			}
			if r.status >= 400 {
				var b server.ErrorBody
				if err := json.Unmarshal(r.body, &b); err != nil || b.Error == "" {
					t.Fatalf("%s %s: %d without an error message: %s", req.method, req.path, r.status, r.body)
				}
			}
			// Text that is not UTF-8, or holds a NUL byte, is never stored.
			if (!utf8.Valid(body) || bytes.IndexByte(body, 0) >= 0) && r.status < 300 {
				t.Fatalf("%s %s: %d for a body that is not clean UTF-8: %q", req.method, req.path, r.status, body)
			}
			if req.method == "PUT" && r.status != http.StatusOK && r.status != http.StatusCreated && r.status != http.StatusBadRequest && r.status != http.StatusConflict {
				t.Fatalf("PUT: unexpected status %d: %s", r.status, r.body)
			}
		}
	})
}
