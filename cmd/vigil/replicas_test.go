package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-dev/vigil/internal/testenv/pgtest"
	"github.com/vigil-dev/vigil/internal/testenv/poll"
	"github.com/vigil-dev/vigil/internal/testenv/promtest"
	"github.com/vigil-dev/vigil/internal/testenv/vigiltest"
)

// tryServe runs `vigil serve --addr 127.0.0.1:0 args...` in dir and returns
// it once it listens, or its output once it has exited.
func tryServe(t *testing.T, bin, dir string, args ...string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"serve", "--addr", "127.0.0.1:0"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), adminEnv...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		out.WriteString(sc.Text() + "\n")
		if strings.Contains(sc.Text(), "vigil controller listening") {
			// Keep reading, so that the process never blocks on a full
			// pipe.
			go func() {
				for sc.Scan() {
				}
			}()
			t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
			return cmd, ""
		}
	}
	err = cmd.Wait()
	return nil, fmt.Sprintf("%v\n%s", err, out.String())
}

// TestOneEmbeddedStorePerDatabase runs real `vigil serve` processes on one
// real PostgreSQL database without --prometheus-url. The first runs the
// embedded metric store; a second is refused, since its store would hold
// only its own share of the metrics and the rollout leader would judge on
// part of the data. With --prometheus-url it starts. Once the first is
// killed, its lease runs out and another may take its place; one stopped
// cleanly gives its place up at once.
func TestOneEmbeddedStorePerDatabase(t *testing.T) {
	bin := vigiltest.Build(t)
	url := pgtest.Database(t)
	embedded := func() []string {
		return []string{"--database", url, "--metrics-dir", filepath.Join(t.TempDir(), "metrics"), "--metrics-lease-ttl", "2s"}
	}
	dir := t.TempDir()
	first, out := tryServe(t, bin, dir, embedded()...)
	if first == nil {
		t.Fatalf("the first replica: %s", out)
	}
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	secondArgs := embedded()
	second, out := tryServe(t, bin, dir, secondArgs...)
	if second != nil || !strings.Contains(out, "another replica on this database runs the embedded metric store") ||
		!strings.Contains(out, "--prometheus-url") || !strings.Contains(out, "exit status 1") ||
		!strings.Contains(out, fmt.Sprintf("the replica that holds it: %s/%d/", host, first.Process.Pid)) {
		t.Fatalf("a second replica with an embedded store: %s", out)
	}
	if _, err := os.Stat(secondArgs[3]); !os.IsNotExist(err) {
		t.Errorf("the refused replica left its metric store %s: %v", secondArgs[3], err)
	}
	prom := promtest.Start(t, promtest.Options{})
	if withProm, out := tryServe(t, bin, dir, "--database", url, "--prometheus-url", prom.URL); withProm == nil {
		t.Fatalf("a second replica with --prometheus-url: %s", out)
	}

	// kill -9: the lease stays until it runs out, then a replica starts.
	if err := first.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	first.Wait()
	var third *exec.Cmd
	refused := 0
	poll.Until(t, 30*time.Second, "a replica to take the dead one's place", func() error {
		third, out = tryServe(t, bin, dir, embedded()...)
		if third == nil {
			refused++
			return fmt.Errorf("refused: %s", out)
		}
		return nil
	})
	t.Logf("refused %d times before the lease ran out", refused)

	// SIGTERM releases the lease: the next starts on its first try.
	if err := third.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := third.Wait(); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	if fourth, out := tryServe(t, bin, dir, embedded()...); fourth == nil {
		t.Fatalf("after a clean stop: %s", out)
	}
}
