package store

import (
	"context"
	"maps"
	"testing"
	"time"
)

// TestAddChange: changes of one key coalesce into the later revision, and
// into 0 (unknown) when any of them is unknown, so that a change told
// without its revision is never hidden by one told with it.
func TestAddChange(t *testing.T) {
	for _, tc := range []struct {
		revs []int64
		want int64
	}{
		{[]int64{3}, 3},
		{[]int64{0}, 0},
		{[]int64{3, 5}, 5},
		{[]int64{5, 3}, 5},
		{[]int64{3, 0, 5}, 0},
		{[]int64{0, 5}, 0},
		{[]int64{5, 0}, 0},
	} {
		pending := map[string]int64{"other": 9}
		for _, r := range tc.revs {
			AddChange(pending, RolloutChange{Key: "a", Revision: r})
		}
		if got := pending["a"]; got != tc.want || pending["other"] != 9 || len(pending) != 2 {
			t.Errorf("changes at %v: %v, want a at %d", tc.revs, pending, tc.want)
		}
	}
}

// TestKeyNotifierCoalesces: the changes published while a watcher is busy
// reach it as one batch, a key once at its latest revision; a nil publish
// makes the batch nil.
func TestKeyNotifierCoalesces(t *testing.T) {
	n := newKeyNotifier()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := n.watch(ctx)
	n.publish([]RolloutChange{{Key: "a", Revision: 3}, {Key: "b", Revision: 4}})
	n.publish([]RolloutChange{{Key: "a", Revision: 5}})
	got := map[string]int64{}
	for !maps.Equal(got, map[string]int64{"a": 5, "b": 4}) {
		select {
		case batch := <-ch:
			for _, c := range batch {
				if old, ok := got[c.Key]; ok && old >= c.Revision {
					t.Fatalf("told of %s at %d after %d", c.Key, c.Revision, old)
				}
				got[c.Key] = c.Revision
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("told of %v, want a at 5 and b at 4", got)
		}
	}
	n.publish([]RolloutChange{{Key: "a", Revision: 6}})
	n.publish(nil)
	for {
		select {
		case batch := <-ch:
			if batch == nil {
				return
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a nil publish was not told as a nil batch")
		}
	}
}

// TestRolloutPayload: a NOTIFY payload gives back the change it was made
// of; a payload of a key alone, as releases before revisions sent, is a
// change at revision 0 (unknown), read again by its watcher.
func TestRolloutPayload(t *testing.T) {
	for _, c := range []RolloutChange{{Key: "checkout", Revision: 1}, {Key: "a.b-c_d", Revision: 1 << 62}} {
		if got := parseRolloutPayload(rolloutPayload(c)); got != c {
			t.Errorf("%+v came back as %+v", c, got)
		}
	}
	for p, want := range map[string]RolloutChange{
		"checkout":     {Key: "checkout"},
		"checkout x":   {Key: "checkout"},
		"checkout -3":  {Key: "checkout"},
		"checkout 12 ": {Key: "checkout"},
	} {
		if got := parseRolloutPayload(p); got != want {
			t.Errorf("payload %q: %+v, want %+v", p, got, want)
		}
	}
}
