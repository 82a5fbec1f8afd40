// Package store keeps the controller's state: flags with their versions, the
// audit log, API tokens, rollout records and leases. One interface, Store, has
// two implementations over database/sql: SQLite for a single controller and
// PostgreSQL for several replicas that share one database.
//
// Every change runs in one transaction through Store.Update. Versions come
// from one store-wide sequence: each put or delete of a flag takes the next
// number, and the store's revision is the highest number issued. Writers are
// serialized, so versions become visible in the order they were issued and a
// reader that has seen revision R has seen every change up to R.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/vigil-dev/vigil/sdk/flag"
)

// Errors returned by stores; compare with errors.Is.
var (
	// ErrNotFound: the flag, token, rollout or lease does not exist.
	ErrNotFound = errors.New("not found")
	// ErrExists: a token with that name already exists.
	ErrExists = errors.New("already exists")
	// ErrConflict is for callers of Update whose precondition, such as an
	// expected version, no longer holds. The store never returns it itself.
	ErrConflict = errors.New("conflict")
)

// Store is the controller's persistent state.
type Store interface {
	// Snapshot returns every live flag and the revision they are current at,
	// read consistently.
	Snapshot(ctx context.Context) (Snapshot, error)
	// Flag returns one live flag or ErrNotFound.
	Flag(ctx context.Context, key string) (flag.Flag, error)
	// FlagsPage lists at most limit (at least 1) live flags whose keys
	// sort after after ("" for the first page), by key: one page of a
	// scan keyed on the key, as RolloutsPage is, for readers that must
	// not read every flag at once.
	FlagsPage(ctx context.Context, after string, limit int) ([]flag.Flag, error)
	// FlagsOf returns the live flags of those keys that have one, by key:
	// the rollout loop reads the flags of the rollouts due, a query a
	// batch rather than a query a flag.
	FlagsOf(ctx context.Context, keys []string) ([]flag.Flag, error)
	// Changes returns the latest state of every flag changed after revision
	// since (deletes as tombstones), ordered by version, and the revision the
	// result brings a reader to.
	Changes(ctx context.Context, since int64) (revision int64, changes []Change, err error)
	// Update runs fn in one transaction on behalf of actor and commits when fn
	// returns nil. Writers are serialized. Watchers are told of the new
	// revision after the commit.
	Update(ctx context.Context, actor Actor, fn func(tx Tx) error) error
	// Audit lists audit entries, newest first.
	Audit(ctx context.Context, q AuditQuery) ([]AuditEntry, error)
	// TokenByHash returns the token whose hash is hash, or ErrNotFound.
	TokenByHash(ctx context.Context, hash string) (Token, error)
	// Tokens lists every token, by name.
	Tokens(ctx context.Context) ([]Token, error)
	// Rollout returns the rollout record of a flag, or ErrNotFound.
	Rollout(ctx context.Context, key string) (Rollout, error)
	// Rollouts lists every rollout record, by key.
	Rollouts(ctx context.Context) ([]Rollout, error)
	// RolloutsPage lists at most limit (at least 1) rollout records whose
	// keys sort after after ("" for the first page), by key: one page of a
	// scan keyed on the key, not on an offset. A reader that asks for each
	// next page after the last key it got sees every record that exists
	// throughout its scan exactly once, and none twice, whatever is
	// created, changed or deleted meanwhile. The records carry no Judge:
	// pages are for lists, which do not show it.
	RolloutsPage(ctx context.Context, after string, limit int) ([]Rollout, error)
	// RolloutsOf returns the rollout records of those keys that have one,
	// by key: the loop reads only the rollouts that are due.
	RolloutsOf(ctx context.Context, keys []string) ([]Rollout, error)
	// RolloutDueTimes returns the DueAt of every rollout that has one, by
	// key, without reading their states.
	RolloutDueTimes(ctx context.Context) (map[string]time.Time, error)
	// RolloutHistory returns the history entries of the rollouts of keys,
	// oldest first, or of every rollout when keys is nil. A rollout
	// without entries is absent from the map.
	RolloutHistory(ctx context.Context, keys []string) (map[string][]json.RawMessage, error)
	// RolloutLooks returns the looks stored for key's rollout at or after
	// since, oldest first.
	RolloutLooks(ctx context.Context, key string, since time.Time) ([]json.RawMessage, error)
	// AcquireLease takes or renews the lease name for holder until ttl from
	// now and reports whether holder has it. A lease held by another holder
	// can be taken only after it expires.
	AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error)
	// ReleaseLease gives up the lease if holder has it.
	ReleaseLease(ctx context.Context, name, holder string) error
	// Lease returns who holds the lease name and until when, or
	// ErrNotFound when no one does (never taken, released or expired).
	Lease(ctx context.Context, name string) (Lease, error)
	// Watch returns a channel that receives a revision, or 0 when it is not
	// known, whenever the flags or the tokens may have changed, through this
	// process or (on PostgreSQL) any other. Values are hints that coalesce: read Changes
	// to learn what changed. The channel closes when ctx is done.
	Watch(ctx context.Context) <-chan int64
	// WatchRollouts returns a channel that receives the rollout records
	// that changed (put or deleted), each with the revision of its change,
	// through this process or (on PostgreSQL) any other. Batches coalesce
	// while the receiver is busy, the changes of one key into one that
	// carries the latest revision (0, unknown, when any of them is); a nil
	// batch means that changes may have been missed (the PostgreSQL
	// listener reconnected) and every record should be read again. The
	// channel closes when ctx is done.
	WatchRollouts(ctx context.Context) <-chan []RolloutChange
	// Ping checks that the database answers and, on SQLite, that it would
	// take a write now: another process may hold the file's write lock
	// while reads go on.
	Ping(ctx context.Context) error
	// Close releases the store's connections.
	Close() error
}

