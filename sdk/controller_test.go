package sdk

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-dev/vigil/sdk/flag"
)

// fakeController serves docs/sdk-protocol.md over real HTTP on loopback. It
// exists because the tests need faults the real controller cannot produce on
// demand: stale and invalid events, a silent stream, a stream that refuses
// connections while the snapshot still answers.
type fakeController struct {
	t     *testing.T
	srv   *httptest.Server
	token string

	mu       sync.Mutex
	revision int64
	flags    map[string]flag.Flag
	streams  map[*fakeStream]struct{}
	// refuseStream answers the stream with 503; down answers everything
	// with 503; silent streams send no pings.
	refuseStream, down, silent bool
	ping                       time.Duration
	polls, notModified, conns  int
	// badFlags are served in snapshots as they are, without validation.
	badFlags []json.RawMessage
}

type fakeStream struct {
	frames chan string
	kill   chan struct{}
}

func newFakeController(t *testing.T, flags ...flag.Flag) *fakeController {
	t.Helper()
	f := &fakeController{t: t, token: "sdk-token", flags: map[string]flag.Flag{}, streams: map[*fakeStream]struct{}{}, ping: 50 * time.Millisecond}
	for _, fl := range flags {
		f.revision++
		fl.Version = f.revision
		f.flags[fl.Key] = fl
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /sdk/v1/snapshot", f.serveSnapshot)
	mux.HandleFunc("GET /sdk/v1/stream", f.serveStream)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(func() {
		f.dropStreams()
		f.srv.CloseClientConnections()
		f.srv.Close()
	})
	return f
}

func (f *fakeController) url() string { return f.srv.URL }

func (f *fakeController) authorized(w http.ResponseWriter, r *http.Request) bool {
	if r.Header.Get("Authorization") != "Bearer "+f.token {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"error": "missing or bad token"}`)
		return false
	}
	return true
}

// snapshotJSON renders the snapshot object; the caller holds mu.
func (f *fakeController) snapshotJSON() []byte {
	var buf bytes.Buffer
	fmt.Fprintf(&buf, `{"revision": %d, "flags": [`, f.revision)
	first := true
	for _, fl := range f.flags {
		if !first {
			buf.WriteByte(',')
		}
		first = false
		b, err := json.Marshal(fl)
		if err != nil {
			f.t.Errorf("fake controller: %v", err)
		}
		buf.Write(b)
	}
	for _, raw := range f.badFlags {
		if !first {
			buf.WriteByte(',')
		}
		first = false
		buf.Write(raw)
	}
	buf.WriteString("]}")
	return buf.Bytes()
}

func (f *fakeController) serveSnapshot(w http.ResponseWriter, r *http.Request) {
	if !f.authorized(w, r) {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.polls++
	if f.down {
		http.Error(w, `{"error": "down for the test"}`, http.StatusServiceUnavailable)
		return
	}
	etag := strconv.Quote(strconv.FormatInt(f.revision, 10))
	w.Header().Set("ETag", etag)
	if r.Header.Get("If-None-Match") == etag {
		f.notModified++
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(f.snapshotJSON())
}

func (f *fakeController) serveStream(w http.ResponseWriter, r *http.Request) {
	if !f.authorized(w, r) {
		return
	}
	if r.Header.Get("Accept") != "text/event-stream" {
		f.t.Errorf("stream request Accept = %q", r.Header.Get("Accept"))
	}
	f.mu.Lock()
	if f.refuseStream || f.down {
		f.mu.Unlock()
		http.Error(w, `{"error": "stream refused for the test"}`, http.StatusServiceUnavailable)
		return
	}
	f.conns++
	s := &fakeStream{frames: make(chan string, 64), kill: make(chan struct{})}
	f.streams[s] = struct{}{}
	first := frame("snapshot", f.revision, f.snapshotJSON())
	silent, ping := f.silent, f.ping
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.streams, s)
		f.mu.Unlock()
	}()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	fl := w.(http.Flusher)
	if !silent {
		fmt.Fprint(w, first)
	}
	fl.Flush()
	t := time.NewTicker(ping)
	defer t.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-s.kill:
			return
		case fr := <-s.frames:
			fmt.Fprint(w, fr)
			fl.Flush()
		case <-t.C:
			if !silent {
				fmt.Fprint(w, ": ping\n\n")
				fl.Flush()
			}
		}
	}
}

func frame(event string, id int64, data []byte) string {
	return fmt.Sprintf("event: %s\nid: %d\ndata: %s\n\n", event, id, data)
}

// broadcast sends a frame to every open stream; the caller holds mu.
func (f *fakeController) broadcast(fr string) {
	for s := range f.streams {
		s.frames <- fr
	}
}

// set creates or replaces a flag at the next version and streams it.
func (f *fakeController) set(fl flag.Flag) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.revision++
	fl.Version = f.revision
	f.flags[fl.Key] = fl
	b, _ := json.Marshal(fl)
	f.broadcast(frame("put", f.revision, b))
	return f.revision
}

// remove deletes a flag at the next version and streams the delete.
func (f *fakeController) remove(key string) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.revision++
	delete(f.flags, key)
	f.broadcast(frame("delete", f.revision, fmt.Appendf(nil, `{"key": %q, "version": %d}`, key, f.revision)))
	return f.revision
}

// sendRaw streams an event as given, whatever the store holds.
func (f *fakeController) sendRaw(event string, id int64, data string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.broadcast(frame(event, id, []byte(data)))
}

// sendFrames streams frames in one write, as the controller writes the
// changes of one store read.
func (f *fakeController) sendFrames(frames ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.broadcast(strings.Join(frames, ""))
}

// putFrame is a put event of fl at version, whatever the store holds.
func putFrame(fl flag.Flag, version int64) string {
	fl.Version = version
	b, _ := json.Marshal(fl)
	return frame("put", version, b)
}

// deleteFrame is a delete event of key at version.
func deleteFrame(key string, version int64) string {
	return frame("delete", version, fmt.Appendf(nil, `{"key": %q, "version": %d}`, key, version))
}

func (f *fakeController) dropStreams() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for s := range f.streams {
		close(s.kill)
		delete(f.streams, s)
	}
}

func (f *fakeController) update(fn func(f *fakeController)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeController) stat(fn func(f *fakeController) int) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return fn(f)
}

// rollout is a boolean flag with variants off and on, a rollout at percent
// and the tracked mark.
func rollout(key string, percent float64, tracked bool) flag.Flag {
	return flag.Flag{
		Key:       key,
		Variants:  map[string]json.RawMessage{"off": json.RawMessage("false"), "on": json.RawMessage("true")},
		Control:   "off",
		Treatment: "on",
		Enabled:   true,
		Rollout:   &flag.Rollout{Percent: percent},
		Tracked:   tracked,
	}
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// logBuffer is a concurrency-safe log sink for asserting on log messages.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) contains(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Contains(l.buf.String(), s)
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// newTestClient starts a client against f with fast timings.
func newTestClient(t *testing.T, f *fakeController, mod func(*Config)) (*Client, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	cfg := Config{
		ServerURL:         f.url(),
		Token:             f.token,
		InitTimeout:       5 * time.Second,
		PollInterval:      20 * time.Millisecond,
		StreamIdleTimeout: 2 * time.Second,
		BackoffMin:        10 * time.Millisecond,
		BackoffMax:        50 * time.Millisecond,
		Logger:            logs.logger(),
	}
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, logs
}
