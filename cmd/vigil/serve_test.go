package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-dev/vigil/internal/pgtest"
)

// buildBinary builds the vigil command into a temporary directory.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "vigil")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// serveProcess is a running `vigil serve`.
type serveProcess struct {
	cmd  *exec.Cmd
	url  string
	done chan error
}

var listeningRe = regexp.MustCompile(`vigil controller listening"? addr=(\S+)`)

// startServe runs `vigil serve` on a free loopback port and waits until it
// is ready.
func startServe(t *testing.T, bin string, args ...string) *serveProcess {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"serve", "--addr", "127.0.0.1:0"}, args...)...)
	cmd.Env = append(os.Environ(), "VIGIL_ADMIN_TOKEN="+testAdminToken)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &serveProcess{cmd: cmd, done: make(chan error, 1)}
	addr := make(chan string, 1)
	var log strings.Builder
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			log.WriteString(line + "\n")
			if m := listeningRe.FindStringSubmatch(line); m != nil {
				addr <- m[1]
			}
		}
		p.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-p.done
		}
	})
	select {
	case a := <-addr:
		p.url = "http://" + a
	case err := <-p.done:
		t.Fatalf("vigil serve exited: %v\n%s", err, log.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("vigil serve did not start\n%s", log.String())
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(p.url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("vigil serve not ready: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func request(t *testing.T, method, url, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testAdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func flagBody(key string, percent int) string {
	return fmt.Sprintf(`{"key":%q,"variants":{"on":true,"off":false},"control":"off","treatment":"on","enabled":true,"rollout":{"percent":%d}}`, key, percent)
}

// openEvents opens the SDK stream and returns its lines.
func openEvents(t *testing.T, url string) (<-chan string, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", url+"/sdk/v1/stream", nil)
	req.Header.Set("Authorization", "Bearer "+testAdminToken)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("stream: %s", resp.Status)
	}
	lines := make(chan string, 100)
	go func() {
		defer close(lines)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	return lines, cancel
}

// waitLine waits for a line with the prefix and returns it.
func waitLine(t *testing.T, lines <-chan string, prefix string, within time.Duration) string {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("stream ended before %q", prefix)
			}
			if strings.HasPrefix(l, prefix) {
				return l
			}
		case <-deadline:
			t.Fatalf("no %q within %v", prefix, within)
		}
	}
}

// TestServeSIGTERM: SIGTERM ends streams and the process exits 0.
func TestServeSIGTERM(t *testing.T) {
	bin := buildBinary(t)
	p := startServe(t, bin, "--data", t.TempDir())
	resp := request(t, "PUT", p.url+"/api/v1/flags/a", flagBody("a", 1))
	resp.Body.Close()
	lines, cancel := openEvents(t, p.url)
	defer cancel()
	waitLine(t, lines, "event: snapshot", 5*time.Second)
	// The CLI against the real process: errors print the server's message
	// and exit non-zero.
	out, err := exec.Command(bin, "get", "flag", "missing", "--server", p.url, "--token", testAdminToken).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() == 0 || !strings.Contains(string(out), `vigil: flag "missing" does not exist`) {
		t.Fatalf("get missing flag: %v: %s", err, out)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// The stream ends...
	for range lines {
	}
	// ...and the process exits 0.
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("vigil serve did not exit after SIGTERM")
	}
}

// TestReplicasSharePostgres runs two `vigil serve` processes on one
// PostgreSQL database: a PUT through replica A reaches an SDK stream on
// replica B within one second.
func TestReplicasSharePostgres(t *testing.T) {
	bin := buildBinary(t)
	ctx := context.Background()
	pg, err := pgtest.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pg.Stop() })
	url, err := pg.CreateDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a := startServe(t, bin, "--database", url)
	b := startServe(t, bin, "--database", url)
	lines, cancel := openEvents(t, b.url)
	defer cancel()
	waitLine(t, lines, "event: snapshot", 5*time.Second)
	for i := 1; i <= 3; i++ {
		start := time.Now()
		resp := request(t, "PUT", a.url+"/api/v1/flags/shared", flagBody("shared", i*10))
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 300 {
			t.Fatalf("PUT on A: %s", resp.Status)
		}
		waitLine(t, lines, "event: put", time.Second)
		data := waitLine(t, lines, "data: ", time.Second)
		if !strings.Contains(data, fmt.Sprintf(`"percent":%d`, i*10)) {
			t.Fatalf("B got %s", data)
		}
		t.Logf("change %d reached replica B in %v", i, time.Since(start))
	}
	// Deletes travel too.
	resp := request(t, "DELETE", a.url+"/api/v1/flags/shared", "")
	resp.Body.Close()
	waitLine(t, lines, "event: delete", time.Second)
}
