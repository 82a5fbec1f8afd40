package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-dev/vigil/controller/server"
	"github.com/vigil-dev/vigil/dashboards"
	"github.com/vigil-dev/vigil/internal/testenv/pgtest"
	"github.com/vigil-dev/vigil/internal/testenv/servertest"
	"github.com/vigil-dev/vigil/sdk/flag"
)

// serveAssembled serves, on loopback until the test ends, the controller
// `vigil serve` assembles, and returns its URL and a client of it that
// sends token.
func serveAssembled(t *testing.T, token string) (string, func(method, path, body string) (int, string)) {
	t.Helper()
	url, _ := servertest.Run(t, func(ctx context.Context) (*server.Server, error) {
		srv, _, err := assemble(ctx, server.Config{
			DataDir: t.TempDir(), AdminToken: token,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		}, []string{"--scrape-interval", "1s"})
		return srv, err
	})

	do := func(method, path, body string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, url+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	return url, do
}

// TestServeMountsEveryPart checks that the controller `vigil serve`
// assembles answers each part's routes: the embedded metric store's query
// API and OTLP receiver, the dashboard route, rollouts and OFREP.
func TestServeMountsEveryPart(t *testing.T) {
	const token = "assemble-test-admin-token-0123456789"
	_, do := serveAssembled(t, token)
	if code, body := do(http.MethodPut, "/api/v1/flags/new-checkout",
		`{"key":"new-checkout","variants":{"off":false,"on":true},"control":"off","treatment":"on","enabled":true,"rollout":{"percent":100}}`); code != http.StatusOK && code != http.StatusCreated {
		t.Fatalf("put flag: %d %s", code, body)
	}
	for _, tc := range []struct {
		method, path, body string
		code               int
		contains           string
	}{
		{http.MethodGet, "/api/v1/query?query=vector(42)", "", http.StatusOK, `"42"`},
		{http.MethodGet, "/api/v1/labels", "", http.StatusOK, `"status":"success"`},
		{http.MethodGet, "/api/v1/flags/new-checkout/dashboard", "", http.StatusOK, `"uid": "vigil-flag-new-checkout"`},
		{http.MethodGet, "/api/v1/flags/missing/dashboard", "", http.StatusNotFound, `"field":"key"`},
		{http.MethodGet, "/api/v1/rollouts", "", http.StatusOK, `"rollouts"`},
		{http.MethodPost, "/ofrep/v1/evaluate/flags/new-checkout", `{"context":{"targetingKey":"user-1"}}`, http.StatusOK, `"variant":"on"`},
		// An empty OTLP export is valid and stores nothing.
		{http.MethodPost, "/v1/metrics", `{}`, http.StatusOK, ""},
	} {
		code, body := do(tc.method, tc.path, tc.body)
		if code != tc.code || !strings.Contains(body, tc.contains) {
			t.Errorf("%s %s: %d %s; want %d containing %s", tc.method, tc.path, code, body, tc.code, tc.contains)
		}
	}
}

// TestServeDashboardIsGenerated checks that GET /api/v1/flags/{key}/dashboard
// serves, byte for byte, the file `vigil dashboards generate` writes for the
// flag, and that both are dashboards.ForFlag of the flag the controller
// holds.
func TestServeDashboardIsGenerated(t *testing.T) {
	const token = "dashboard-test-admin-token-0123456789"
	url, do := serveAssembled(t, token)
	for _, f := range []string{
		`{"key":"new-checkout","variants":{"off":false,"on":true},"control":"off","treatment":"on","enabled":true,` +
			`"rollout":{"percent":5,"plan":{"metrics":[{"name":"latency","tolerance":1.2,"edges":[0.3,2]}]}}}`,
		// A key that the dashboard's UID cannot hold as it is.
		`{"key":"search.v2","variants":{"a":"a","b":"b"},"control":"a","enabled":true}`,
	} {
		var fl flag.Flag
		if err := json.Unmarshal([]byte(f), &fl); err != nil {
			t.Fatal(err)
		}
		if code, body := do(http.MethodPut, "/api/v1/flags/"+fl.Key, f); code != http.StatusOK && code != http.StatusCreated {
			t.Fatalf("put flag %s: %d %s", fl.Key, code, body)
		}
		code, served := do(http.MethodGet, "/api/v1/flags/"+fl.Key+"/dashboard", "")
		if code != http.StatusOK {
			t.Fatalf("GET dashboard of %s: %d %s", fl.Key, code, served)
		}
		dir := t.TempDir()
		if _, err := runCLI(t, "", "dashboards", "generate", "--flag", fl.Key, "-o", dir, "--server", url, "--token", token); err != nil {
			t.Fatal(err)
		}
		written, err := os.ReadFile(filepath.Join(dir, dashboards.UID(fl.Key)+".json"))
		if err != nil {
			t.Fatal(err)
		}
		if served != string(written) {
			t.Errorf("%s: the served dashboard differs from the generated one:\nserved:\n%.300s\ngenerated:\n%.300s", fl.Key, served, written)
		}
		code, body := do(http.MethodGet, "/api/v1/flags/"+fl.Key, "")
		var stored flag.Flag
		if err := json.Unmarshal([]byte(body), &stored); code != http.StatusOK || err != nil {
			t.Fatalf("GET flag %s: %d %v %s", fl.Key, code, err, body)
		}
		want, err := dashboards.ForFlag(stored, dashboards.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if served != string(want) {
			t.Errorf("%s: the served dashboard is not dashboards.ForFlag of the stored flag", fl.Key)
		}
	}
}

// TestDashboardDuringDatabaseOutage: while PostgreSQL is down the dashboard
// route answers 503 with Retry-After, as the rest of the admin API does.
func TestDashboardDuringDatabaseOutage(t *testing.T) {
	dbURL := pgtest.Database(t)
	a := startAssembled(t, server.Config{DatabaseURL: dbURL})
	pgtest.SetOutage(t, dbURL, true)
	t.Cleanup(func() { pgtest.SetOutage(t, dbURL, false) })
	code, header, body := a.send(t, http.MethodGet, "/api/v1/flags/existing/dashboard", rolesAdminToken, "", "", false)
	if code != http.StatusServiceUnavailable || header.Get("Retry-After") == "" {
		t.Errorf("dashboard during the outage: %d (Retry-After %q) %s, want 503 with Retry-After", code, header.Get("Retry-After"), body)
	}
}
