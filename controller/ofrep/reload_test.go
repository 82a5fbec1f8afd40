package ofrep

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"testing"

	"github.com/vigil-dev/vigil/controller/store"
	"github.com/vigil-dev/vigil/sdk/flag"
)

// snapshotCounter counts the whole-store reads.
type snapshotCounter struct {
	store.Store
	snapshots int
}

func (s *snapshotCounter) Snapshot(ctx context.Context) (store.Snapshot, error) {
	s.snapshots++
	return s.Store.Snapshot(ctx)
}

// After the first load the flags follow the store by its changes: a
// percent moved, a flag added and one deleted reach the endpoints without
// reading the whole store again.
func TestReloadAppliesChanges(t *testing.T) {
	ctx := context.Background()
	sq, err := store.OpenSQLite(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sq.Close() })
	st := &snapshotCounter{Store: sq}
	put := func(key string, percent float64) {
		t.Helper()
		f := flag.Flag{Key: key, Enabled: true, Control: "off", Treatment: "on",
			Variants: map[string]json.RawMessage{"off": json.RawMessage("false"), "on": json.RawMessage("true")},
			Rollout:  &flag.Rollout{Percent: percent}}
		if err := st.Update(ctx, store.Actor{Name: "test"}, func(tx store.Tx) error { _, err := tx.PutFlag(ctx, f); return err }); err != nil {
			t.Fatal(err)
		}
	}
	put("a", 0)
	put("b", 0)
	e := newEndpoints(Config{}.withDefaults(), st, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := e.reload(ctx); err != nil {
		t.Fatal(err)
	}
	put("a", 100)
	put("c", 100)
	if err := st.Update(ctx, store.Actor{Name: "test"}, func(tx store.Tx) error { _, err := tx.DeleteFlag(ctx, "b"); return err }); err != nil {
		t.Fatal(err)
	}
	if err := e.reload(ctx); err != nil {
		t.Fatal(err)
	}
	snap := e.snap.Load()
	u := flag.Context{Key: "u"}
	if _, ok := snap.Flag("b"); ok || snap.Len() != 2 || snap.Evaluate("a", u).Variant != "on" || snap.Evaluate("c", u).Variant != "on" {
		t.Errorf("after the changes: %d flags (b there: %v), a %s, c %s; want 2 (a, c), on, on", snap.Len(), ok, snap.Evaluate("a", u).Variant, snap.Evaluate("c", u).Variant)
	}
	if rev, _, err := st.Changes(ctx, 0); err != nil || snap.Revision() != rev {
		t.Errorf("snapshot at revision %d, the store at %d (%v)", snap.Revision(), rev, err)
	}
	if st.snapshots != 1 {
		t.Errorf("the store was read whole %d times, want once (the first load)", st.snapshots)
	}
}
