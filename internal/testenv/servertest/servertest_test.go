package servertest

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vigil-dev/vigil/controller/server"
	"github.com/vigil-dev/vigil/internal/testenv/poll"
)

func TestRunServesUntilStopped(t *testing.T) {
	var built context.Context
	url, stop := Run(t, func(ctx context.Context) (*server.Server, error) {
		built = ctx
		return server.New(ctx, server.Config{DataDir: t.TempDir(), AdminToken: "servertest-admin-token-0123456789",
			Logger: slog.New(slog.DiscardHandler)})
	})
	if !strings.HasPrefix(url, "http://127.0.0.1:") {
		t.Fatalf("url %q", url)
	}
	poll.Ready(t, 10*time.Second, url)
	stop()
	if !errors.Is(built.Err(), context.Canceled) {
		t.Errorf("the server's context after stop: %v", built.Err())
	}
	if resp, err := http.Get(url + "/healthz"); err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		t.Errorf("server still answers after stop: %s", resp.Status)
	}
	stop() // a second stop, and the one at cleanup, do nothing
}
