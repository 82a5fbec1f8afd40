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

// keyNotifier fans the keys of changed rollout records out to watchers.
// Each watcher accumulates keys in a set that its goroutine hands over as
// one batch when the receiver is ready, so a slow watcher never blocks a
// writer and never misses a key.
type keyNotifier struct {
	mu   sync.Mutex
	subs map[*keyWatcher]struct{}
}

// keyWatcher is one watcher's pending keys; all means keys may have been
// missed, which the batch reports as nil.
type keyWatcher struct {
	keys map[string]struct{}
	all  bool
	wake chan struct{}
}

func newKeyNotifier() *keyNotifier { return &keyNotifier{subs: map[*keyWatcher]struct{}{}} }

func (n *keyNotifier) watch(ctx context.Context) <-chan []string {
	w := &keyWatcher{keys: map[string]struct{}{}, wake: make(chan struct{}, 1)}
	n.mu.Lock()
	n.subs[w] = struct{}{}
	n.mu.Unlock()
	out := make(chan []string)
	go func() {
		defer close(out)
		defer func() {
			n.mu.Lock()
			delete(n.subs, w)
			n.mu.Unlock()
		}()
		for {
			select {
			case <-ctx.Done():
				return
			case <-w.wake:
			}
			n.mu.Lock()
			var batch []string
			if !w.all {
				batch = make([]string, 0, len(w.keys))
				for k := range w.keys {
					batch = append(batch, k)
				}
			}
			w.keys, w.all = map[string]struct{}{}, false
			n.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case out <- batch:
			}
		}
	}()
	return out
}

// publish adds keys to every watcher's pending set; nil keys means that
// changes may have been missed.
func (n *keyNotifier) publish(keys []string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for w := range n.subs {
		if keys == nil {
			w.all = true
		}
		for _, k := range keys {
			w.keys[k] = struct{}{}
		}
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}
