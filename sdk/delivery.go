package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/vigil-dev/vigil/sdk/flag"
	"github.com/vigil-dev/vigil/sdk/internal/sse"
)

// Paths of the delivery protocol (docs/sdk-protocol.md).
const (
	snapshotPath = "/sdk/v1/snapshot"
	streamPath   = "/sdk/v1/stream"
)

// snapshotDoc is the snapshot object of the protocol, also the format of
// the disk cache.
type snapshotDoc struct {
	Revision int64       `json:"revision"`
	Flags    []flag.Flag `json:"flags"`
}

type deleteDoc struct {
	Key     string `json:"key"`
	Version int64  `json:"version"`
}

// remote is the state of the delivery goroutine; only that goroutine
// touches it.
type remote struct {
	c    *Client
	base string
	// etag is the validator of the newest snapshot held, for polls.
	etag string
	// lastID is the id of the last stream event, sent as Last-Event-ID.
	lastID string
	cache  *diskCache
	// pollFailing is set while polls fail, to log an outage once.
	pollFailing bool
	// pending are the puts and deletes read from the stream and not yet
	// applied, with the id of the last of them and the validator of the
	// last id that is a revision ("" if none).
	pending     []change
	pendingID   string
	pendingETag string
}

func (c *Client) startRemote(ctx context.Context) {
	r := &remote{c: c, base: strings.TrimRight(c.cfg.ServerURL, "/")}
	if c.cfg.CacheFile != "" {
		r.cache = &diskCache{path: c.cfg.CacheFile}
		if doc, err := r.cache.read(); err != nil {
			if !errors.Is(err, errNoCache) {
				c.log.Warn("vigil: ignoring flag cache", "err", err)
			}
		} else {
			if err := c.store.replace(doc.Revision, doc.Flags); err != nil {
				c.log.Warn("vigil: flags in the cache rejected", "err", err)
			}
			r.cache.written = doc.Revision
			c.log.Info("vigil: serving flags from the cache until the controller answers", "revision", doc.Revision, "flags", len(doc.Flags))
		}
		c.store.changed = r.cache.save(c.log)
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		r.run(ctx)
	}()
}

// run keeps the stream open; while it is down it polls the snapshot and
// reconnects with jittered exponential backoff.
func (r *remote) run(ctx context.Context) {
	failures := 0
	for {
		opened := time.Now()
		synced, err := r.stream(ctx)
		if ctx.Err() != nil {
			return
		}
		// A stream that delivered a snapshot and then lasted, or that the
		// controller ended on purpose, resets the backoff; one that drops
		// right after its snapshot (a proxy that cuts long responses, say)
		// keeps backing off.
		var end *streamEnd
		planned := errors.As(err, &end)
		if synced && (planned || time.Since(opened) >= r.c.cfg.BackoffMax) {
			failures = 0
		}
		failures++
		wait := r.backoff(failures)
		if planned {
			// Every stream ends so at its maximum age, about once an
			// hour: no news.
			r.c.log.Debug("vigil: the controller ended the flag stream; reconnecting", "reason", end.reason, "retry_in", wait)
		} else {
			r.c.log.Warn("vigil: flag stream down; polling the snapshot until it reconnects", "err", err, "retry_in", wait)
		}
		r.pollFor(ctx, wait)
		if ctx.Err() != nil {
			return
		}
	}
}

// backoff returns the wait before reconnection attempt n (from 1): an
// exponential bound, jittered in its upper half so that clients restarted
// together do not reconnect together.
func (r *remote) backoff(n int) time.Duration {
	d := r.c.cfg.BackoffMin
	for i := 1; i < n && d < r.c.cfg.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, r.c.cfg.BackoffMax)
	return d/2 + rand.N(d/2+1)
}

// pollFor polls the snapshot at once and then every PollInterval until d
// has passed or ctx ends.
func (r *remote) pollFor(ctx context.Context, d time.Duration) {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		err := r.poll(ctx)
		switch {
		case err != nil && ctx.Err() == nil && !r.pollFailing:
			// Logged once per outage: polls repeat every PollInterval.
			r.c.log.Warn("vigil: snapshot poll failed; serving the flags held until the controller answers", "err", err)
			r.pollFailing = true
		case err == nil && r.pollFailing:
			r.c.log.Info("vigil: snapshot poll succeeded again")
			r.pollFailing = false
		}
		tick := time.NewTimer(r.c.cfg.PollInterval)
		select {
		case <-ctx.Done():
			tick.Stop()
			return
		case <-deadline.C:
			tick.Stop()
			return
		case <-tick.C:
		}
	}
}

