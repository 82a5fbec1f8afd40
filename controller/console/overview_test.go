package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-dev/vigil/controller/rollout"
	"github.com/vigil-dev/vigil/controller/server"
	"github.com/vigil-dev/vigil/controller/store"
	"github.com/vigil-dev/vigil/internal/testenv/poll"
	"github.com/vigil-dev/vigil/internal/testenv/servertest"
	"github.com/vigil-dev/vigil/sdk/flag"
)

// counting is a real store that counts what the overview reads from it.
type counting struct {
	store.Store
	mu sync.Mutex
	// whole counts the reads of every flag or every rollout.
	whole int
	// flagsRead and rolloutsAsked are the most flags one FlagsPage
	// returned and the most keys one RolloutsOf asked for.
	flagsRead, rolloutsAsked int
}

func (c *counting) note(whole, flags, asked int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.whole += whole
	c.flagsRead = max(c.flagsRead, flags)
	c.rolloutsAsked = max(c.rolloutsAsked, asked)
}

// reset returns the counts so far and starts again.
func (c *counting) reset() (whole, flags, asked int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	whole, flags, asked = c.whole, c.flagsRead, c.rolloutsAsked
	c.whole, c.flagsRead, c.rolloutsAsked = 0, 0, 0
	return whole, flags, asked
}

func (c *counting) Snapshot(ctx context.Context) (store.Snapshot, error) {
	c.note(1, 0, 0)
	return c.Store.Snapshot(ctx)
}

func (c *counting) Rollouts(ctx context.Context) ([]store.Rollout, error) {
	c.note(1, 0, 0)
	return c.Store.Rollouts(ctx)
}

func (c *counting) RolloutsPage(ctx context.Context, after string, limit int) ([]store.Rollout, error) {
	c.note(1, 0, 0) // not the overview's to read: it pages flags
	return c.Store.RolloutsPage(ctx, after, limit)
}

func (c *counting) FlagsPage(ctx context.Context, after string, limit int) ([]flag.Flag, error) {
	fs, err := c.Store.FlagsPage(ctx, after, limit)
	c.note(0, len(fs), 0)
	return fs, err
}

func (c *counting) RolloutsOf(ctx context.Context, keys []string) ([]store.Rollout, error) {
	c.note(0, 0, len(keys))
	return c.Store.RolloutsOf(ctx, keys)
}

// startCounting runs a server with the console over a counting SQLite
// store.
func startCounting(t *testing.T) (string, *counting) {
	t.Helper()
	st, err := store.Open(context.Background(), t.TempDir(), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	c := &counting{Store: st}
	url, _ := servertest.Run(t, func(ctx context.Context) (*server.Server, error) {
		return server.New(ctx, server.Config{Store: c, AdminToken: testAdmin,
			Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
			Extensions: []server.Extension{Extension(Config{})}})
	})
	// The server reads every flag once as it starts, for the SDKs; the
	// counts begin after that.
	poll.True(t, 10*time.Second, "the server's first read of the flags", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.whole > 0
	})
	c.reset()
	return url, c
}

