package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/vigil-dev/vigil/controller/server"
	"github.com/vigil-dev/vigil/controller/store"
	"github.com/vigil-dev/vigil/internal/testenv/poll"
	"github.com/vigil-dev/vigil/internal/testenv/servertest"
	"github.com/vigil-dev/vigil/internal/testenv/syncbuf"
)

const rolesAdminToken = "roles-test-admin-token-0123456789"

// The identities every route is tried with: no token, a token the
// controller never issued, and one token of each role.
const (
	asNone   = "none"
	asBad    = "bad"
	asAdmin  = "admin"
	asReader = "reader"
	asSDK    = "sdk"
	asIngest = "ingest"
)

var identities = []string{asNone, asBad, asAdmin, asReader, asSDK, asIngest}

// Who may use a route. The role decisions, also in docs/api.md:
//
//   - admin may do everything.
//   - reader is for people and for Grafana: every read of the admin API
//     (flags, audit, rollouts, dashboards) and the Prometheus query API, GET
//     or POST alike since a POSTed query changes nothing, plus the flag
//     delivery an SDK gets (/sdk/v1 and OFREP). It may not change anything:
//     no flag writes, no rollout commands, no tokens, and no OTLP push,
//     because pushed samples are what the rollout judge decides on, and a
//     reader token handed to a dashboard must not be able to steer it.
//   - sdk is for services: flag delivery (/sdk/v1, OFREP). Nothing else:
//     sdk tokens sit in every service's configuration, the least trusted
//     secret there is, so they see neither the admin API nor other
//     services' metrics, and may not push metrics: pushed samples decide
//     rollouts, and a leaked sdk token must not be able to promote one.
//   - ingest may only push OTLP metrics, for the collector or the services
//     trusted to report the metrics rollouts are judged on.
//   - /healthz, /readyz and /metrics take no token, so that orchestrators
//     and a Prometheus can probe and scrape the controller without one;
//     nor do the console's page and assets, which hold no data.
var (
	public    = []string{asNone, asBad, asAdmin, asReader, asSDK, asIngest}
	adminOnly = []string{asAdmin}
	readers   = []string{asAdmin, asReader}
	delivery  = []string{asAdmin, asReader, asSDK}
	pushers   = []string{asAdmin, asIngest}
)

// routeCase is what one registered route expects, and a request that
// exercises it.
type routeCase struct {
	// path is a concrete path for the route's pattern, with its query.
	path string
	// body, when set, makes the request's body; it runs once per request
	// so that requests which create something can create distinct things.
	body func() string
	// contentType of the body; default application/json.
	contentType string
	// allowed are the identities that get past authorization.
	allowed []string
	// stream marks a route whose answer never ends: only its status is read.
	stream bool
}

