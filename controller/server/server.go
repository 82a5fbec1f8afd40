// Package server is Vigil's control plane over HTTP: the admin API under
// /api/v1, SDK delivery under /sdk/v1 (snapshot and server-sent events, as
// docs/sdk-protocol.md specifies), tokens, metrics and health.
//
// Other parts of the controller, such as the rollout loop, plug in through
// Config.Extensions: an Extension gets a Host with the store, the metrics
// registry, authenticated route groups and a way to run background work for
// the life of the server.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-dev/vigil/controller/store"
)

// Config configures a Server. Zero fields take the defaults in their
// comments.
type Config struct {
	// Addr is the listening address for Run; default "127.0.0.1:8080", so
	// that a controller is reachable from elsewhere only when told to be.
	Addr string
	// DataDir is the SQLite store's directory; default "./vigil-data".
	DataDir string
	// DatabaseURL selects the PostgreSQL store ("postgres://...") instead of
	// SQLite.
	DatabaseURL string
	// Store, when set, is used instead of opening one from DataDir or
	// DatabaseURL. The caller keeps ownership: the server does not close it.
	Store store.Store
	// AdminToken is the first admin token (its name is "admin"). It is kept
	// only in memory, as a hash. With none, only stored tokens work.
	AdminToken string
	// Logger receives the server's log; default slog.Default().
	Logger *slog.Logger
	// Registry receives the server's metrics; default a new registry with
	// the Go and process collectors.
	Registry *prometheus.Registry
	// MaxBodyBytes limits request bodies; default 1 MiB.
	MaxBodyBytes int64
	// Heartbeat is the interval of ": ping" comments on SDK streams;
	// default 15s.
	Heartbeat time.Duration
	// ReadTimeout bounds reading a whole request, headers and body, on
	// every route but the SDK stream; default 30s. Headers alone must come
	// within 10s.
	ReadTimeout time.Duration
	// WriteTimeout bounds writing an answer, from the end of its request,
	// on every route but the SDK stream; default 60s.
	WriteTimeout time.Duration
	// StreamWriteTimeout bounds each write to an SDK stream: a client that
	// takes longer to accept an event or a heartbeat is disconnected;
	// default 10s.
	StreamWriteTimeout time.Duration
	// MaxConnsPerClient caps the connections open at once from one client
	// IP address; connections over it are closed at once; default 512,
	// negative for no cap. Behind a proxy every client has the proxy's
	// address: raise it or turn it off there.
	MaxConnsPerClient int
	// MaxConns caps the connections open at once in total; default none.
	MaxConns int
	// StreamMaxAge is how long an SDK stream lives at most (less up to a
	// tenth, at random, so that clients connected together do not
	// reconnect together); the SDK then reconnects, showing its token
	// again; default 1h.
	StreamMaxAge time.Duration
	// Resync is how often the server rereads changes even without a
	// notification, a safety net for a lost LISTEN connection; default 5s.
	Resync time.Duration
	// ShutdownTimeout bounds how long Run waits for in-flight requests
	// after its context ends; default 10s.
	ShutdownTimeout time.Duration
	// Extensions are called once by New, in order.
	Extensions []Extension
}

// Extension adds routes, metrics or background work to a server.
type Extension func(h *Host) error

// Host is what an Extension may use.
type Host struct {
	Store    store.Store
	Registry *prometheus.Registry
	Logger   *slog.Logger
	// Read is /api/v1 for the admin and reader roles: register GET routes.
	Read *gin.RouterGroup
	// Write is /api/v1 for the admin role: register changing routes.
	Write *gin.RouterGroup

	s *Server
}

// Group returns a route group at path that admits only the given roles.
func (h *Host) Group(path string, roles ...store.Role) *gin.RouterGroup {
	return h.s.engine.Group(path, h.s.requireRole(roles...))
}

// Public returns the root route group with no authentication, for routes
// that serve nothing secret, such as a page whose data comes from the
// authenticated API.
func (h *Host) Public() *gin.RouterGroup {
	return &h.s.engine.RouterGroup
}

// ReadyCheck adds a dependency to /readyz under name: while check fails,
// /readyz shows its error and answers 200 "degraded" (the replica still
// serves SDKs from memory), and /readyz?strict=true answers 503.
func (h *Host) ReadyCheck(name string, check ReadyCheck) {
	h.s.readyChecks = append(h.s.readyChecks, namedCheck{name: name, check: check})
}

// Go runs fn in the background while the server runs. Its context ends when
// the server begins to shut down, and Run waits for fn to return. An error
// from fn is logged.
func (h *Host) Go(name string, fn func(ctx context.Context) error) {
	h.s.background = append(h.s.background, namedTask{name, fn})
}

type namedTask struct {
	name string
	fn   func(ctx context.Context) error
}

// readHeaderTimeout bounds reading a request's headers.
const readHeaderTimeout = 10 * time.Second

