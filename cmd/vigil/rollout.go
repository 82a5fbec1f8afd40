package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"

	"github.com/vigil-dev/vigil/analysis/cohort"
	"github.com/vigil-dev/vigil/analysis/judge"
	"github.com/vigil-dev/vigil/controller/notify"
	"github.com/vigil-dev/vigil/controller/plan"
	"github.com/vigil-dev/vigil/controller/rollout"
	"github.com/vigil-dev/vigil/controller/runner"
	"github.com/vigil-dev/vigil/controller/server"
	"github.com/vigil-dev/vigil/internal/client"
	"github.com/vigil-dev/vigil/internal/rolloutview"
)

// rolloutPath is the API path of a rollout, or of one of its commands.
func rolloutPath(key string, command ...rollout.CommandKind) string {
	p := "/api/v1/rollouts/" + url.PathEscape(key)
	for _, c := range command {
		p += "/" + string(c)
	}
	return p
}

func newRolloutCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rollout",
		Short: "Start, watch and steer automated rollouts",
		Long: `A rollout moves a flag's treatment percentage through the steps of its plan,
judging treatment against control at every interval: it advances when no harm
is found with enough data, holds when the data say nothing yet, pauses at
gates until a person resumes it, and rolls back to 0% by itself when the
treatment is worse.`,
	}
	cmd.AddCommand(newRolloutStartCmd())
	for _, c := range []struct {
		kind  rollout.CommandKind
		short string
	}{
		{rollout.Pause, "Hold a progressing rollout at its percentage"},
		{rollout.Resume, "Carry on a paused rollout (at a gate: approve the next step)"},
		{rollout.Promote, "Go to 100% at once and stop tracking; the flag stays there until a rollback or a new start"},
		{rollout.Rollback, "Go to 0% at once; the flag stays there until a new start"},
		{rollout.Abort, "Stop the rollout at 0% without a judgement; the flag stays there until a new start"},
	} {
		cmd.AddCommand(newRolloutCommandCmd(c.kind, c.short))
	}
	cmd.AddCommand(newRolloutListCmd(), newRolloutStatusCmd())
	return cmd
}

func newRolloutStartCmd() *cobra.Command {
	var planFile, reason string
	var steps []float64
	var interval, minStep, maxStep time.Duration
	var minRequests int64
	cmd := &cobra.Command{
		Use:   "start KEY",
		Short: "Start a rollout of a flag's treatment, with the flag's plan or overrides",
		Example: `  vigil rollout start new-checkout
  vigil rollout start new-checkout --steps 1,10,50 --interval 10s --min-step-duration 2m
  vigil rollout start new-checkout --plan plan.json`,
		Args: cobra.ExactArgs(1),
	}
	remote := addRemoteFlags(cmd)
	cmd.Flags().StringVar(&planFile, "plan", "", "JSON or YAML file with plan overrides (the fields of rollout.plan)")
	cmd.Flags().Float64SliceVar(&steps, "steps", nil, "treatment percentages to go through, e.g. 1,5,25")
	cmd.Flags().DurationVar(&interval, "interval", 0, "analysis interval")
	cmd.Flags().DurationVar(&minStep, "min-step-duration", 0, "bake time at each step")
	cmd.Flags().DurationVar(&maxStep, "max-step-duration", 0, "longest an undecided step may last")
	cmd.Flags().Int64Var(&minRequests, "min-requests", 0, "requests per cohort within a step before it may pass")
	cmd.Flags().StringVar(&reason, "reason", "", "why, for the history and the audit log")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := remote.client()
		if err != nil {
			return err
		}
		spec := &plan.Spec{}
		if planFile != "" {
			if spec, err = readPlan(planFile); err != nil {
				return err
			}
		}
		// A flag given on the command line is written, zero included, and
		// overrides the file: the server validates the whole.
		fs := cmd.Flags()
		if fs.Changed("steps") {
			spec.Steps = &steps
		}
		for _, d := range []struct {
			name string
			v    time.Duration
			dst  **plan.Duration
		}{{"interval", interval, &spec.Interval}, {"min-step-duration", minStep, &spec.MinStepDuration}, {"max-step-duration", maxStep, &spec.MaxStepDuration}} {
			if fs.Changed(d.name) {
				*d.dst = new(plan.Duration(d.v))
			}
		}
		if fs.Changed("min-requests") {
			spec.MinRequests = &minRequests
		}
		body := map[string]any{"reason": reason}
		if *spec != (plan.Spec{}) {
			body["plan"] = spec
		}
		var s rollout.State
		if err := c.Do(cmd.Context(), client.Request{Method: http.MethodPost, Path: rolloutPath(args[0], rollout.Start), Body: body}, &s); err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "rollout %s started at %v%% (steps %s)\n", s.Key, s.Percent, stepsText(s.Plan.Steps))
		return nil
	}
	return cmd
}

