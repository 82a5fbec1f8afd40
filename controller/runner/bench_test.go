package runner

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/vigil-dev/vigil/controller/rollout"
)

// BenchmarkTick is one tick of the loop on SQLite with 100 progressing
// rollouts due: the batched read, the judge and one transaction each.
func BenchmarkTick(b *testing.B) {
	st := openSQLite(b)
	f := newFixture(b, st)
	ctx := context.Background()
	for i := range 100 {
		key := fmt.Sprintf("flag-%03d", i)
		putFlag(b, st, checkoutFlag(key))
		f.tr.errRate[key] = [2]float64{0.01, 0.01}
		if _, err := f.c.Command(ctx, key, rollout.Command{Kind: rollout.Start, Actor: "bench"}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		f.clock.Add(time.Second)
		if err := f.tr.advance(ctx); err != nil {
			b.Fatal(err)
		}
		if err := f.c.Tick(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
