package runner

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/vigil-dev/vigil/controller/rollout"
	"github.com/vigil-dev/vigil/controller/store"
)

// BenchmarkTick is one tick of the loop on SQLite with 100 progressing
// rollouts due: the batched read, the judge and one transaction each.
func BenchmarkTick(b *testing.B) { benchTicks(b, false) }

// BenchmarkTickWatched is BenchmarkTick with the controller following the
// store's notices of changed rollouts, as Run has it do: each tick also
// follows the notices of the previous tick's commits, its own.
func BenchmarkTickWatched(b *testing.B) { benchTicks(b, true) }

func benchTicks(b *testing.B, watched bool) {
	f := newFixture(b, openSQLite(b))
	// The ticks' context never ends: database/sql watches one that can
	// end with a goroutine per transaction.
	ctx := context.Background()
	if watched {
		wctx, cancel := context.WithCancel(ctx)
		defer cancel()
		f.c.watch(wctx)
	}
	startMany(b, f, 100)
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

// BenchmarkIdleTick is one tick of the loop on SQLite with every stored
// rollout promoted, so nothing is due: 10,000 and 100,000 flags, each with
// the state and history of a rollout that went through the default plan's
// steps.
func BenchmarkIdleTick(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			st := openSQLite(b)
			f := newFixture(b, st)
			ctx := context.Background()
			tmpl := promotedTemplate(b)
			for lo := 0; lo < n; lo += 2000 {
				err := st.Update(ctx, store.Actor{Name: "bench"}, func(tx store.Tx) error {
					for i := lo; i < min(lo+2000, n); i++ {
						fl := checkoutFlag(fmt.Sprintf("flag-%06d", i))
						fl.Rollout.Percent = 100
						if _, err := tx.PutFlag(ctx, fl); err != nil {
							return err
						}
						s := tmpl
						s.Key = fl.Key
						var acts []rollout.Action
						for _, t := range s.History {
							acts = append(acts, rollout.Notify{Key: s.Key, Transition: t})
						}
						if _, err := write(ctx, tx, s, acts); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			if err := f.c.Tick(ctx); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				f.clock.Add(time.Hour)
				if err := f.c.Tick(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// promotedTemplate runs one rollout through its steps to promotion and
// returns its state with its history.
func promotedTemplate(b *testing.B) rollout.State {
	f := newFixture(b, openSQLite(b))
	putFlag(b, f.st, checkoutFlag("tmpl"))
	f.tr.errRate["tmpl"] = [2]float64{0.01, 0.01}
	if _, err := f.c.Command(context.Background(), "tmpl", rollout.Command{Kind: rollout.Start, Actor: "bench"}); err != nil {
		b.Fatal(err)
	}
	for range 600 {
		f.clock.Add(time.Second)
		if err := f.tr.advance(context.Background()); err != nil {
			b.Fatal(err)
		}
		if err := f.c.Tick(context.Background()); err != nil {
			b.Fatal(err)
		}
		s, err := f.c.Rollout(context.Background(), "tmpl")
		if err != nil {
			b.Fatal(err)
		}
		if s.Phase == rollout.Promoted {
			return s
		}
	}
	b.Fatal("the template rollout was not promoted")
	return rollout.State{}
}