// readPlan reads a plan as written from a JSON or YAML file, strictly.
func readPlan(path string) (*plan.Spec, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read plan %s: %w", path, err)
	}
	// YAML is a superset of JSON: decode either, then read the fields
	// strictly through JSON so that a typo is an error, not a default.
	var doc any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("read plan %s: %w", path, err)
	}
	js, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("read plan %s: %w", path, err)
	}
	spec, err := plan.Decode(js)
	if err != nil {
		return nil, fmt.Errorf("read plan %s: %w", path, err)
	}
	return spec, nil
}

func newRolloutCommandCmd(kind rollout.CommandKind, short string) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   string(kind) + " KEY",
		Short: short,
		Args:  cobra.ExactArgs(1),
	}
	remote := addRemoteFlags(cmd)
	cmd.Flags().StringVar(&reason, "reason", "", "why, for the history and the audit log")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := remote.client()
		if err != nil {
			return err
		}
		var s rollout.State
		req := client.Request{Method: http.MethodPost, Path: rolloutPath(args[0], kind), Body: map[string]string{"reason": reason}}
		if err := c.Do(cmd.Context(), req, &s); err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "rollout %s is %s at %v%%\n", s.Key, s.Phase, s.Percent)
		return nil
	}
	return cmd
}

func newRolloutListCmd() *cobra.Command {
	var states []string
	var pageSize int
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List rollouts in brief (vigil rollout status KEY shows one in full)",
		Args:  cobra.NoArgs,
	}
	remote := addRemoteFlags(cmd)
	output := addOutputFlag(cmd, "table", "json")
	cmd.Flags().StringSliceVar(&states, "state", nil, "only rollouts in these states: "+strings.Join(runner.PhaseNames(), ", "))
	cmd.Flags().IntVar(&pageSize, "page-size", 0, fmt.Sprintf("rollouts per request, 1 to %d (default %d)", runner.MaxListLimit, runner.DefaultListLimit))
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if err := checkOutput(*output, "table", "json"); err != nil {
			return err
		}
		if pageSize < 0 || pageSize > runner.MaxListLimit {
			return usageError(fmt.Errorf("--page-size %d: want 1 to %d, or 0 for the controller's default", pageSize, runner.MaxListLimit))
		}
		phases := make([]rollout.Phase, len(states))
		for i, s := range states {
			phases[i] = rollout.Phase(s)
		}
		c, err := remote.client()
		if err != nil {
			return err
		}
		list, err := c.Rollouts(cmd.Context(), phases, pageSize)
		if err != nil {
			return err
		}
		w := cmd.OutOrStdout()
		if *output == "json" {
			return printJSON(w, runner.RolloutList[runner.Summary]{Rollouts: list})
		}
		fmt.Fprintf(w, "%-32s %-12s %8s %6s  %-13s %s\n", "KEY", "STATE", "PERCENT", "STEP", "VERDICT", "UPDATED")
		for _, s := range list {
			verdict := "-"
			if s.Verdict != nil {
				verdict = string(s.Verdict.Outcome)
			}
			fmt.Fprintf(w, "%-32s %-12s %7v%% %6s  %-13s %s\n", s.Key, s.Phase, s.Percent, stepText(s.Step, s.Steps), verdict, s.UpdatedAt.Local().Format(time.DateTime))
		}
		return nil
	}
	return cmd
}

