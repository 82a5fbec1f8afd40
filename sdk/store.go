package sdk

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/vigil-dev/vigil/sdk/flag"
)

// state is what evaluation reads: an immutable snapshot and, per flag, its
// compiled form with what pinning and the cohort metrics need. A new state
// replaces the old one atomically.
type state struct {
	snap *flag.Snapshot
	meta map[string]*flagMeta
}

// flagMeta holds per-flag values that evaluation would otherwise compute on
// every call.
type flagMeta struct {
	// flag is the snapshot's compiled flag, so that one map lookup finds
	// both it and the rest of flagMeta.
	flag *flag.Compiled
	key  string
	// pinName is the baggage member that pins this flag.
	pinName string
	salt    string
	// values are the decoded variant values, for serving a pinned variant.
	values map[string]any
	// answers are the answers a tracked flag can give, by variant and then
	// reason (see reasonIndex), so that a scope records a pointer and the
	// end of a request finds the metric options without a lookup. A slice,
	// because flags have a few variants and comparing a few short strings
	// costs less than hashing one. Nil for untracked flags.
	answers []variantAnswers
}

// variantAnswers are a variant's answers, by reason, and for the split by
// unit bucket.
type variantAnswers struct {
	variant  string
	byReason [numReasons]*answer
	// split are the answers of units the split placed, by unit bucket;
	// byReason holds none for the split.
	split [flag.UnitBuckets]*answer
}

// answer is one variant of a tracked flag with the reason its cohort
// carries, the unit bucket its cohort metrics carry ("" for none), and the
// metric options of that cohort's requests without error (nil when not
// prepared).
type answer struct {
	meta    *flagMeta
	variant string
	reason  flag.Reason
	bucket  string
	ok      *cohortOpts
}

// The reasons a cohort can carry, as indexes of flagMeta.answers.
const numReasons = 5

func reasonIndex(r flag.Reason) int {
	switch r {
	case flag.ReasonSplit:
		return 0
	case flag.ReasonTargetingMatch:
		return 1
	case flag.ReasonDefault:
		return 2
	case flag.ReasonDisabled:
		return 3
	case flag.ReasonError:
		return 4
	}
	return -1
}

var cohortReasons = [numReasons]flag.Reason{flag.ReasonSplit, flag.ReasonTargetingMatch, flag.ReasonDefault, flag.ReasonDisabled, flag.ReasonError}

// newFlagMeta prepares the metadata of f, whose compiled form is c.
func newFlagMeta(f *flag.Flag, c *flag.Compiled, cc *cohortCache) *flagMeta {
	m := &flagMeta{flag: c, key: f.Key, pinName: pinPrefix + f.Key, salt: f.Salt, values: make(map[string]any, len(f.Variants))}
	if m.salt == "" {
		m.salt = f.Key
	}
	for name, raw := range f.Variants {
		var v any
		// The snapshot accepted the flag, so its variants are valid JSON.
		_ = json.Unmarshal(raw, &v)
		m.values[name] = v
	}
	if f.Tracked && cc != nil {
		m.answers = make([]variantAnswers, 0, len(f.Variants))
		for name := range f.Variants {
			va := variantAnswers{variant: name}
			for i, r := range cohortReasons {
				if r == flag.ReasonSplit {
					continue
				}
				va.byReason[i] = &answer{meta: m, variant: name, reason: r, ok: cc.get(cohortKey{key: f.Key, variant: name, reason: r})}
			}
			for b, label := range unitBucketLabels {
				k := cohortKey{key: f.Key, variant: name, reason: flag.ReasonSplit, bucket: label}
				va.split[b] = &answer{meta: m, variant: name, reason: flag.ReasonSplit, bucket: label, ok: cc.get(k)}
			}
			m.answers = append(m.answers, va)
		}
	}
	return m
}

// answer returns the prepared answer of variant and reason, in unit bucket
// bucket when it is not negative, or a new one without metric options when
// it was not prepared. Only the split places units at random, so only its
// cohorts carry a bucket, for the judge to measure how bad events cluster
// by unit (docs/sdk.md).
func (m *flagMeta) answer(variant string, reason flag.Reason, bucket int) *answer {
	if i := reasonIndex(reason); i >= 0 {
		for j := range m.answers {
			if va := &m.answers[j]; va.variant == variant {
				if reason == flag.ReasonSplit {
					return va.split[bucket]
				}
				return va.byReason[i]
			}
		}
	}
	a := &answer{meta: m, variant: variant, reason: reason}
	if reason == flag.ReasonSplit {
		a.bucket = unitBucketLabels[bucket]
	}
	return a
}

// store applies deliveries to the current state. Writers serialize on mu;
// readers only load cur.
type store struct {
	cur atomic.Pointer[state]
	// cohorts, when set, prepares the metric options of tracked flags.
	cohorts *cohortCache

	mu sync.Mutex
	// versions is the last applied version of every key, deletes included
	// (tombstones), since the last full snapshot.
	versions map[string]int64
	// floor is the revision of the last full snapshot: a key absent from it
	// was deleted at or before floor, so older updates for it are stale.
	floor int64
	// changed, when set, is called with every new snapshot, under mu (which
	// only writers take).
	changed func(*flag.Snapshot)
	// updated is closed, and replaced, whenever a new snapshot is
	// installed: a broadcast to every watcher at once.
	updated atomic.Pointer[chan struct{}]
}

