package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/vigil-dev/vigil/controller/store"
)

// putRollout stores a rollout record whose state names its writer's n.
func putRollout(ctx context.Context, s store.Store, key string, n int) error {
	return s.Update(ctx, store.Actor{Name: "tester"}, func(tx store.Tx) error {
		_, err := tx.PutRollout(ctx, store.Rollout{Key: key, State: json.RawMessage(fmt.Sprintf(`{"key":%q,"n":%d}`, key, n))})
		return err
	})
}

// TestRolloutsPageWhileRolloutsChange pages through the rollouts a few at a
// time while another writer creates, changes and deletes rollouts whose
// keys sit between the ones that stay: every rollout that exists
// throughout is listed exactly once, and no key twice. Paging by offset
// fails this: a delete behind the reader shifts the rest one place, and
// the reader skips one.
func TestRolloutsPageWhileRolloutsChange(t *testing.T) {
	forEachKind(t, func(t *testing.T, s store.Store) {
		pageWhileChanging(t, keyed{
			put: func(ctx context.Context, key string, n int) error { return putRollout(ctx, s, key, n) },
			churn: func(ctx context.Context, key string) error {
				return s.Update(ctx, store.Actor{Name: "tester"}, func(tx store.Tx) error {
					if err := tx.DeleteRollout(ctx, key); !errors.Is(err, store.ErrNotFound) {
						return err
					}
					_, err := tx.PutRollout(ctx, store.Rollout{Key: key, State: json.RawMessage(`{}`)})
					return err
				})
			},
			page: func(ctx context.Context, after string, limit int) ([]string, error) {
				rs, err := s.RolloutsPage(ctx, after, limit)
				var keys []string
				for _, r := range rs {
					if !json.Valid(r.State) {
						t.Errorf("%s: state %q is not JSON", r.Key, r.State)
					}
					keys = append(keys, r.Key)
				}
				return keys, err
			},
		})
	})
}

// TestFlagsPageWhileFlagsChange is the same for flags: every flag that
// lives throughout is listed once while others are created and deleted
// (leaving tombstones, which no page shows) between them.
func TestFlagsPageWhileFlagsChange(t *testing.T) {
	forEachKind(t, func(t *testing.T, s store.Store) {
		pageWhileChanging(t, keyed{
			put: func(ctx context.Context, key string, n int) error {
				return s.Update(ctx, store.Actor{Name: "tester"}, func(tx store.Tx) error {
					_, err := tx.PutFlag(ctx, testFlag(key, float64(n%100)))
					return err
				})
			},
			churn: func(ctx context.Context, key string) error {
				return s.Update(ctx, store.Actor{Name: "tester"}, func(tx store.Tx) error {
					if _, err := tx.DeleteFlag(ctx, key); !errors.Is(err, store.ErrNotFound) {
						return err
					}
					_, err := tx.PutFlag(ctx, testFlag(key, 1))
					return err
				})
			},
			page: func(ctx context.Context, after string, limit int) ([]string, error) {
				fs, err := s.FlagsPage(ctx, after, limit)
				var keys []string
				for _, f := range fs {
					if f.Version == 0 || f.Rollout == nil {
						t.Errorf("%s: version %d, rollout %v: not the stored flag", f.Key, f.Version, f.Rollout)
					}
					keys = append(keys, f.Key)
				}
				return keys, err
			},
		})
	})
}

// keyed is what pageWhileChanging pages through: put creates or changes
// key (its writer's n-th write), churn deletes key or creates it when it
// does not exist, page reads the keys of one page.
type keyed struct {
	put   func(ctx context.Context, key string, n int) error
	churn func(ctx context.Context, key string) error
	page  func(ctx context.Context, after string, limit int) ([]string, error)
}