func newRolloutStatusCmd() *cobra.Command {
	var watch bool
	var every, timeout time.Duration
	cmd := &cobra.Command{
		Use:   "status KEY",
		Short: "Show a rollout: steps, cohorts, verdict and history (-w to follow it live)",
		Long: `Show a rollout. The exit code says where it is, so that a pipeline can gate
on it: 0 promoted, 3 rolled back, 4 aborted, 5 paused, 6 still pending or
progressing (with -w: when --timeout ran out), 1 an error, 2 a wrong command
line. With -w it follows the rollout until it is promoted, rolled back or
aborted, Ctrl-C or --timeout.`,
		Args: cobra.ExactArgs(1),
	}
	remote := addRemoteFlags(cmd)
	output := addOutputFlag(cmd, "text", "json")
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "follow the rollout until it finishes, Ctrl-C or --timeout")
	cmd.Flags().DurationVar(&every, "refresh", 2*time.Second, "how often -w refreshes")
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "with -w, stop following after this long (0: no limit)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if err := checkOutput(*output, "text", "json"); err != nil {
			return usageError(err)
		}
		if every < 100*time.Millisecond {
			return usageError(fmt.Errorf("--refresh %v: want at least 100ms", every))
		}
		if timeout < 0 || (timeout > 0 && !watch) {
			return usageError(fmt.Errorf("--timeout %v: want a positive duration, with -w", timeout))
		}
		c, err := remote.client()
		if err != nil {
			return err
		}
		ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt)
		defer stop()
		w := cmd.OutOrStdout()
		sw := statusWatch{
			key: args[0], json: *output == "json", watch: watch, every: every, timeout: timeout,
			// Redrawing in place is for a person at a terminal; a pipe or
			// a file gets each change once, without control codes.
			redraw: watch && *output == "text" && isTerminal(w),
		}
		return sw.run(ctx, c, w)
	}
	return cmd
}

// statusWatch shows one rollout, once or until it finishes.
type statusWatch struct {
	key         string
	json, watch bool
	redraw      bool // clear the screen and draw every refresh, so countdowns tick
	every       time.Duration
	timeout     time.Duration
}

// run shows the rollout and returns the error that gives the exit code of
// its phase (nil when promoted).
func (sw statusWatch) run(ctx context.Context, c *client.Client, w io.Writer) error {
	var deadline <-chan time.Time
	if sw.timeout > 0 {
		t := time.NewTimer(sw.timeout)
		defer t.Stop()
		deadline = t.C
	}
	var s rollout.State
	var lastRev int64 = -1
	for {
		var next rollout.State
		err := c.Do(ctx, client.Request{Method: http.MethodGet, Path: rolloutPath(sw.key)}, &next)
		if errors.Is(err, context.Canceled) && lastRev >= 0 {
			return phaseResult(s, "interrupted")
		}
		if err != nil {
			return err
		}
		s = next
		switch {
		case sw.json && s.Revision != lastRev:
			// One object per line when watching, so scripts can read
			// the stream line by line.
			enc := json.NewEncoder(w)
			if !sw.watch {
				enc.SetIndent("", "  ")
			}
			if err := enc.Encode(s); err != nil {
				return err
			}
		case sw.redraw:
			fmt.Fprint(w, "\033[H\033[2J"+renderStatus(s, time.Now()))
		case !sw.json && s.Revision != lastRev:
			if lastRev >= 0 {
				fmt.Fprintln(w)
			}
			fmt.Fprint(w, renderStatus(s, time.Now()))
		}
		lastRev = s.Revision
		if !sw.watch || finished(s.Phase) {
			return phaseResult(s, "")
		}
		select {
		case <-ctx.Done():
			return phaseResult(s, "interrupted")
		case <-deadline:
			return phaseResult(s, fmt.Sprintf("--timeout %v ran out", sw.timeout))
		case <-time.After(sw.every):
		}
	}
}

// finished reports whether a rollout in phase p is over.
func finished(p rollout.Phase) bool {
	return p == rollout.Promoted || p == rollout.RolledBack || p == rollout.Aborted
}

