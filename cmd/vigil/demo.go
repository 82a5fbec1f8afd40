package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/vigil-dev/vigil/controller/server"
	"github.com/vigil-dev/vigil/internal/demo"
)

func newDemoCmd() *cobra.Command {
	var (
		opts        demo.Options
		dir         string
		keepRunning bool
	)
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the whole story on this machine: a fleet, two rollouts, one promoted, one rolled back",
		Long: `Start, on loopback and in a temporary directory, a Vigil controller with its
embedded store and embedded metric store, a fleet of three services that use
the Vigil SDK (gateway -> checkout -> payments), and a load generator. Then
roll out two flags at once: new-checkout, whose treatment is healthy and is
promoted, and fast-payments, whose treatment fails twice as often and is
slower in the tail, and which the controller rolls back by itself.

Time is compressed: the judge looks every --interval and each step bakes for
--step-duration. The command exits 0 when both rollouts end as described and
no request saw two variants of a flag.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, os.Interrupt)
			defer stop()
			_, err := runDemo(ctx, cmd.OutOrStdout(), opts, demoSetup{dir: dir, keepRunning: keepRunning})
			return err
		},
	}
	fs := cmd.Flags()
	fs.DurationVar(&opts.Interval, "interval", time.Second, "analysis interval of both rollouts")
	fs.DurationVar(&opts.StepDuration, "step-duration", 8*time.Second, "minimum time at each step")
	fs.Float64Var(&opts.Rate, "rate", 400, "requests per second through the gateway")
	fs.IntVar(&opts.Users, "users", 20000, "distinct users sending requests")
	fs.DurationVar(&opts.Timeout, "timeout", 150*time.Second, "give up when the rollouts have not finished by then")
	fs.StringVar(&dir, "dir", "", "directory for the controller's data, dashboards and rules (default a new temporary directory)")
	fs.BoolVar(&keepRunning, "keep-running", false, "keep the controller and the fleet running after the story, until interrupted")
	return cmd
}

// demoSetup is how runDemo builds the controller around the story.
type demoSetup struct {
	dir         string
	keepRunning bool
	// serveArgs are extra `vigil serve` flags, such as --prometheus-url to
	// judge from a real Prometheus instead of the embedded store.
	serveArgs []string
}

func runDemo(ctx context.Context, out io.Writer, opts demo.Options, setup demoSetup) (demo.Outcome, error) {
	dir := setup.dir
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "vigil-demo-"); err != nil {
			return demo.Outcome{}, err
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return demo.Outcome{}, err
	}
	logFile, err := os.Create(filepath.Join(dir, "vigil.log"))
	if err != nil {
		return demo.Outcome{}, err
	}
	defer logFile.Close()
	token, err := randomToken()
	if err != nil {
		return demo.Outcome{}, err
	}

	// The same controller as `vigil serve`, with the scrape interval
	// matched to the compressed analysis interval.
	cfg := server.Config{
		DataDir:    filepath.Join(dir, "data"),
		AdminToken: token,
		Logger:     slog.New(slog.NewTextHandler(logFile, nil)),
		Heartbeat:  5 * time.Second,
	}
	srvCtx, stopServer := context.WithCancel(context.WithoutCancel(ctx))
	defer stopServer()
	args := append([]string{"--scrape-interval", opts.Interval.String(), "--metrics-retention", "24h"}, setup.serveArgs...)
	srv, fs, err := assemble(srvCtx, cfg, args)
	if err != nil {
		return demo.Outcome{}, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return demo.Outcome{}, err
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(srvCtx, ln) }()
	defer func() {
		stopServer()
		<-served
	}()
	url := "http://" + ln.Addr().String()

	opts.ServerURL, opts.Token = url, token
	if !fs.Changed("prometheus-url") {
		opts.OTLPEndpoint = url
	}
	opts.Out = out
	opts.Live = isTerminal(out)
	outcome, runErr := demo.Run(ctx, opts)

	artifacts := demo.Artifacts{
		Dashboards:    filepath.Join(dir, "dashboards"),
		AlertRules:    filepath.Join(dir, "alerts.yaml"),
		PrometheusAPI: url + " (token in " + filepath.Join(dir, "admin-token") + ")",
	}
	if err := os.WriteFile(filepath.Join(dir, "admin-token"), []byte(token+"\n"), 0o600); err != nil {
		return outcome, err
	}
	for _, args := range [][]string{
		{"dashboards", "generate", "--all", "-o", artifacts.Dashboards, "--server", url, "--token", token},
		{"alerts", "generate", "-o", artifacts.AlertRules, "--server", url, "--token", token},
	} {
		gen := newRootCmd()
		gen.SetArgs(args)
		gen.SetOut(io.Discard)
		if err := gen.ExecuteContext(ctx); err != nil {
			return outcome, fmt.Errorf("vigil %s %s: %w", args[0], args[1], err)
		}
	}
	demo.PrintSummary(out, outcome, artifacts)
	if runErr != nil {
		return outcome, runErr
	}
	if err := outcome.Expected(); err != nil {
		return outcome, fmt.Errorf("the demo did not end as expected: %w", err)
	}
	fmt.Fprintln(out, "\nBoth rollouts ended as expected: new-checkout promoted, fast-payments rolled back by the judge.")
	if setup.keepRunning {
		fmt.Fprintf(out, "Still running (controller %s, admin token %s); interrupt to stop.\n", url, token)
		<-ctx.Done()
	}
	return outcome, nil
}

func randomToken() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return "demo-" + hex.EncodeToString(b), nil
}

// isTerminal reports whether w is a terminal, where the live view redraws in
// place.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
