package console

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"testing"

	"github.com/vigil-dev/vigil/controller/rollout"
	"github.com/vigil-dev/vigil/controller/server"
	"github.com/vigil-dev/vigil/controller/store"
	"github.com/vigil-dev/vigil/internal/testenv/servertest"
	"github.com/vigil-dev/vigil/sdk/flag"
)

// BenchmarkOverview is a poll of the overview's first page, as the
// console makes it every 2 s, over loopback from a real server on SQLite
// with 1,000 and 10,000 flags, each with a progressing rollout: answered
// in full (a page that changed) and 304 (one that did not). It reports the
// body's bytes.
func BenchmarkOverview(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("flags=%d", n), func(b *testing.B) {
			ctx := context.Background()
			st, err := store.Open(ctx, b.TempDir(), "")
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { st.Close() })
			flags := make([]flag.Flag, n)
			phases := make(map[string]rollout.Phase, n)
			for i := range n {
				flags[i] = overviewFlag(fmt.Sprintf("flag-%05d", i), "a flag of the benchmark")
				phases[flags[i].Key] = rollout.Progressing
			}
			putFlags(b, st, flags, phases)
			base, _ := servertest.Run(b, func(ctx context.Context) (*server.Server, error) {
				return server.New(ctx, server.Config{Store: st, AdminToken: testAdmin,
					Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
					Extensions: []server.Extension{Extension(Config{})}})
			})
			ask := func(etag string) (int, string, int) {
				resp, body := get(b, base+"/api/v1/console/overview", testAdmin, etag)
				return resp.StatusCode, resp.Header.Get("ETag"), len(body)
			}
			_, tag, size := ask("")
			b.Run("changed", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if code, _, _ := ask(""); code != http.StatusOK {
						b.Fatalf("status %d", code)
					}
				}
				b.ReportMetric(float64(size), "body-bytes")
			})
			b.Run("unchanged", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if code, _, _ := ask(tag); code != http.StatusNotModified {
						b.Fatalf("status %d", code)
					}
				}
			})
		})
	}
}