// phaseResult is nil for a promoted rollout and otherwise an error whose exit
// code names the phase; why says why watching stopped, if it stopped early.
func phaseResult(s rollout.State, why string) error {
	code := map[rollout.Phase]int{
		rollout.Promoted: exitOK, rollout.RolledBack: exitRolledBack, rollout.Aborted: exitAborted,
		rollout.Paused: exitPaused, rollout.Pending: exitRunning, rollout.Progressing: exitRunning,
	}[s.Phase]
	if code == exitOK {
		return nil
	}
	msg := fmt.Sprintf("rollout %s is %s at %v%%, not promoted", s.Key, s.Phase, s.Percent)
	if why != "" {
		msg += " (" + why + ")"
	}
	return &exitCodeError{code: code, err: errors.New(msg)}
}

// stepOf shows a rollout's step as "3/6".
func stepOf(s rollout.State) string { return stepText(s.Step, len(s.Plan.Steps)) }

// stepText is step (an index, -1 before the first start) of steps, as
// "2/5", or "-".
func stepText(step, steps int) string {
	if step < 0 || steps == 0 {
		return "-"
	}
	return fmt.Sprintf("%d/%d", step+1, steps)
}

func stepsText(steps []float64) string {
	parts := make([]string, len(steps))
	for i, p := range steps {
		parts[i] = fmt.Sprintf("%v%%", p)
	}
	return strings.Join(parts, " → ")
}

func ago(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return fmt.Sprintf("%s (%s ago)", t.Local().Format(time.DateTime), now.Sub(t).Round(time.Second))
}

// renderStatus is the text view of one rollout.
func renderStatus(s rollout.State, now time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s  %s  %v%%  step %s\n", s.Key, strings.ToUpper(string(s.Phase)), s.Percent, stepOf(s))
	if len(s.Plan.Steps) > 0 {
		fmt.Fprintf(&b, "%s\n", rolloutview.Progress(s))
	}
	fmt.Fprintf(&b, "started      %s\n", ago(s.StartedAt, now))
	if s.Phase == rollout.Progressing || s.Phase == rollout.Paused {
		fmt.Fprintf(&b, "step began   %s (bake %v, at most %v)\n", ago(s.StepStartedAt, now), s.Plan.MinStepDuration.Std(), s.Plan.MaxStepDuration.Std())
		if now.Before(s.AnalysisStartsAt) {
			fmt.Fprintf(&b, "warming up   analysis starts in %s\n", s.AnalysisStartsAt.Sub(now).Round(time.Second))
		}
	}
	fmt.Fprintf(&b, "updated      %s\n", ago(s.UpdatedAt, now))
	if s.PausedReason != "" {
		fmt.Fprintf(&b, "paused       %s\n", s.PausedReason)
	}
	if s.ProviderErrors > 0 {
		fmt.Fprintf(&b, "metrics      unreadable for %d ticks in a row\n", s.ProviderErrors)
	}
	fmt.Fprintf(&b, "\n%-10s %14s %14s\n", "cohort", "requests", "in this step")
	fmt.Fprintf(&b, "%-10s %14.0f %14.0f\n", "treatment", s.Cohorts.Total.Treatment, s.Cohorts.Step.Treatment)
	fmt.Fprintf(&b, "%-10s %14.0f %14.0f\n", "control", s.Cohorts.Total.Control, s.Cohorts.Step.Control)
	if v := s.Verdict; v != nil {
		fmt.Fprintf(&b, "\nverdict      %s at %s\n             %s\n", strings.ToUpper(string(v.Outcome)), v.At.Local().Format(time.TimeOnly), v.Summary)
		for _, m := range v.Metrics {
			fmt.Fprintf(&b, "  %-18s %-13s e-value %-9.3g of %-6.3g %s\n", m.Name, m.Outcome, m.EValue, m.Threshold, m.Summary)
		}
		writeEvidence(&b, v.Detail)
	}
	if len(s.History) > 0 {
		b.WriteString("\nhistory\n")
		for _, h := range s.History {
			fmt.Fprintf(&b, "  %s  %-11s → %-11s %6v%%  %s\n", h.At.Local().Format(time.DateTime), h.From, h.To, h.Percent, h.Reason)
		}
	}
	return b.String()
}