// putFlags stores flags and, for each key with a phase, a rollout record
// in that phase, in one transaction.
func putFlags(t testing.TB, st store.Store, flags []flag.Flag, phases map[string]rollout.Phase) {
	t.Helper()
	ctx := context.Background()
	err := st.Update(ctx, store.Actor{Name: "test"}, func(tx store.Tx) error {
		for _, f := range flags {
			if _, err := tx.PutFlag(ctx, f); err != nil {
				return err
			}
			if p, ok := phases[f.Key]; ok {
				if err := putState(ctx, tx, f.Key, p); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func putState(ctx context.Context, tx store.Tx, key string, p rollout.Phase) error {
	s := rollout.New(key)
	s.Phase, s.Percent, s.Step = p, 5, 0
	s.Plan.Steps = []float64{5, 100}
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	_, err = tx.PutRollout(ctx, store.Rollout{Key: key, State: b})
	return err
}

func overviewFlag(key, description string) flag.Flag {
	return flag.Flag{Key: key, Description: description, Enabled: true, Control: "off", Treatment: "on",
		Variants: map[string]json.RawMessage{"off": json.RawMessage(`false`), "on": json.RawMessage(`true`)},
		Rollout:  &flag.Rollout{Percent: 3}}
}

// overviewPage asks for one page and decodes it.
func overviewPage(t *testing.T, base string, q url.Values, etag string) (*http.Response, Overview) {
	t.Helper()
	resp, body := get(t, base+"/api/v1/console/overview?"+q.Encode(), testAdmin, etag)
	var o Overview
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal([]byte(body), &o); err != nil {
			t.Fatalf("overview?%s: %v: %s", q.Encode(), err, body)
		}
	} else if resp.StatusCode != http.StatusNotModified {
		t.Fatalf("overview?%s: %d %s", q.Encode(), resp.StatusCode, body)
	}
	return resp, o
}

// overviewAll pages through the overview with q and returns the keys in
// the order listed and the pages it took.
func overviewAll(t *testing.T, base string, q url.Values) ([]string, int) {
	t.Helper()
	return servertest.Pages(t, func(cont string) ([]string, string) {
		if cont != "" {
			q.Set("continue", cont)
		}
		_, o := overviewPage(t, base, q, "")
		keys := make([]string, len(o.Flags))
		for i, r := range o.Flags {
			keys[i] = r.Key
		}
		return keys, o.Continue
	})
}

// TestOverviewPages: with more flags than a page, the pages list every
// flag once, by key, each page reading only its own flags and their
// rollouts; a filter by state or by text pages through its flags only;
// and each page has its own ETag, which a change on another page leaves
// alone.
func TestOverviewPages(t *testing.T) {
	base, st := startCounting(t)
	var flags []flag.Flag
	var want []string
	phases := map[string]rollout.Phase{}
	byPhase := map[rollout.Phase][]string{}
	for i := range 23 {
		key := fmt.Sprintf("flag-%02d", i)
		desc := "an ordinary flag"
		if i%5 == 0 {
			desc = "a Checkout flag"
		}
		flags = append(flags, overviewFlag(key, desc))
		want = append(want, key)
		// Every state, pending both without a record and with one.
		p := rollout.Phases[i%len(rollout.Phases)]
		if i%4 != 0 {
			phases[key] = p
		} else {
			p = rollout.Pending
		}
		byPhase[p] = append(byPhase[p], key)
	}
	putFlags(t, st, flags, phases)
	st.reset()

	keys, pages := overviewAll(t, base, url.Values{"limit": {"5"}})
	if !slices.Equal(keys, want) || pages != 5 {
		t.Errorf("limit 5: %d pages of %v, want 5 pages of %v", pages, keys, want)
	}
	// Each request read one page of flags (and one more, to learn whether
	// more follow) and the rollouts of those alone, never every flag or
	// every rollout.
	if whole, flagsRead, asked := st.reset(); whole != 0 || flagsRead > 6 || asked > 6 || flagsRead == 0 {
		t.Errorf("limit 5: %d reads of everything, at most %d flags and %d rollouts in one read; want none, and at most 6",
			whole, flagsRead, asked)
	}
	// The default page holds all 23.
	if keys, pages := overviewAll(t, base, url.Values{}); len(keys) != 23 || pages != 1 {
		t.Errorf("default limit: %d pages of %d flags, want one of 23", pages, len(keys))
	}
	// A row is its rollout's state; a flag without a record is pending at
	// its own percent.
	_, o := overviewPage(t, base, url.Values{"limit": {"2"}}, "")
	if len(o.Flags) != 2 || o.Flags[0].State != rollout.Pending || o.Flags[0].Percent != 3 || o.Flags[0].Step != -1 ||
		o.Flags[1].State != rollout.Progressing || o.Flags[1].Percent != 5 || o.Flags[1].Steps != 2 || o.Flags[1].Description != "an ordinary flag" {
		t.Errorf("the first two rows: %+v", o.Flags)
	}

	// A filter by state, with the admin list's syntax, pages through its
	// states only: pending includes the flags without a record.
	for _, q := range []url.Values{
		{"state": {"pending,rolled_back"}, "limit": {"2"}},
		{"state": {"rolled_back", "pending"}, "limit": {"2"}},
	} {
		keys, _ := overviewAll(t, base, q)
		wantKeys := slices.Sorted(slices.Values(append(slices.Clone(byPhase[rollout.Pending]), byPhase[rollout.RolledBack]...)))
		if !slices.Equal(keys, wantKeys) {
			t.Errorf("%v: %v, want %v", q, keys, wantKeys)
		}
	}
	// Find keeps the flags whose key or description holds the text, in
	// any case.
	if keys, _ := overviewAll(t, base, url.Values{"find": {"checkout"}, "limit": {"2"}}); !slices.Equal(keys, []string{"flag-00", "flag-05", "flag-10", "flag-15", "flag-20"}) {
		t.Errorf("find=checkout: %v", keys)
	}
	if keys, _ := overviewAll(t, base, url.Values{"find": {"FLAG-1"}, "state": {"paused"}}); !slices.Equal(keys, []string{"flag-14"}) {
		t.Errorf("find=FLAG-1 state=paused: %v, want flag-14", keys)
	}

	// Each page its own ETag: a change on the second page leaves the
	// first's answered 304, and a change on the first changes its tag.
	first, _ := overviewPage(t, base, url.Values{"limit": {"5"}}, "")
	tag := first.Header.Get("ETag")
	if resp, _ := overviewPage(t, base, url.Values{"limit": {"5"}}, tag); resp.StatusCode != http.StatusNotModified {
		t.Fatalf("the first page with its ETag: %d, want 304", resp.StatusCode)
	}
	putFlags(t, st, []flag.Flag{overviewFlag("flag-07", "changed")}, map[string]rollout.Phase{"flag-07": rollout.Aborted})
	if resp, _ := overviewPage(t, base, url.Values{"limit": {"5"}}, tag); resp.StatusCode != http.StatusNotModified {
		t.Errorf("the first page after a change on the second: %d, want 304", resp.StatusCode)
	}
	if err := st.Update(context.Background(), store.Actor{Name: "test"}, func(tx store.Tx) error {
		return putState(context.Background(), tx, "flag-02", rollout.Aborted)
	}); err != nil {
		t.Fatal(err)
	}
	resp, o := overviewPage(t, base, url.Values{"limit": {"5"}}, tag)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("ETag") == tag || len(o.Flags) != 5 || o.Flags[2].State != rollout.Aborted {
		t.Errorf("the first page after flag-02 aborted: %d %q %+v", resp.StatusCode, resp.Header.Get("ETag"), o.Flags)
	}
}

// TestOverviewBadParameters: each bad parameter is a 400 that names it,
// in the admin list's words.
func TestOverviewBadParameters(t *testing.T) {
	base := start(t, "/")
	for i := range 3 {
		if put, body := send(t, http.MethodPut, fmt.Sprintf("%s/api/v1/flags/f%d", base, i), testAdmin,
			`{"variants":{"off":false,"on":true},"control":"off","treatment":"on","enabled":true}`, ""); put.StatusCode != http.StatusCreated {
			t.Fatalf("put flag: %d %s", put.StatusCode, body)
		}
	}
	_, paused := overviewPage(t, base, url.Values{"limit": {"1"}, "state": {"pending"}}, "")
	_, found := overviewPage(t, base, url.Values{"limit": {"1"}, "find": {"f"}}, "")
	if paused.Continue == "" || found.Continue == "" {
		t.Fatalf("no continue tokens: %q %q", paused.Continue, found.Continue)
	}
	for _, tc := range []struct{ query, field, msg string }{
		{"limit=0", "limit", "from 1 to 1000"},
		{"limit=1001", "limit", "from 1 to 1000"},
		{"limit=ten", "limit", `limit=\"ten\"`},
		{"state=done", "state", `\"done\" is not a state; want one or more of pending, progressing, paused, promoted, rolled_back, aborted`},
		{"continue=%21%21", "continue", "not a token this controller issued"},
		{"continue=", "continue", "not a token"},
		{"continue=" + paused.Continue + "&state=paused", "continue", `the token is for state=\"pending\", not \"paused\"`},
		{"continue=" + found.Continue + "&find=g", "continue", `the token is for find=\"f\", not \"g\"`},
	} {
		resp, body := get(t, base+"/api/v1/console/overview?"+tc.query, testAdmin, "")
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, `"field":"`+tc.field+`"`) || !strings.Contains(body, tc.msg) {
			t.Errorf("%s: %d %s; want 400 naming %s with %s", tc.query, resp.StatusCode, body, tc.field, tc.msg)
		}
	}
}

// TestOverviewPagesWhileFlagsChange pages through the overview two flags
// at a time while a writer changes the rollouts of flags that stay and
// deletes and creates flags between them: every flag that lives
// throughout is listed exactly once, in key order.
func TestOverviewPagesWhileFlagsChange(t *testing.T) {
	base, st := startCounting(t)
	var stay []string
	var flags []flag.Flag
	for i := range 40 {
		key := fmt.Sprintf("r%02d-stay", i)
		stay = append(stay, key)
		flags = append(flags, overviewFlag(key, ""), overviewFlag(fmt.Sprintf("r%02d-churn", i), ""))
	}
	putFlags(t, st, flags, nil)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wrote := make(chan struct{})
	stopped := make(chan error, 1)
	go func() {
		for w := 0; ; w++ {
			if ctx.Err() != nil {
				stopped <- nil
				return
			}
			// A flag that stays changes state; one that churns is deleted
			// with its rollout, or created again.
			key, churn := stay[w%len(stay)], fmt.Sprintf("r%02d-churn", (w*7)%len(stay))
			err := st.Update(ctx, store.Actor{Name: "test"}, func(tx store.Tx) error {
				if err := putState(ctx, tx, key, rollout.Phases[w%len(rollout.Phases)]); err != nil {
					return err
				}
				if _, err := tx.DeleteFlag(ctx, churn); err == nil {
					if err := tx.DeleteRollout(ctx, churn); !errors.Is(err, store.ErrNotFound) {
						return err
					}
					return nil
				}
				if _, err := tx.PutFlag(ctx, overviewFlag(churn, "")); err != nil {
					return err
				}
				return putState(ctx, tx, churn, rollout.Progressing)
			})
			if err != nil && ctx.Err() == nil {
				stopped <- err
				return
			}
			select {
			case wrote <- struct{}{}:
			default:
			}
		}
	}()

	seen := map[string]int{}
	q := url.Values{"limit": {"2"}}
	last := ""
	for {
		_, o := overviewPage(t, base, q, "")
		if len(o.Flags) > 2 {
			t.Errorf("a page of %d flags with limit 2", len(o.Flags))
		}
		for _, r := range o.Flags {
			if r.Key <= last {
				t.Errorf("%s listed after %s", r.Key, last)
			}
			seen[r.Key]++
			last = r.Key
		}
		if o.Continue == "" {
			break
		}
		q.Set("continue", o.Continue)
		for range 2 {
			select {
			case <-wrote:
			case err := <-stopped:
				t.Fatalf("the writer stopped: %v", err)
			}
		}
	}
	cancel()
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	for _, k := range stay {
		if seen[k] != 1 {
			t.Errorf("%s listed %d times, want once", k, seen[k])
		}
	}
	if whole, _, _ := st.reset(); whole != 0 {
		t.Errorf("%d reads of every flag or rollout while paging", whole)
	}
}
