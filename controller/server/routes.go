package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/vigil-dev/vigil/controller/store"
)

func (s *Server) routes() *gin.Engine {
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	e.HandleMethodNotAllowed = true
	e.ContextWithFallback = true
	e.Use(s.metrics.countRequests, s.recover, s.writeDeadline, s.limitBody)
	e.NoRoute(func(c *gin.Context) {
		Fail(c, http.StatusNotFound, "no such endpoint: "+c.Request.Method+" "+c.Request.URL.Path+"; see docs/api.md", "")
	})
	e.NoMethod(func(c *gin.Context) {
		Fail(c, http.StatusMethodNotAllowed, "method "+c.Request.Method+" is not allowed on "+c.Request.URL.Path, "")
	})

	e.GET("/healthz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) })
	e.GET("/readyz", s.ready)
	e.GET("/metrics", gin.WrapH(promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{Registry: s.reg})))

	read := e.Group("/api/v1", s.requireRole(store.RoleAdmin, store.RoleReader))
	read.GET("/flags", s.listFlags)
	read.GET("/flags/:key", s.getFlag)
	read.GET("/audit", s.listAudit)
	read.GET("/whoami", s.whoami)

	write := e.Group("/api/v1", s.requireRole(store.RoleAdmin))
	write.PUT("/flags/:key", s.putFlag)
	write.DELETE("/flags/:key", s.deleteFlag)
	write.POST("/apply", s.apply)
	write.GET("/tokens", s.listTokens)
	write.POST("/tokens", s.createToken)
	write.DELETE("/tokens/:name", s.deleteToken)

	sdk := e.Group("/sdk/v1", s.requireRole(store.RoleAdmin, store.RoleReader, store.RoleSDK))
	sdk.GET("/snapshot", s.snapshot)
	sdk.GET("/stream", s.stream)
	return e
}

// WhoAmI is the body of GET /api/v1/whoami: the name and role of the
// request's token, so that a console can say who is signed in and which
// actions the server will allow.
type WhoAmI struct {
	Name string     `json:"name"`
	Role store.Role `json:"role"`
}

func (s *Server) whoami(c *gin.Context) {
	tok := tokenOf(c)
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, WhoAmI{Name: tok.Name, Role: tok.Role})
}

// limitBody caps every request body at Config.MaxBodyBytes without ever
// waiting for bytes that do not come. A body declared larger is refused at
// once. Until the handler has read a body to its end, the answer carries
// Connection: close: otherwise Go's server, before it writes the answer,
// reads what is left of the body so as to reuse the connection, and a
// client that declares a body and never sends it would hold back the
// answer, 401s and /healthz included.
func (s *Server) limitBody(c *gin.Context) {
	r := c.Request
	if r.ContentLength == 0 {
		c.Next()
		return
	}
	c.Header("Connection", "close")
	if r.ContentLength > s.cfg.MaxBodyBytes {
		failTooLarge(c, s.cfg.MaxBodyBytes)
		return
	}
	body := &watchedBody{ReadCloser: http.MaxBytesReader(c.Writer, r.Body, s.cfg.MaxBodyBytes), header: c.Writer.Header()}
	r.Body = body
	c.Next()
	if !body.eof {
		// Nothing more will be read: let the server give up on the rest
		// at once rather than wait for it until the read deadline.
		_ = http.NewResponseController(c.Writer).SetReadDeadline(time.Now())
	}
}

// watchedBody notes when its request body has been read to the end; the
// connection may then serve another request.
type watchedBody struct {
	io.ReadCloser
	header http.Header
	eof    bool
}

func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF && !b.eof {
		b.eof = true
		b.header.Del("Connection")
	}
	return n, err
}

// writeDeadline bounds writing the answer, so that a client that does not
// read it cannot hold the connection. The SDK stream sets its own.
func (s *Server) writeDeadline(c *gin.Context) {
	_ = http.NewResponseController(c.Writer).SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
	c.Next()
}

// recover turns a panic in a handler into a logged 500 rather than a dropped
// connection.
func (s *Server) recover(c *gin.Context) {
	defer func() {
		if r := recover(); r != nil {
			if r == http.ErrAbortHandler {
				panic(r)
			}
			s.log.Error("panic in handler", "route", c.FullPath(), "panic", r)
			if !c.Writer.Written() {
				Fail(c, http.StatusInternalServerError, "internal error; see the controller's log", "")
			}
		}
	}()
	c.Next()
}

// ReadyBody is the body of GET /readyz: the replica's status, each
// check's state ("ok" or why not), and in Error the checks that fail.
type ReadyBody struct {
	// Status is "ready" when every check holds, "degraded" when the
	// replica serves SDK delivery from memory while a dependency (the
	// store, the metric source) fails, and "not ready" when it cannot
	// serve at all (the flags are not loaded).
	Status   string            `json:"status"`
	Revision int64             `json:"revision"`
	Checks   map[string]string `json:"checks"`
	Error    string            `json:"error,omitempty"`
}

// readyCheckTimeout bounds each check of /readyz.
const readyCheckTimeout = 2 * time.Second

// ready answers whether the replica should get traffic. A dependency that
// every replica shares, the database or the metric source, failing does not
// make it unready: SDK delivery goes on from memory, and were every replica
// taken out of its load balancer, SDKs would lose that too. So /readyz
// answers 503 only while the replica cannot serve SDKs (its flags are not
// loaded), and 200 "degraded", naming the failing checks, while a
// dependency fails. With ?strict=true every check counts: for a probe in
// front of the admin API, or a check that pages someone.
func (s *Server) ready(c *gin.Context) {
	strict := false
	if v, ok := c.GetQuery("strict"); ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			Fail(c, http.StatusBadRequest, "strict="+strconv.Quote(v)+": want true or false", "strict")
			return
		}
		strict = b
	}
	body := ReadyBody{Status: "ready", Revision: s.hub.revision(), Checks: map[string]string{}}
	var failing []string
	critical := false
	for _, chk := range s.readyChecks {
		ctx, cancel := context.WithTimeout(c.Request.Context(), readyCheckTimeout)
		err := chk.check(ctx)
		cancel()
		if err != nil {
			body.Checks[chk.name] = err.Error()
			failing = append(failing, chk.name+": "+err.Error())
			critical = critical || chk.critical
			continue
		}
		body.Checks[chk.name] = "ok"
	}
	if len(failing) > 0 {
		body.Status, body.Error = "degraded", strings.Join(failing, "; ")
	}
	if critical {
		body.Status = "not ready"
	}
	if critical || strict && len(failing) > 0 {
		c.Header("Retry-After", strconv.Itoa(RetryAfterSeconds))
		c.AbortWithStatusJSON(http.StatusServiceUnavailable, body)
		return
	}
	c.JSON(http.StatusOK, body)
}

// ReadyCheck is one condition of /readyz: nil when it holds, else an error
// that says why not. ctx bounds it to 2 s.
type ReadyCheck func(ctx context.Context) error

type namedCheck struct {
	name  string
	check ReadyCheck
	// critical: while the check fails the replica cannot serve at all,
	// and /readyz answers 503 even when not strict.
	critical bool
}

// builtinChecks are the server's own conditions of readiness.
func (s *Server) builtinChecks() []namedCheck {
	return []namedCheck{
		{name: "flags", critical: true, check: func(context.Context) error {
			if !s.hub.loaded() {
				return errors.New("not loaded yet")
			}
			return nil
		}},
		{name: "store", check: func(ctx context.Context) error {
			if err := s.store.Ping(ctx); err != nil {
				return fmt.Errorf("unavailable: %w", err)
			}
			return nil
		}},
	}
}
