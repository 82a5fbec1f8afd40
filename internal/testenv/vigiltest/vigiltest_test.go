package vigiltest

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/vigil-dev/vigil/controller/server"
	"github.com/vigil-dev/vigil/internal/testenv/poll"
	"github.com/vigil-dev/vigil/internal/testenv/servertest"
	"github.com/vigil-dev/vigil/internal/testenv/syncbuf"
)

// TestListeningAddrInEitherLogFormat: Start finds the address the
// controller listens on in the line its logger writes, in text and in JSON
// (a test environment with VIGIL_LOG_FORMAT=json).
func TestListeningAddrInEitherLogFormat(t *testing.T) {
	for name, handler := range map[string]func(io.Writer) slog.Handler{
		"text": func(w io.Writer) slog.Handler { return slog.NewTextHandler(w, nil) },
		"json": func(w io.Writer) slog.Handler { return slog.NewJSONHandler(w, nil) },
	} {
		t.Run(name, func(t *testing.T) {
			var log syncbuf.Buffer
			url, _ := servertest.Run(t, func(ctx context.Context) (*server.Server, error) {
				return server.New(ctx, server.Config{DataDir: t.TempDir(), AdminToken: "vigiltest-admin-token-0123", Logger: slog.New(handler(&log))})
			})
			var line string
			poll.Until(t, 10*time.Second, "the listening line", func() error {
				for _, l := range strings.Split(log.String(), "\n") {
					if strings.Contains(l, "listening") {
						line = l
						return nil
					}
				}
				return io.EOF
			})
			addr, ok := listeningAddr(line)
			if want := strings.TrimPrefix(url, "http://"); !ok || addr != want {
				t.Errorf("listeningAddr(%s) = %q, %v; want %s", line, addr, ok, want)
			}
		})
	}
}