// writeEvidence writes the numbers a verdict rests on: for each ratio check
// its interval against the tolerance, the harm bound and the practical
// floor, and the traffic split's check.
func writeEvidence(b *strings.Builder, d *judge.Verdict) {
	if d == nil {
		return
	}
	for _, c := range d.Checks {
		if c.CILevel == 0 || c.Tolerance == 0 || c.Bound != 0 {
			continue // an absolute bound: its line above says it all
		}
		fmt.Fprintf(b, "  %-18s ratio %.3g", c.Check, c.Ratio)
		if c.CIHigh > 0 {
			fmt.Fprintf(b, ", %g%% interval %.3g to %.3g", math.Round(c.CILevel*1000)/10, c.CILow, c.CIHigh)
		} else {
			b.WriteString(", no interval yet")
		}
		fmt.Fprintf(b, "; tolerance %.3g", c.Tolerance)
		if c.HarmBound > 0 {
			fmt.Fprintf(b, ", harm bound %.3g", c.HarmBound)
		} else {
			b.WriteString(", no harm bound")
		}
		if c.FloorRatio > 0 {
			fmt.Fprintf(b, ", floor at ratio %.3g", c.FloorRatio)
		}
		fmt.Fprintf(b, "; dispersion %.3g\n", c.Dispersion)
	}
	if sr := d.SampleRatio; sr != nil {
		word := "ok"
		if sr.Mismatch {
			word = "MISMATCH"
		}
		fmt.Fprintf(b, "  %-18s %-13s %s\n", "traffic split", word, sr.Explanation)
	}
}

// rolloutServeOption runs the rollout loop in `vigil serve`: it adds the
// webhook flags and the rollout extension, which reads cohort counts through
// the provider that provider returns once the flags are parsed (so the
// option that sets up the metric provider must come first).
func rolloutServeOption(provider func() cohort.Provider) serveOption {
	var (
		hooks      []string
		format     string
		secretFile string
		leaseTTL   time.Duration
	)
	return serveOption{
		Flags: func(fs *pflag.FlagSet) {
			fs.StringArrayVar(&hooks, "webhook", nil, "URL that receives a JSON POST on every rollout transition (repeatable)")
			fs.StringVar(&format, "webhook-format", "json", "webhook body: json (signed Vigil event) or slack (Slack-compatible message)")
			fs.StringVar(&secretFile, "webhook-secret-file", "", "file holding the HMAC-SHA256 key that signs webhook bodies (default $VIGIL_WEBHOOK_SECRET)")
			fs.DurationVar(&leaseTTL, "rollout-lease-ttl", 15*time.Second, "how long the rollout loop's lease outlives a crashed leader")
		},
		Configure: func(ctx context.Context, cfg *server.Config) error {
			p := provider()
			if p == nil {
				return errors.New("rollouts: no metric provider configured")
			}
			if leaseTTL < time.Second {
				return fmt.Errorf("--rollout-lease-ttl %v: want at least 1s", leaseTTL)
			}
			secret := os.Getenv("VIGIL_WEBHOOK_SECRET")
			if secretFile != "" {
				b, err := os.ReadFile(secretFile)
				if err != nil {
					return fmt.Errorf("read --webhook-secret-file: %w", err)
				}
				secret = strings.TrimSpace(string(b))
			}
			opts := runner.Options{Reader: cohort.NewReader(p), LeaseTTL: leaseTTL}
			var n *notify.Notifier
			if len(hooks) > 0 {
				var webhooks []notify.Webhook
				for _, h := range hooks {
					webhooks = append(webhooks, notify.Webhook{URL: h, Secret: secret, Format: notify.Format(format)})
				}
				var err error
				if n, err = notify.New(webhooks, notifyOptions(cfg)); err != nil {
					return fmt.Errorf("--webhook: %w", err)
				}
				opts.Notifier = n
			}
			cfg.Extensions = append(cfg.Extensions, runner.Extension(opts), func(h *server.Host) error {
				if n != nil {
					h.Go("webhooks", func(ctx context.Context) error {
						<-ctx.Done()
						// Queued transitions get a few seconds to go out.
						cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
						defer cancel()
						return n.Close(cctx)
					})
				}
				return nil
			})
			return nil
		},
	}
}

// notifyOptions are the webhooks' options for a server configured as cfg.
func notifyOptions(cfg *server.Config) notify.Options {
	opts := notify.Options{Logger: cfg.Logger}
	if cfg.Registry != nil {
		opts.Registerer = cfg.Registry
	}
	return opts
}