// pageWhileChanging pages through k a few keys at a time while a writer
// changes the keys that stay and churns the keys between them, and checks
// that each key that stays is listed once and no key twice.
func pageWhileChanging(t *testing.T, k keyed) {
	ctx := context.Background()
	const n, limit = 60, 7
	stay := make([]string, n)
	for i := range stay {
		stay[i] = fmt.Sprintf("k%03d-stay", i)
		if err := k.put(ctx, stay[i], 0); err != nil {
			t.Fatal(err)
		}
		// Half the churning keys exist from the start, so that deletes
		// begin at once.
		if i%2 == 0 {
			if err := k.put(ctx, fmt.Sprintf("k%03d-churn", i), 0); err != nil {
				t.Fatal(err)
			}
		}
	}

	// The writer changes a key that stays, then creates or deletes one
	// that churns, until the reader is done. After each write it tells a
	// reader that waits for it, and goes on if none does.
	wrote := make(chan struct{})
	done, stopped := make(chan struct{}), make(chan struct{})
	var writeErr error
	go func() {
		defer close(stopped)
		rng := rand.New(rand.NewPCG(1, 2))
		for w := 1; ; w++ {
			select {
			case <-done:
				return
			default:
			}
			if err := k.put(ctx, stay[rng.IntN(n)], w); err != nil {
				writeErr = err
				return
			}
			if err := k.churn(ctx, fmt.Sprintf("k%03d-churn", rng.IntN(n))); err != nil {
				writeErr = err
				return
			}
			select {
			case wrote <- struct{}{}:
			default:
			}
		}
	}()

	seen := map[string]int{}
	after, pages := "", 0
	for {
		page, err := k.page(ctx, after, limit)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if len(page) > limit {
			t.Fatalf("page %d has %d keys, over the limit %d", pages, len(page), limit)
		}
		for _, key := range page {
			if key <= after {
				t.Errorf("page %d: key %s does not sort after %s, the last key before it", pages, key, after)
			}
			seen[key]++
			after = key
		}
		if len(page) < limit {
			break
		}
		// Let the writer change things between every two pages.
		for range 3 {
			select {
			case <-wrote:
			case <-stopped:
				t.Fatalf("the writer stopped: %v", writeErr)
			}
		}
	}
	close(done)
	<-stopped
	if writeErr != nil {
		t.Fatal(writeErr)
	}
	for _, key := range stay {
		if seen[key] != 1 {
			t.Errorf("%s listed %d times, want once", key, seen[key])
		}
	}
	for key, c := range seen {
		if c != 1 {
			t.Errorf("%s listed %d times", key, c)
		}
	}
	if pages < n/limit {
		t.Errorf("%d pages of at most %d for at least %d keys", pages, limit, n)
	}
}

// TestRolloutsPageBounds: the first page starts at the first key, a page
// after the last key is empty, and a limit below 1 is refused with an
// error naming it.
func TestRolloutsPageBounds(t *testing.T) {
	forEachKind(t, func(t *testing.T, s store.Store) {
		ctx := context.Background()
		for _, k := range []string{"b", "a", "c"} {
			if err := putRollout(ctx, s, k, 1); err != nil {
				t.Fatal(err)
			}
		}
		keys := func(rs []store.Rollout) string {
			var ks []string
			for _, r := range rs {
				ks = append(ks, r.Key)
			}
			return strings.Join(ks, ",")
		}
		for _, tc := range []struct {
			after string
			limit int
			want  string
		}{{"", 2, "a,b"}, {"b", 2, "c"}, {"c", 2, ""}, {"", 10, "a,b,c"}, {"a0", 1, "b"}} {
			page, err := s.RolloutsPage(ctx, tc.after, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			if got := keys(page); got != tc.want {
				t.Errorf("after %q limit %d: %s, want %s", tc.after, tc.limit, got, tc.want)
			}
		}
		if _, err := s.RolloutsPage(ctx, "", 0); err == nil || !strings.Contains(err.Error(), "limit 0") {
			t.Errorf("limit 0: %v, want an error naming the limit", err)
		}
	})
}

// TestFlagsPageBounds: the first page starts at the first key, a deleted
// flag is on no page, a page after the last key is empty, and a limit
// below 1 is refused with an error naming it.
func TestFlagsPageBounds(t *testing.T) {
	forEachKind(t, func(t *testing.T, s store.Store) {
		ctx := context.Background()
		for _, k := range []string{"b", "a", "gone", "c"} {
			put(t, s, testFlag(k, 1))
		}
		if err := s.Update(ctx, store.Actor{Name: "tester"}, func(tx store.Tx) error {
			_, err := tx.DeleteFlag(ctx, "gone")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			after string
			limit int
			want  string
		}{{"", 2, "a,b"}, {"b", 2, "c"}, {"c", 2, ""}, {"", 10, "a,b,c"}, {"a0", 1, "b"}, {"c", 1, ""}} {
			page, err := s.FlagsPage(ctx, tc.after, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			var ks []string
			for _, f := range page {
				if f.Rollout == nil || f.Rollout.Percent != 1 {
					t.Errorf("%s: rollout %v, want the stored percent 1", f.Key, f.Rollout)
				}
				ks = append(ks, f.Key)
			}
			if got := strings.Join(ks, ","); got != tc.want {
				t.Errorf("after %q limit %d: %s, want %s", tc.after, tc.limit, got, tc.want)
			}
		}
		if _, err := s.FlagsPage(ctx, "", 0); err == nil || !strings.Contains(err.Error(), "limit 0") {
			t.Errorf("limit 0: %v, want an error naming the limit", err)
		}
	})
}