func (r *remote) newRequest(ctx context.Context, path string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.base+path, nil)
	if err != nil {
		return nil, fmt.Errorf("build request for %s: %w", path, err)
	}
	if r.c.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+r.c.cfg.Token)
	}
	req.Header.Set("User-Agent", "vigil-go-sdk/"+Version)
	return req, nil
}

// poll fetches the snapshot unless it is unchanged.
func (r *remote) poll(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, r.c.cfg.PollTimeout)
	defer cancel()
	req, err := r.newRequest(ctx, snapshotPath)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if r.etag != "" {
		req.Header.Set("If-None-Match", r.etag)
	}
	resp, err := r.c.cfg.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("poll snapshot: %w", err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNotModified:
		r.c.markFresh()
		return nil
	case http.StatusOK:
	default:
		return fmt.Errorf("poll snapshot: %w", statusError(resp))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxEventBytes+1))
	if err != nil {
		return fmt.Errorf("poll snapshot: read body: %w", err)
	}
	if len(body) > maxEventBytes {
		return fmt.Errorf("poll snapshot: body exceeds %d bytes", maxEventBytes)
	}
	if err := r.applySnapshot(body); err != nil {
		return fmt.Errorf("poll snapshot: %w", err)
	}
	if et := resp.Header.Get("ETag"); et != "" {
		r.etag = et
	}
	return nil
}

// applySnapshot installs a snapshot document. A document that does not
// decode changes nothing; flags that fail validation keep their previous
// definition and are logged.
func (r *remote) applySnapshot(data []byte) error {
	doc, err := decodeSnapshot(data)
	if err != nil {
		return err
	}
	if err := r.c.store.replace(doc.Revision, doc.Flags); err != nil {
		r.c.log.Error("vigil: flags in the snapshot rejected; keeping their previous definitions", "revision", doc.Revision, "err", err)
	}
	r.etag = strconv.Quote(strconv.FormatInt(doc.Revision, 10))
	r.c.markFresh()
	return nil
}

func decodeSnapshot(data []byte) (snapshotDoc, error) {
	var doc snapshotDoc
	if err := json.Unmarshal(data, &doc); err != nil {
		return snapshotDoc{}, fmt.Errorf("decode snapshot: %w", err)
	}
	if doc.Revision < 0 {
		return snapshotDoc{}, fmt.Errorf("decode snapshot: negative revision %d", doc.Revision)
	}
	return doc, nil
}

