package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vigil-dev/vigil/controller/server"
	"github.com/vigil-dev/vigil/controller/store"
	"github.com/vigil-dev/vigil/internal/testenv/poll"
	"github.com/vigil-dev/vigil/sdk"
	"github.com/vigil-dev/vigil/sdk/flag"
)

func TestStreamEvents(t *testing.T) {
	for _, k := range storeKinds {
		t.Run(k.name, func(t *testing.T) {
			cfg := server.Config{Heartbeat: 50 * time.Millisecond}
			k.cfg(t, &cfg)
			e := start(t, cfg)
			e.mustStatus(e.do("PUT", "/api/v1/flags/a", e.admin, flagJSON("a", 1)), http.StatusCreated)
			s := e.openStream(e.token("svc", store.RoleSDK))
			next := func() sseEvent {
				t.Helper()
				for {
					ev, err := s.next()
					if err != nil {
						t.Fatal(err)
					}
					if ev.event != ":" {
						return ev
					}
				}
			}
			ev := next()
			var snap server.SnapshotBody
			if err := json.Unmarshal([]byte(ev.data), &snap); err != nil {
				t.Fatal(err)
			}
			if ev.event != "snapshot" || ev.id != "1" || snap.Revision != 1 || len(snap.Flags) != 1 || snap.Flags[0].Version != 1 {
				t.Fatalf("first event %+v", ev)
			}
			e.mustStatus(e.do("PUT", "/api/v1/flags/a", e.admin, flagJSON("a", 7)), http.StatusOK)
			ev = next()
			var f flag.Flag
			if err := json.Unmarshal([]byte(ev.data), &f); err != nil {
				t.Fatal(err)
			}
			if ev.event != "put" || ev.id != "2" || f.Key != "a" || f.Version != 2 || f.Rollout.Percent != 7 {
				t.Fatalf("put event %+v", ev)
			}
			e.mustStatus(e.do("DELETE", "/api/v1/flags/a", e.admin, nil), http.StatusOK)
			ev = next()
			if ev.event != "delete" || ev.id != "3" || ev.data != `{"key":"a","version":3}` {
				t.Fatalf("delete event %+v", ev)
			}
			// Heartbeats keep coming while nothing changes.
			for pings := 0; pings < 2; {
				ev, err := s.next()
				if err != nil {
					t.Fatal(err)
				}
				if ev.event != ":" || ev.data != "ping" {
					t.Fatalf("want a ping, got %+v", ev)
				}
				pings++
			}
		})
	}
}

func TestSnapshotETag(t *testing.T) {
	e := start(t, server.Config{})
	tok := e.token("svc", store.RoleSDK)
	r := e.mustStatus(e.do("GET", "/sdk/v1/snapshot", tok, nil), http.StatusOK)
	if r.header.Get("ETag") != `"0"` || string(r.body) != `{"revision":0,"flags":[]}` {
		t.Fatalf("empty snapshot %s %s", r.header.Get("ETag"), r.body)
	}
	e.mustStatus(e.do("PUT", "/api/v1/flags/a", e.admin, flagJSON("a", 1)), http.StatusCreated)
	r = waitSnapshot(t, e, tok, 1)
	r = e.mustStatus(e.do("GET", "/sdk/v1/snapshot", tok, nil, "If-None-Match", `"1"`), http.StatusNotModified)
	if len(r.body) != 0 {
		t.Fatalf("304 with a body: %s", r.body)
	}
	e.mustStatus(e.do("PUT", "/api/v1/flags/a", e.admin, flagJSON("a", 2)), http.StatusOK)
	r = waitSnapshot(t, e, tok, 2)
	var snap server.SnapshotBody
	r.json(t, &snap)
	if snap.Revision != 2 || snap.Flags[0].Rollout.Percent != 2 {
		t.Fatalf("snapshot %s", r.body)
	}
}

// waitSnapshot polls the snapshot until it reaches revision rev.
func waitSnapshot(t *testing.T, e *env, tok string, rev int64) response {
	t.Helper()
	var r response
	poll.Until(t, 5*time.Second, fmt.Sprintf("the snapshot to reach revision %d", rev), func() error {
		r = e.do("GET", "/sdk/v1/snapshot", tok, nil)
		if r.status == http.StatusOK && r.header.Get("ETag") == `"`+strconv.FormatInt(rev, 10)+`"` {
			return nil
		}
		return fmt.Errorf("%d %s", r.status, r.body)
	})
	return r
}

// TestSDKClient runs the real Go SDK against the controller.
func TestSDKClient(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		e.mustStatus(e.do("PUT", "/api/v1/flags/checkout", e.admin, flagJSON("checkout", 0)), http.StatusCreated)
		ctx := t.Context()
		c, err := sdk.New(ctx, sdk.Config{ServerURL: e.url, Token: e.token("checkout-svc", store.RoleSDK), Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		unit := sdk.EvalContext{Key: "user-1"}
		waitFor(t, "the initial snapshot", func() bool { return !c.Bool(ctx, "checkout", unit, true) })
		e.mustStatus(e.do("PUT", "/api/v1/flags/checkout", e.admin, flagJSON("checkout", 100)), http.StatusOK)
		waitFor(t, "the put", func() bool { return c.Bool(ctx, "checkout", unit, false) })
		e.mustStatus(e.do("DELETE", "/api/v1/flags/checkout", e.admin, nil), http.StatusOK)
		waitFor(t, "the delete", func() bool {
			_, ok := c.Snapshot().Flag("checkout")
			return !ok && c.Snapshot().Revision() == 3
		})
	})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	poll.True(t, 5*time.Second, what, cond)
}

