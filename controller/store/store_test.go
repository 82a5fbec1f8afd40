package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-dev/vigil/controller/store"
	"github.com/vigil-dev/vigil/internal/testenv/pgtest"
	"github.com/vigil-dev/vigil/sdk/flag"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// kinds opens a fresh store of each kind.
var kinds = []struct {
	name string
	open func(t *testing.T) (store.Store, string)
}{
	{"sqlite", func(t *testing.T) (store.Store, string) {
		dir := t.TempDir()
		s, err := store.OpenSQLite(context.Background(), dir)
		if err != nil {
			t.Fatal(err)
		}
		return s, dir
	}},
	{"postgres", func(t *testing.T) (store.Store, string) {
		url := pgtest.Database(t)
		s, err := store.OpenPostgres(context.Background(), url)
		if err != nil {
			t.Fatal(err)
		}
		return s, url
	}},
}

func forEachKind(t *testing.T, fn func(t *testing.T, s store.Store)) {
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			s, _ := k.open(t)
			t.Cleanup(func() { s.Close() })
			fn(t, s)
		})
	}
}

func testFlag(key string, percent float64) flag.Flag {
	return flag.Flag{
		Key:       key,
		Variants:  map[string]json.RawMessage{"on": json.RawMessage(`true`), "off": json.RawMessage(`false`)},
		Control:   "off",
		Treatment: "on",
		Enabled:   true,
		Rollout:   &flag.Rollout{Percent: percent},
	}
}

