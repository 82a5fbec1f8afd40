package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vigil-dev/vigil/controller/store"
	"github.com/vigil-dev/vigil/sdk/flag"
)

// clientBuffer is how many batches of events a stream may fall behind
// before the hub drops it; the client then reconnects and gets a snapshot.
const clientBuffer = 64

// hub holds the flags this controller serves to SDKs and fans changes out
// to the connected streams. One goroutine (run) follows the store; events
// are encoded once per change and shared by every stream.
type hub struct {
	store   store.Store
	tokens  *tokenCache
	log     *slog.Logger
	metrics *metrics
	resync  time.Duration

	ready atomic.Bool
	rev   atomic.Int64

	mu    sync.Mutex
	flags map[string]flag.Flag
	snap  []byte // the snapshot JSON at rev; nil when it must be rebuilt
	// snapEvent is the stream's snapshot event at rev, shared read-only by
	// every stream that starts at rev, so that memory does not grow with
	// the number of streams; nil when it must be rebuilt.
	snapEvent []byte
	clients   map[*streamClient]struct{}
	closed    bool
	// advanced is closed and replaced whenever rev grows.
	advanced chan struct{}
}

type streamClient struct {
	// token is the hash of the stream's token: revoking it ends the
	// stream. It is empty for the configured admin token.
	token  string
	events chan []byte
	// gone closes when the hub drops the client or shuts down.
	gone chan struct{}
}

var errShuttingDown = errors.New("the controller is shutting down")

func newHub(s store.Store, tokens *tokenCache, log *slog.Logger, m *metrics, resync time.Duration) *hub {
	return &hub{store: s, tokens: tokens, log: log, metrics: m, resync: resync, clients: map[*streamClient]struct{}{}, advanced: make(chan struct{})}
}

func (h *hub) loaded() bool    { return h.ready.Load() }
func (h *hub) revision() int64 { return h.rev.Load() }

// run loads the flags and tokens, then follows the store's changes until
// ctx ends.
func (h *hub) run(ctx context.Context) {
	watch := h.store.Watch(ctx)
	for backoff := 100 * time.Millisecond; ; backoff = min(2*backoff, 5*time.Second) {
		err := h.load(ctx)
		if err == nil {
			err = h.syncTokens(ctx)
		}
		if err == nil {
			break
		}
		h.log.Error("load flags", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
	}
	t := time.NewTicker(h.resync)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-watch:
			if !ok {
				return
			}
		case <-t.C:
		}
		if err := h.sync(ctx); err != nil && ctx.Err() == nil {
			h.log.Error("read flag changes", "err", err)
		}
		if err := h.syncTokens(ctx); err != nil && ctx.Err() == nil {
			h.log.Error("read token changes", "err", err)
		}
	}
}

// syncTokens rereads the tokens and ends the streams of those revoked.
func (h *hub) syncTokens(ctx context.Context) error {
	gone, err := h.tokens.reload(ctx)
	if err != nil {
		return err
	}
	for _, hash := range gone {
		h.dropToken(hash)
	}
	return nil
}

// dropToken ends every stream opened with the token whose hash is hash.
func (h *hub) dropToken(hash string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.clients {
		if c.token == hash {
			h.dropLocked(c)
		}
	}
}

func (h *hub) load(ctx context.Context) error {
	snap, err := h.store.Snapshot(ctx)
	if err != nil {
		return err
	}
	flags := make(map[string]flag.Flag, len(snap.Flags))
	for _, f := range snap.Flags {
		flags[f.Key] = f
	}
	h.mu.Lock()
	h.flags, h.snap, h.snapEvent = flags, nil, nil
	h.setRevLocked(snap.Revision)
	h.mu.Unlock()
	h.ready.Store(true)
	return nil
}