func newStore() *store {
	s := &store{versions: map[string]int64{}}
	ch := make(chan struct{})
	s.updated.Store(&ch)
	return s
}

// next returns a channel that is closed when the next snapshot is
// installed.
func (s *store) next() <-chan struct{} { return *s.updated.Load() }

// load returns the current state, nil before any data arrived.
func (s *store) load() *state { return s.cur.Load() }

func (s *store) install(st *state) {
	s.cur.Store(st)
	ch := make(chan struct{})
	close(*s.updated.Swap(&ch))
	if s.changed != nil {
		s.changed(st.snap)
	}
}

// replace installs a full snapshot, even one with a lower revision than
// held: the controller's snapshot is authoritative (docs/sdk-protocol.md).
// A flag that fails validation keeps the definition held before, if any, so
// that one bad flag does not discard the whole update; every such flag is
// reported in the returned error.
func (s *store) replace(revision int64, flags []flag.Flag) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	snap, err := flag.NewSnapshot(revision, flags)
	var bad error
	if err != nil {
		snap, bad = s.salvage(revision, flags)
	}
	st := &state{snap: snap, meta: make(map[string]*flagMeta, snap.Len())}
	s.versions = make(map[string]int64, snap.Len())
	for _, f := range snap.Flags() {
		st.meta[f.Key] = newFlagMeta(&f, snap.Lookup(f.Key), s.cohorts)
		s.versions[f.Key] = f.Version
	}
	s.floor = revision
	s.install(st)
	return bad
}

// salvage builds a snapshot flag by flag, keeping the previous definition of
// any flag that does not validate and the first of flags sharing a key.
func (s *store) salvage(revision int64, flags []flag.Flag) (*flag.Snapshot, error) {
	prev := s.load()
	snap, _ := flag.NewSnapshot(revision, nil)
	var errs []error
	seen := make(map[string]bool, len(flags))
	for i, f := range flags {
		if seen[f.Key] {
			errs = append(errs, &flag.FieldError{Flag: f.Key, Field: "key", Message: fmt.Sprintf("duplicate key (flag #%d); the first definition is kept", i)})
			continue
		}
		seen[f.Key] = true
		n, err := snap.Put(f)
		if err == nil {
			snap = n
			continue
		}
		errs = append(errs, err)
		if prev == nil {
			continue
		}
		if old, ok := prev.snap.Flag(f.Key); ok {
			if n, err := snap.Put(old); err == nil {
				snap = n
			}
		}
	}
	return snap, errors.Join(errs...)
}

// known is the version the store holds for key, or the floor.
func (s *store) known(key string) int64 {
	if v, ok := s.versions[key]; ok {
		return v
	}
	return s.floor
}

// change is one put or delete from the stream.
type change struct {
	key     string
	version int64
	// put is the new definition; nil for a delete.
	put *flag.Flag
}

// apply applies a batch of changes, in order, as one new snapshot: with the
// controller moving thousands of flags at once, a copy of the snapshot and
// of the metadata per change would cost O(flags) each, O(flags²) in all.
// Each change is judged as if applied alone: one no newer than what the
// store holds for its key (counting the changes before it in the batch) is
// dropped, and a put that fails validation keeps the definition held before
// it and is reported in rejected, one error per such put. applied counts the
// changes that took effect; readers see the old snapshot or the one with all
// of them, and nothing is installed when none did.
func (s *store) apply(changes []change) (applied int, rejected []error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.load()
	if cur == nil {
		return 0, nil
	}
	// last is the index of the change that decides each key's outcome, so
	// that the snapshot update sees one change per key. versions holds the
	// batch's versions until it is installed.
	last := make(map[string]int, len(changes))
	versions := make(map[string]int64, len(changes))
	known := func(key string) int64 {
		if v, ok := versions[key]; ok {
			return v
		}
		return s.known(key)
	}
	var revision int64
	for i, c := range changes {
		if c.version <= known(c.key) {
			continue
		}
		if c.put != nil {
			// Validated here, not only in Update, so that a bad put
			// leaves in place what the batch put before it.
			if err := flag.ValidateFlag(c.put); err != nil {
				rejected = append(rejected, fmt.Errorf("update of flag %s to version %d rejected: %w", c.key, c.version, err))
				continue
			}
		}
		versions[c.key] = c.version
		last[c.key] = i
		revision = max(revision, c.version)
		applied++
	}
	if applied == 0 {
		return 0, rejected
	}
	var puts []flag.Flag
	var dels []string
	for i, c := range changes {
		if j, ok := last[c.key]; !ok || j != i {
			continue
		}
		if c.put != nil {
			puts = append(puts, *c.put)
		} else {
			dels = append(dels, c.key)
		}
	}
	snap, err := cur.snap.Update(revision, puts, dels)
	if err != nil {
		// Unreachable for puts that passed ValidateFlag, which checks all
		// that compiling does; should it happen, nothing changes.
		return 0, append(rejected, fmt.Errorf("updates to version %d rejected: %w", revision, err))
	}
	meta := make(map[string]*flagMeta, len(cur.meta)+len(puts))
	for k, m := range cur.meta {
		meta[k] = m
	}
	for i := range puts {
		f := &puts[i]
		meta[f.Key] = newFlagMeta(f, snap.Lookup(f.Key), s.cohorts)
	}
	for _, k := range dels {
		delete(meta, k)
	}
	for k, v := range versions {
		s.versions[k] = v
	}
	s.install(&state{snap: snap, meta: meta})
	return applied, rejected
}
