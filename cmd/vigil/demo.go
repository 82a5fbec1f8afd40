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

	"github.com/prometheus/common/config"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/vigil-dev/vigil/analysis/cohort"
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
promoted, and fast-payments, whose treatment makes requests fail twice as
often and is slower in the tail, and which the controller rolls back by
itself.

Time is compressed: the judge looks every --interval and each step bakes for
--step-duration. The command exits 0 when both rollouts end as described and
no request saw two variants of a flag. With --keep-running, the controller,
the fleet and the load stay up after the summary until SIGINT or SIGTERM.`,
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
	fs.BoolVar(&keepRunning, "keep-running", false, "keep the controller, the fleet and the load running after the story, until SIGINT or SIGTERM")
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

// runDemo plays the demo against a controller it assembles as `vigil serve`
// does, prints the summary and writes the dashboards and alert rules. With
// setup.keepRunning, the controller, the fleet and the load stay up after
// the summary until ctx ends (SIGINT or SIGTERM for the command); then all
// of them stop.
func runDemo(ctx context.Context, out io.Writer, opts demo.Options, setup demoSetup) (_ demo.Outcome, err error) {
	dir := setup.dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "vigil-demo-"); err != nil {
			return demo.Outcome{}, fmt.Errorf("demo directory: %w", err)
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return demo.Outcome{}, fmt.Errorf("demo directory: %w", err)
	}
	logFile, err := os.Create(filepath.Join(dir, "vigil.log"))
	if err != nil {
		return demo.Outcome{}, fmt.Errorf("controller log: %w", err)
	}
	defer logFile.Close()
	token, err := randomToken()
	if err != nil {
		return demo.Outcome{}, err
	}
	tokenFile := filepath.Join(dir, "admin-token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		return demo.Outcome{}, fmt.Errorf("admin token: %w", err)
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
		return demo.Outcome{}, fmt.Errorf("controller listener: %w", err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(srvCtx, ln) }()
	// Last of all, after the fleet and the load have stopped.
	defer func() {
		stopServer()
		if serr := <-served; serr != nil && err == nil {
			err = fmt.Errorf("controller: %w", serr)
		}
	}()
	url := "http://" + ln.Addr().String()

	// Grafana, and the view's cohort figures, read the Prometheus API that
	// holds the fleet's metrics: the controller's own with the embedded
	// store, which the services push to, else the Prometheus the judge
	// reads.
	promURL, _ := fs.GetString("prometheus-url")
	artifacts := demo.Artifacts{
		Dashboards:    filepath.Join(dir, "dashboards"),
		AlertRules:    filepath.Join(dir, "alerts.yaml"),
		PrometheusAPI: promURL,
	}
	promClient := config.DefaultHTTPClientConfig
	if promURL == "" {
		artifacts.PrometheusAPI = url
		artifacts.PrometheusAuth = "bearer token in " + tokenFile
		promClient.BearerToken = config.Secret(token)
		opts.OTLPEndpoint = url
	}
	if opts.Metrics, err = cohort.NewHTTPProvider(cohort.HTTPOptions{URL: artifacts.PrometheusAPI, Client: promClient,
		Timeout: 5 * time.Second, Retries: -1}); err != nil {
		return demo.Outcome{}, err
	}

	opts.ServerURL, opts.Token = url, token
	opts.Out = out
	opts.Live = isTerminal(out)
	d, err := demo.Start(ctx, opts)
	if err != nil {
		return demo.Outcome{}, err
	}
	fmt.Fprintf(out, "console: %s/ (sign in with the admin token in %s)\n", url, tokenFile)
	// Before the controller stops: the fleet's SDKs are its clients.
	defer d.Close()
	outcome, runErr := d.Wait(ctx)

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
		fmt.Fprintf(out, "\nStill running until interrupted: controller %s (admin token in %s), console %s/, fleet gateway %s, load %.0f requests/s.\n",
			url, tokenFile, url, d.GatewayURL(), d.Rate())
		<-ctx.Done()
		fmt.Fprintln(out, "Interrupted: stopping the load, the fleet and the controller.")
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
// place. It asks the terminal driver: being a character device is not
// enough, /dev/null is one too.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