// TestShutdownEndsStreams: when the server's context ends, open streams
// end, each with an end event that says so, in-flight requests finish, and
// Serve returns nil.
func TestShutdownEndsStreams(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := server.New(ctx, server.Config{DataDir: t.TempDir(), AdminToken: adminSecret, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	e := &env{t: t, url: "http://" + ln.Addr().String(), srv: srv, admin: adminSecret}
	e.waitReady()
	s := e.openStream(adminSecret)
	if ev, err := s.next(); err != nil || ev.event != "snapshot" {
		t.Fatalf("first event %+v %v", ev, err)
	}
	cancel()
	if ev, err := s.next(); err != nil || ev.event != "end" || ev.data != `{"reason":"shutdown"}` || ev.id != "" {
		t.Fatalf("the stream's last event %+v %v; want end for shutdown, without an id", ev, err)
	}
	if _, err := io.ReadAll(s.br); err != nil {
		t.Fatalf("stream did not end cleanly: %v", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
	if _, err := http.Get(e.url + "/healthz"); err == nil {
		t.Fatal("still accepting connections after shutdown")
	}
}

func TestMetricsAndHealth(t *testing.T) {
	e := start(t, server.Config{})
	e.mustStatus(e.do("GET", "/healthz", "", nil), http.StatusOK)
	e.mustStatus(e.do("GET", "/readyz", "", nil), http.StatusOK)
	e.mustStatus(e.do("PUT", "/api/v1/flags/a", e.admin, flagJSON("a", 1)), http.StatusCreated)
	e.mustStatus(e.do("GET", "/api/v1/flags/missing", e.admin, nil), http.StatusNotFound)
	s := e.openStream(e.admin)
	if _, err := s.next(); err != nil {
		t.Fatal(err)
	}
	body := string(e.mustStatus(e.do("GET", "/metrics", "", nil), http.StatusOK).body)
	for _, want := range []string{
		`vigil_http_requests_total{code="201",route="/api/v1/flags/:key"} 1`,
		`vigil_http_requests_total{code="404",route="/api/v1/flags/:key"} 1`,
		`vigil_sse_clients 1`,
		`vigil_flags_revision 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if !regexp.MustCompile(`vigil_store_duration_seconds_count\{op="update"\} [1-9]`).MatchString(body) {
		t.Error("metrics lack store latency of updates")
	}
	if strings.Contains(body, adminSecret) {
		t.Error("metrics show the admin token")
	}
}

// TestReadyzBeforeTheFlagsLoad: a replica that has not loaded its flags
// cannot serve SDKs, so /readyz answers 503 "not ready" even when not
// strict; a strict value that is not a boolean is refused, naming it.
func TestReadyzBeforeTheFlagsLoad(t *testing.T) {
	srv, err := server.New(t.Context(), server.Config{DataDir: t.TempDir(), AdminToken: adminSecret, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	// The handler alone, without Serve: nothing loads the flags.
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	t.Cleanup(func() { srv.Store().Close() })
	e := &env{t: t, url: hs.URL, srv: srv, admin: adminSecret}
	var ready server.ReadyBody
	r := e.mustStatus(e.do("GET", "/readyz", "", nil), http.StatusServiceUnavailable)
	r.json(t, &ready)
	if ready.Status != "not ready" || ready.Checks["flags"] == "ok" || ready.Checks["store"] != "ok" || r.header.Get("Retry-After") == "" {
		t.Errorf("/readyz before the flags load: %s (Retry-After %q); want not ready naming the flags", r.body, r.header.Get("Retry-After"))
	}
	if b := e.mustStatus(e.do("GET", "/readyz?strict=maybe", "", nil), http.StatusBadRequest).errorBody(t); b.Field != "strict" {
		t.Errorf("/readyz?strict=maybe: %+v; want the field named", b)
	}
}

// gatedBody signals on its first Read, which the client's transport does
// only after the handler asked for the body (Expect: 100-continue), and then
// waits to be released before giving the data.
type gatedBody struct {
	started chan struct{}
	release chan struct{}
	data    io.Reader
	once    bool
}

func (g *gatedBody) Read(p []byte) (int, error) {
	if !g.once {
		g.once = true
		close(g.started)
		<-g.release
	}
	return g.data.Read(p)
}

// TestShutdownFinishesInFlight: a request that a handler is reading when the
// server is told to stop still completes, and then Serve returns nil.
func TestShutdownFinishesInFlight(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	srv, err := server.New(ctx, server.Config{DataDir: dir, AdminToken: adminSecret, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	e := &env{t: t, url: "http://" + ln.Addr().String(), srv: srv, admin: adminSecret}
	e.waitReady()

	js, _ := json.Marshal(flagJSON("inflight", 3))
	body := &gatedBody{started: make(chan struct{}), release: make(chan struct{}), data: bytes.NewReader(js)}
	req, _ := http.NewRequest("PUT", e.url+"/api/v1/flags/inflight", body)
	req.Header.Set("Authorization", "Bearer "+adminSecret)
	req.Header.Set("Expect", "100-continue")
	req.ContentLength = int64(len(js))
	client := &http.Client{Transport: &http.Transport{ExpectContinueTimeout: time.Minute}}
	result := make(chan int, 1)
	go func() {
		resp, err := client.Do(req)
		if err != nil {
			t.Error(err)
			result <- 0
			return
		}
		resp.Body.Close()
		result <- resp.StatusCode
	}()
	<-body.started // the handler is reading the body
	cancel()
	close(body.release)
	if code := <-result; code != http.StatusCreated {
		t.Fatalf("in-flight PUT finished with %d, want 201", code)
	}
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
	// The change was committed before the store closed.
	s, err := store.OpenSQLite(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if f, err := s.Flag(context.Background(), "inflight"); err != nil || f.Rollout.Percent != 3 {
		t.Fatalf("after shutdown: %+v %v", f, err)
	}
}