// stream reads the event stream until it fails, or until the controller
// ends it with an end event (a *streamEnd). synced reports whether a
// snapshot arrived on it.
func (r *remote) stream(ctx context.Context) (synced bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := r.newRequest(ctx, streamPath)
	if err != nil {
		return false, err
	}
	req.Header.Set("Accept", "text/event-stream")
	if r.lastID != "" {
		req.Header.Set("Last-Event-ID", r.lastID)
	}
	// The watchdog cancels a stream that stays silent, including one that
	// never answers: the controller pings well within the timeout.
	idle := r.c.cfg.StreamIdleTimeout
	var stalled atomic.Bool
	watchdog := time.AfterFunc(idle, func() { stalled.Store(true); cancel() })
	defer watchdog.Stop()
	wrap := func(err error) error {
		if stalled.Load() {
			return fmt.Errorf("stream silent for %v: %w", idle, err)
		}
		return err
	}
	resp, err := r.c.cfg.HTTPClient.Do(req)
	if err != nil {
		return false, wrap(fmt.Errorf("open stream: %w", err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("open stream: %w", statusError(resp))
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		return false, fmt.Errorf("open stream: content type %q, want text/event-stream", ct)
	}
	rd, stop := newStreamReader(activityReader{resp.Body, func() { watchdog.Reset(idle) }})
	defer stop()
	synced, err = r.read(rd)
	var end *streamEnd
	if errors.As(err, &end) {
		return synced, err
	}
	return synced, wrap(err)
}

// newStreamReader returns the event reader of a stream's body and the
// function that stops it. The body is read ahead (up to 16 reads of 32 KiB
// while events are being applied), so that the events of one write of the
// controller's are known to have arrived however many reads they take, and
// are applied together; stop does not end a read waiting for data, which
// ends with the request.
func newStreamReader(body io.Reader) (*sse.Reader, func()) {
	p := sse.Prefetch(body, 32<<10, 16)
	return sse.NewReader(p, maxEventBytes), p.Close
}

// read applies the events of a stream until it ends, with its error, or the
// controller ends it (a *streamEnd). synced reports whether a snapshot
// arrived. Puts and deletes that arrived together are applied as one batch,
// one snapshot copy for all (store.apply): the controller writes the changes
// of each store read in one write, thousands when it moves thousands of
// rollouts.
func (r *remote) read(rd *sse.Reader) (synced bool, err error) {
	for {
		ev, err := r.next(rd)
		if err != nil {
			// Events read complete before a fault are applied, as they
			// would have been one by one.
			r.flush()
			if err == io.EOF {
				err = errors.New("controller closed the stream")
			}
			return synced, fmt.Errorf("read stream: %w", err)
		}
		if ev.Type == "end" {
			r.flush()
			var d endDoc
			_ = json.Unmarshal(ev.Data, &d) // the reason is only for the log
			return synced, &streamEnd{reason: d.Reason}
		}
		if err := r.handle(ev); err != nil {
			// The stream is out of step with the controller; a new
			// connection starts with a fresh snapshot.
			return synced, fmt.Errorf("stream event %q id %q: %w", ev.Type, ev.ID, err)
		}
		if ev.Type == "snapshot" {
			synced = true
		}
	}
}

// next returns the next event. While changes are pending it takes only an
// event already read, and applies them before it would wait for the stream,
// so that a batch is never held back for the next one.
func (r *remote) next(rd *sse.Reader) (sse.Event, error) {
	if len(r.pending) > 0 {
		ev, ok, err := rd.NextBuffered()
		if ok || err != nil {
			return ev, err
		}
		r.flush()
	}
	return rd.Next()
}

// streamEnd is the controller's end event: it closes the stream on
// purpose (at the stream's maximum age, or shutting down).
type streamEnd struct{ reason string }

func (e *streamEnd) Error() string { return "the controller ended the stream: " + e.reason }

// endDoc is the data of an end event.
type endDoc struct {
	Reason string `json:"reason"`
}

// handle takes one stream event: a put or delete joins the pending batch,
// anything else first applies the batch and then itself.
func (r *remote) handle(ev sse.Event) error {
	var c change
	switch ev.Type {
	case "put":
		var f flag.Flag
		if err := json.Unmarshal(ev.Data, &f); err != nil {
			r.flush()
			return fmt.Errorf("decode flag: %w", err)
		}
		c = change{key: f.Key, version: f.Version, put: &f}
	case "delete":
		var d deleteDoc
		if err := json.Unmarshal(ev.Data, &d); err != nil {
			r.flush()
			return fmt.Errorf("decode delete: %w", err)
		}
		if d.Key == "" {
			r.flush()
			return errors.New("decode delete: no key")
		}
		c = change{key: d.Key, version: d.Version}
	case "snapshot":
		r.flush()
		if err := r.applySnapshot(ev.Data); err != nil {
			return err
		}
		r.lastID = ev.ID
		return nil
	default:
		// Event types this SDK does not know are for newer SDKs.
		r.flush()
		r.lastID = ev.ID
		return nil
	}
	r.pending = append(r.pending, c)
	r.pendingID = ev.ID
	if id, err := strconv.ParseInt(ev.ID, 10, 64); err == nil {
		r.pendingETag = strconv.Quote(strconv.FormatInt(id, 10))
	}
	return nil
}

// flush applies the pending puts and deletes. A flag that fails validation
// keeps its previous definition and the connection: the flag is invalid,
// not the stream.
func (r *remote) flush() {
	if len(r.pending) == 0 {
		return
	}
	_, rejected := r.c.store.apply(r.pending)
	for _, err := range rejected {
		r.c.log.Error("vigil: flag update rejected; keeping the previous definition", "err", err)
	}
	// The events' ids are revisions: the last is the snapshot's validator
	// for polls.
	r.lastID = r.pendingID
	if r.pendingETag != "" {
		r.etag = r.pendingETag
	}
	// Dropped rather than reused: a batch of thousands would otherwise
	// keep its array for the life of the stream.
	r.pending, r.pendingETag = nil, ""
}

// activityReader calls active after every read that returned data.
type activityReader struct {
	r      io.Reader
	active func()
}

func (a activityReader) Read(p []byte) (int, error) {
	n, err := a.r.Read(p)
	if n > 0 {
		a.active()
	}
	return n, err
}

// statusError describes an unexpected response, with the error message of
// the protocol's error body when there is one.
func statusError(resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	var e struct {
		Error string `json:"error"`
	}
	msg := strings.TrimSpace(string(body))
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		msg = e.Error
	}
	return fmt.Errorf("%s: %s", resp.Status, msg)
}
