package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-dev/vigil/analysis/cohort"
	"github.com/vigil-dev/vigil/analysis/judge"
	"github.com/vigil-dev/vigil/controller/notify"
	"github.com/vigil-dev/vigil/controller/plan"
	"github.com/vigil-dev/vigil/controller/rollout"
	"github.com/vigil-dev/vigil/controller/runner"
	"github.com/vigil-dev/vigil/controller/server"
	"github.com/vigil-dev/vigil/controller/store"
	"github.com/vigil-dev/vigil/internal/testenv/poll"
	"github.com/vigil-dev/vigil/internal/testenv/servertest"
	"github.com/vigil-dev/vigil/sdk/flag"
)

const cliToken = "cli-test-admin-token-0123456789"

// noTraffic reads zero counts for every flag: these tests are about the
// CLI, and the rollouts they start never need to advance.
type noTraffic struct{}

func (noTraffic) Read(_ context.Context, _ time.Time, qs []cohort.FlagQuery) (map[string]cohort.Reading, error) {
	out := make(map[string]cohort.Reading, len(qs))
	for _, q := range qs {
		out[q.Flag] = cohort.Reading{Counts: judge.FlagCounts{Flag: q.Flag}}
	}
	return out, nil
}

// startController runs a real controller with the rollout extension on
// loopback and one flag, "checkout", ready to roll out.
func startController(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	st, err := store.OpenSQLite(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	err = st.Update(ctx, store.Actor{Name: "test"}, func(tx store.Tx) error {
		_, err := tx.PutFlag(ctx, flag.Flag{
			Key: "checkout", Control: "off", Treatment: "on", Enabled: true,
			Variants: map[string]json.RawMessage{"on": json.RawMessage("true"), "off": json.RawMessage("false")},
		})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	url, _ := servertest.Run(t, func(ctx context.Context) (*server.Server, error) {
		return server.New(ctx, server.Config{
			Store: st, AdminToken: cliToken, Registry: prometheus.NewRegistry(), Logger: slog.New(slog.DiscardHandler),
			Extensions: []server.Extension{runner.Extension(runner.Options{Reader: noTraffic{}})},
		})
	})
	return url
}

// vigil runs the CLI with args and returns its output and error.
func vigil(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newRootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

// rolloutCLICase is one CLI invocation and what it must print.
type rolloutCLICase struct {
	args []string
	want string // a substring of the output, or of the error when fail
	fail bool
	// code, when not 0, is the exit code the command must end with, having
	// printed want (rollout status of a rollout not promoted).
	code int
}

// runRolloutCLI runs each case against the controller at conn.
func runRolloutCLI(t *testing.T, conn []string, cases []rolloutCLICase) {
	t.Helper()
	for _, tc := range cases {
		out, err := vigil(t, append(tc.args, conn...)...)
		got := out
		if tc.code != 0 {
			if c := exitCode(err); c != tc.code {
				t.Errorf("vigil %v: exit code %d (%v), want %d", tc.args, c, err, tc.code)
			}
		} else if tc.fail {
			if err == nil {
				t.Errorf("vigil %v succeeded: %s", tc.args, out)
				continue
			}
			got = err.Error()
		} else if err != nil {
			t.Errorf("vigil %v: %v", tc.args, err)
			continue
		}
		if !strings.Contains(got, tc.want) {
			t.Errorf("vigil %v:\n%s\nwant it to contain %q", tc.args, got, tc.want)
		}
	}
}

func TestRolloutCLI(t *testing.T) {
	url := startController(t)
	conn := []string{"--server", url, "--token", cliToken}
	dir := t.TempDir()
	planFile := filepath.Join(dir, "plan.yaml")
	if err := os.WriteFile(planFile, []byte("steps: [2, 20]\ngates: [20]\nminRequests: 50\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	zeroPlan := filepath.Join(dir, "zero.yaml")
	if err := os.WriteFile(zeroPlan, []byte("steps: [2, 20]\ninterval: 0s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	zeroStepPlan := filepath.Join(dir, "zero-step.yaml")
	if err := os.WriteFile(zeroStepPlan, []byte("steps: [2, 20]\nminStepDuration: 0s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	runRolloutCLI(t, conn, []rolloutCLICase{
		{[]string{"rollout", "pause", "checkout"}, "cannot pause rollout checkout: it is pending; only a progressing rollout can be paused", true, 0},
		{[]string{"rollout", "start", "checkout", "--plan", planFile, "--interval", "5s", "--reason", "ticket 7"}, "rollout checkout started at 2% (steps 2% → 20% → 100%)", false, 0},
		{[]string{"rollout", "start", "checkout"}, "it is progressing", true, 0},
		{[]string{"rollout", "start", "nope"}, "flag nope: not found", true, 0},
		{[]string{"rollout", "status", "checkout"}, "checkout  PROGRESSING  2%  step 1/3\n◉ 2% ─ ‖○ 20% ─ ○ 100%\n", false, exitRunning},
		{[]string{"rollout", "pause", "checkout", "--reason", "lunch"}, "rollout checkout is paused at 2%", false, 0},
		{[]string{"rollout", "status", "checkout"}, "paused       paused by admin: lunch", false, exitPaused},
		{[]string{"rollout", "list"}, "checkout                         paused             2%    1/3  -", false, 0},
		{[]string{"rollout", "resume", "checkout"}, "rollout checkout is progressing at 2%", false, 0},
		{[]string{"rollout", "rollback", "checkout"}, "rollout checkout is rolled_back at 0%", false, 0},
		{[]string{"rollout", "status", "checkout", "-w"}, "ROLLED_BACK", false, exitRolledBack},
		{[]string{"rollout", "status", "checkout", "-o", "yaml"}, `--output "yaml": want one of text, json`, true, 0},
	})

	out, err := vigil(t, append([]string{"rollout", "status", "checkout", "-o", "json"}, conn...)...)
	if exitCode(err) != exitRolledBack {
		t.Fatalf("status of a rolled back rollout: %v", err)
	}
	var s rollout.State
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("status -o json is not JSON: %v\n%s", err, out)
	}
	if s.Key != "checkout" || s.Phase != rollout.RolledBack || len(s.History) != 4 || s.Plan.Interval.Std() != 5*time.Second {
		t.Errorf("status -o json: %+v", s)
	}
	if !strings.Contains(s.History[0].Reason, "ticket 7") {
		t.Errorf("start reason lost: %q", s.History[0].Reason)
	}

	runRolloutCLI(t, conn, []rolloutCLICase{
		{[]string{"rollout", "promote", "checkout"}, "cannot promote rollout checkout: it is rolled_back; only a progressing or paused rollout can be promoted", true, 0},
		{[]string{"rollout", "start", "checkout", "--steps", "10,50"}, "rollout checkout started at 10% (steps 10% → 50% → 100%)", false, 0},
		{[]string{"rollout", "promote", "checkout", "--reason", "all good"}, "rollout checkout is promoted at 100%", false, 0},
		{[]string{"rollout", "status", "checkout"}, "promoted to 100% by admin: all good", false, 0},
		{[]string{"rollout", "status", "checkout", "-w", "--timeout", "1m"}, "PROMOTED", false, 0},
		{[]string{"rollout", "abort", "checkout"}, "cannot abort rollout checkout: it is promoted; it has already finished", true, 0},
		{[]string{"rollout", "start", "checkout"}, "rollout checkout started at 1%", false, 0},
		{[]string{"rollout", "abort", "checkout", "--reason", "wrong flag"}, "rollout checkout is aborted at 0%", false, 0},
		{[]string{"rollout", "status", "checkout"}, "aborted by admin: wrong flag", false, exitAborted},
		{[]string{"rollout", "list"}, "checkout                         aborted            0%", false, 0},
		// An explicit zero is a value, never the default in disguise: the
		// server refuses one the plan cannot take, and nothing changes.
		{[]string{"rollout", "start", "checkout", "--min-requests", "0"}, "flag checkout: plan.minRequests: 0 must be at least 1", true, 0},
		{[]string{"rollout", "start", "checkout", "--interval", "0s"}, "flag checkout: plan.interval: 0s is shorter than the minimum of 1s", true, 0},
		{[]string{"rollout", "start", "checkout", "--plan", zeroPlan}, "flag checkout: plan.interval: 0s is shorter than the minimum of 1s", true, 0},
		{[]string{"rollout", "status", "checkout"}, "checkout  ABORTED  0%", false, exitAborted},
	})

	// A zero the plan can take is kept, from a command-line flag and from a
	// plan file alike, not read as the default 5m.
	for _, args := range [][]string{
		{"rollout", "start", "checkout", "--min-step-duration", "0s"},
		{"rollout", "start", "checkout", "--plan", zeroStepPlan},
	} {
		if out, err := vigil(t, append(args, conn...)...); err != nil || !strings.Contains(out, "rollout checkout started at") {
			t.Fatalf("vigil %v: %s %v", args, out, err)
		}
		out, err := vigil(t, append([]string{"rollout", "status", "checkout", "-o", "json"}, conn...)...)
		if exitCode(err) != exitRunning {
			t.Fatal(err)
		}
		var s rollout.State
		if err := json.Unmarshal([]byte(out), &s); err != nil {
			t.Fatalf("status -o json is not JSON: %v\n%s", err, out)
		}
		if s.Phase != rollout.Progressing || s.Plan.MinStepDuration != 0 {
			t.Errorf("vigil %v: phase %s, minStepDuration %v; want progressing with 0s", args, s.Phase, s.Plan.MinStepDuration.Std())
		}
		if _, err := vigil(t, append([]string{"rollout", "abort", "checkout"}, conn...)...); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRenderStatus(t *testing.T) {
	now := time.Date(2026, 11, 25, 10, 10, 0, 0, time.Local)
	s := rollout.State{
		Key: "checkout", Phase: rollout.Progressing, Percent: 10, Step: 2,
		Plan:             plan.Plan{Steps: []float64{1, 5, 10, 50, 100}, Gates: []float64{50}, MinStepDuration: plan.Duration(5 * time.Minute), MaxStepDuration: plan.Duration(time.Hour)},
		StartedAt:        now.Add(-10 * time.Minute),
		StepStartedAt:    now.Add(-time.Minute),
		AnalysisStartsAt: now.Add(20 * time.Second),
		UpdatedAt:        now.Add(-time.Second),
		Cohorts:          rollout.Cohorts{Total: judge.RequestCounts{Treatment: 1234, Control: 56789}, Step: judge.RequestCounts{Treatment: 100, Control: 900}},
		Verdict: &rollout.Verdict{At: now, Outcome: judge.Inconclusive, Summary: "needs 500 requests per cohort in this step",
			Metrics: []rollout.MetricVerdict{{Name: "error-rate", Outcome: judge.Inconclusive, EValue: 1.5, Threshold: 200, Summary: "ratio 1.1"}},
			Detail: &judge.Verdict{
				Checks:      []judge.CheckVerdict{{Check: "error-rate", Ratio: 1.1, CILow: 0.82, CIHigh: 1.74, CILevel: 0.99, Tolerance: 1.2, HarmBound: 1.5, FloorRatio: 1.05, Dispersion: 1.3}},
				SampleRatio: &judge.SampleRatio{Mismatch: true, Explanation: "sample ratio mismatch: treatment has 50% of split requests where the flag sends 10%"},
			}},
	}
	got := renderStatus(s, now)
	for _, want := range []string{
		"checkout  PROGRESSING  10%  step 3/5\n",
		"● 1% ─ ● 5% ─ ◉ 10% ─ ‖○ 50% ─ ○ 100%\n",
		"(10m0s ago)",
		"warming up   analysis starts in 20s",
		"treatment            1234            100",
		"control             56789            900",
		"verdict      INCONCLUSIVE",
		"error-rate         inconclusive  e-value 1.5       of 200",
		"error-rate         ratio 1.1, 99% interval 0.82 to 1.74; tolerance 1.2, harm bound 1.5, floor at ratio 1.05; dispersion 1.3\n",
		"traffic split      MISMATCH      sample ratio mismatch: treatment has 50% of split requests where the flag sends 10%\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("status view lacks %q:\n%s", want, got)
		}
	}
}

// TestServeSendsSignedWebhooks runs `vigil serve` with a webhook and a
// secret, and checks that rollout transitions arrive signed.
func TestServeSendsSignedWebhooks(t *testing.T) {
	type delivery struct {
		body []byte
		sig  string
	}
	got := make(chan delivery, 10)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got <- delivery{body, r.Header.Get(notify.SignatureHeader)}
	}))
	t.Cleanup(hook.Close)
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	if err := os.WriteFile(secretFile, []byte("hook-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("VIGIL_ADMIN_TOKEN", cliToken)
	addr := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().String()
	}()
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() {
		cmd := newRootCmd()
		cmd.SetOut(io.Discard)
		cmd.SetErr(io.Discard)
		cmd.SetArgs([]string{"serve", "--addr", addr, "--data", filepath.Join(dir, "data"), "--log-level", "error",
			"--webhook", hook.URL + "/hooks/vigil", "--webhook-secret-file", secretFile})
		served <- cmd.ExecuteContext(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	url := "http://" + addr
	poll.Ready(t, 30*time.Second, url)
	conn := []string{"--server", url, "--token", cliToken}
	putFlag := `{"key":"checkout","variants":{"on":true,"off":false},"control":"off","treatment":"on","enabled":true}`
	req, _ := http.NewRequest(http.MethodPut, url+"/api/v1/flags/checkout", strings.NewReader(putFlag))
	req.Header.Set("Authorization", "Bearer "+cliToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("put flag: %s", resp.Status)
	}
	for _, args := range [][]string{{"rollout", "start", "checkout"}, {"rollout", "rollback", "checkout", "--reason", "pager"}} {
		if out, err := vigil(t, append(args, conn...)...); err != nil {
			t.Fatalf("vigil %v: %v\n%s", args, err, out)
		}
	}
	for _, want := range []struct{ from, to, reason string }{
		{"pending", "progressing", "started at 1% by admin"},
		{"progressing", "rolled_back", "rolled back to 0% by admin: pager"},
	} {
		select {
		case d := <-got:
			if !notify.Verify("hook-secret", d.body, d.sig) {
				t.Errorf("signature %q does not verify", d.sig)
			}
			var e notify.Event
			if err := json.Unmarshal(d.body, &e); err != nil {
				t.Fatal(err)
			}
			if e.Type != notify.EventType || e.Flag != "checkout" || string(e.From) != want.from || string(e.To) != want.to || e.Reason != want.reason {
				t.Errorf("webhook %s, want %s -> %s (%s)", d.body, want.from, want.to, want.reason)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no webhook for %s -> %s", want.from, want.to)
		}
	}
}
