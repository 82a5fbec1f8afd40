package store_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/vigil-dev/vigil/controller/store"
	"github.com/vigil-dev/vigil/internal/testenv/pgtest"
)

func putWithHistory(t *testing.T, s store.Store, r store.Rollout, history ...string) {
	t.Helper()
	err := s.Update(context.Background(), store.Actor{Name: "rollout"}, func(tx store.Tx) error {
		if _, err := tx.PutRollout(context.Background(), r); err != nil {
			return err
		}
		var hs []json.RawMessage
		for _, h := range history {
			hs = append(hs, json.RawMessage(h))
		}
		return tx.AppendRolloutHistory(context.Background(), r.Key, hs...)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestRolloutHistoryAndDueTimes: history is appended apart from the state
// and read back in order; due times are read without the states, and only
// the rollouts asked for are read.
func TestRolloutHistoryAndDueTimes(t *testing.T) {
	forEachKind(t, func(t *testing.T, s store.Store) {
		ctx := context.Background()
		due := time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)
		putWithHistory(t, s, store.Rollout{Key: "a", State: json.RawMessage(`{"state":"progressing"}`), DueAt: due}, `{"to":"progressing"}`)
		putWithHistory(t, s, store.Rollout{Key: "b", State: json.RawMessage(`{"state":"promoted"}`)}, `{"to":"progressing"}`, `{"to":"promoted"}`)
		putWithHistory(t, s, store.Rollout{Key: "a", State: json.RawMessage(`{"state":"progressing","step":1}`), DueAt: due.Add(time.Second)}, `{"to":"progressing","step":1}`)
		putWithHistory(t, s, store.Rollout{Key: "c", State: json.RawMessage(`{"state":"aborted"}`)})

		dues, err := s.RolloutDueTimes(ctx)
		if err != nil || len(dues) != 1 || !dues["a"].Equal(due.Add(time.Second)) {
			t.Fatalf("due times %v %v, want only a at %v", dues, err, due.Add(time.Second))
		}
		rs, err := s.RolloutsOf(ctx, []string{"c", "a", "missing"})
		if err != nil || len(rs) != 2 || rs[0].Key != "a" || rs[1].Key != "c" {
			t.Fatalf("rollouts of a, c, missing: %+v %v", rs, err)
		}
		if !rs[0].DueAt.Equal(due.Add(time.Second)) || !rs[1].DueAt.IsZero() {
			t.Fatalf("due times read back %v, %v", rs[0].DueAt, rs[1].DueAt)
		}
		hs, err := s.RolloutHistory(ctx, []string{"a"})
		if err != nil || len(hs) != 1 || join(hs["a"]) != `{"to":"progressing"} {"to":"progressing","step":1}` {
			t.Fatalf("history of a: %v %v", hs, err)
		}
		all, err := s.RolloutHistory(ctx, nil)
		if err != nil || len(all) != 2 || join(all["b"]) != `{"to":"progressing"} {"to":"promoted"}` {
			t.Fatalf("every history: %v %v", all, err)
		}
		if err := s.Update(ctx, store.Actor{Name: "rollout"}, func(tx store.Tx) error {
			return tx.AppendRolloutHistory(ctx, "a", json.RawMessage(`{"ok":1}`), json.RawMessage(`{bad`))
		}); err == nil || !strings.Contains(err.Error(), "entry 1 is not valid JSON") {
			t.Fatalf("invalid history entry: %v", err)
		}
		if hs, _ := s.RolloutHistory(ctx, []string{"a"}); len(hs["a"]) != 2 {
			t.Fatalf("a refused append changed the history: %v", hs)
		}
		if err := s.Update(ctx, store.Actor{Name: "rollout"}, func(tx store.Tx) error { return tx.DeleteRollout(ctx, "a") }); err != nil {
			t.Fatal(err)
		}
		if hs, _ := s.RolloutHistory(ctx, []string{"a"}); len(hs) != 0 {
			t.Fatalf("history outlived its rollout: %v", hs)
		}
	})
}

// TestRolloutJudgeKeptApart: the judge's state is stored as given beside
// the rollout's state, read back by every read of rollout records but the
// list's pages, and cleared by a put without one.
func TestRolloutJudgeKeptApart(t *testing.T) {
	forEachKind(t, func(t *testing.T, s store.Store) {
		ctx := context.Background()
		judge := json.RawMessage(`{"version":2,"checks":[{"name":"error-rate","maxLogE":-0.12345678901234568}]}`)
		putWithHistory(t, s, store.Rollout{Key: "a", State: json.RawMessage(`{"state":"progressing"}`), Judge: judge})
		putWithHistory(t, s, store.Rollout{Key: "b", State: json.RawMessage(`{"state":"pending"}`)})
		reads := map[string]func() ([]store.Rollout, error){
			"RolloutsOf": func() ([]store.Rollout, error) { return s.RolloutsOf(ctx, []string{"a", "b"}) },
			"Rollouts":   func() ([]store.Rollout, error) { return s.Rollouts(ctx) },
		}
		for name, read := range reads {
			rs, err := read()
			if err != nil || len(rs) != 2 || string(rs[0].Judge) != string(judge) || rs[1].Judge != nil {
				t.Fatalf("%s: %+v %v, want a with its judge state and b with none", name, rs, err)
			}
		}
		if rs, err := s.RolloutsPage(ctx, "", 10); err != nil || len(rs) != 2 || rs[0].Judge != nil || string(rs[0].State) != `{"state":"progressing"}` {
			t.Fatalf("RolloutsPage: %+v %v, want a's state without its judge state", rs, err)
		}
		putWithHistory(t, s, store.Rollout{Key: "a", State: json.RawMessage(`{"state":"aborted"}`)})
		if r, err := s.Rollout(ctx, "a"); err != nil || r.Judge != nil || string(r.State) != `{"state":"aborted"}` {
			t.Fatalf("after a put without a judge state: %+v %v", r, err)
		}
	})
}

func join(rs []json.RawMessage) string {
	var parts []string
	for _, r := range rs {
		parts = append(parts, string(r))
	}
	return strings.Join(parts, " ")
}

// TestRolloutsOfManyKeys reads more keys than one IN list takes.
func TestRolloutsOfManyKeys(t *testing.T) {
	forEachKind(t, func(t *testing.T, s store.Store) {
		ctx := context.Background()
		var keys []string
		err := s.Update(ctx, store.Actor{Name: "rollout"}, func(tx store.Tx) error {
			for i := range 1200 {
				k := fmt.Sprintf("f%04d", i)
				keys = append(keys, k)
				if _, err := tx.PutRollout(ctx, store.Rollout{Key: k, State: json.RawMessage(`{}`)}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		rs, err := s.RolloutsOf(ctx, keys)
		if err != nil || len(rs) != len(keys) {
			t.Fatalf("read %d of %d rollouts: %v", len(rs), len(keys), err)
		}
		for i, r := range rs {
			if r.Key != keys[i] {
				t.Fatalf("rollout %d is %s, want %s", i, r.Key, keys[i])
			}
		}
	})
}

// putRev stores r and returns the rollout revision the put took.
func putRev(t *testing.T, s store.Store, r store.Rollout) int64 {
	t.Helper()
	var rev int64
	err := s.Update(context.Background(), store.Actor{Name: "rollout"}, func(tx store.Tx) error {
		var err error
		rev, err = tx.PutRollout(context.Background(), r)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return rev
}

// TestRolloutRevisions: each put or delete of a rollout record takes the
// next rollout revision, which every read of the record carries; a
// revision is never issued twice, not to a record put again after a
// delete either; and rollout revisions leave the flags' revision alone.
func TestRolloutRevisions(t *testing.T) {
	forEachKind(t, func(t *testing.T, s store.Store) {
		ctx := context.Background()
		put(t, s, testFlag("x", 1))
		before, err := s.Snapshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		a1 := putRev(t, s, store.Rollout{Key: "a", State: json.RawMessage(`{}`)})
		b1 := putRev(t, s, store.Rollout{Key: "b", State: json.RawMessage(`{}`)})
		a2 := putRev(t, s, store.Rollout{Key: "a", State: json.RawMessage(`{"n":2}`), Revision: 1000})
		if a1 < 1 || b1 <= a1 || a2 <= b1 {
			t.Fatalf("revisions of three puts: %d, %d, %d, want growing from 1", a1, b1, a2)
		}
		if after, err := s.Snapshot(ctx); err != nil || after.Revision != before.Revision {
			t.Fatalf("the flags' revision went from %d to %d (%v) with rollout puts alone", before.Revision, after.Revision, err)
		}
		want := map[string]int64{"a": a2, "b": b1}
		check := func(how string, rs []store.Rollout) {
			t.Helper()
			if len(rs) != len(want) {
				t.Fatalf("%s: %d records, want %d", how, len(rs), len(want))
			}
			for _, r := range rs {
				if r.Revision != want[r.Key] {
					t.Errorf("%s: %s at revision %d, want %d", how, r.Key, r.Revision, want[r.Key])
				}
			}
		}
		one, err := s.Rollout(ctx, "a")
		if err != nil {
			t.Fatal(err)
		}
		check("Rollout", []store.Rollout{one, {Key: "b", Revision: b1}})
		all, err := s.Rollouts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		check("Rollouts", all)
		of, err := s.RolloutsOf(ctx, []string{"a", "b"})
		if err != nil {
			t.Fatal(err)
		}
		check("RolloutsOf", of)
		page, err := s.RolloutsPage(ctx, "", 10)
		if err != nil {
			t.Fatal(err)
		}
		check("RolloutsPage", page)

		if err := s.Update(ctx, store.Actor{Name: "rollout"}, func(tx store.Tx) error { return tx.DeleteRollout(ctx, "a") }); err != nil {
			t.Fatal(err)
		}
		a3 := putRev(t, s, store.Rollout{Key: "a", State: json.RawMessage(`{}`)})
		if a3 <= a2+1 {
			t.Fatalf("a put after a delete took revision %d, want past the delete's, past %d", a3, a2+1)
		}
		if r, err := s.Rollout(ctx, "a"); err != nil || r.Revision != a3 {
			t.Fatalf("a read back at revision %d (%v), want %d", r.Revision, err, a3)
		}
	})
}

// TestWatchRollouts: a put or delete of a rollout record is told to its
// watchers by key with the revision it took, and a put of a flag alone is
// not.
func TestWatchRollouts(t *testing.T) {
	forEachKind(t, func(t *testing.T, s store.Store) {
		ctx, cancel := context.WithCancel(context.Background())
		ch := s.WatchRollouts(ctx)
		put(t, s, testFlag("x", 1))
		// A listener that connects meanwhile tells a nil batch in place
		// of the changes before it: then they are made again.
		for attempt := 1; ; attempt++ {
			putRev(t, s, store.Rollout{Key: "a", State: json.RawMessage(`{}`)})
			b := putRev(t, s, store.Rollout{Key: "b", State: json.RawMessage(`{}`)})
			if err := s.Update(ctx, store.Actor{Name: "rollout"}, func(tx store.Tx) error { return tx.DeleteRollout(ctx, "a") }); err != nil {
				t.Fatal(err)
			}
			if waitChanges(t, ch, map[string]int64{"a": b + 1, "b": b}) {
				break
			}
			if attempt == 5 {
				t.Fatal("every attempt was told as a nil batch")
			}
		}
		cancel()
		for range ch {
		}
	})
}

// waitChanges waits until the batches from ch have told of each key in
// want at its revision, and fails on a key not in want or a revision
// past want's. It returns false at a nil batch: a listener (re)connected,
// and changes may have been told as that batch alone.
func waitChanges(t *testing.T, ch <-chan []store.RolloutChange, want map[string]int64) bool {
	t.Helper()
	seen := map[string]int64{}
	deadline := time.After(10 * time.Second)
	for !maps.Equal(seen, want) {
		select {
		case batch := <-ch:
			if batch == nil {
				return false
			}
			for _, c := range batch {
				w, ok := want[c.Key]
				if !ok || c.Revision < 1 || c.Revision > w {
					t.Fatalf("told of rollout %q at revision %d, want only %v", c.Key, c.Revision, want)
				}
				seen[c.Key] = max(seen[c.Key], c.Revision)
			}
		case <-deadline:
			t.Fatalf("told of %v, want %v", seen, want)
		}
	}
	return true
}

// TestPostgresReplicasToldOfRollouts: a rollout changed through one
// replica's store reaches the rollout watchers of another, with the
// revision the change took.
func TestPostgresReplicasToldOfRollouts(t *testing.T) {
	ctx := context.Background()
	a, b := postgresReplicas(t)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch := b.WatchRollouts(wctx)
	// The listener may still be connecting: keep writing until b hears.
	deadline := time.Now().Add(10 * time.Second)
	written := map[int64]bool{}
	for {
		written[putRev(t, a, store.Rollout{Key: "a", State: json.RawMessage(`{}`)})] = true
		select {
		case batch := <-ch:
			if len(batch) == 1 && batch[0].Key == "a" && written[batch[0].Revision] {
				return
			}
			if batch != nil {
				t.Fatalf("replica b was told %+v, want a at one of the revisions written, %v", batch, written)
			}
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("replica b never heard of a's rollout")
		}
	}
}

// TestMigrationMovesHistoryOut: a store written by schema version 1, with
// each rollout's history inline in its state, comes out of the migration
// with the history in its own table in order, states without it, and
// progressing rollouts due at once.
func TestMigrationMovesHistoryOut(t *testing.T) {
	opens := []struct {
		name   string
		where  func(t *testing.T) string
		at     func(ctx context.Context, where string, version int) (store.Store, error)
		latest func(ctx context.Context, where string) (store.Store, error)
	}{
		{"sqlite", func(t *testing.T) string { return t.TempDir() }, store.OpenSQLiteAt, store.OpenSQLite},
		{"postgres", func(t *testing.T) string { return pgtest.Database(t) }, store.OpenPostgresAt, store.OpenPostgres},
	}
	for _, o := range opens {
		t.Run(o.name, func(t *testing.T) {
			ctx := context.Background()
			where := o.where(t)
			old, err := o.at(ctx, where, 1)
			if err != nil {
				t.Fatal(err)
			}
			// Version 1's statement, which knew no due_at.
			for _, r := range []store.Rollout{
				{Key: "a", State: json.RawMessage(`{"key":"a","state":"progressing","percent":5,"history":[{"to":"progressing","percent":1},{"to":"progressing","percent":5}]}`)},
				{Key: "b", State: json.RawMessage(`{"key":"b","state":"promoted","percent":100,"history":[{"to":"promoted","percent":100}]}`)},
				{Key: "c", State: json.RawMessage(`{"key":"c","state":"pending","history":null}`)},
			} {
				if err := store.Exec(ctx, old, `INSERT INTO vigil_rollouts (key, state, updated_at) VALUES ($1, $2, $3)`, r.Key, string(r.State), int64(1)); err != nil {
					t.Fatal(err)
				}
			}
			old.Close()
			s, err := o.latest(ctx, where)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			hs, err := s.RolloutHistory(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(hs) != 2 || len(hs["a"]) != 2 || len(hs["b"]) != 1 {
				t.Fatalf("history after migration: %v", hs)
			}
			for i, want := range []float64{1, 5} {
				var e struct{ Percent float64 }
				if err := json.Unmarshal(hs["a"][i], &e); err != nil || e.Percent != want {
					t.Fatalf("a's entry %d is %s, want percent %v", i, hs["a"][i], want)
				}
			}
			rs, err := s.Rollouts(ctx)
			if err != nil || len(rs) != 3 {
				t.Fatalf("rollouts after migration: %v %v", rs, err)
			}
			for _, r := range rs {
				var st map[string]any
				if err := json.Unmarshal(r.State, &st); err != nil {
					t.Fatalf("state of %s after migration: %s: %v", r.Key, r.State, err)
				}
				if _, ok := st["history"]; ok || st["key"] != r.Key {
					t.Fatalf("state of %s after migration: %s", r.Key, r.State)
				}
				if progressing := r.Key == "a"; progressing == r.DueAt.IsZero() {
					t.Fatalf("rollout %s due at %v after migration", r.Key, r.DueAt)
				}
				if r.Revision != 0 {
					t.Fatalf("rollout %s at revision %d after migration, want 0: no change was told with it", r.Key, r.Revision)
				}
			}
		})
	}
}

// TestRolloutLooks: looks are kept newest keep per rollout, read since a
// time oldest first, and go with their rollout.
func TestRolloutLooks(t *testing.T) {
	forEachKind(t, func(t *testing.T, s store.Store) {
		ctx := context.Background()
		t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
		putWithHistory(t, s, store.Rollout{Key: "a", State: json.RawMessage(`{}`)})
		for i := range 5 {
			err := s.Update(ctx, store.Actor{Name: "rollout"}, func(tx store.Tx) error {
				return tx.AppendRolloutLook(ctx, "a", t0.Add(time.Duration(i)*time.Second), json.RawMessage(fmt.Sprintf(`{"n":%d}`, i)), 3)
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		looks, err := s.RolloutLooks(ctx, "a", time.Time{})
		if err != nil || join(looks) != `{"n":2} {"n":3} {"n":4}` {
			t.Fatalf("looks kept: %s %v, want the newest 3", join(looks), err)
		}
		if looks, _ := s.RolloutLooks(ctx, "a", t0.Add(3*time.Second)); join(looks) != `{"n":3} {"n":4}` {
			t.Fatalf("looks since the fourth: %s", join(looks))
		}
		for _, bad := range []struct {
			look string
			keep int
			want string
		}{{`{bad`, 3, "not valid JSON"}, {`{}`, 0, "keep 0"}} {
			err := s.Update(ctx, store.Actor{Name: "rollout"}, func(tx store.Tx) error {
				return tx.AppendRolloutLook(ctx, "a", t0, json.RawMessage(bad.look), bad.keep)
			})
			if err == nil || !strings.Contains(err.Error(), bad.want) {
				t.Errorf("look %s keep %d: %v, want %q", bad.look, bad.keep, err, bad.want)
			}
		}
		if err := s.Update(ctx, store.Actor{Name: "rollout"}, func(tx store.Tx) error { return tx.DeleteRollout(ctx, "a") }); err != nil {
			t.Fatal(err)
		}
		if looks, _ := s.RolloutLooks(ctx, "a", time.Time{}); len(looks) != 0 {
			t.Fatalf("looks outlived their rollout: %s", join(looks))
		}
	})
}
