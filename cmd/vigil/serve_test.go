package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-dev/vigil/internal/testenv/pgtest"
	"github.com/vigil-dev/vigil/internal/testenv/poll"
	"github.com/vigil-dev/vigil/internal/testenv/promtest"
	"github.com/vigil-dev/vigil/internal/testenv/vigiltest"
)

// replicaArgs are the flags of one replica on the database at url that
// reads metrics from the Prometheus at prom: replicas on one database may
// not each run an embedded metric store (TestOneEmbeddedStorePerDatabase).
func replicaArgs(url, prom string) []string {
	return []string{"--database", url, "--prometheus-url", prom}
}

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

var adminEnv = []string{"VIGIL_ADMIN_TOKEN=" + testAdminToken}

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
	bin := vigiltest.Build(t)
	p := vigiltest.Start(t, bin, adminEnv, "--data", t.TempDir())
	resp := request(t, "PUT", p.URL+"/api/v1/flags/a", flagBody("a", 1))
	resp.Body.Close()
	lines, cancel := openEvents(t, p.URL)
	defer cancel()
	waitLine(t, lines, "event: snapshot", 5*time.Second)
	// The CLI against the real process: errors print the server's message
	// and exit non-zero.
	out, err := exec.Command(bin, "get", "flag", "missing", "--server", p.URL, "--token", testAdminToken).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() == 0 || !strings.Contains(string(out), `vigil: flag "missing" does not exist`) {
		t.Fatalf("get missing flag: %v: %s", err, out)
	}
	if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// The stream ends...
	for range lines {
	}
	// ...and the process exits 0.
	if err := p.Wait(15 * time.Second); err != nil {
		t.Fatalf("after SIGTERM: %v\n%s", err, p.Log())
	}
}

// TestReplicasSharePostgres runs two `vigil serve` processes on one
// PostgreSQL database: a PUT through replica A reaches an SDK stream on
// replica B within one second.
func TestReplicasSharePostgres(t *testing.T) {
	bin := vigiltest.Build(t)
	url := pgtest.Database(t)
	prom := promtest.Start(t, promtest.Options{})
	a := vigiltest.Start(t, bin, adminEnv, replicaArgs(url, prom.URL)...)
	b := vigiltest.Start(t, bin, adminEnv, replicaArgs(url, prom.URL)...)
	lines, cancel := openEvents(t, b.URL)
	defer cancel()
	waitLine(t, lines, "event: snapshot", 5*time.Second)
	for i := 1; i <= 3; i++ {
		start := time.Now()
		resp := request(t, "PUT", a.URL+"/api/v1/flags/shared", flagBody("shared", i*10))
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
	resp := request(t, "DELETE", a.URL+"/api/v1/flags/shared", "")
	resp.Body.Close()
	waitLine(t, lines, "event: delete", time.Second)
}

// TestServeListensOnLoopbackByDefault: without --addr the controller is
// reachable only from its own host.
func TestServeListensOnLoopbackByDefault(t *testing.T) {
	addr := newServeCmd().Flags().Lookup("addr")
	if addr == nil || addr.DefValue != "127.0.0.1:8080" {
		t.Fatalf("--addr default %+v, want 127.0.0.1:8080", addr)
	}
}

// TestServeCapsTotalConnections: with --max-conns, a connection over the
// cap is closed as soon as it is accepted and the refusal is logged; once
// one closes, the next is served.
func TestServeCapsTotalConnections(t *testing.T) {
	p := vigiltest.Start(t, vigiltest.Build(t), adminEnv, "--data", t.TempDir(), "--max-conns", "3")
	// Readiness was asked over a connection kept for reuse: let it go, and
	// wait until the server has let go of it too, that is until three
	// connections of the test's own are served at once.
	http.DefaultClient.CloseIdleConnections()
	addr := strings.TrimPrefix(p.URL, "http://")
	var held []net.Conn
	poll.Until(t, 10*time.Second, "three connections served at once", func() error {
		for _, c := range held {
			c.Close()
		}
		held = held[:0]
		for i := range 3 {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				return err
			}
			held = append(held, c)
			if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
				return fmt.Errorf("connection %d: %w", i, err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				return fmt.Errorf("connection %d: %w", i, err)
			}
			resp.Body.Close()
		}
		return nil
	})
	t.Cleanup(func() {
		for _, c := range held {
			c.Close()
		}
	})
	over, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer over.Close()
	over.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := over.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("the connection over the cap: read %d, %v; want it closed", n, err)
	}
	poll.True(t, 5*time.Second, "the refusal in the log", func() bool {
		return strings.Contains(p.Log(), "refusing connections over the connection cap")
	})
	held[0].Close()
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	poll.Until(t, 5*time.Second, "a connection once one closed", func() error {
		resp, err := fresh.Get(p.URL + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
}