// roleRoutes is the expectation for every route `vigil serve` registers, by
// "METHOD pattern" as gin names it.
func roleRoutes() map[string]routeCase {
	tokenN := 0
	rc := map[string]routeCase{
		"GET /healthz": {path: "/healthz", allowed: public},
		"GET /readyz":  {path: "/readyz", allowed: public},
		"GET /metrics": {path: "/metrics", allowed: public},
		// The console's page and assets hold no data: what it shows comes
		// from the API below, with the signed-in token.
		"GET /":             {path: "/", allowed: public},
		"GET /assets/*file": {path: "/assets/app.js", allowed: public},

		"GET /api/v1/flags":                       {path: "/api/v1/flags", allowed: readers},
		"GET /api/v1/flags/:key":                  {path: "/api/v1/flags/existing", allowed: readers},
		"GET /api/v1/flags/:key/dashboard":        {path: "/api/v1/flags/existing/dashboard", allowed: readers},
		"GET /api/v1/audit":                       {path: "/api/v1/audit", allowed: readers},
		"GET /api/v1/whoami":                      {path: "/api/v1/whoami", allowed: readers},
		"GET /api/v1/console/overview":            {path: "/api/v1/console/overview", allowed: readers},
		"GET /api/v1/console/rollouts/:key/looks": {path: "/api/v1/console/rollouts/existing/looks", allowed: readers},
		// A POST that changes nothing, as OFREP's.
		"POST /api/v1/console/flags/:key/evaluate": {path: "/api/v1/console/flags/existing/evaluate",
			body: func() string { return `{"unit":"user-1"}` }, allowed: readers},
		"POST /api/v1/console/flags/:key/plan": {path: "/api/v1/console/flags/existing/plan",
			body: func() string { return `{"plan":{"steps":[10,100]}}` }, allowed: readers},
		// The same body each time: the first PUT creates, the rest change nothing.
		"PUT /api/v1/flags/:key":    {path: "/api/v1/flags/written", body: func() string { return flagBody("written", 5) }, allowed: adminOnly},
		"DELETE /api/v1/flags/:key": {path: "/api/v1/flags/never-created", allowed: adminOnly},
		"POST /api/v1/apply":        {path: "/api/v1/apply?dryRun=true", body: func() string { return "flags: []\n" }, contentType: "application/yaml", allowed: adminOnly},
		"GET /api/v1/tokens":        {path: "/api/v1/tokens", allowed: adminOnly},
		"POST /api/v1/tokens": {path: "/api/v1/tokens", body: func() string {
			tokenN++
			return fmt.Sprintf(`{"name":"minted-%d","role":"sdk"}`, tokenN)
		}, allowed: adminOnly},
		"DELETE /api/v1/tokens/:name": {path: "/api/v1/tokens/nobody", allowed: adminOnly},

		"GET /sdk/v1/snapshot": {path: "/sdk/v1/snapshot", allowed: delivery},
		"GET /sdk/v1/stream":   {path: "/sdk/v1/stream", allowed: delivery, stream: true},
		"POST /ofrep/v1/evaluate/flags/:key": {path: "/ofrep/v1/evaluate/flags/existing",
			body: func() string { return `{"context":{"targetingKey":"user-1"}}` }, allowed: delivery},
		"POST /ofrep/v1/evaluate/flags": {path: "/ofrep/v1/evaluate/flags",
			body: func() string { return `{"context":{"targetingKey":"user-1"}}` }, allowed: delivery},

		"GET /api/v1/rollouts":      {path: "/api/v1/rollouts?limit=1&state=pending,progressing&view=full", allowed: readers},
		"GET /api/v1/rollouts/:key": {path: "/api/v1/rollouts/existing", allowed: readers},

		// An empty export is valid and stores nothing.
		"POST /v1/metrics":             {path: "/v1/metrics", body: func() string { return `{}` }, allowed: pushers},
		"POST /api/v1/otlp/v1/metrics": {path: "/api/v1/otlp/v1/metrics", body: func() string { return `{}` }, allowed: pushers},
	}
	// Rollout commands act on a flag that does not exist, so that an
	// admin's request is authorized and then refused without starting a
	// rollout that later requests would trip over.
	for _, cmd := range []string{"start", "pause", "resume", "promote", "rollback", "abort"} {
		rc["POST /api/v1/rollouts/:key/"+cmd] = routeCase{path: "/api/v1/rollouts/never-created/" + cmd, allowed: adminOnly}
	}
	// Grafana sends queries either way; both are reads.
	for pattern, query := range map[string]string{
		"/api/v1/query":              "query=vector(1)",
		"/api/v1/query_range":        "query=vector(1)&start=0&end=60&step=15",
		"/api/v1/series":             "match[]=up",
		"/api/v1/labels":             "",
		"/api/v1/label/:name/values": "",
		"/api/v1/metadata":           "",
		"/api/v1/query_exemplars":    "query=up&start=0&end=60",
	} {
		path := strings.Replace(pattern, ":name", "__name__", 1)
		get := path
		if query != "" {
			get += "?" + query
		}
		rc["GET "+pattern] = routeCase{path: get, allowed: readers}
		if pattern == "/api/v1/label/:name/values" || pattern == "/api/v1/metadata" {
			continue // GET only, as in Prometheus
		}
		rc["POST "+pattern] = routeCase{path: path, body: func() string { return query },
			contentType: "application/x-www-form-urlencoded", allowed: readers}
	}
	return rc
}

// assembledController is the controller `vigil serve` runs, in process on
// a loopback port.
type assembledController struct {
	url    string
	engine *gin.Engine
	// tokens holds each identity's bearer token.
	tokens map[string]string
	stop   func()
}

