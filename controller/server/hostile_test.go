package server_test

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-dev/vigil/controller/ofrep"
	"github.com/vigil-dev/vigil/controller/server"
	"github.com/vigil-dev/vigil/controller/store"
	"github.com/vigil-dev/vigil/internal/testenv/pgtest"
	"github.com/vigil-dev/vigil/internal/testenv/poll"
	"github.com/vigil-dev/vigil/internal/testenv/syncbuf"
	"github.com/vigil-dev/vigil/sdk"
	"github.com/vigil-dev/vigil/sdk/flag"
)

// dialFrom opens a TCP connection to the server at base from the loopback
// address local, such as 127.0.0.2, so that a test can be several clients.
func dialFrom(t *testing.T, local, base string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatalf("dial from %s: %v", local, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedByServer reports whether the server closes c, without answering,
// within 5 s.
func closedByServer(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

// TestStalledBodiesAreAnswered: a client that declares a body and never
// sends it gets its answer at once where the handler does not need the
// body (a 401, /healthz), long before the read deadline, and a 400 at the
// read deadline where the handler does need it; the server then closes the
// connection.
func TestStalledBodiesAreAnswered(t *testing.T) {
	patient := start(t, server.Config{ReadTimeout: time.Hour})
	strict := start(t, server.Config{ReadTimeout: time.Second})
	auth := "Authorization: Bearer " + adminSecret + "\r\n"
	for _, c := range []struct {
		e   *env
		req string
	}{
		{patient, "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n"},
		{patient, "PUT /api/v1/flags/a HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n"},
		{patient, "POST /sdk/v1/snapshot HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n"},
		{patient, "PUT /api/v1/flags/a HTTP/1.1\r\nHost: x\r\n" + auth + "Content-Length: 2000000\r\n\r\n"},
		{strict, "PUT /api/v1/flags/a HTTP/1.1\r\nHost: x\r\n" + auth + "Content-Length: 10\r\n\r\n"},
		{strict, "PUT /api/v1/flags/a HTTP/1.1\r\nHost: x\r\n" + auth + "Content-Length: 10\r\n\r\n{\"ke"},
	} {
		line, _, _ := strings.Cut(c.req, "\r\n")
		conn := dialFrom(t, "127.0.0.1", c.e.url)
		if _, err := io.WriteString(conn, c.req); err != nil {
			t.Fatal(err)
		}
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("%s with a body that never comes: no answer: %v", line, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK && !strings.HasPrefix(line, "GET /healthz") || resp.StatusCode >= 500 {
			t.Errorf("%s: %s", line, resp.Status)
		}
		if !resp.Close {
			t.Errorf("%s: the answer keeps the connection open for the rest of a body that never comes", line)
		}
		if !closedByServer(conn) {
			t.Errorf("%s: the server did not close the connection", line)
		}
	}
	// A body read to its end keeps the connection for the next request.
	r := patient.mustStatus(patient.do("PUT", "/api/v1/flags/a", patient.admin, flagJSON("a", 1)), http.StatusCreated)
	if r.header.Get("Connection") == "close" {
		t.Error("a fully read body closes the connection")
	}
}

// TestManyStalledClients: hundreds of connections from one client that
// never finish their headers, and more beyond its cap, do not keep the
// controller from answering another client: /healthz, the admin API and a
// live stream still answer, and the refusals are logged.
func TestManyStalledClients(t *testing.T) {
	const capacity, stalled = 200, 300
	var logs syncbuf.Buffer
	e := start(t, server.Config{MaxConnsPerClient: capacity, Heartbeat: time.Hour,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	s := e.openStream(e.admin)
	if ev, err := s.next(); err != nil || ev.event != "snapshot" {
		t.Fatalf("first event %+v %v", ev, err)
	}

	conns := make([]net.Conn, stalled)
	for i := range conns {
		conns[i] = dialFrom(t, "127.0.0.2", e.url)
		if _, err := io.WriteString(conns[i], "GET /healthz HTTP/1.1\r\nHost: x\r\n"); err != nil {
			// The server may already have closed a connection over the cap.
			continue
		}
	}
	closed := 0
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, c := range conns {
		wg.Go(func() {
			if closedByServer(c) {
				mu.Lock()
				closed++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if closed < stalled-capacity {
		t.Errorf("the server closed %d of %d connections from one client within 5 s; want at least the %d over its cap of %d", closed, stalled, stalled-capacity, capacity)
	}
	poll.Until(t, 5*time.Second, "the refusals in the log", func() error {
		if l := logs.String(); !strings.Contains(l, "refusing connections over the connection cap") || !strings.Contains(l, "client=127.0.0.2") {
			return fmt.Errorf("log:\n%s", l)
		}
		return nil
	})

	// Another client is served meanwhile.
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	get := func(path string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", e.url+path, nil)
		req.Header.Set("Authorization", "Bearer "+e.admin)
		resp, err := fresh.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", path, resp.Status)
		}
		return nil
	}
	for _, path := range []string{"/healthz", "/api/v1/flags", "/sdk/v1/snapshot"} {
		poll.Until(t, 5*time.Second, "GET "+path+" beside the stalled client", func() error { return get(path) })
	}
	e.mustStatus(e.do("PUT", "/api/v1/flags/a", e.admin, flagJSON("a", 1)), http.StatusCreated)
	if ev, err := s.next(); err != nil || ev.event != "put" {
		t.Fatalf("the live stream after the change: %+v %v", ev, err)
	}
	if ev, err := e.openStream(e.admin).next(); err != nil || ev.event != "snapshot" {
		t.Fatalf("a new stream beside the stalled client: %+v %v", ev, err)
	}
	metrics := string(e.mustStatus(e.do("GET", "/metrics", "", nil), http.StatusOK).body)
	if !strings.Contains(metrics, "vigil_http_connections_refused_total ") || strings.Contains(metrics, "vigil_http_connections_refused_total 0\n") {
		t.Error("vigil_http_connections_refused_total does not count the refusals")
	}
}

// TestStreamClientThatDoesNotRead: a stream whose client stops reading is
// ended at its write deadline rather than held open forever.
func TestStreamClientThatDoesNotRead(t *testing.T) {
	st, err := store.OpenSQLite(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	// A snapshot of several MiB fills the socket buffers of a client that
	// reads nothing.
	err = st.Update(t.Context(), store.Actor{Name: "test"}, func(tx store.Tx) error {
		for i := range 3 {
			f := flag.Flag{Key: fmt.Sprintf("big-%d", i), Description: strings.Repeat("x", 3<<20),
				Variants: map[string]json.RawMessage{"on": json.RawMessage("true"), "off": json.RawMessage("false")}, Control: "off", Treatment: "on"}
			if _, err := tx.PutFlag(t.Context(), f); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	e := start(t, server.Config{Store: st, StreamWriteTimeout: 200 * time.Millisecond})
	c := dialFrom(t, "127.0.0.1", e.url)
	if err := c.(*net.TCPConn).SetReadBuffer(4096); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, "GET /sdk/v1/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+adminSecret+"\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	clients := func() string {
		for _, l := range strings.Split(string(e.do("GET", "/metrics", "", nil).body), "\n") {
			if strings.HasPrefix(l, "vigil_sse_clients ") {
				return l
			}
		}
		return ""
	}
	poll.Until(t, 5*time.Second, "the stream to open", func() error {
		if l := clients(); l != "vigil_sse_clients 1" {
			return errors.New(l)
		}
		return nil
	})
	poll.Until(t, 5*time.Second, "the stream to end at its write deadline", func() error {
		if l := clients(); l != "vigil_sse_clients 0" {
			return errors.New(l)
		}
		return nil
	})
}

// streamEnds reports whether s ends (the server closes it) within 10 s,
// skipping heartbeats and events.
func streamEnds(s *sseReader) bool {
	ended := make(chan bool, 1)
	go func() {
		for {
			if _, err := s.next(); err != nil {
				ended <- true
				return
			}
		}
	}()
	select {
	case <-ended:
		return true
	case <-time.After(10 * time.Second):
		s.resp.Body.Close()
		return false
	}
}

// TestRevocationEndsStreamsOnEveryReplica: two replicas share one
// PostgreSQL database; revoking a token through one ends the streams it
// opened on both, and both refuse it, though neither rereads the store on
// its own for an hour: the revocation travels through the change feed.
func TestRevocationEndsStreamsOnEveryReplica(t *testing.T) {
	url := pgtest.Database(t)
	a := start(t, server.Config{DatabaseURL: url, Resync: time.Hour, Heartbeat: time.Hour})
	b := start(t, server.Config{DatabaseURL: url, Resync: time.Hour, Heartbeat: time.Hour})
	revoked := a.token("leaked", store.RoleSDK)
	kept := a.token("kept", store.RoleSDK)
	var streams []*sseReader
	for _, e := range []*env{a, b} {
		for _, tok := range []string{revoked, kept} {
			// b may not have heard of the tokens yet: the first request
			// finds them in the store.
			s := e.openStream(tok)
			if ev, err := s.next(); err != nil || ev.event != "snapshot" {
				t.Fatalf("first event %+v %v", ev, err)
			}
			streams = append(streams, s)
		}
	}
	a.mustStatus(a.do("DELETE", "/api/v1/tokens/leaked", a.admin, nil), http.StatusNoContent)
	for i, replica := range []string{"a", "b"} {
		if !streamEnds(streams[2*i]) {
			t.Errorf("replica %s: the revoked token's stream is still open 10 s after the revocation", replica)
		}
	}
	for i, e := range []*env{a, b} {
		poll.Until(t, 5*time.Second, "the revoked token to be refused", func() error {
			if r := e.do("GET", "/sdk/v1/snapshot", revoked, nil); r.status != http.StatusUnauthorized {
				return fmt.Errorf("replica %d: %d", i, r.status)
			}
			return nil
		})
	}
	// The other token's streams go on.
	a.mustStatus(a.do("PUT", "/api/v1/flags/a", a.admin, flagJSON("a", 1)), http.StatusCreated)
	for i := range 2 {
		if ev, err := streams[2*i+1].next(); err != nil || ev.event != "put" {
			t.Errorf("replica %d: the kept token's stream: %+v %v", i, ev, err)
		}
	}
}

// TestStreamsHaveAMaximumAge: a stream ends at its maximum age with an end
// event, and the Go SDK reconnects, goes on following the flags and logs
// the planned ends at Debug only; a stream dropped for a revoked token, no
// planned end, it warns of.
func TestStreamsHaveAMaximumAge(t *testing.T) {
	e := start(t, server.Config{StreamMaxAge: 300 * time.Millisecond, Heartbeat: time.Hour})
	tok := e.token("svc", store.RoleSDK)
	s := e.openStream(tok)
	if ev, err := s.next(); err != nil || ev.event != "snapshot" {
		t.Fatalf("first event %+v %v", ev, err)
	}
	if ev, err := s.next(); err != nil || ev.event != "end" || ev.data != `{"reason":"max-age"}` {
		t.Fatalf("the event at the stream's maximum age: %+v %v; want end", ev, err)
	}
	if !streamEnds(s) {
		t.Fatal("a stream outlived its maximum age of 300ms by 10 s")
	}
	var logs syncbuf.Buffer
	c, err := sdk.New(t.Context(), sdk.Config{ServerURL: e.url, Token: tok,
		Logger:     slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		BackoffMin: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond, PollInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	streamsOpened := func() int {
		for _, l := range strings.Split(string(e.do("GET", "/metrics", "", nil).body), "\n") {
			if v, ok := strings.CutPrefix(l, `vigil_http_requests_total{code="200",route="/sdk/v1/stream"} `); ok {
				n, _ := strconv.Atoi(v)
				return n
			}
		}
		return 0
	}
	// The test's own stream above was the first.
	poll.Until(t, 10*time.Second, "the SDK to reconnect as its streams age out", func() error {
		if n := streamsOpened(); n < 4 {
			return fmt.Errorf("%d streams opened", n)
		}
		return nil
	})
	e.mustStatus(e.do("PUT", "/api/v1/flags/f", e.admin, flagJSON("f", 100)), http.StatusCreated)
	waitFor(t, "the SDK to follow a change after reconnecting", func() bool {
		return c.Bool(t.Context(), "f", sdk.EvalContext{Key: "user-1"}, false)
	})
	if got := logs.String(); strings.Contains(got, "level=WARN") || !strings.Contains(got, "level=DEBUG msg=\"vigil: the controller ended the flag stream; reconnecting\" reason=max-age") {
		t.Errorf("SDK log over streams that aged out, want their ends at Debug only:\n%s", got)
	}
	e.mustStatus(e.do("DELETE", "/api/v1/tokens/svc", e.admin, nil), http.StatusNoContent)
	poll.True(t, 10*time.Second, "the SDK to warn of the stream its revoked token lost", func() bool {
		return strings.Contains(logs.String(), "level=WARN msg=\"vigil: flag stream down")
	})
}

// TestDatabaseOutage: while the PostgreSQL database is down, SDK delivery
// (snapshot, a live stream, a new stream, OFREP) goes on from memory with
// tokens checked in memory; admin requests answer 503 with Retry-After and
// change nothing; /readyz stays 200, "degraded", naming the store, so that
// the load balancer keeps the replica for SDKs, and /readyz?strict=true
// answers 503. When the database is back, all is as before.
func TestDatabaseOutage(t *testing.T) {
	dbURL := pgtest.Database(t)
	e := start(t, server.Config{DatabaseURL: dbURL, Heartbeat: time.Hour, Extensions: []server.Extension{ofrep.Extension(ofrep.Config{})}})
	e.mustStatus(e.do("PUT", "/api/v1/flags/a", e.admin, flagJSON("a", 100)), http.StatusCreated)
	tok := e.token("svc", store.RoleSDK)
	evaluate := func() response {
		return e.do("POST", "/ofrep/v1/evaluate/flags/a", tok, `{"context":{"targetingKey":"user-1"}}`)
	}
	poll.Until(t, 5*time.Second, "OFREP to serve the flag", func() error {
		if r := evaluate(); r.status != http.StatusOK {
			return fmt.Errorf("%d %s", r.status, r.body)
		}
		return nil
	})
	live := e.openStream(tok)
	if ev, err := live.next(); err != nil || ev.event != "snapshot" {
		t.Fatalf("first event %+v %v", ev, err)
	}

	pgtest.SetOutage(t, dbURL, true)
	t.Cleanup(func() { pgtest.SetOutage(t, dbURL, false) })
	var ready server.ReadyBody
	poll.Until(t, 10*time.Second, "/readyz to report the store down", func() error {
		r := e.do("GET", "/readyz", "", nil)
		ready = server.ReadyBody{}
		r.json(t, &ready)
		if r.status != http.StatusOK || ready.Status != "degraded" || ready.Checks["store"] == "ok" || !strings.Contains(ready.Error, "store") {
			return fmt.Errorf("%d %s", r.status, r.body)
		}
		return nil
	})
	if ready.Checks["flags"] != "ok" {
		t.Errorf("/readyz during the outage: %+v; want the flags ok", ready)
	}
	strict := e.do("GET", "/readyz?strict=true", "", nil)
	var strictBody server.ReadyBody
	strict.json(t, &strictBody)
	if strict.status != http.StatusServiceUnavailable || strict.header.Get("Retry-After") == "" || strictBody.Status != "degraded" || strictBody.Checks["store"] == "ok" {
		t.Errorf("/readyz?strict=true during the outage: %d %s; want 503 with Retry-After naming the store", strict.status, strict.body)
	}

	var snap server.SnapshotBody
	e.mustStatus(e.do("GET", "/sdk/v1/snapshot", tok, nil), http.StatusOK).json(t, &snap)
	if len(snap.Flags) != 1 || snap.Flags[0].Key != "a" {
		t.Errorf("snapshot during the outage: %+v", snap)
	}
	if r := evaluate(); r.status != http.StatusOK || !strings.Contains(string(r.body), `"variant":"on"`) {
		t.Errorf("OFREP during the outage: %d %s", r.status, r.body)
	}
	if ev, err := e.openStream(tok).next(); err != nil || ev.event != "snapshot" {
		t.Errorf("a new stream during the outage: %+v %v", ev, err)
	}
	for _, req := range []struct {
		method, path string
		body         any
	}{
		{"GET", "/api/v1/flags", nil},
		{"GET", "/api/v1/audit", nil},
		{"PUT", "/api/v1/flags/b", flagJSON("b", 1)},
		{"POST", "/api/v1/tokens", map[string]any{"name": "new", "role": "sdk"}},
	} {
		r := e.do(req.method, req.path, e.admin, req.body)
		if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
			t.Errorf("%s %s during the outage: %d (Retry-After %q) %s; want 503 with Retry-After", req.method, req.path, r.status, r.header.Get("Retry-After"), r.body)
		}
	}

	pgtest.SetOutage(t, dbURL, false)
	poll.Ready(t, 10*time.Second, e.url)
	var list server.FlagList
	e.mustStatus(e.do("GET", "/api/v1/flags", e.admin, nil), http.StatusOK).json(t, &list)
	if len(list.Flags) != 1 {
		t.Errorf("a 503 changed the flags: %+v", list)
	}
	e.mustStatus(e.do("PUT", "/api/v1/flags/b", e.admin, flagJSON("b", 1)), http.StatusCreated)
	if ev, err := live.next(); err != nil || ev.event != "put" || !strings.Contains(ev.data, `"key":"b"`) {
		t.Errorf("the stream opened before the outage, after it: %+v %v", ev, err)
	}
}

// TestLockedSQLiteFile: while another connection holds the SQLite file's
// write lock, as a sqlite3 shell in another process would, admin writes
// answer 503 with Retry-After after the store's short busy timeout, SDK
// delivery goes on, and /readyz, degraded, names the store although reads
// still work.
// Once the lock is let go, writes succeed again.
func TestLockedSQLiteFile(t *testing.T) {
	dir := t.TempDir()
	e := start(t, server.Config{DataDir: dir})
	e.mustStatus(e.do("PUT", "/api/v1/flags/a", e.admin, flagJSON("a", 100)), http.StatusCreated)
	tok := e.token("svc", store.RoleSDK)

	other, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "vigil.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	holder, err := other.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := holder.ExecContext(t.Context(), "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	release := sync.OnceFunc(func() {
		if _, err := holder.ExecContext(context.Background(), "ROLLBACK"); err != nil {
			t.Error(err)
		}
		holder.Close()
	})
	t.Cleanup(release)

	// A write used to wait out a 10 s busy timeout before its 503; the
	// bound is well above the store's timeout and below that.
	client := &http.Client{Timeout: 8 * time.Second}
	for _, req := range []struct{ method, path, body string }{
		{"PUT", "/api/v1/flags/b", `{"key": "b", "variants": {"on": true, "off": false}, "control": "off", "treatment": "on"}`},
		{"POST", "/api/v1/tokens", `{"name": "new", "role": "sdk"}`},
		{"DELETE", "/api/v1/flags/a", ""},
	} {
		hr, err := http.NewRequest(req.method, e.url+req.path, strings.NewReader(req.body))
		if err != nil {
			t.Fatal(err)
		}
		hr.Header.Set("Authorization", "Bearer "+e.admin)
		if req.body != "" {
			hr.Header.Set("Content-Type", "application/json")
		}
		resp, err := client.Do(hr)
		if err != nil {
			t.Fatalf("%s %s with the file locked: %v; want a prompt 503", req.method, req.path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
			t.Errorf("%s %s with the file locked: %d (Retry-After %q) %s; want 503 with Retry-After", req.method, req.path, resp.StatusCode, resp.Header.Get("Retry-After"), body)
		}
	}
	r := e.do("GET", "/readyz", "", nil)
	var ready server.ReadyBody
	r.json(t, &ready)
	if ready.Status != "degraded" || !strings.Contains(ready.Checks["store"], "locked") || !strings.Contains(ready.Error, "store") {
		t.Errorf("/readyz with the file locked: %d %s; want the store check failing", r.status, r.body)
	}
	var snap server.SnapshotBody
	e.mustStatus(e.do("GET", "/sdk/v1/snapshot", tok, nil), http.StatusOK).json(t, &snap)
	if len(snap.Flags) != 1 || snap.Flags[0].Key != "a" {
		t.Errorf("snapshot with the file locked: %+v", snap)
	}

	release()
	poll.Ready(t, 10*time.Second, e.url)
	e.mustStatus(e.do("PUT", "/api/v1/flags/b", e.admin, flagJSON("b", 1)), http.StatusCreated)
	e.mustStatus(e.do("GET", "/api/v1/flags/a", e.admin, nil), http.StatusOK)
}

// readSnapshotEvent reads a stream's response up to the end of its first
// event, allocating next to nothing however large the event.
func readSnapshotEvent(t *testing.T, base, token string) {
	t.Helper()
	c := dialFrom(t, "127.0.0.1", base)
	if _, err := io.WriteString(c, "GET /sdk/v1/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+token+"\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("stream: %v %v", resp, err)
	}
	br := bufio.NewReaderSize(resp.Body, 64<<10)
	for {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			t.Fatalf("read the snapshot event: %v", err)
		}
		if len(line) == 1 {
			return
		}
	}
}

// TestStreamsShareTheSnapshot: streams that start at the same revision
// share one snapshot event; the controller does not copy it per stream.
func TestStreamsShareTheSnapshot(t *testing.T) {
	const size, streams = 2 << 20, 20
	st, err := store.OpenSQLite(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	err = st.Update(t.Context(), store.Actor{Name: "test"}, func(tx store.Tx) error {
		_, err := tx.PutFlag(t.Context(), flag.Flag{Key: "big", Description: strings.Repeat("x", size),
			Variants: map[string]json.RawMessage{"on": json.RawMessage("true"), "off": json.RawMessage("false")}, Control: "off", Treatment: "on"})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	e := start(t, server.Config{Store: st, Heartbeat: time.Hour})
	readSnapshotEvent(t, e.url, e.admin)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range streams {
		readSnapshotEvent(t, e.url, e.admin)
	}
	runtime.ReadMemStats(&after)
	// Each stream's own copy of the event would allocate its size again.
	grew := after.TotalAlloc - before.TotalAlloc
	t.Logf("%d streams allocated %.1f MiB for a snapshot of %d MiB", streams, float64(grew)/(1<<20), size>>20)
	if grew > 5*size {
		t.Errorf("%d streams allocated %d MiB, for a snapshot of %d MiB: streams copy it", streams, grew>>20, size>>20)
	}
}
