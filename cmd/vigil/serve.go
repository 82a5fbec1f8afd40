package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/vigil-dev/vigil/controller/server"
	"github.com/vigil-dev/vigil/controller/store"
)

// serveOption lets other parts of the controller (metric providers, the
// rollout loop) add their flags to `vigil serve` and then adjust the
// server's configuration, usually by appending a server.Extension.
type serveOption struct {
	// Flags registers the option's command-line flags.
	Flags func(fs *pflag.FlagSet)
	// Configure runs after the flags are parsed and before server.New.
	Configure func(ctx context.Context, cfg *server.Config) error
}

func newServeCmd(opts ...serveOption) *cobra.Command {
	var (
		cfg            server.Config
		adminTokenFile string
		logLevel       string
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the controller: admin API, SDK delivery, rollouts",
		Long: `Run the Vigil controller.

Flags are stored in SQLite in --data (the default) or in PostgreSQL with
--database postgres://...; several replicas may share one PostgreSQL database.

The first admin token comes from $VIGIL_ADMIN_TOKEN or --admin-token-file;
mint more with 'vigil token create'. SIGTERM or SIGINT stops the server
gracefully: it stops accepting, ends SDK streams, finishes in-flight requests
and exits 0.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("--log-level %q: want debug, info, warn or error", logLevel)
			}
			cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
			if cfg.DatabaseURL != "" && !store.IsPostgresURL(cfg.DatabaseURL) {
				return fmt.Errorf("--database %q: want a PostgreSQL URL such as postgres://user@host/db", redactURL(cfg.DatabaseURL))
			}
			if cmd.Flags().Changed("data") && cfg.DatabaseURL != "" {
				return errors.New("--data and --database are exclusive")
			}
			cfg.AdminToken = os.Getenv("VIGIL_ADMIN_TOKEN")
			if adminTokenFile != "" {
				b, err := os.ReadFile(adminTokenFile)
				if err != nil {
					return fmt.Errorf("read --admin-token-file: %w", err)
				}
				cfg.AdminToken = strings.TrimSpace(string(b))
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, os.Interrupt)
			defer stop()
			if err := configure(ctx, &cfg, opts); err != nil {
				return err
			}
			srv, err := server.New(ctx, cfg)
			if err != nil {
				return err
			}
			return srv.Run(ctx)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&cfg.Addr, "addr", "127.0.0.1:8080", "listen address, HOST:PORT; :8080 for every interface")
	fs.StringVar(&cfg.DataDir, "data", "./vigil-data", "directory of the SQLite store")
	fs.StringVar(&cfg.DatabaseURL, "database", "", "PostgreSQL URL (postgres://...) instead of SQLite")
	fs.StringVar(&adminTokenFile, "admin-token-file", "", "file holding the first admin token (default $VIGIL_ADMIN_TOKEN)")
	fs.Int64Var(&cfg.MaxBodyBytes, "max-body-bytes", 1<<20, "largest request body accepted")
	fs.IntVar(&cfg.MaxConnsPerClient, "max-conns-per-client", 512, "connections one client IP address may hold open at once; -1 for no cap (behind a proxy, every client has its address)")
	fs.DurationVar(&cfg.Heartbeat, "heartbeat", 15*time.Second, "interval of heartbeat comments on SDK streams")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", 10*time.Second, "how long to wait for in-flight requests on shutdown")
	fs.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	for _, o := range opts {
		if o.Flags != nil {
			o.Flags(fs)
		}
	}
	return cmd
}

// redactURL hides a password in a database URL before it is printed.
func redactURL(s string) string {
	at := strings.LastIndex(s, "@")
	scheme := strings.Index(s, "://")
	if at < 0 || scheme < 0 || at < scheme {
		return s
	}
	creds := s[scheme+3 : at]
	if user, _, ok := strings.Cut(creds, ":"); ok {
		return s[:scheme+3] + user + ":xxxxx" + s[at:]
	}
	return s
}
