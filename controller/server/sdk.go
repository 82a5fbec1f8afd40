package server

import (
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/vigil-dev/vigil/sdk/flag"
)

// SnapshotBody is the body of GET /sdk/v1/snapshot and the data of the
// stream's snapshot event.
type SnapshotBody struct {
	Revision int64       `json:"revision"`
	Flags    []flag.Flag `json:"flags"`
}

func (s *Server) snapshot(c *gin.Context) {
	if !s.hub.loaded() {
		Fail(c, http.StatusServiceUnavailable, "flags not loaded yet; retry", "")
		return
	}
	body, rev, err := s.hub.snapshot()
	if err != nil {
		Fail(c, http.StatusServiceUnavailable, err.Error(), "")
		return
	}
	tag := etag(rev)
	c.Header("ETag", tag)
	c.Header("Cache-Control", "no-cache")
	if MatchesETag(c.GetHeader("If-None-Match"), tag) {
		c.Status(http.StatusNotModified)
		return
	}
	c.Data(http.StatusOK, "application/json", body)
}

// MatchesETag reports whether an If-None-Match header names tag (or *).
func MatchesETag(header, tag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == tag || t == "*" {
			return true
		}
	}
	return false
}

// The end events: the controller ends a stream on purpose, and the SDK
// reconnects without alarm (docs/sdk-protocol.md). They carry no id, so
// that the client's last event ID stays the last revision it was sent.
var (
	endMaxAge   = []byte("event: end\ndata: {\"reason\":\"max-age\"}\n\n")
	endShutdown = []byte("event: end\ndata: {\"reason\":\"shutdown\"}\n\n")
)

func (s *Server) stream(c *gin.Context) {
	if !s.hub.loaded() {
		Fail(c, http.StatusServiceUnavailable, "flags not loaded yet; retry", "")
		return
	}
	client, first, err := s.hub.subscribe(tokenOf(c).Hash)
	if err != nil {
		Fail(c, http.StatusServiceUnavailable, err.Error(), "")
		return
	}
	defer s.hub.unsubscribe(client)
	w := c.Writer
	rc := http.NewResponseController(w)
	// The request is read: the stream lives as long as the client wants
	// (up to its maximum age), bounded instead by each write's deadline.
	_ = rc.SetReadDeadline(time.Time{})
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	h.Set("X-Accel-Buffering", "no")
	send := func(msg []byte) bool {
		if err := rc.SetWriteDeadline(time.Now().Add(s.cfg.StreamWriteTimeout)); err != nil {
			return false
		}
		if _, err := w.Write(msg); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	w.WriteHeader(http.StatusOK)
	if !send(first) {
		return
	}
	ping := time.NewTicker(s.cfg.Heartbeat)
	defer ping.Stop()
	// At its maximum age the stream ends and the SDK reconnects, showing
	// its token again.
	age := time.NewTimer(s.cfg.StreamMaxAge - rand.N(s.cfg.StreamMaxAge/10+1))
	defer age.Stop()
	done := c.Request.Context().Done()
	for {
		var msg []byte
		select {
		case msg = <-client.events:
		case <-ping.C:
			msg = []byte(": ping\n\n")
		case <-client.gone:
			// Dropped for a revoked token or for falling behind,
			// which is no planned end; or the controller shuts down,
			// which is.
			if s.hub.isClosed() {
				send(endShutdown)
			}
			return
		case <-age.C:
			send(endMaxAge)
			return
		case <-done:
			return
		}
		if !send(msg) {
			return
		}
	}
}
