package console

import (
	"context"
	"encoding/json"
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
			err = st.Update(ctx, store.Actor{Name: "bench"}, func(tx store.Tx) error {
				for i := range n {
					key := fmt.Sprintf("flag-%05d", i)
					if _, err := tx.PutFlag(ctx, flag.Flag{Key: key, Description: "a flag of the benchmark", Enabled: true, Control: "off", Treatment: "on",
						Variants: map[string]json.RawMessage{"off": json.RawMessage(`false`), "on": json.RawMessage(`true`)}}); err != nil {
						return err
					}
					s := rollout.New(key)
					s.Phase, s.Percent, s.Step = rollout.Progressing, 5, 1
					s.Plan.Steps = []float64{1, 5, 25, 50, 100}
					state, err := json.Marshal(s)
					if err != nil {
						return err
					}
					if err := tx.PutRollout(ctx, store.Rollout{Key: key, State: state}); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
			base, _ := servertest.Run(b, func(ctx context.Context) (*server.Server, error) {
				return server.New(ctx, server.Config{Store: st, AdminToken: testAdmin,
					Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
					Extensions: []server.Extension{Extension(Config{})}})
			})
			ask := func(etag string) (int, string, int) {
				req, err := http.NewRequest(http.MethodGet, base+"/api/v1/console/overview", nil)
				if err != nil {
					b.Fatal(err)
				}
				req.Header.Set("Authorization", "Bearer "+testAdmin)
				if etag != "" {
					req.Header.Set("If-None-Match", etag)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				defer resp.Body.Close()
				body, err := io.ReadAll(resp.Body)
				if err != nil {
					b.Fatal(err)
				}
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
