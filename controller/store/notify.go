package store

import (
	"context"
	"sync"
)

// notifier fans revision hints out to watchers. Each watcher has a channel
// of one element that holds the latest hint, so a slow watcher never blocks
// a writer and never misses that something changed.
type notifier struct {
	mu   sync.Mutex
	subs map[chan int64]struct{}
}

func newNotifier() *notifier { return &notifier{subs: map[chan int64]struct{}{}} }

func (n *notifier) watch(ctx context.Context) <-chan int64 {
	ch := make(chan int64, 1)
	n.mu.Lock()
	n.subs[ch] = struct{}{}
	n.mu.Unlock()
	go func() {
		<-ctx.Done()
		n.mu.Lock()
		delete(n.subs, ch)
		close(ch)
		n.mu.Unlock()
	}()
	return ch
}

func (n *notifier) publish(rev int64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for ch := range n.subs {
		select {
		case old := <-ch:
			// Keep the larger hint; 0 (unknown) never hides a known one.
			rev = max(rev, old)
		default:
		}
		ch <- rev
	}
}