// sync reads the changes after the hub's revision and sends them to every
// stream as one batch of events.
func (h *hub) sync(ctx context.Context) error {
	since := h.rev.Load()
	rev, changes, err := h.store.Changes(ctx, since)
	if err != nil {
		return err
	}
	if rev <= since {
		return nil
	}
	var batch bytes.Buffer
	for _, c := range changes {
		var data []byte
		event := "put"
		if c.Deleted {
			event = "delete"
			data, err = json.Marshal(Deleted{Key: c.Key, Version: c.Version})
		} else {
			data, err = json.Marshal(c.Flag)
		}
		if err != nil {
			return err
		}
		writeEvent(&batch, c.Version, event, data)
	}
	msg := batch.Bytes()
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range changes {
		if c.Deleted {
			delete(h.flags, c.Key)
		} else {
			h.flags[c.Key] = c.Flag
		}
	}
	h.snap, h.snapEvent = nil, nil
	h.setRevLocked(rev)
	if len(msg) == 0 {
		return nil
	}
	for c := range h.clients {
		select {
		case c.events <- msg:
		default:
			// Too slow to keep up: drop it rather than hold up everyone.
			h.dropLocked(c)
		}
	}
	return nil
}

func (h *hub) setRevLocked(rev int64) {
	h.rev.Store(rev)
	h.metrics.revision.Set(float64(rev))
	close(h.advanced)
	h.advanced = make(chan struct{})
}

// await waits until the hub serves revision rev or later, so that a client
// that changed a flag sees its change on this controller's SDK endpoints
// once the API has answered. It gives up quietly after a second or when ctx
// ends: the change is committed either way and will arrive.
func (h *hub) await(ctx context.Context, rev int64) {
	timeout := time.NewTimer(time.Second)
	defer timeout.Stop()
	for {
		h.mu.Lock()
		ch := h.advanced
		h.mu.Unlock()
		if h.rev.Load() >= rev {
			return
		}
		select {
		case <-ch:
		case <-timeout.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// snapshotLocked returns the snapshot JSON at the hub's revision.
func (h *hub) snapshotLocked() ([]byte, error) {
	if h.snap == nil {
		flags := make([]flag.Flag, 0, len(h.flags))
		for _, f := range h.flags {
			flags = append(flags, f)
		}
		sort.Slice(flags, func(i, j int) bool { return flags[i].Key < flags[j].Key })
		b, err := json.Marshal(SnapshotBody{Revision: h.rev.Load(), Flags: flags})
		if err != nil {
			return nil, err
		}
		h.snap = b
	}
	return h.snap, nil
}

// snapshot returns the current snapshot JSON and its revision.
func (h *hub) snapshot() ([]byte, int64, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, 0, errShuttingDown
	}
	b, err := h.snapshotLocked()
	return b, h.rev.Load(), err
}

// subscribe registers a stream opened with the token whose hash is token
// and returns the snapshot event it starts with, which the caller must not
// change: it is shared. Every later change arrives on the client's
// channel.
func (h *hub) subscribe(token string) (*streamClient, []byte, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, nil, errShuttingDown
	}
	if h.snapEvent == nil {
		snap, err := h.snapshotLocked()
		if err != nil {
			return nil, nil, err
		}
		var first bytes.Buffer
		writeEvent(&first, h.rev.Load(), "snapshot", snap)
		h.snapEvent = first.Bytes()
	}
	c := &streamClient{token: token, events: make(chan []byte, clientBuffer), gone: make(chan struct{})}
	h.clients[c] = struct{}{}
	h.metrics.sseClients.Inc()
	return c, h.snapEvent, nil
}

func (h *hub) unsubscribe(c *streamClient) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.dropLocked(c)
}

func (h *hub) dropLocked(c *streamClient) {
	if _, ok := h.clients[c]; !ok {
		return
	}
	delete(h.clients, c)
	close(c.gone)
	h.metrics.sseClients.Dec()
}

// isClosed reports whether close has run: the controller shuts down.
func (h *hub) isClosed() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.closed
}

// close ends every stream and refuses new ones.
func (h *hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for c := range h.clients {
		h.dropLocked(c)
	}
}

// writeEvent appends one server-sent event. data is single-line JSON.
func writeEvent(b *bytes.Buffer, id int64, event string, data []byte) {
	b.WriteString("id: ")
	b.WriteString(strconv.FormatInt(id, 10))
	b.WriteString("\nevent: ")
	b.WriteString(event)
	b.WriteString("\ndata: ")
	b.Write(data)
	b.WriteString("\n\n")
}
