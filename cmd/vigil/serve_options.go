package main

import (
	"context"
	"errors"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/vigil-dev/vigil/controller/server"
	"github.com/vigil-dev/vigil/controller/store"
	"github.com/vigil-dev/vigil/dashboards"
)

// serveOptions are the parts of the controller beyond the server itself, in
// the order they configure it: the metric provider first, since the rollout
// loop reads through it. `vigil serve` and `vigil demo` assemble the same
// controller from them.
func serveOptions() []serveOption {
	m := &metricsOptions{}
	return []serveOption{m.serveOption(), rolloutServeOption(m.Provider), dashboardServeOption()}
}

// dashboardServeOption serves GET /api/v1/flags/{key}/dashboard: the flag's
// Grafana dashboard, the same JSON `vigil dashboards generate` writes.
func dashboardServeOption() serveOption {
	return serveOption{Configure: func(_ context.Context, cfg *server.Config) error {
		cfg.Extensions = append(cfg.Extensions, func(h *server.Host) error {
			h.Read.GET("/flags/:key/dashboard", func(c *gin.Context) {
				f, err := h.Store.Flag(c.Request.Context(), c.Param("key"))
				if errors.Is(err, store.ErrNotFound) {
					server.Fail(c, http.StatusNotFound, "flag "+c.Param("key")+" not found", "key")
					return
				}
				if err != nil {
					h.Logger.Error("read flag for dashboard", "key", c.Param("key"), "err", err)
					server.Fail(c, http.StatusInternalServerError, "internal error; see the controller's log", "")
					return
				}
				body, err := dashboards.ForFlag(f, dashboards.Options{})
				if err != nil {
					server.Fail(c, http.StatusInternalServerError, "generate dashboard: "+err.Error(), "")
					return
				}
				c.Data(http.StatusOK, "application/json", body)
			})
			return nil
		})
		return nil
	}}
}
