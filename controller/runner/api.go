package runner

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/vigil-dev/vigil/controller/plan"
	"github.com/vigil-dev/vigil/controller/rollout"
	"github.com/vigil-dev/vigil/controller/server"
	"github.com/vigil-dev/vigil/controller/store"
	"github.com/vigil-dev/vigil/sdk/flag"
)

// CommandBody is the optional JSON body of POST /api/v1/rollouts/{key}/{command}.
type CommandBody struct {
	// Plan overrides the flag's plan, field by field; start only.
	Plan *plan.Spec `json:"plan,omitempty"`
	// Reason goes into the history and the audit log; the X-Vigil-Reason
	// header does the same.
	Reason string `json:"reason,omitempty"`
}

// Extension plugs the rollout controller into a server: it registers the
// metrics, the /api/v1/rollouts routes and the loop, which runs for the
// life of the server. opts.Store, opts.Metrics and opts.Logger are taken
// from the server when not set.
func Extension(opts Options) server.Extension {
	return func(h *server.Host) error {
		if opts.Store == nil {
			opts.Store = h.Store
		}
		if opts.Logger == nil {
			opts.Logger = h.Logger
		}
		if opts.Metrics == nil {
			m, err := NewMetrics(h.Registry)
			if err != nil {
				return err
			}
			opts.Metrics = m
		}
		c, err := New(opts)
		if err != nil {
			return err
		}
		c.Routes(h.Read, h.Write)
		if p, ok := opts.Reader.(pinger); ok {
			h.ReadyCheck("metrics", p.Ping)
		}
		h.Go("rollout loop", c.Run)
		return nil
	}
}

// pinger is a metrics reader that can tell whether its source answers
// (*cohort.Reader can).
type pinger interface {
	Ping(ctx context.Context) error
}

// Routes registers GET /rollouts (paged, see list) and GET /rollouts/{key}
// on read, and POST /rollouts/{key}/{start|pause|resume|promote|rollback|abort}
// on write.
func (c *Controller) Routes(read, write gin.IRoutes) {
	read.GET("/rollouts", c.list)
	read.GET("/rollouts/:key", c.get)
	for _, kind := range rollout.Commands {
		write.POST("/rollouts/:key/"+string(kind), c.command(kind))
	}
}

// view is a state as the API shows it: without the judge's internal state,
// which only the loop reads.
func view(s rollout.State) rollout.State {
	s.Judge = nil
	return s
}

func (c *Controller) get(g *gin.Context) {
	s, err := c.Rollout(g.Request.Context(), g.Param("key"))
	if err != nil {
		c.fail(g, err)
		return
	}
	g.JSON(http.StatusOK, view(s))
}

func (c *Controller) command(kind rollout.CommandKind) gin.HandlerFunc {
	return func(g *gin.Context) {
		body, ok := server.ReadBody(g)
		if !ok {
			return
		}
		var req CommandBody
		// The body is optional; one that is given is read as every JSON
		// body is, by BindJSON, which names the field at fault.
		if len(strings.TrimSpace(string(body))) > 0 {
			g.Request.Body = io.NopCloser(bytes.NewReader(body))
			if !server.BindJSON(g, &req) {
				return
			}
		}
		if req.Plan != nil && kind != rollout.Start {
			server.Fail(g, http.StatusBadRequest, "a plan can only be given to start", "plan")
			return
		}
		actor := server.ActorOf(g)
		if req.Reason == "" {
			req.Reason = actor.Message
		}
		s, err := c.Command(g.Request.Context(), g.Param("key"), rollout.Command{Kind: kind, Actor: actor.Name, Reason: req.Reason, Plan: req.Plan})
		if err != nil {
			c.fail(g, err)
			return
		}
		g.JSON(http.StatusOK, view(s))
	}
}

// fail answers an error from the controller with the status it calls for.
func (c *Controller) fail(g *gin.Context, err error) {
	var refused *rollout.RefusedError
	var flagErr *FlagError
	var fieldErr *flag.FieldError
	switch {
	case errors.As(err, &refused), errors.As(err, &flagErr):
		server.Fail(g, http.StatusConflict, err.Error(), "")
	case errors.As(err, &fieldErr):
		server.FailValidation(g, err)
	case errors.Is(err, store.ErrNotFound):
		server.Fail(g, http.StatusNotFound, err.Error(), "key")
	case store.Unavailable(err):
		c.log.Warn("store unavailable", "route", g.FullPath(), "err", err)
		server.FailUnavailable(g, "the store is unavailable; nothing was changed; retry")
	default:
		c.log.Error("rollout request failed", "route", g.FullPath(), "err", err)
		server.Fail(g, http.StatusInternalServerError, "internal error; see the controller's log", "")
	}
}
