package main

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-dev/vigil/internal/testenv/vigiltest"
)

// TestServeFailsCleanly: a `vigil serve` that cannot start says why, exits
// 1 and leaves nothing on disk; a data directory that was there before is
// left as it was.
func TestServeFailsCleanly(t *testing.T) {
	bin := vigiltest.Build(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	existing := t.TempDir()
	marker := filepath.Join(existing, "keep")
	if err := os.WriteFile(marker, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		token string
		args  []string
		want  string
	}{
		{"port in use", testAdminToken, []string{"--addr", taken.Addr().String()}, "address already in use"},
		{"address without a colon", testAdminToken, []string{"--addr", "8096"}, "--addr 8096: listen tcp: address 8096: missing port in address"},
		{"short admin token", "short", []string{"--addr", "127.0.0.1:0"}, "admin token is 5 characters"},
		{"no admin token for a fresh store", "", []string{"--addr", "127.0.0.1:0"}, "no admin token: set VIGIL_ADMIN_TOKEN or --admin-token-file"},
		{"console path with a wildcard", testAdminToken, []string{"--addr", "127.0.0.1:0", "--console-path", "/ops/*x"}, `--console-path: console path "/ops/*x": want an absolute path`},
		{"memory limit share above 1", testAdminToken, []string{"--addr", "127.0.0.1:0", "--auto-gomemlimit-ratio", "1.5"}, "--auto-gomemlimit-ratio 1.5: want a share of the memory limit from 0 (off) to 1"},
		{"nested data directory", "short", []string{"--addr", "127.0.0.1:0", "--data", "a/b/c"}, "admin token is 5 characters"},
		{"existing data directory", "short", []string{"--addr", "127.0.0.1:0", "--data", existing}, "admin token is 5 characters"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cmd := exec.Command(bin, append([]string{"serve"}, tc.args...)...)
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), "VIGIL_ADMIN_TOKEN="+tc.token)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != exitError || !strings.Contains(string(out), tc.want) {
				t.Fatalf("vigil serve %s: %v, want exit 1 saying %q\n%s", strings.Join(tc.args, " "), err, tc.want, out)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("a failed start left %v in its directory", entries)
			}
		})
	}
	if entries, _ := os.ReadDir(existing); len(entries) != 1 {
		t.Errorf("the existing data directory holds %v, want only the file that was there", entries)
	}
}

// TestServeWithStoredAdminToken: a store that holds an admin token of its
// own serves without VIGIL_ADMIN_TOKEN, and that token administers it.
func TestServeWithStoredAdminToken(t *testing.T) {
	bin := vigiltest.Build(t)
	data := t.TempDir()
	p := vigiltest.Start(t, bin, adminEnv, "--data", data)
	out, err := exec.Command(bin, "token", "create", "--name", "ops", "--role", "admin", "--server", p.URL, "--token", testAdminToken).Output()
	if err != nil {
		t.Fatalf("token create: %v", err)
	}
	stored := strings.TrimSpace(string(out))
	if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(15 * time.Second); err != nil {
		t.Fatal(err)
	}
	p = vigiltest.Start(t, bin, []string{"VIGIL_ADMIN_TOKEN="}, "--data", data)
	if out, err := exec.Command(bin, "token", "list", "--server", p.URL, "--token", stored).CombinedOutput(); err != nil || !strings.Contains(string(out), "ops") {
		t.Fatalf("token list with the stored admin token: %v\n%s", err, out)
	}
}