// Tx is a store transaction inside Update. Its methods must not be used after
// the function passed to Update returns.
type Tx interface {
	// Revision is the highest version issued, counting this transaction's
	// changes so far.
	Revision() int64
	// Flag returns one live flag or ErrNotFound.
	Flag(ctx context.Context, key string) (flag.Flag, error)
	// Flags returns every live flag, by key.
	Flags(ctx context.Context) ([]flag.Flag, error)
	// PutFlag creates or replaces f.Key with the next version, ignoring
	// f.Version, records an audit entry (action "create" or "update") for the
	// transaction's actor and returns the stored flag.
	PutFlag(ctx context.Context, f flag.Flag) (flag.Flag, error)
	// DeleteFlag deletes a live flag with the next version, leaving a
	// tombstone, records an audit entry (action "delete") and returns the
	// version of the delete. It returns ErrNotFound for no live flag.
	DeleteFlag(ctx context.Context, key string) (int64, error)
	// AppendAudit records an extra audit entry. Time, Actor and Message are
	// filled from the transaction when empty.
	AppendAudit(ctx context.Context, e AuditEntry) error
	// Rollout returns the rollout record of a flag, or ErrNotFound.
	Rollout(ctx context.Context, key string) (Rollout, error)
	// Rollouts lists every rollout record, by key.
	Rollouts(ctx context.Context) ([]Rollout, error)
	// PutRollout creates or replaces a rollout record with the next
	// rollout revision, ignoring r.Revision, and returns that revision;
	// UpdatedAt is set to the transaction's time.
	PutRollout(ctx context.Context, r Rollout) (int64, error)
	// AppendRolloutHistory appends entries (each valid JSON) to the
	// history of key's rollout. History is append-only: it is kept apart
	// from the record so that a record stays small however long its
	// history grows.
	AppendRolloutHistory(ctx context.Context, key string, entries ...json.RawMessage) error
	// AppendRolloutLook appends a look (valid JSON) taken at at to key's
	// rollout and drops its oldest looks beyond the newest keep.
	AppendRolloutLook(ctx context.Context, key string, at time.Time, look json.RawMessage, keep int) error
	// DeleteRollout removes a rollout record, its history and its looks,
	// or returns ErrNotFound. The delete takes the next rollout revision,
	// which its watchers are told of.
	DeleteRollout(ctx context.Context, key string) error
	// CreateToken stores a new token, or returns ErrExists.
	CreateToken(ctx context.Context, t Token) error
	// DeleteToken removes a token, or returns ErrNotFound.
	DeleteToken(ctx context.Context, name string) error
	// HoldsLease reports whether holder has the lease name past the
	// transaction's time, and keeps it from changing hands until the
	// transaction ends: a leader fences its writes with it.
	HoldsLease(ctx context.Context, name, holder string) (bool, error)
}