func put(t *testing.T, s store.Store, f flag.Flag) flag.Flag {
	t.Helper()
	var out flag.Flag
	err := s.Update(context.Background(), store.Actor{Name: "tester", Message: "because"}, func(tx store.Tx) error {
		var err error
		out, err = tx.PutFlag(context.Background(), f)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestVersionsFromOneSequence(t *testing.T) {
	forEachKind(t, func(t *testing.T, s store.Store) {
		ctx := context.Background()
		a := put(t, s, testFlag("a", 1))
		b := put(t, s, testFlag("b", 1))
		a2 := put(t, s, testFlag("a", 5))
		if a.Version != 1 || b.Version != 2 || a2.Version != 3 {
			t.Fatalf("versions a=%d b=%d a2=%d, want 1 2 3", a.Version, b.Version, a2.Version)
		}
		var delVersion int64
		if err := s.Update(ctx, store.Actor{Name: "tester"}, func(tx store.Tx) error {
			var err error
			delVersion, err = tx.DeleteFlag(ctx, "b")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if delVersion != 4 {
			t.Fatalf("delete version %d, want 4", delVersion)
		}
		snap, err := s.Snapshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if snap.Revision != 4 || len(snap.Flags) != 1 || snap.Flags[0].Key != "a" || snap.Flags[0].Version != 3 || snap.Flags[0].Rollout.Percent != 5 {
			t.Fatalf("snapshot %+v", snap)
		}
		if _, err := s.Flag(ctx, "b"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("deleted flag: err %v, want ErrNotFound", err)
		}
		rev, changes, err := s.Changes(ctx, 2)
		if err != nil {
			t.Fatal(err)
		}
		if rev != 4 || len(changes) != 2 || changes[0].Key != "a" || changes[0].Version != 3 || changes[0].Deleted ||
			changes[1].Key != "b" || changes[1].Version != 4 || !changes[1].Deleted {
			t.Fatalf("changes since 2: rev %d %+v", rev, changes)
		}
		// Re-creating a deleted key continues the sequence.
		if b2 := put(t, s, testFlag("b", 0)); b2.Version != 5 {
			t.Fatalf("re-created b at version %d, want 5", b2.Version)
		}
		if err := s.Update(ctx, store.Actor{Name: "tester"}, func(tx store.Tx) error {
			_, err := tx.DeleteFlag(ctx, "nope")
			return err
		}); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("delete missing: %v", err)
		}
	})
}

func TestFailedUpdateWritesNothing(t *testing.T) {
	forEachKind(t, func(t *testing.T, s store.Store) {
		ctx := context.Background()
		put(t, s, testFlag("a", 1))
		boom := errors.New("boom")
		err := s.Update(ctx, store.Actor{Name: "tester"}, func(tx store.Tx) error {
			if _, err := tx.PutFlag(ctx, testFlag("a", 50)); err != nil {
				return err
			}
			if _, err := tx.PutFlag(ctx, testFlag("c", 50)); err != nil {
				return err
			}
			if tx.Revision() != 3 {
				return fmt.Errorf("revision inside tx %d", tx.Revision())
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("err %v", err)
		}
		snap, err := s.Snapshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if snap.Revision != 1 || len(snap.Flags) != 1 || snap.Flags[0].Rollout.Percent != 1 {
			t.Fatalf("after failed update: %+v", snap)
		}
		entries, err := s.Audit(ctx, store.AuditQuery{})
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 1 {
			t.Fatalf("audit has %d entries, want 1", len(entries))
		}
	})
}

func TestAudit(t *testing.T) {
	forEachKind(t, func(t *testing.T, s store.Store) {
		ctx := context.Background()
		put(t, s, testFlag("a", 1))
		put(t, s, testFlag("b", 1))
		put(t, s, testFlag("a", 2))
		if err := s.Update(ctx, store.Actor{Name: "rollout", Message: "step"}, func(tx store.Tx) error {
			return tx.AppendAudit(ctx, store.AuditEntry{Action: "rollout.advance", Flag: "a"})
		}); err != nil {
			t.Fatal(err)
		}
		all, err := s.Audit(ctx, store.AuditQuery{Flag: "a"})
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != 3 {
			t.Fatalf("%d entries for a, want 3", len(all))
		}
		if all[0].Action != "rollout.advance" || all[0].Actor != "rollout" || all[0].Message != "step" {
			t.Fatalf("newest entry %+v", all[0])
		}
		upd := all[1]
		if upd.Action != "update" || upd.Actor != "tester" || upd.Message != "because" || upd.Version != 3 {
			t.Fatalf("update entry %+v", upd)
		}
		var before, after flag.Flag
		if err := json.Unmarshal(upd.Before, &before); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(upd.After, &after); err != nil {
			t.Fatal(err)
		}
		if before.Rollout.Percent != 1 || after.Rollout.Percent != 2 || before.Version != 1 || after.Version != 3 {
			t.Fatalf("before %+v after %+v", before, after)
		}
		if all[2].Action != "create" || all[2].Before != nil {
			t.Fatalf("create entry %+v", all[2])
		}
		if time.Since(upd.Time) > time.Minute || upd.Time.After(time.Now().Add(time.Second)) {
			t.Fatalf("time %v", upd.Time)
		}
		page, err := s.Audit(ctx, store.AuditQuery{BeforeID: all[1].ID, Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		if len(page) != 2 || page[0].Flag != "b" {
			t.Fatalf("page before %d: %+v", all[1].ID, page)
		}
	})
}

func TestTokens(t *testing.T) {
	forEachKind(t, func(t *testing.T, s store.Store) {
		ctx := context.Background()
		create := func(name, hash string) error {
			return s.Update(ctx, store.Actor{Name: "admin"}, func(tx store.Tx) error {
				return tx.CreateToken(ctx, store.Token{Name: name, Role: store.RoleSDK, Hash: hash, CreatedBy: "admin"})
			})
		}
		if err := create("svc", "h1"); err != nil {
			t.Fatal(err)
		}
		if err := create("svc", "h2"); !errors.Is(err, store.ErrExists) {
			t.Fatalf("duplicate name: %v", err)
		}
		tok, err := s.TokenByHash(ctx, "h1")
		if err != nil || tok.Name != "svc" || tok.Role != store.RoleSDK || tok.CreatedBy != "admin" {
			t.Fatalf("by hash: %+v %v", tok, err)
		}
		if _, err := s.TokenByHash(ctx, "h2"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("unknown hash: %v", err)
		}
		if err := s.Update(ctx, store.Actor{Name: "admin"}, func(tx store.Tx) error { return tx.DeleteToken(ctx, "svc") }); err != nil {
			t.Fatal(err)
		}
		if err := s.Update(ctx, store.Actor{Name: "admin"}, func(tx store.Tx) error { return tx.DeleteToken(ctx, "svc") }); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("second delete: %v", err)
		}
		ts, err := s.Tokens(ctx)
		if err != nil || len(ts) != 0 {
			t.Fatalf("tokens %v %v", ts, err)
		}
	})
}

func TestRolloutWithFlagInOneTransaction(t *testing.T) {
	forEachKind(t, func(t *testing.T, s store.Store) {
		ctx := context.Background()
		put(t, s, testFlag("a", 0))
		err := s.Update(ctx, store.Actor{Name: "rollout"}, func(tx store.Tx) error {
			f, err := tx.Flag(ctx, "a")
			if err != nil {
				return err
			}
			f.Rollout.Percent = 5
			f.Tracked = true
			if _, err := tx.PutFlag(ctx, f); err != nil {
				return err
			}
			_, err = tx.PutRollout(ctx, store.Rollout{Key: "a", State: json.RawMessage(`{"state":"progressing","step":1}`)})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		r, err := s.Rollout(ctx, "a")
		if err != nil || string(r.State) != `{"state":"progressing","step":1}` || r.UpdatedAt.IsZero() {
			t.Fatalf("rollout %+v %v", r, err)
		}
		f, _ := s.Flag(ctx, "a")
		if !f.Tracked || f.Rollout.Percent != 5 {
			t.Fatalf("flag %+v", f)
		}
		rs, err := s.Rollouts(ctx)
		if err != nil || len(rs) != 1 {
			t.Fatalf("rollouts %v %v", rs, err)
		}
		if err := s.Update(ctx, store.Actor{Name: "rollout"}, func(tx store.Tx) error {
			_, err := tx.PutRollout(ctx, store.Rollout{Key: "a", State: json.RawMessage(`{bad`)})
			return err
		}); err == nil {
			t.Fatal("invalid state JSON accepted")
		}
		if err := s.Update(ctx, store.Actor{Name: "rollout"}, func(tx store.Tx) error { return tx.DeleteRollout(ctx, "a") }); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Rollout(ctx, "a"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("deleted rollout: %v", err)
		}
	})
}

func TestLease(t *testing.T) {
	forEachKind(t, func(t *testing.T, s store.Store) {
		ctx := context.Background()
		if l, err := s.Lease(ctx, "rollouts"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("the lease before anyone took it: %+v %v", l, err)
		}
		// The store keeps microseconds, so compare at that precision.
		before := time.Now().Truncate(time.Microsecond)
		ok, err := s.AcquireLease(ctx, "rollouts", "a", time.Hour)
		if err != nil || !ok {
			t.Fatalf("a first: %v %v", ok, err)
		}
		if ok, err := s.AcquireLease(ctx, "rollouts", "b", time.Hour); err != nil || ok {
			t.Fatalf("b while a holds: %v %v", ok, err)
		}
		if l, err := s.Lease(ctx, "rollouts"); err != nil || l.Name != "rollouts" || l.Holder != "a" || l.Expires.Before(before.Add(time.Hour)) {
			t.Fatalf("the lease a holds: %+v %v", l, err)
		}
		if ok, err := s.AcquireLease(ctx, "rollouts", "a", time.Hour); err != nil || !ok {
			t.Fatalf("a renews: %v %v", ok, err)
		}
		if err := s.ReleaseLease(ctx, "rollouts", "a"); err != nil {
			t.Fatal(err)
		}
		if l, err := s.Lease(ctx, "rollouts"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("the lease a released: %+v %v", l, err)
		}
		if ok, err := s.AcquireLease(ctx, "rollouts", "b", -time.Second); err != nil || !ok {
			t.Fatalf("b after release: %v %v", ok, err)
		}
		if l, err := s.Lease(ctx, "rollouts"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("the lease b let expire: %+v %v", l, err)
		}
		// b's lease is already expired, so a may take it.
		if ok, err := s.AcquireLease(ctx, "rollouts", "a", time.Hour); err != nil || !ok {
			t.Fatalf("a after b expired: %v %v", ok, err)
		}
	})
}

// TestConcurrentWriters checks that concurrent writers get distinct,
// gap-free versions and that readers following Changes miss none.
func TestConcurrentWriters(t *testing.T) {
	forEachKind(t, func(t *testing.T, s store.Store) {
		ctx := context.Background()
		const writers, each = 4, 10
		var wg sync.WaitGroup
		errs := make(chan error, writers*each)
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range each {
					f := testFlag(fmt.Sprintf("w%d-%d", w, i), 1)
					errs <- s.Update(ctx, store.Actor{Name: "w"}, func(tx store.Tx) error {
						_, err := tx.PutFlag(ctx, f)
						return err
					})
				}
			}()
		}
		seen := map[int64]bool{}
		var since int64
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		for finished := false; !finished; {
			select {
			case <-done:
				finished = true
			default:
			}
			rev, changes, err := s.Changes(ctx, since)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range changes {
				seen[c.Version] = true
			}
			if len(changes) > 0 && changes[len(changes)-1].Version != rev {
				t.Fatalf("changes end at %d, revision %d", changes[len(changes)-1].Version, rev)
			}
			since = rev
		}
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		for v := int64(1); v <= writers*each; v++ {
			if !seen[v] {
				t.Fatalf("reader following changes missed version %d", v)
			}
		}
	})
}

func TestWatch(t *testing.T) {
	forEachKind(t, func(t *testing.T, s store.Store) {
		ctx, cancel := context.WithCancel(context.Background())
		ch := s.Watch(ctx)
		put(t, s, testFlag("a", 1))
		waitRevision(t, ch, 1)
		cancel()
		for range ch {
		}
	})
}

func waitRevision(t *testing.T, ch <-chan int64, want int64) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case rev := <-ch:
			if rev == want {
				return
			}
		case <-deadline:
			t.Fatalf("no notification of revision %d", want)
		}
	}
}

// TestPostgresReplicasNotified checks that a change through one store reaches
// the watchers of another store on the same database.
func TestPostgresReplicasNotified(t *testing.T) {
	ctx := context.Background()
	a, b := postgresReplicas(t)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch := b.Watch(wctx)
	// The listener may still be connecting: keep writing until b hears.
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; ; i++ {
		f := put(t, a, testFlag("a", float64(i%100)))
		select {
		case rev := <-ch:
			if rev == f.Version {
				return
			}
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("replica b never heard of a's changes")
		}
	}
}

// postgresReplicas opens the stores of two replicas on one new PostgreSQL
// database, closed in t.Cleanup.
func postgresReplicas(t *testing.T) (a, b store.Store) {
	t.Helper()
	url := pgtest.Database(t)
	var out [2]store.Store
	for i := range out {
		s, err := store.OpenPostgres(context.Background(), url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		out[i] = s
	}
	return out[0], out[1]
}

func TestMigrationsAreIdempotent(t *testing.T) {
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			s, where := k.open(t)
			put(t, s, testFlag("a", 1))
			s.Close()
			var err error
			if k.name == "sqlite" {
				s, err = store.OpenSQLite(context.Background(), where)
			} else {
				s, err = store.OpenPostgres(context.Background(), where)
			}
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			f, err := s.Flag(context.Background(), "a")
			if err != nil || f.Version != 1 {
				t.Fatalf("after reopen: %+v %v", f, err)
			}
		})
	}
}

// TestSQLiteFilesArePrivate: the data directory the store creates and the
// database files in it are its owner's alone.
func TestSQLiteFilesArePrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "vigil-data")
	s, err := store.OpenSQLite(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	put(t, s, testFlag("a", 1))
	files, err := filepath.Glob(filepath.Join(dir, "vigil.db*"))
	if err != nil || len(files) < 2 {
		t.Fatalf("database files %v %v; want vigil.db and its WAL", files, err)
	}
	for _, p := range append([]string{dir}, files...) {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		want := os.FileMode(0o600)
		if fi.IsDir() {
			want = 0o700
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s has mode %v, want %v", p, fi.Mode().Perm(), want)
		}
	}
}

// TestSQLiteDirectoryOneProcessAtATime: while a store is open on a directory,
// another open of it fails and says why; once it is closed (or its process
// has ended) the directory opens again, and the leases left in it, whose
// holders have ended, are gone, so a new leader need not wait them out.
func TestSQLiteDirectoryOneProcessAtATime(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := store.OpenSQLite(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := s.AcquireLease(ctx, "rollouts", "a process killed later", time.Hour); err != nil || !ok {
		t.Fatalf("acquire: %v %v", ok, err)
	}
	second, err := store.OpenSQLite(ctx, dir)
	if err == nil {
		second.Close()
		t.Fatal("a second store opened the directory in use")
	}
	if !strings.Contains(err.Error(), "another process uses "+dir) {
		t.Errorf("second open: %v, want it to name the directory in use", err)
	}
	// Closed without releasing its lease, as a killed process leaves it.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = store.OpenSQLite(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if ok, err := s.AcquireLease(ctx, "rollouts", "the next process", time.Hour); err != nil || !ok {
		t.Fatalf("the next process's acquire: %v %v, want the ended holder's lease gone", ok, err)
	}
}

// TestFlagsOf: the live flags of the keys asked for, by key, in one call
// of more keys than one IN list takes; missing and deleted flags are left
// out.
func TestFlagsOf(t *testing.T) {
	forEachKind(t, func(t *testing.T, s store.Store) {
		ctx := context.Background()
		var keys []string
		err := s.Update(ctx, store.Actor{Name: "tester"}, func(tx store.Tx) error {
			for i := range 1200 {
				k := fmt.Sprintf("f%04d", i)
				keys = append(keys, k)
				if _, err := tx.PutFlag(ctx, testFlag(k, float64(i%100))); err != nil {
					return err
				}
			}
			_, err := tx.DeleteFlag(ctx, "f0007")
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		asked := append([]string{"missing"}, keys...)
		slices.Reverse(asked)
		fs, err := s.FlagsOf(ctx, asked)
		if err != nil || len(fs) != len(keys)-1 {
			t.Fatalf("read %d flags of %d live: %v", len(fs), len(keys)-1, err)
		}
		want := slices.DeleteFunc(slices.Clone(keys), func(k string) bool { return k == "f0007" })
		for i, f := range fs {
			var n int
			fmt.Sscanf(f.Key, "f%d", &n)
			if f.Key != want[i] || f.Rollout == nil || f.Rollout.Percent != float64(n%100) || f.Version == 0 {
				t.Fatalf("flag %d is %s (%+v, version %d), want %s at %d%%", i, f.Key, f.Rollout, f.Version, want[i], n%100)
			}
		}
		if fs, err := s.FlagsOf(ctx, nil); err != nil || len(fs) != 0 {
			t.Fatalf("no keys: %v %v", fs, err)
		}
	})
}
