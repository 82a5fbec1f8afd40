package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vigil-dev/vigil/internal/client"
	"github.com/vigil-dev/vigil/internal/testenv/poll"
	"github.com/vigil-dev/vigil/internal/testenv/syncbuf"
	"github.com/vigil-dev/vigil/internal/testenv/vigiltest"
)

// TestExitCodes runs the real binary against a real `vigil serve` and checks
// the exit code and message of each command, in order: a script can tell a
// typo, a failure and each end of a rollout apart.
func TestExitCodes(t *testing.T) {
	bin := vigiltest.Build(t)
	p := vigiltest.Start(t, bin, adminEnv, "--data", t.TempDir())
	dir := t.TempDir()
	flags := filepath.Join(dir, "flags.yaml")
	good := "flags:\n  - key: checkout\n    variants: {on: true, off: false}\n    control: off\n    treatment: on\n    enabled: true\n"
	typo := filepath.Join(dir, "typo.yaml")
	for path, content := range map[string]string{flags: good, typo: good + "    enabeld: true\n"} {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	env := []string{"VIGIL_SERVER=" + p.URL, "VIGIL_TOKEN=" + testAdminToken}
	for _, tc := range []struct {
		args []string
		env  []string // replaces env when set
		code int
		want string // in the output
	}{
		// The command line is wrong: 2, with a suggestion.
		{args: []string{"rollout", "rollbak", "x"}, code: exitUsage, want: "did you mean rollback?"},
		{args: []string{"token", "revok", "x"}, code: exitUsage, want: "did you mean revoke?"},
		{args: []string{"get", "rollouts"}, code: exitUsage, want: `did you mean "vigil rollout list"?`},
		{args: []string{"rollouts"}, code: exitUsage, want: `unknown command "rollouts" for "vigil"`},
		{args: []string{"rollout"}, code: exitUsage, want: "vigil rollout: a subcommand is required"},
		{args: []string{"get", "flags", "--bogus"}, code: exitUsage, want: "unknown flag: --bogus"},
		{args: []string{"get", "flag"}, code: exitUsage, want: "accepts 1 arg(s), received 0"},
		{args: []string{"apply"}, code: exitUsage, want: `required flag(s) "file" not set`},
		{args: []string{"eval", "-f", flags, "checkout"}, code: exitUsage, want: "want KEY UNIT"},
		{args: []string{"rollout", "status", "checkout", "--timeout", "1s"}, code: exitUsage, want: "with -w"},
		// The command failed: 1, saying why and what to set.
		{args: []string{"eval", "-f", flags, "chekout", "user-1"}, code: exitError, want: `flag "chekout" is not in`},
		{args: []string{"get", "flags"}, env: []string{"VIGIL_SERVER=" + p.URL}, code: exitError, want: "no token given: set VIGIL_TOKEN or pass --token"},
		{args: []string{"get", "flags", "--token", "wrong-token-0123456789"}, code: exitError, want: "check the token in VIGIL_TOKEN"},
		{args: []string{"get", "flags", "--server", "http://127.0.0.1:1"}, code: exitError, want: "set VIGIL_SERVER or pass --server"},
		{args: []string{"apply", "-f", typo}, code: exitError, want: "line 7, column 5: flags[0].enabeld: unknown field"},
		{args: []string{"get", "flag", "checkout"}, code: exitError, want: `flag "checkout" does not exist`},
		// It worked: 0.
		{args: []string{"apply", "-f", flags}, want: "created checkout"},
		{args: []string{"eval", "-f", flags, "checkout", "user-1"}, want: `"variant":"off"`},
		// rollout status: 0 only when promoted.
		{args: []string{"rollout", "start", "checkout"}, want: "started at 1%"},
		{args: []string{"rollout", "status", "checkout"}, code: exitRunning, want: "PROGRESSING"},
		{args: []string{"rollout", "status", "checkout", "-w", "--timeout", "1s", "--refresh", "100ms"}, code: exitRunning, want: "(--timeout 1s ran out)"},
		{args: []string{"rollout", "pause", "checkout"}, want: "paused at 1%"},
		{args: []string{"rollout", "status", "checkout", "-o", "json"}, code: exitPaused, want: "rollout checkout is paused at 1%, not promoted"},
		{args: []string{"rollout", "rollback", "checkout"}, want: "rolled_back at 0%"},
		{args: []string{"rollout", "status", "checkout", "-w"}, code: exitRolledBack, want: "rollout checkout is rolled_back"},
		{args: []string{"rollout", "start", "checkout"}, want: "started at 1%"},
		{args: []string{"rollout", "abort", "checkout"}, want: "aborted at 0%"},
		{args: []string{"rollout", "status", "checkout"}, code: exitAborted, want: "rollout checkout is aborted"},
		{args: []string{"rollout", "start", "checkout"}, want: "started at 1%"},
		{args: []string{"rollout", "promote", "checkout"}, want: "promoted at 100%"},
		{args: []string{"rollout", "status", "checkout"}, want: "PROMOTED"},
		{args: []string{"rollout", "status", "checkout", "-w", "--timeout", "1m"}, want: "PROMOTED"},
	} {
		cmd := exec.Command(bin, tc.args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "VIGIL_SERVER=", "VIGIL_TOKEN=")
		if tc.env != nil {
			cmd.Env = append(cmd.Env, tc.env...)
		} else {
			cmd.Env = append(cmd.Env, env...)
		}
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		got := stdout.String() + stderr.String()
		if code != tc.code || !strings.Contains(got, tc.want) {
			t.Errorf("vigil %s: exit %d, want %d with %q\nstdout: %s\nstderr: %s", strings.Join(tc.args, " "), code, tc.code, tc.want, stdout.String(), stderr.String())
		}
	}
}

// TestStatusWatch: at a terminal, -w redraws every refresh so that the
// countdown ticks; into a pipe it writes each change once, with no control
// codes.
func TestStatusWatch(t *testing.T) {
	url := startController(t)
	conn := []string{"--server", url, "--token", cliToken}
	if out, err := vigil(t, append([]string{"rollout", "start", "checkout", "--interval", "1m"}, conn...)...); err != nil {
		t.Fatalf("start: %v\n%s", err, out)
	}

	// Not a terminal: one frame, no escape codes, and exit 6 at --timeout.
	out, err := vigil(t, append([]string{"rollout", "status", "checkout", "-w", "--refresh", "100ms", "--timeout", "1s"}, conn...)...)
	if exitCode(err) != exitRunning || !strings.Contains(err.Error(), "--timeout 1s ran out") {
		t.Errorf("status -w --timeout: %v", err)
	}
	if strings.Contains(out, "\033") || strings.Count(out, "checkout  PROGRESSING") != 1 {
		t.Errorf("status -w into a pipe:\n%q", out)
	}

	// At a terminal: frames keep coming and the countdown ticks.
	c, err := client.New(url, cliToken)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var buf syncbuf.Buffer
	done := make(chan error, 1)
	go func() {
		done <- statusWatch{key: "checkout", watch: true, redraw: true, every: 100 * time.Millisecond}.run(ctx, c, &buf)
	}()
	countdown := regexp.MustCompile(`analysis starts in (\S+)`)
	poll.True(t, 30*time.Second, "the countdown to tick", func() bool {
		seen := map[string]bool{}
		for _, m := range countdown.FindAllStringSubmatch(buf.String(), -1) {
			seen[m[1]] = true
		}
		return len(seen) >= 2
	})
	cancel()
	if err := <-done; exitCode(err) != exitRunning {
		t.Errorf("interrupted watch: %v", err)
	}
	if !strings.Contains(buf.String(), "\033[H\033[2J") {
		t.Errorf("no redraw at a terminal")
	}
}
