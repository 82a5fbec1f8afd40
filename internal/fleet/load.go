package fleet

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Load drives the fleet with requests from many distinct users at a steady
// rate until ctx ends.
type Load struct {
	// Rate is requests per second across all workers.
	Rate float64
	// Users is how many distinct unit keys requests come from, each as
	// likely as the others.
	Users int
	// Heavy, when HeavyShare is above 0, is one more unit key that sends
	// HeavyShare of the requests (1 or more: all of them), where any one of
	// the Users sends about 1/Users: a bot, a retrying client, or a busy
	// customer, which Config.Broken can make fail.
	Heavy      string
	HeavyShare float64
	// Workers is the number of concurrent senders.
	Workers int

	sent, failed atomic.Int64
}

// Sent counts requests sent so far.
func (l *Load) Sent() int64 { return l.sent.Load() }

// Failed counts requests that failed so far.
func (l *Load) Failed() int64 { return l.failed.Load() }

// Run sends requests until ctx is done and returns when every worker has
// stopped.
func (l *Load) Run(ctx context.Context, f *Fleet) {
	workers := max(l.Workers, 1)
	interval := time.Duration(float64(time.Second) * float64(workers) / l.Rate)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, 0x5eed))
			tick := time.NewTicker(interval)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				unit := l.Heavy
				if l.HeavyShare <= 0 || rng.Float64() >= l.HeavyShare {
					unit = fmt.Sprintf("user-%d", rng.IntN(max(l.Users, 1)))
				}
				l.sent.Add(1)
				if err := f.Do(ctx, unit); err != nil && ctx.Err() == nil {
					l.failed.Add(1)
				}
			}
		}(uint64(w) + 1)
	}
	wg.Wait()
}
