package server

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/vigil-dev/vigil/controller/store"
)

// tokenCache holds the stored tokens in memory, by hash, so that checking a
// request's token needs no database: SDK delivery goes on through a store
// outage. The hub reloads it whenever the store's change feed says
// something changed (on every replica, through LISTEN/NOTIFY on
// PostgreSQL) and at every resync, and tells it of this replica's own
// changes at once.
type tokenCache struct {
	store store.Store

	mu     sync.RWMutex
	byHash map[string]store.Token
	// gen grows with every change, so that a lookup that went to the store
	// does not put back a token revoked meanwhile, nor a reload drop one
	// added after it read.
	gen uint64
}

func newTokenCache(st store.Store) *tokenCache {
	return &tokenCache{store: st, byHash: map[string]store.Token{}}
}

// lookup returns the token whose hash is hash. A token not in memory may
// have been minted on another replica since the last reload, so it is
// looked up in the store; ErrNotFound means there is no such token.
func (tc *tokenCache) lookup(ctx context.Context, hash string) (store.Token, error) {
	tc.mu.RLock()
	tok, ok := tc.byHash[hash]
	gen := tc.gen
	tc.mu.RUnlock()
	if ok {
		return tok, nil
	}
	tok, err := tc.store.TokenByHash(ctx, hash)
	if err != nil {
		return store.Token{}, err
	}
	tc.mu.Lock()
	if tc.gen == gen {
		tc.byHash[hash] = tok
		tc.gen++
	}
	tc.mu.Unlock()
	return tok, nil
}

// reload replaces the tokens with the store's and returns the hashes of
// those no longer valid as they were: deleted, or given another role. A
// read that this replica's own changes overtook (a token minted, revoked or
// found meanwhile) is read again, lest it drop a token newer than itself.
func (tc *tokenCache) reload(ctx context.Context) ([]string, error) {
	for range 5 {
		tc.mu.RLock()
		start := tc.gen
		tc.mu.RUnlock()
		ts, err := tc.store.Tokens(ctx)
		if err != nil {
			return nil, fmt.Errorf("reload tokens: %w", err)
		}
		next := make(map[string]store.Token, len(ts))
		for _, t := range ts {
			next[t.Hash] = t
		}
		tc.mu.Lock()
		if tc.gen != start {
			tc.mu.Unlock()
			continue
		}
		var gone []string
		for hash, old := range tc.byHash {
			if t, ok := next[hash]; !ok || t.Role != old.Role || t.Name != old.Name {
				gone = append(gone, hash)
			}
		}
		tc.byHash = next
		tc.gen++
		tc.mu.Unlock()
		return gone, nil
	}
	return nil, errors.New("reload tokens: they kept changing while being read; the next resync reads them again")
}

// put adds a token this replica has just stored.
func (tc *tokenCache) put(t store.Token) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	tc.byHash[t.Hash] = t
	tc.gen++
}

// remove forgets the token named name, which this replica has just
// deleted, and returns its hash ("" if it was not held).
func (tc *tokenCache) remove(name string) string {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	tc.gen++
	for hash, t := range tc.byHash {
		if t.Name == name {
			delete(tc.byHash, hash)
			return hash
		}
	}
	return ""
}