// Actor is who makes a change and why; it goes into the audit log.
type Actor struct {
	Name    string // the token's name, or a component such as "rollout"
	Message string // optional: why
}

// Snapshot is every live flag at one revision.
type Snapshot struct {
	Revision int64
	Flags    []flag.Flag // by key, each with its Version
}

// Change is the latest state of one flag changed after some revision.
type Change struct {
	Key     string
	Version int64
	Deleted bool
	Flag    flag.Flag // the flag when not Deleted
}

// AuditEntry is one record of the append-only audit log.
type AuditEntry struct {
	ID      int64           `json:"id"`
	Time    time.Time       `json:"time"`
	Actor   string          `json:"actor"`
	Action  string          `json:"action"`
	Flag    string          `json:"flag,omitempty"`
	Version int64           `json:"version,omitempty"`
	Before  json.RawMessage `json:"before,omitempty"`
	After   json.RawMessage `json:"after,omitempty"`
	Message string          `json:"message,omitempty"`
}

// AuditQuery selects audit entries.
type AuditQuery struct {
	Flag     string // only entries about this flag, when set
	BeforeID int64  // only entries older than this id, when above 0 (paging)
	Limit    int    // at most this many; 0 means 100
}

// Role is what a token may do.
type Role string

// The token roles.
const (
	RoleAdmin  Role = "admin"  // everything
	RoleReader Role = "reader" // read the admin API and the SDK endpoints
	RoleSDK    Role = "sdk"    // only the SDK endpoints
	// RoleIngest may only push metrics (OTLP) into the embedded metric
	// store. Those samples decide rollouts, so pushing is a permission of
	// its own rather than something every service's sdk token can do.
	RoleIngest Role = "ingest"
)

// Roles lists every role, for messages.
const Roles = "admin, reader, sdk or ingest"

// Valid reports whether r is one of the roles.
func (r Role) Valid() bool {
	return r == RoleAdmin || r == RoleReader || r == RoleSDK || r == RoleIngest
}

// Token is an API token. Only a hash of the secret is stored.
type Token struct {
	Name      string    `json:"name"`
	Role      Role      `json:"role"`
	Hash      string    `json:"-"` // hex SHA-256 of the secret
	CreatedAt time.Time `json:"createdAt"`
	CreatedBy string    `json:"createdBy,omitempty"`
}

// Lease is who holds a lease, and until when.
type Lease struct {
	Name    string
	Holder  string
	Expires time.Time
}

// Rollout is the stored state of one flag's rollout. The store treats State
// as opaque JSON; the rollout controller defines it. Its history is stored
// apart (Tx.AppendRolloutHistory).
type Rollout struct {
	Key   string          `json:"key"`
	State json.RawMessage `json:"state"`
	// Judge is the judge's state, which the store keeps as it is given,
	// apart from State: it is most of a judged rollout's bytes and changes
	// at every look, and what reads State alone (lists, the API) need not
	// read through it. Empty for a rollout not judged yet, and for a
	// record stored before the store kept it apart, whose State holds it.
	Judge     json.RawMessage `json:"judge,omitempty"`
	UpdatedAt time.Time       `json:"updatedAt"`
	// DueAt is when the rollout loop should next look at the rollout;
	// zero when it should not (the rollout is not progressing). It is
	// indexed, so that the loop finds what is due without reading every
	// state.
	DueAt time.Time `json:"dueAt,omitzero"`
	// Revision is the rollout revision of the put that stored the record
	// (0 for a record stored before the store kept revisions). Rollout
	// revisions come from a store-wide sequence of their own, apart from
	// the flags' versions: each put or delete of a rollout record takes
	// the next number, so a revision is never issued twice, not even to
	// a record put again after a delete. A reader that holds the state of
	// revision R and is told of a change at revision R (RolloutChange)
	// knows that the record is still the one it holds.
	Revision int64 `json:"revision,omitzero"`
}

// RolloutChange tells of a put or a delete of a rollout record.
type RolloutChange struct {
	Key string
	// Revision is the rollout revision the change took (Rollout.Revision),
	// or 0 when it is not known: a notice from a release that did not
	// send revisions. A watcher reads the record again for it.
	Revision int64
}
