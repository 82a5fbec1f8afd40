package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/spf13/pflag"

	"github.com/vigil-dev/vigil/controller/console"
	"github.com/vigil-dev/vigil/controller/ofrep"
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
	return []serveOption{m.serveOption(), rolloutServeOption(m.Provider), dashboardServeOption(), ofrepServeOption(), consoleServeOption()}
}

// consoleServeOption serves the web console (docs/console.md) at
// --console-path.
func consoleServeOption() serveOption {
	var cfg console.Config
	return serveOption{
		Flags: func(fs *pflag.FlagSet) {
			fs.StringVar(&cfg.Path, "console-path", "/", "path at which the web console is served, such as /console/")
		},
		Configure: func(_ context.Context, sc *server.Config) error {
			p, err := console.NormalizePath(cfg.Path)
			if err != nil {
				return fmt.Errorf("--console-path: %w", err)
			}
			cfg.Path = p
			sc.Extensions = append(sc.Extensions, console.Extension(cfg))
			return nil
		},
	}
}

// ofrepServeOption serves the OpenFeature Remote Evaluation Protocol under
// /ofrep/v1, so that any language's OpenFeature SDK can use Vigil.
func ofrepServeOption() serveOption {
	var cfg ofrep.Config
	return serveOption{
		Flags: func(fs *pflag.FlagSet) {
			fs.Float64Var(&cfg.RequestsPerSecond, "ofrep-rate", 1000, "OFREP requests per second allowed per token")
			fs.IntVar(&cfg.Burst, "ofrep-burst", 0, "OFREP requests a token may make at once above the rate (default twice the rate)")
		},
		Configure: func(_ context.Context, sc *server.Config) error {
			if cfg.RequestsPerSecond <= 0 || cfg.Burst < 0 {
				return fmt.Errorf("--ofrep-rate %v, --ofrep-burst %d: want a positive rate and a burst of at least 0", cfg.RequestsPerSecond, cfg.Burst)
			}
			sc.Extensions = append(sc.Extensions, ofrep.Extension(cfg))
			return nil
		},
	}
}

// assemble builds, in process, the controller `vigil serve args...` runs:
// the server on cfg with every serve option configured from args, which
// are serve's own flags. It returns the parsed flags too.
func assemble(ctx context.Context, cfg server.Config, args []string) (*server.Server, *pflag.FlagSet, error) {
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	parts := serveOptions()
	for _, o := range parts {
		if o.Flags != nil {
			o.Flags(fs)
		}
	}
	if err := fs.Parse(args); err != nil {
		return nil, nil, err
	}
	if err := configure(ctx, &cfg, parts); err != nil {
		return nil, nil, err
	}
	srv, err := server.New(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	return srv, fs, nil
}

// configure lets every option adjust cfg once the flags are parsed.
func configure(ctx context.Context, cfg *server.Config, parts []serveOption) error {
	for _, o := range parts {
		if o.Configure != nil {
			if err := o.Configure(ctx, cfg); err != nil {
				return err
			}
		}
	}
	return nil
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
				if store.Unavailable(err) {
					h.Logger.Warn("store unavailable", "route", c.FullPath(), "err", err)
					server.FailUnavailable(c, "the store is unavailable; retry")
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
