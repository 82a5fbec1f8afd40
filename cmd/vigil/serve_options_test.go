package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/vigil-dev/vigil/controller/server"
)

// TestServeMountsEveryPart checks that the controller `vigil serve`
// assembles answers each part's routes: the embedded metric store's query
// API and OTLP receiver, the dashboard route, rollouts and OFREP.
func TestServeMountsEveryPart(t *testing.T) {
	const token = "assemble-test-admin-token-0123456789"
	ctx, cancel := context.WithCancel(context.Background())
	srv, _, err := assemble(ctx, server.Config{
		DataDir: t.TempDir(), AdminToken: token,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, []string{"--scrape-interval", "1s"})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	url := "http://" + ln.Addr().String()

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
