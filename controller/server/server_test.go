package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vigil-dev/vigil/controller/server"
	"github.com/vigil-dev/vigil/controller/store"
	"github.com/vigil-dev/vigil/internal/testenv/pgtest"
	"github.com/vigil-dev/vigil/internal/testenv/poll"
	"github.com/vigil-dev/vigil/internal/testenv/servertest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

const adminSecret = "test-admin-token-0123456789"

// env is a running controller on a real loopback listener.
type env struct {
	t     testing.TB
	url   string
	srv   *server.Server
	admin string
}

type storeKind struct {
	name string
	cfg  func(t testing.TB, cfg *server.Config)
}

var storeKinds = []storeKind{
	{"sqlite", func(t testing.TB, cfg *server.Config) { cfg.DataDir = t.TempDir() }},
	{"postgres", func(t testing.TB, cfg *server.Config) { cfg.DatabaseURL = pgtest.Database(t) }},
}

func forEachStore(t *testing.T, fn func(t *testing.T, e *env)) {
	for _, k := range storeKinds {
		t.Run(k.name, func(t *testing.T) {
			cfg := server.Config{}
			k.cfg(t, &cfg)
			fn(t, start(t, cfg))
		})
	}
}

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// start runs a server with cfg (SQLite in a temp dir unless set) until the
// test ends.
func start(t testing.TB, cfg server.Config) *env {
	t.Helper()
	if cfg.DataDir == "" && cfg.DatabaseURL == "" && cfg.Store == nil {
		cfg.DataDir = t.TempDir()
	}
	if cfg.AdminToken == "" {
		cfg.AdminToken = adminSecret
	}
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	var srv *server.Server
	url, _ := servertest.Run(t, func(ctx context.Context) (s *server.Server, err error) {
		srv, err = server.New(ctx, cfg)
		return srv, err
	})
	e := &env{t: t, url: url, srv: srv, admin: adminSecret}
	e.waitReady()
	return e
}

func (e *env) waitReady() {
	poll.Ready(e.t, 10*time.Second, e.url)
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

func (r response) errorBody(t *testing.T) server.ErrorBody {
	t.Helper()
	var b server.ErrorBody
	r.json(t, &b)
	if b.Error == "" {
		t.Fatalf("error body without a message: %s", r.body)
	}
	return b
}

func (e *env) do(method, path, token string, body any, headers ...string) response {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		js, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(js)
	}
	req, err := http.NewRequest(method, e.url+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, b}
}

func (e *env) mustStatus(r response, want int) response {
	e.t.Helper()
	if r.status != want {
		e.t.Fatalf("status %d, want %d: %s", r.status, want, r.body)
	}
	return r
}

// token mints a token with role through the API.
func (e *env) token(name string, role store.Role) string {
	e.t.Helper()
	r := e.mustStatus(e.do("POST", "/api/v1/tokens", e.admin, map[string]any{"name": name, "role": role}), http.StatusCreated)
	var ct server.CreatedToken
	r.json(e.t, &ct)
	return ct.Token
}

func flagJSON(key string, percent float64) map[string]any {
	return map[string]any{
		"key":       key,
		"variants":  map[string]any{"on": true, "off": false},
		"control":   "off",
		"treatment": "on",
		"enabled":   true,
		"rollout":   map[string]any{"percent": percent},
	}
}

// sseEvent is one server-sent event.
type sseEvent struct {
	id, event, data string
}

// sseReader reads events and comments from a stream.
type sseReader struct {
	resp *http.Response
	br   *bufio.Reader
}

func (e *env) openStream(token string) *sseReader {
	e.t.Helper()
	req, _ := http.NewRequest("GET", e.url+"/sdk/v1/stream", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		e.t.Fatalf("stream: %d %s", resp.StatusCode, b)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		e.t.Fatalf("stream content type %q", ct)
	}
	e.t.Cleanup(func() { resp.Body.Close() })
	return &sseReader{resp: resp, br: bufio.NewReader(resp.Body)}
}

// next returns the next event, or a comment as an event named ":".
func (r *sseReader) next() (sseEvent, error) {
	var ev sseEvent
	for {
		line, err := r.br.ReadString('\n')
		if err != nil {
			return ev, err
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			if ev.event != "" || ev.data != "" {
				return ev, nil
			}
		case strings.HasPrefix(line, ":"):
			return sseEvent{event: ":", data: strings.TrimSpace(line[1:])}, nil
		case strings.HasPrefix(line, "id: "):
			ev.id = line[4:]
		case strings.HasPrefix(line, "event: "):
			ev.event = line[7:]
		case strings.HasPrefix(line, "data: "):
			ev.data += line[6:]
		default:
			return ev, errors.New("unexpected line " + line)
		}
	}
}
