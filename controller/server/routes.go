package server

import (
	"context"
	"net/http"
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
	e.Use(s.metrics.countRequests, s.recover, s.limitBody)
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

// limitBody caps every request body at Config.MaxBodyBytes.
func (s *Server) limitBody(c *gin.Context) {
	if c.Request.Body != nil {
		c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, s.cfg.MaxBodyBytes)
	}
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

// ready answers 200 once the flags are loaded and the store answers.
func (s *Server) ready(c *gin.Context) {
	if !s.hub.loaded() {
		Fail(c, http.StatusServiceUnavailable, "flags not loaded yet", "")
		return
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), 2*time.Second)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		Fail(c, http.StatusServiceUnavailable, "store unreachable: "+err.Error(), "")
		return
	}
	c.JSON(http.StatusOK, gin.H{"status": "ready", "revision": s.hub.revision()})
}
