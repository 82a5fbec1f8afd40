package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/KimMachineGun/automemlimit/memlimit"
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
		logFormat      string
		tlsCert        string
		tlsKey         string
		memRatio       float64
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the controller: admin API, SDK delivery, rollouts",
		Long: `Run the Vigil controller.

Flags are stored in SQLite in --data (the default) or in PostgreSQL with
--database postgres://...; several replicas may share one PostgreSQL database.

The first admin token comes from $VIGIL_ADMIN_TOKEN or --admin-token-file;
mint more with 'vigil token create'. Without one, serve refuses a store that
holds no admin token of its own, which no one could administer.

Every flag may also be set in the environment, as VIGIL_ and its name in
capitals with underscores (--log-format: VIGIL_LOG_FORMAT); a flag on the
command line wins. SIGTERM or SIGINT stops the server gracefully: it stops
accepting, ends SDK streams, finishes in-flight requests and exits 0.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := flagsFromEnv(cmd.Flags(), os.LookupEnv); err != nil {
				return err
			}
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("--log-level %q: want debug, info, warn or error", logLevel)
			}
			ho := &slog.HandlerOptions{Level: level}
			switch logFormat {
			case "text":
				cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, ho))
			case "json":
				cfg.Logger = slog.New(slog.NewJSONHandler(os.Stderr, ho))
			default:
				return fmt.Errorf("--log-format %q: want text or json", logFormat)
			}
			if err := limitMemory(memRatio, memlimit.FromCgroup, cfg.Logger); err != nil {
				return err
			}
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
			var tlsConfig *tls.Config
			if (tlsCert == "") != (tlsKey == "") {
				return usageError(errors.New("--tls-cert and --tls-key go together"))
			}
			if tlsCert != "" {
				certs, err := newCertReloader(tlsCert, tlsKey, cfg.Logger)
				if err != nil {
					return err
				}
				tlsConfig = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: certs.GetCertificate}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, os.Interrupt)
			defer stop()
			// Listen first: a taken port or a wrong --addr fails before
			// anything is created on disk.
			ln, err := net.Listen("tcp", cfg.Addr)
			if err != nil {
				return fmt.Errorf("--addr %s: %w (want HOST:PORT, such as :8080 or 127.0.0.1:8080)", cfg.Addr, err)
			}
			defer ln.Close()
			if tlsConfig != nil {
				ln = tls.NewListener(ln, tlsConfig)
			}
			// What later steps fail on (a short admin token, a store that
			// cannot open) is found only once the store exists: remove
			// the files and directories this start created, so that a
			// failed start leaves nothing behind.
			created := missingPaths(servePaths(cmd.Flags(), cfg))
			srv, closeStore, err := startServer(ctx, &cfg, opts)
			if err != nil {
				for _, d := range created {
					os.RemoveAll(d)
				}
				return err
			}
			defer closeStore()
			return srv.Serve(ctx, ln)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&cfg.Addr, "addr", "127.0.0.1:8080", "listen address, HOST:PORT; :8080 for every interface")
	fs.StringVar(&cfg.DataDir, "data", "./vigil-data", "directory of the SQLite store, which one process may use at a time")
	fs.StringVar(&cfg.DatabaseURL, "database", "", "PostgreSQL URL (postgres://...) instead of SQLite")
	fs.StringVar(&adminTokenFile, "admin-token-file", "", "file holding the first admin token (default $VIGIL_ADMIN_TOKEN)")
	fs.Int64Var(&cfg.MaxBodyBytes, "max-body-bytes", 1<<20, "largest request body accepted")
	fs.IntVar(&cfg.MaxConnsPerClient, "max-conns-per-client", 512, "connections one client IP address may hold open at once; -1 for no cap (behind a proxy, every client has its address)")
	fs.IntVar(&cfg.MaxConns, "max-conns", 0, "connections the controller holds open at once in total, SDK streams included; 0 for no cap (set it below the process's file descriptor limit)")
	fs.DurationVar(&cfg.Heartbeat, "heartbeat", 15*time.Second, "interval of heartbeat comments on SDK streams")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", 10*time.Second, "how long to wait for in-flight requests on shutdown")
	fs.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&logFormat, "log-format", "text", "log format: text (key=value) or json (one object a line)")
	fs.StringVar(&tlsCert, "tls-cert", "", "PEM certificate (chain) to serve HTTPS with; reloaded when the file changes")
	fs.StringVar(&tlsKey, "tls-key", "", "PEM private key of --tls-cert; reloaded when the file changes")
	fs.Float64Var(&memRatio, "auto-gomemlimit-ratio", 0.9, "unless $GOMEMLIMIT is set, keep the Go heap under this share of the container's memory limit (cgroup), collecting garbage harder near it rather than being killed; 0 turns it off")
	for _, o := range opts {
		if o.Flags != nil {
			o.Flags(fs)
		}
	}
	fs.VisitAll(func(f *pflag.Flag) {
		f.Usage += " [$" + envName(f.Name) + "]"
	})
	return cmd
}

// limitMemory sets the Go runtime's soft memory limit to ratio of the
// container's memory limit, as Prometheus does: without it a controller
// whose live heap is half its limit may double it between collections and
// be killed. $GOMEMLIMIT, when set, wins. Outside a memory-limited cgroup
// it changes nothing. limit reports the container's limit.
func limitMemory(ratio float64, limit memlimit.Provider, log *slog.Logger) error {
	if ratio < 0 || ratio > 1 || math.IsNaN(ratio) {
		return fmt.Errorf("--auto-gomemlimit-ratio %v: want a share of the memory limit from 0 (off) to 1", ratio)
	}
	if ratio == 0 {
		return nil
	}
	set, err := memlimit.Set(memlimit.WithRatio(ratio), memlimit.WithProvider(limit))
	switch {
	case err != nil:
		log.Debug("no container memory limit to keep the heap under", "err", err)
	case set < math.MaxInt64:
		log.Info("Go heap kept under the memory limit", "GOMEMLIMIT", set, "ratio", ratio)
	}
	return nil
}

// envName is the environment variable that sets the serve flag name:
// "log-format" is VIGIL_LOG_FORMAT.
func envName(name string) string {
	return "VIGIL_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// flagsFromEnv sets each flag not given on the command line from its
// environment variable, if lookup finds one, so that a container is
// configured without arguments. A repeatable flag takes one value this way.
func flagsFromEnv(fs *pflag.FlagSet, lookup func(string) (string, bool)) error {
	var errs []error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed || f.Name == "help" {
			return
		}
		if v, ok := lookup(envName(f.Name)); ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q (--%s): %w", envName(f.Name), v, f.Name, err))
			}
		}
	})
	return errors.Join(errs...)
}

// startServer opens the store, refuses a store no one could administer,
// configures the serve options and builds the server; closeStore closes
// the store once the server is done with it.
func startServer(ctx context.Context, cfg *server.Config, opts []serveOption) (srv *server.Server, closeStore func(), err error) {
	st, err := store.Open(ctx, cfg.DataDir, cfg.DatabaseURL)
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		if err != nil {
			st.Close()
		}
	}()
	if cfg.AdminToken == "" {
		if err := checkAdministrable(ctx, st); err != nil {
			return nil, nil, err
		}
	}
	cfg.Store = st
	if err := configure(ctx, cfg, opts); err != nil {
		return nil, nil, err
	}
	if srv, err = server.New(ctx, *cfg); err != nil {
		return nil, nil, err
	}
	return srv, func() {
		if err := st.Close(); err != nil {
			cfg.Logger.Error("close store", "err", err)
		}
	}, nil
}

// checkAdministrable refuses to serve a store that has no admin token when
// none is configured either: nothing could then create a flag or a token,
// and the server would answer every admin call 401.
func checkAdministrable(ctx context.Context, st store.Store) error {
	tokens, err := st.Tokens(ctx)
	if err != nil {
		return fmt.Errorf("read tokens: %w", err)
	}
	for _, t := range tokens {
		if t.Role == store.RoleAdmin {
			return nil
		}
	}
	return errors.New("no admin token: set VIGIL_ADMIN_TOKEN or --admin-token-file (at least 16 characters); " +
		"the store has no admin token of its own, so nothing could use the admin API")
}

// servePaths are the files and directories serve may create: the SQLite
// store's and the embedded metric store's.
func servePaths(flags *pflag.FlagSet, cfg server.Config) []string {
	var dirs []string
	if cfg.DatabaseURL == "" {
		dirs = append(dirs, cfg.DataDir)
		for _, suffix := range []string{"", "-wal", "-shm", "-journal"} {
			dirs = append(dirs, filepath.Join(cfg.DataDir, "vigil.db"+suffix))
		}
		dirs = append(dirs, filepath.Join(cfg.DataDir, "vigil.lock"))
	}
	if flags.Lookup("prometheus-url").Value.String() == "" {
		if m := flags.Lookup("metrics-dir").Value.String(); m != "" {
			dirs = append(dirs, m)
		} else {
			dirs = append(dirs, filepath.Join(cfg.DataDir, "metrics"))
		}
	}
	return dirs
}

// missingPaths returns, for each path, its outermost ancestor (or itself)
// that does not exist yet: what creating the path would create.
func missingPaths(paths []string) []string {
	var out []string
	for _, p := range paths {
		p, err := filepath.Abs(p)
		if err != nil {
			continue
		}
		top := ""
		for d := p; ; d = filepath.Dir(d) {
			if _, err := os.Lstat(d); err == nil || !errors.Is(err, fs.ErrNotExist) {
				break
			}
			top = d
			if filepath.Dir(d) == d {
				break
			}
		}
		if top != "" && !slices.Contains(out, top) {
			out = append(out, top)
		}
	}
	return out
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