// Server is a Vigil controller.
type Server struct {
	cfg        Config
	log        *slog.Logger
	store      store.Store
	ownsStore  bool
	reg        *prometheus.Registry
	metrics    *metrics
	engine     *gin.Engine
	hub        *hub
	tokens     *tokenCache
	admin      *adminToken
	background []namedTask
	// readyChecks are the conditions of /readyz, the server's own first.
	readyChecks []namedCheck
}

// New opens the store, migrating its schema, and builds the server and its
// extensions. Run starts it.
func New(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:8080"
	}
	if cfg.DataDir == "" {
		cfg.DataDir = "./vigil-data"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 1 << 20
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 15 * time.Second
	}
	if cfg.Resync <= 0 {
		cfg.Resync = 5 * time.Second
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = 30 * time.Second
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = time.Minute
	}
	if cfg.StreamWriteTimeout <= 0 {
		cfg.StreamWriteTimeout = 10 * time.Second
	}
	if cfg.StreamMaxAge <= 0 {
		cfg.StreamMaxAge = time.Hour
	}
	if cfg.MaxConnsPerClient == 0 {
		cfg.MaxConnsPerClient = 512
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 10 * time.Second
	}
	admin, err := newAdminToken(cfg.AdminToken)
	if err != nil {
		return nil, err
	}
	reg := cfg.Registry
	if reg == nil {
		reg = NewRegistry()
	}
	s := &Server{cfg: cfg, log: cfg.Logger, reg: reg, admin: admin}
	s.metrics = newMetrics(reg)
	st := cfg.Store
	if st == nil {
		st, err = store.Open(ctx, cfg.DataDir, cfg.DatabaseURL)
		if err != nil {
			return nil, err
		}
		s.ownsStore = true
	}
	s.store = instrument(st, s.metrics.storeDuration)
	s.tokens = newTokenCache(s.store)
	s.hub = newHub(s.store, s.tokens, s.log, s.metrics, cfg.Resync)
	s.readyChecks = s.builtinChecks()
	s.engine = s.routes()
	h := &Host{
		Store:    s.store,
		Registry: reg,
		Logger:   s.log,
		Read:     s.engine.Group("/api/v1", s.requireRole(store.RoleAdmin, store.RoleReader)),
		Write:    s.engine.Group("/api/v1", s.requireRole(store.RoleAdmin)),
		s:        s,
	}
	for i, ext := range cfg.Extensions {
		if err := ext(h); err != nil {
			s.closeStore()
			return nil, fmt.Errorf("extension %d: %w", i, err)
		}
	}
	if admin == nil {
		s.log.Warn("no admin token configured (VIGIL_ADMIN_TOKEN or --admin-token-file); only stored tokens are accepted")
	}
	return s, nil
}

// Store returns the server's store, instrumented with its metrics.
func (s *Server) Store() store.Store { return s.store }

// Handler returns the server's HTTP handler. SDK endpoints answer 503 until
// Run or Serve has loaded the flags.
func (s *Server) Handler() http.Handler { return s.engine }

// Run listens on Config.Addr and serves until ctx ends; see Serve.
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		s.closeStore()
		return fmt.Errorf("listen %s: %w", s.cfg.Addr, err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves on ln until ctx ends, then shuts down: it stops accepting,
// ends the SDK streams, waits for in-flight requests (up to
// Config.ShutdownTimeout) and background tasks, and closes the store if New
// opened it. It returns nil after a clean shutdown.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	defer s.closeStore()
	hs := &http.Server{
		Handler:           s.engine,
		ReadHeaderTimeout: readHeaderTimeout,
		// The stream handler lifts this deadline once its request is read.
		ReadTimeout: s.cfg.ReadTimeout,
		IdleTimeout: 2 * time.Minute,
		// No WriteTimeout: SDK streams stay open for as long as clients
		// want. The deadlines middleware and the stream set their own.
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	ln = newLimitListener(ln, s.cfg.MaxConnsPerClient, s.cfg.MaxConns, s.log, s.metrics.connsRefused)
	bgCtx, stopBg := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBg()
	var wg sync.WaitGroup
	wg.Go(func() { s.hub.run(bgCtx) })
	for _, t := range s.background {
		wg.Go(func() {
			if err := t.fn(bgCtx); err != nil && !errors.Is(err, context.Canceled) {
				s.log.Error("background task failed", "task", t.name, "err", err)
			}
		})
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- hs.Serve(ln) }()
	s.log.Info("vigil controller listening", "addr", ln.Addr().String())

	var err error
	select {
	case <-ctx.Done():
	case err = <-serveErr:
		err = fmt.Errorf("serve: %w", err)
	}
	s.log.Info("shutting down")
	// Streams never finish by themselves: end them first so that Shutdown
	// waits only for ordinary requests.
	s.hub.close()
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	if serr := hs.Shutdown(sctx); serr != nil {
		err = errors.Join(err, fmt.Errorf("shutdown: %w", serr))
		hs.Close()
	}
	stopBg()
	wg.Wait()
	return err
}

func (s *Server) closeStore() {
	if s.ownsStore {
		if err := s.store.Close(); err != nil {
			s.log.Error("close store", "err", err)
		}
		s.ownsStore = false
	}
}
