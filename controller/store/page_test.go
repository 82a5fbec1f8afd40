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
		return tx.PutRollout(ctx, store.Rollout{Key: key, State: json.RawMessage(fmt.Sprintf(`{"key":%q,"n":%d}`, key, n))})
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
		ctx := context.Background()
		const n, limit = 60, 7
		stay := make([]string, n)
		for i := range stay {
			stay[i] = fmt.Sprintf("k%03d-stay", i)
			if err := putRollout(ctx, s, stay[i], 0); err != nil {
				t.Fatal(err)
			}
			// Half the churning keys exist from the start, so that deletes
			// begin at once.
			if i%2 == 0 {
				if err := putRollout(ctx, s, fmt.Sprintf("k%03d-churn", i), 0); err != nil {
					t.Fatal(err)
				}
			}
		}

		// The writer changes a rollout that stays, then creates or deletes
		// one that churns, until the reader is done. After each write it
		// tells a reader that waits for it, and goes on if none does.
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
				if err := putRollout(ctx, s, stay[rng.IntN(n)], w); err != nil {
					writeErr = err
					return
				}
				churn := fmt.Sprintf("k%03d-churn", rng.IntN(n))
				err := s.Update(ctx, store.Actor{Name: "tester"}, func(tx store.Tx) error {
					if err := tx.DeleteRollout(ctx, churn); !errors.Is(err, store.ErrNotFound) {
						return err
					}
					return tx.PutRollout(ctx, store.Rollout{Key: churn, State: json.RawMessage(`{}`)})
				})
				if err != nil {
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
			page, err := s.RolloutsPage(ctx, after, limit)
			if err != nil {
				t.Fatal(err)
			}
			pages++
			if len(page) > limit {
				t.Fatalf("page %d has %d rollouts, over the limit %d", pages, len(page), limit)
			}
			for _, r := range page {
				if r.Key <= after {
					t.Errorf("page %d: key %s does not sort after %s, the last key before it", pages, r.Key, after)
				}
				if !json.Valid(r.State) {
					t.Errorf("%s: state %q is not JSON", r.Key, r.State)
				}
				seen[r.Key]++
				after = r.Key
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
		for _, k := range stay {
			if seen[k] != 1 {
				t.Errorf("%s listed %d times, want once", k, seen[k])
			}
		}
		for k, c := range seen {
			if c != 1 {
				t.Errorf("%s listed %d times", k, c)
			}
		}
		if pages < n/limit {
			t.Errorf("%d pages of at most %d for at least %d rollouts", pages, limit, n)
		}
	})
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