// startAssembled builds the controller with assemble, as `vigil serve`
// does, from cfg (its logger and, if set, its store) on SQLite in a temp
// dir; mints a reader, an sdk and an ingest token; creates the flag "existing"; and
// waits until every part serves it. stop (also run at cleanup) shuts it
// down and waits for it.
func startAssembled(t *testing.T, cfg server.Config) *assembledController {
	t.Helper()
	cfg.DataDir, cfg.AdminToken = t.TempDir(), rolesAdminToken
	var engine *gin.Engine
	url, stop := servertest.Run(t, func(ctx context.Context) (*server.Server, error) {
		srv, _, err := assemble(ctx, cfg, nil)
		if err != nil {
			return nil, err
		}
		var ok bool
		if engine, ok = srv.Handler().(*gin.Engine); !ok {
			return nil, fmt.Errorf("server handler is a %T, not the gin engine whose routes the test enumerates", srv.Handler())
		}
		return srv, nil
	})
	a := &assembledController{url: url, engine: engine, stop: stop,
		tokens: map[string]string{asNone: "", asBad: "vgl_not-a-token-this-controller-issued", asAdmin: rolesAdminToken}}

	if code, body := a.do(t, http.MethodPut, "/api/v1/flags/existing", rolesAdminToken, flagBody("existing", 100), ""); code != http.StatusCreated {
		t.Fatalf("create flag: %d %s", code, body)
	}
	for _, role := range []string{asReader, asSDK, asIngest} {
		code, body := a.do(t, http.MethodPost, "/api/v1/tokens", rolesAdminToken, fmt.Sprintf(`{"name":"roles-%s","role":%q}`, role, role), "")
		var created server.CreatedToken
		if err := json.Unmarshal([]byte(body), &created); code != http.StatusCreated || err != nil || created.Token == "" {
			t.Fatalf("create %s token: %d %s", role, code, body)
		}
		a.tokens[role] = created.Token
	}
	// The SDK endpoints and OFREP load the flags in the background; wait
	// until both have "existing" so that no request below meets a 503.
	ofrep := `{"context":{"targetingKey":"user-1"}}`
	poll.Until(t, 30*time.Second, "the controller to serve the flag", func() error {
		ready, _ := a.do(t, http.MethodGet, "/readyz", "", "", "")
		evaluated, _ := a.do(t, http.MethodPost, "/ofrep/v1/evaluate/flags/existing", rolesAdminToken, ofrep, "")
		if ready == http.StatusOK && evaluated == http.StatusOK {
			return nil
		}
		return fmt.Errorf("readyz %d, ofrep %d", ready, evaluated)
	})
	return a
}

// do sends one request with token (none if empty) and returns the status
// and body.
func (a *assembledController) do(t *testing.T, method, path, token, body, contentType string) (int, string) {
	t.Helper()
	code, _, b := a.send(t, method, path, token, body, contentType, false)
	return code, b
}

