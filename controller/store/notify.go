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

// keyNotifier fans the changes of rollout records out to watchers. Each
// watcher accumulates them by key, with the latest revision, in a set that
// its goroutine hands over as one batch when the receiver is ready, so a
// slow watcher never blocks a writer and never misses a change.
type keyNotifier struct {
	mu   sync.Mutex
	subs map[*keyWatcher]struct{}
}

// keyWatcher is one watcher's pending changes, coalesced by
// AddChange; all means changes may have been missed,
// which the batch reports as nil.
type keyWatcher struct {
	keys map[string]int64
	all  bool
	wake chan struct{}
}

func newKeyNotifier() *keyNotifier { return &keyNotifier{subs: map[*keyWatcher]struct{}{}} }

func (n *keyNotifier) watch(ctx context.Context) <-chan []RolloutChange {
	w := &keyWatcher{keys: map[string]int64{}, wake: make(chan struct{}, 1)}
	n.mu.Lock()
	n.subs[w] = struct{}{}
	n.mu.Unlock()
	out := make(chan []RolloutChange)
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
			var batch []RolloutChange
			if !w.all {
				batch = make([]RolloutChange, 0, len(w.keys))
				for k, rev := range w.keys {
					batch = append(batch, RolloutChange{Key: k, Revision: rev})
				}
			}
			w.keys, w.all = map[string]int64{}, false
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

// publish adds changes to every watcher's pending set; nil changes means
// that changes may have been missed.
func (n *keyNotifier) publish(changes []RolloutChange) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for w := range n.subs {
		if changes == nil {
			w.all = true
		}
		for _, c := range changes {
			AddChange(w.keys, c)
		}
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

// AddChange adds c to pending, changes by key: the changes of one key
// coalesce into one at the later revision, or at 0 (unknown) when any of
// them is unknown, so that a change whose revision is not known is read
// again whatever came with it.
func AddChange(pending map[string]int64, c RolloutChange) {
	old, ok := pending[c.Key]
	switch {
	case !ok:
		pending[c.Key] = c.Revision
	case old == 0 || c.Revision == 0:
		pending[c.Key] = 0
	default:
		pending[c.Key] = max(old, c.Revision)
	}
}
