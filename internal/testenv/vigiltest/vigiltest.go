// Package vigiltest runs the real vigil binary for tests: it builds
// ./cmd/vigil and starts `vigil serve` processes on free loopback ports.
package vigiltest

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/vigil-dev/vigil/internal/testenv/poll"
	"github.com/vigil-dev/vigil/internal/testenv/syncbuf"
)

// BinaryEnv names an environment variable that holds the path of a vigil
// binary built from this tree. make test builds one and sets it, so that the
// packages that run vigil share it instead of each linking its own; a plain
// go test leaves it unset and builds.
const BinaryEnv = "VIGIL_TEST_BINARY"

// Build returns the path of a vigil binary: the one BinaryEnv names, or else
// one built into a temporary directory of tb.
func Build(tb testing.TB) string {
	tb.Helper()
	if bin := os.Getenv(BinaryEnv); bin != "" {
		if _, err := os.Stat(bin); err != nil {
			tb.Fatalf("%s: %v", BinaryEnv, err)
		}
		return bin
	}
	bin := filepath.Join(tb.TempDir(), "vigil")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/vigil-dev/vigil/cmd/vigil")
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("go build vigil: %v\n%s", err, out)
	}
	return bin
}

// Process is a running `vigil serve`.
type Process struct {
	Cmd *exec.Cmd
	// URL is the server's base URL, such as http://127.0.0.1:41234.
	URL string

	done chan struct{}
	err  error
	log  syncbuf.Buffer
}

// listeningRe finds the address in the line that says the controller
// listens, in text logs (msg="vigil controller listening" addr=HOST:PORT)
// and in JSON logs (--log-format json: "msg":"vigil controller
// listening","addr":"HOST:PORT").
var listeningRe = regexp.MustCompile(`vigil controller listening"?(?: addr=|,"addr":")([^\s"]+)`)

// listeningAddr returns the address a log line says the controller listens
// on, if it says so.
func listeningAddr(line string) (string, bool) {
	m := listeningRe.FindStringSubmatch(line)
	if m == nil {
		return "", false
	}
	return m[1], true
}

// Start runs `vigil serve --addr 127.0.0.1:0 args...` with env added to the
// test's environment, waits until /readyz answers 200, and kills the
// process when the test ends if it is still running.
func Start(tb testing.TB, bin string, env []string, args ...string) *Process {
	tb.Helper()
	cmd := exec.Command(bin, append([]string{"serve", "--addr", "127.0.0.1:0"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	p := &Process{Cmd: cmd, done: make(chan struct{})}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			line := sc.Text()
			p.log.Write([]byte(line + "\n"))
			if a, ok := listeningAddr(line); ok {
				select {
				case addr <- a:
				default:
				}
			}
		}
		p.err = cmd.Wait()
		close(p.done)
	}()
	tb.Cleanup(func() {
		select {
		case <-p.done:
		default:
			cmd.Process.Kill()
			<-p.done
		}
	})
	select {
	case a := <-addr:
		p.URL = "http://" + a
	case <-p.done:
		tb.Fatalf("vigil serve exited: %v\n%s", p.err, p.Log())
	case <-time.After(60 * time.Second):
		tb.Fatalf("vigil serve did not start\n%s", p.Log())
	}
	poll.Until(tb, 30*time.Second, "vigil serve to be ready", func() error {
		if err := poll.Readyz(p.URL); err != nil {
			return fmt.Errorf("%w\n%s", err, p.Log())
		}
		return nil
	})
	return p
}

// Log returns what the process has written to standard error so far.
func (p *Process) Log() string {
	return p.log.String()
}

// Wait waits up to timeout for the process to exit and returns its exit
// error (nil for exit status 0).
func (p *Process) Wait(timeout time.Duration) error {
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		return fmt.Errorf("vigil serve still running after %v", timeout)
	}
}