// send is do with the response's headers, and for a stream only the
// status and headers: its body never ends.
func (a *assembledController) send(t *testing.T, method, path, token, body, contentType string, stream bool) (int, http.Header, string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, a.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType == "" {
		contentType = "application/json"
	}
	if body != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	if stream && resp.StatusCode == http.StatusOK {
		return resp.StatusCode, resp.Header, ""
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

// exercise sends every case's request as every identity; check sees each
// answer.
func (a *assembledController) exercise(t *testing.T, cases map[string]routeCase, check func(route, who string, rc routeCase, code int, header http.Header, body string)) {
	t.Helper()
	routes := make([]string, 0, len(cases))
	for r := range cases {
		routes = append(routes, r)
	}
	slices.Sort(routes)
	for _, route := range routes {
		rc := cases[route]
		method, _, _ := strings.Cut(route, " ")
		for _, who := range identities {
			var body string
			if rc.body != nil {
				body = rc.body()
			}
			code, header, b := a.send(t, method, rc.path, a.tokens[who], body, rc.contentType, rc.stream)
			check(route, who, rc, code, header, b)
		}
	}
}

// TestRolesEveryServeRoute tries no token, a bad token and every role on
// every route of the controller `vigil serve` assembles: the server's own,
// the metric store's query API and OTLP receiver, dashboards, rollouts and
// OFREP. The routes come from the router itself, so a route added without
// an expectation here fails the test.
func TestRolesEveryServeRoute(t *testing.T) {
	a := startAssembled(t, server.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	cases := roleRoutes()

	registered := map[string]bool{}
	for _, r := range a.engine.Routes() {
		key := r.Method + " " + r.Path
		registered[key] = true
		if _, ok := cases[key]; !ok {
			t.Errorf("route %s has no role expectation: add it to roleRoutes, and to docs/api.md", key)
		}
	}
	for key := range cases {
		if !registered[key] {
			t.Errorf("role expectation for %s, which vigil serve does not register", key)
		}
	}

	a.exercise(t, cases, func(route, who string, rc routeCase, code int, header http.Header, body string) {
		var e server.ErrorBody
		jsonErr := json.Unmarshal([]byte(body), &e)
		switch {
		case slices.Contains(rc.allowed, who):
			// Past authorization the handler may still refuse the request
			// (a missing flag is 404), but never as an auth failure, and a
			// route that fails with 5xx is broken for everyone.
			if code == http.StatusUnauthorized || code == http.StatusForbidden || code >= 500 {
				t.Errorf("%s as %s: %d %s; want it authorized", route, who, code, body)
			}
		case who == asNone || who == asBad:
			if code != http.StatusUnauthorized || header.Get("WWW-Authenticate") != `Bearer realm="vigil"` || jsonErr != nil || e.Error == "" {
				t.Errorf("%s as %s: %d %q %s; want 401 with a Bearer challenge and an error body", route, who, code, header.Get("WWW-Authenticate"), body)
			}
		default:
			if code != http.StatusForbidden || jsonErr != nil || !strings.Contains(e.Error, "which may not") {
				t.Errorf("%s as %s: %d %s; want 403 naming the role", route, who, code, body)
			}
		}
	})
}

// TestTokensNeverLogged runs every route with every token through the
// controller `vigil serve` assembles, logging at debug level, along with a
// revoked token, an oversized body and a token lookup on a failed store;
// then it shuts the controller down and checks that no token appears in
// the log: neither the secrets nor their stored hashes, which a log reader
// could match against a leaked database.
func TestTokensNeverLogged(t *testing.T) {
	var logs syncbuf.Buffer
	// The test owns the store so that it can make it fail under the server.
	st, err := store.Open(context.Background(), t.TempDir(), "")
	if err != nil {
		t.Fatal(err)
	}
	// Registered first, so it runs after the server stops; closing twice is
	// harmless, and the test closes it itself on the way.
	t.Cleanup(func() { st.Close() })
	a := startAssembled(t, server.Config{Store: st, Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	minted := []string{}
	a.exercise(t, roleRoutes(), func(route, who string, _ routeCase, code int, _ http.Header, body string) {
		if route == "POST /api/v1/tokens" && code == http.StatusCreated {
			var c server.CreatedToken
			if err := json.Unmarshal([]byte(body), &c); err != nil || c.Token == "" {
				t.Fatalf("created token: %s", body)
			}
			minted = append(minted, c.Token)
		}
	})
	// Requests refused on the way in: a revoked token, and a body over the
	// limit.
	if code, body := a.do(t, http.MethodDelete, "/api/v1/tokens/roles-sdk", rolesAdminToken, "", ""); code != http.StatusNoContent {
		t.Fatalf("revoke sdk token: %d %s", code, body)
	}
	if code, _ := a.do(t, http.MethodGet, "/sdk/v1/snapshot", a.tokens[asSDK], "", ""); code != http.StatusUnauthorized {
		t.Fatalf("revoked sdk token: %d, want 401", code)
	}
	if code, _ := a.do(t, http.MethodPut, "/api/v1/flags/huge", rolesAdminToken, strings.Repeat("x", 2<<20), ""); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("huge body: %d, want 413", code)
	}
	// A store that fails while a token is looked up is the one place the
	// server logs during authentication. Known tokens are checked in
	// memory; one it has never seen is looked up in the store.
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if code, body := a.do(t, http.MethodGet, "/api/v1/flags", a.tokens[asBad], "", ""); code != http.StatusServiceUnavailable {
		t.Fatalf("token lookup on a closed store: %d %s, want 503", code, body)
	}
	a.stop()

	log := logs.String()
	// The server must have logged into the buffer for its silence about
	// tokens to mean anything.
	if !strings.Contains(log, "vigil controller listening") || !strings.Contains(log, `msg="look up token"`) {
		t.Fatalf("the log shows no sign of the server:\n%s", log)
	}
	secrets := append([]string{a.tokens[asBad], a.tokens[asAdmin], a.tokens[asReader], a.tokens[asSDK], a.tokens[asIngest]}, minted...)
	if len(minted) == 0 {
		t.Fatal("no token was minted through the API")
	}
	for _, s := range secrets {
		for _, form := range []string{s, server.HashToken(s)} {
			if strings.Contains(log, form) {
				t.Errorf("the log holds token %q (or its hash):\n%s", s, log)
			}
		}
	}
}
