package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-dev/vigil/sdk/flag"
)

// dialect holds what differs between the SQL databases.
type dialect struct {
	name string
	// lockRevision reads the revision and the rollout revision and, where
	// the database needs it, locks their row so that writers run one at a
	// time.
	lockRevision string
	// readTx are the options of consistent multi-statement reads.
	readTx *sql.TxOptions
	// notify, when set, tells other processes of a new revision inside the
	// writing transaction.
	notify func(ctx context.Context, tx *sql.Tx, revision int64) error
	// notifyRollouts, when set, tells other processes of changed rollout
	// records inside the writing transaction.
	notifyRollouts func(ctx context.Context, tx *sql.Tx, changes []RolloutChange) error
	// isUniqueViolation reports a duplicate-key error.
	isUniqueViolation func(error) bool
	// holdsLease selects a lease still held by a holder and, where the
	// database needs it, locks its row until the transaction ends, so that
	// the lease cannot change hands before the writes that rely on it
	// commit.
	holdsLease string
	// pingWrite makes Ping begin (and roll back) a write transaction on
	// the writer rather than ping a reader: on SQLite another process may
	// hold the file's write lock while reads go on.
	pingWrite bool
	// prepareInTx makes a write transaction prepare each statement once
	// and run it as often as it needs (stmtTx). SQLite's driver prepares
	// every statement it runs anew, which costs more than running it;
	// pgx caches prepared statements on each connection itself.
	prepareInTx bool
}

// sqlStore implements Store over database/sql. The two databases share
// every statement but their migrations and the few things in dialect.
type sqlStore struct {
	d dialect
	// w takes writes, r reads. They are the same pool on PostgreSQL; SQLite
	// has a one-connection writer so that its write lock is taken up front.
	w, r *sql.DB
	// wmu serializes this process's writers, so that they queue in Go
	// rather than in the database's lock timeout. It is a one-slot
	// channel, not a mutex, so that a writer whose context ends (a client
	// gone, a deadline) stops queueing.
	wmu   chan struct{}
	notes *notifier
	// rollNotes tells of changed rollout records.
	rollNotes *keyNotifier
	now       func() time.Time
	// stop ends background work (the PostgreSQL listener).
	stop func()
	// dirLock is a SQLite store's lock on its directory (lockDir), nil on
	// PostgreSQL.
	dirLock *os.File
}

func (s *sqlStore) Snapshot(ctx context.Context) (Snapshot, error) {
	var snap Snapshot
	err := s.read(ctx, func(tx *sql.Tx) error {
		if err := tx.QueryRowContext(ctx, `SELECT revision FROM vigil_meta WHERE id = 1`).Scan(&snap.Revision); err != nil {
			return fmt.Errorf("read revision: %w", err)
		}
		flags, err := queryFlags(ctx, tx)
		snap.Flags = flags
		return err
	})
	if err != nil {
		return Snapshot{}, fmt.Errorf("snapshot: %w", err)
	}
	return snap, nil
}

func (s *sqlStore) Flag(ctx context.Context, key string) (flag.Flag, error) {
	return queryFlag(ctx, s.r, key)
}

func (s *sqlStore) Changes(ctx context.Context, since int64) (int64, []Change, error) {
	var rev int64
	var changes []Change
	err := s.read(ctx, func(tx *sql.Tx) error {
		if err := tx.QueryRowContext(ctx, `SELECT revision FROM vigil_meta WHERE id = 1`).Scan(&rev); err != nil {
			return fmt.Errorf("read revision: %w", err)
		}
		rows, err := tx.QueryContext(ctx, `SELECT key, version, deleted, data FROM vigil_flags WHERE version > $1 ORDER BY version`, since)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var c Change
			var data string
			if err := rows.Scan(&c.Key, &c.Version, &c.Deleted, &data); err != nil {
				return err
			}
			if !c.Deleted {
				if c.Flag, err = decodeFlag(c.Key, c.Version, data); err != nil {
					return err
				}
			}
			changes = append(changes, c)
		}
		return rows.Err()
	})
	if err != nil {
		return 0, nil, fmt.Errorf("changes since %d: %w", since, err)
	}
	return rev, changes, nil
}

func (s *sqlStore) read(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.r.BeginTx(ctx, s.d.readTx)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // a read-only transaction has nothing to undo
	return fn(tx)
}

func (s *sqlStore) Update(ctx context.Context, actor Actor, fn func(tx Tx) error) error {
	select {
	case s.wmu <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("wait for the other writers: %w", ctx.Err())
	}
	defer func() { <-s.wmu }()
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit this is a no-op
	t := &sqlTx{tx: &stmtTx{tx: tx, prepare: s.d.prepareInTx}, actor: actor, now: s.now().UTC(), d: &s.d}
	if err := tx.QueryRowContext(ctx, s.d.lockRevision).Scan(&t.rev, &t.rollRev); err != nil {
		return fmt.Errorf("lock revision: %w", err)
	}
	start, rollStart := t.rev, t.rollRev
	if err := fn(t); err != nil {
		return err
	}
	changed := t.rev != start || t.tokensChanged
	if t.rev != start || t.rollRev != rollStart {
		if _, err := tx.ExecContext(ctx, `UPDATE vigil_meta SET revision = $1, rollout_revision = $2 WHERE id = 1`, t.rev, t.rollRev); err != nil {
			return fmt.Errorf("write revision: %w", err)
		}
	}
	if changed {
		if s.d.notify != nil {
			if err := s.d.notify(ctx, tx, t.rev); err != nil {
				return fmt.Errorf("notify: %w", err)
			}
		}
	}
	rollouts := make([]RolloutChange, 0, len(t.rollouts))
	for _, k := range slices.Sorted(maps.Keys(t.rollouts)) {
		rollouts = append(rollouts, RolloutChange{Key: k, Revision: t.rollouts[k]})
	}
	if len(rollouts) > 0 && s.d.notifyRollouts != nil {
		if err := s.d.notifyRollouts(ctx, tx, rollouts); err != nil {
			return fmt.Errorf("notify: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	if changed {
		s.notes.publish(t.rev)
	}
	if len(rollouts) > 0 {
		s.rollNotes.publish(rollouts)
	}
	return nil
}

func (s *sqlStore) Audit(ctx context.Context, q AuditQuery) ([]AuditEntry, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = 100
	}
	before := q.BeforeID
	if before <= 0 {
		before = 1<<63 - 1
	}
	rows, err := s.r.QueryContext(ctx, `SELECT id, at, actor, action, flag, version, before_json, after_json, message
		FROM vigil_audit WHERE ($1 = '' OR flag = $1) AND id < $2 ORDER BY id DESC LIMIT $3`, q.Flag, before, limit)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	defer rows.Close()
	out := []AuditEntry{}
	for rows.Next() {
		var e AuditEntry
		var at int64
		var before, after string
		if err := rows.Scan(&e.ID, &at, &e.Actor, &e.Action, &e.Flag, &e.Version, &before, &after, &e.Message); err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
		e.Time = time.UnixMicro(at).UTC()
		if before != "" {
			e.Before = json.RawMessage(before)
		}
		if after != "" {
			e.After = json.RawMessage(after)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	return out, nil
}

func (s *sqlStore) TokenByHash(ctx context.Context, hash string) (Token, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT name, role, hash, created_at, created_by FROM vigil_tokens WHERE hash = $1`, hash)
	if err != nil {
		return Token{}, fmt.Errorf("token: %w", err)
	}
	ts, err := scanTokens(rows)
	if err != nil {
		return Token{}, fmt.Errorf("token: %w", err)
	}
	if len(ts) == 0 {
		return Token{}, ErrNotFound
	}
	return ts[0], nil
}

func (s *sqlStore) Tokens(ctx context.Context) ([]Token, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT name, role, hash, created_at, created_by FROM vigil_tokens ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("tokens: %w", err)
	}
	ts, err := scanTokens(rows)
	if err != nil {
		return nil, fmt.Errorf("tokens: %w", err)
	}
	return ts, nil
}

func scanTokens(rows *sql.Rows) ([]Token, error) {
	defer rows.Close()
	out := []Token{}
	for rows.Next() {
		var t Token
		var at int64
		var role string
		if err := rows.Scan(&t.Name, &role, &t.Hash, &at, &t.CreatedBy); err != nil {
			return nil, err
		}
		t.Role = Role(role)
		t.CreatedAt = time.UnixMicro(at).UTC()
		out = append(out, t)
	}
	return out, rows.Err()
}

func (s *sqlStore) Rollout(ctx context.Context, key string) (Rollout, error) {
	return queryRollout(ctx, s.r, key)
}

func (s *sqlStore) Rollouts(ctx context.Context) ([]Rollout, error) {
	return queryRollouts(ctx, s.r)
}

func (s *sqlStore) FlagsPage(ctx context.Context, after string, limit int) ([]flag.Flag, error) {
	if limit < 1 {
		return nil, fmt.Errorf("flags after %q: limit %d is not at least 1", after, limit)
	}
	fs, err := scanFlags(s.r.QueryContext(ctx, `SELECT key, version, data FROM vigil_flags WHERE key > $1 AND NOT deleted ORDER BY key LIMIT $2`, after, limit))
	if err != nil {
		return nil, fmt.Errorf("flags after %q: %w", after, err)
	}
	return fs, nil
}

func (s *sqlStore) FlagsOf(ctx context.Context, keys []string) ([]flag.Flag, error) {
	out := []flag.Flag{}
	err := inBatches(keys, func(in string, args []any) error {
		fs, err := scanFlags(s.r.QueryContext(ctx, `SELECT key, version, data FROM vigil_flags WHERE key IN (`+in+`) AND NOT deleted`, args...))
		out = append(out, fs...)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("flags of %d keys: %w", len(keys), err)
	}
	slices.SortFunc(out, func(a, b flag.Flag) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}

func (s *sqlStore) RolloutsPage(ctx context.Context, after string, limit int) ([]Rollout, error) {
	if limit < 1 {
		return nil, fmt.Errorf("rollouts after %q: limit %d is not at least 1", after, limit)
	}
	// The judge's state, most of a judged rollout's bytes, is left
	// unread: pages are for lists, which do not show it.
	rows, err := s.r.QueryContext(ctx, `SELECT key, state, CAST(NULL AS TEXT), updated_at, due_at, revision FROM vigil_rollouts WHERE key > $1 ORDER BY key LIMIT $2`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("rollouts after %q: %w", after, err)
	}
	rs, err := scanRollouts(rows)
	if err != nil {
		return nil, fmt.Errorf("rollouts after %q: %w", after, err)
	}
	return rs, nil
}

func (s *sqlStore) RolloutsOf(ctx context.Context, keys []string) ([]Rollout, error) {
	out := []Rollout{}
	err := inBatches(keys, func(in string, args []any) error {
		rows, err := s.r.QueryContext(ctx, `SELECT key, state, judge, updated_at, due_at, revision FROM vigil_rollouts WHERE key IN (`+in+`)`, args...)
		if err != nil {
			return err
		}
		rs, err := scanRollouts(rows)
		out = append(out, rs...)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("rollouts of %d keys: %w", len(keys), err)
	}
	slices.SortFunc(out, func(a, b Rollout) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}

func (s *sqlStore) RolloutDueTimes(ctx context.Context) (map[string]time.Time, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT key, due_at FROM vigil_rollouts WHERE due_at > 0`)
	if err != nil {
		return nil, fmt.Errorf("rollout due times: %w", err)
	}
	defer rows.Close()
	out := map[string]time.Time{}
	for rows.Next() {
		var key string
		var due int64
		if err := rows.Scan(&key, &due); err != nil {
			return nil, fmt.Errorf("rollout due times: %w", err)
		}
		out[key] = time.UnixMicro(due).UTC()
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("rollout due times: %w", err)
	}
	return out, nil
}

func (s *sqlStore) RolloutHistory(ctx context.Context, keys []string) (map[string][]json.RawMessage, error) {
	out := map[string][]json.RawMessage{}
	scan := func(rows *sql.Rows) error {
		defer rows.Close()
		for rows.Next() {
			var key, data string
			if err := rows.Scan(&key, &data); err != nil {
				return err
			}
			out[key] = append(out[key], json.RawMessage(data))
		}
		return rows.Err()
	}
	const q = `SELECT key, data FROM vigil_rollout_history`
	var err error
	if keys == nil {
		var rows *sql.Rows
		if rows, err = s.r.QueryContext(ctx, q+` ORDER BY key, seq`); err == nil {
			err = scan(rows)
		}
	} else {
		err = inBatches(keys, func(in string, args []any) error {
			rows, err := s.r.QueryContext(ctx, q+` WHERE key IN (`+in+`) ORDER BY key, seq`, args...)
			if err != nil {
				return err
			}
			return scan(rows)
		})
	}
	if err != nil {
		return nil, fmt.Errorf("rollout history: %w", err)
	}
	return out, nil
}

// inBatchSize bounds the parameters of one IN list, well below what
// either database takes in one statement.
const inBatchSize = 500

// inBatches calls fn with the placeholders ("$1, $2, ...") and arguments
// of an IN list for each batch of keys.
func inBatches(keys []string, fn func(in string, args []any) error) error {
	for len(keys) > 0 {
		n := min(len(keys), inBatchSize)
		var b strings.Builder
		args := make([]any, n)
		for i, k := range keys[:n] {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString("$" + strconv.Itoa(i+1))
			args[i] = k
		}
		if err := fn(b.String(), args); err != nil {
			return err
		}
		keys = keys[n:]
	}
	return nil
}

func (s *sqlStore) RolloutLooks(ctx context.Context, key string, since time.Time) ([]json.RawMessage, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT data FROM vigil_rollout_looks WHERE key = $1 AND at >= $2 ORDER BY seq`, key, since.UnixMicro())
	if err != nil {
		return nil, fmt.Errorf("looks of rollout %s: %w", key, err)
	}
	defer rows.Close()
	out := []json.RawMessage{}
	for rows.Next() {
		var data string
		if err := rows.Scan(&data); err != nil {
			return nil, fmt.Errorf("looks of rollout %s: %w", key, err)
		}
		out = append(out, json.RawMessage(data))
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("looks of rollout %s: %w", key, err)
	}
	return out, nil
}

func (s *sqlStore) WatchRollouts(ctx context.Context) <-chan []RolloutChange {
	return s.rollNotes.watch(ctx)
}

func (s *sqlStore) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	now := s.now()
	res, err := s.w.ExecContext(ctx, `INSERT INTO vigil_leases (name, holder, expires_at) VALUES ($1, $2, $3)
		ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
		WHERE vigil_leases.holder = excluded.holder OR vigil_leases.expires_at < $4`,
		name, holder, now.Add(ttl).UnixMicro(), now.UnixMicro())
	if err != nil {
		return false, fmt.Errorf("acquire lease %s: %w", name, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("acquire lease %s: %w", name, err)
	}
	return n == 1, nil
}

func (s *sqlStore) ReleaseLease(ctx context.Context, name, holder string) error {
	if _, err := s.w.ExecContext(ctx, `DELETE FROM vigil_leases WHERE name = $1 AND holder = $2`, name, holder); err != nil {
		return fmt.Errorf("release lease %s: %w", name, err)
	}
	return nil
}

func (s *sqlStore) Lease(ctx context.Context, name string) (Lease, error) {
	l := Lease{Name: name}
	var expires int64
	err := s.r.QueryRowContext(ctx, `SELECT holder, expires_at FROM vigil_leases WHERE name = $1 AND expires_at > $2`,
		name, s.now().UnixMicro()).Scan(&l.Holder, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return Lease{}, fmt.Errorf("lease %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return Lease{}, fmt.Errorf("lease %s: %w", name, err)
	}
	l.Expires = time.UnixMicro(expires)
	return l, nil
}

func (s *sqlStore) Watch(ctx context.Context) <-chan int64 { return s.notes.watch(ctx) }

func (s *sqlStore) Ping(ctx context.Context) error {
	if !s.d.pingWrite {
		return s.r.PingContext(ctx)
	}
	// The writer's one connection is taken in turn with the writers, and
	// its transactions begin IMMEDIATE: beginning one takes the file's
	// write lock, or fails as a write would.
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin a write: %w", err)
	}
	return tx.Rollback()
}

func (s *sqlStore) Close() error {
	if s.stop != nil {
		s.stop()
	}
	err := s.w.Close()
	if s.r != s.w {
		err = errors.Join(err, s.r.Close())
	}
	if s.dirLock != nil {
		// Closing the file drops its flock.
		err = errors.Join(err, s.dirLock.Close())
	}
	return err
}

// queryer is what reads need from a *sql.DB or *sql.Tx.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func queryFlag(ctx context.Context, q queryer, key string) (flag.Flag, error) {
	rows, err := q.QueryContext(ctx, `SELECT version, data FROM vigil_flags WHERE key = $1 AND NOT deleted`, key)
	if err != nil {
		return flag.Flag{}, fmt.Errorf("flag %s: %w", key, err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return flag.Flag{}, fmt.Errorf("flag %s: %w", key, err)
		}
		return flag.Flag{}, ErrNotFound
	}
	var version int64
	var data string
	if err := rows.Scan(&version, &data); err != nil {
		return flag.Flag{}, fmt.Errorf("flag %s: %w", key, err)
	}
	return decodeFlag(key, version, data)
}

func queryFlags(ctx context.Context, q queryer) ([]flag.Flag, error) {
	return scanFlags(q.QueryContext(ctx, `SELECT key, version, data FROM vigil_flags WHERE NOT deleted ORDER BY key`))
}

// scanFlags decodes the rows of a query of key, version and data.
func scanFlags(rows *sql.Rows, err error) ([]flag.Flag, error) {
	if err != nil {
		return nil, fmt.Errorf("flags: %w", err)
	}
	defer rows.Close()
	out := []flag.Flag{}
	for rows.Next() {
		var key, data string
		var version int64
		if err := rows.Scan(&key, &version, &data); err != nil {
			return nil, fmt.Errorf("flags: %w", err)
		}
		f, err := decodeFlag(key, version, data)
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("flags: %w", err)
	}
	return out, nil
}

func decodeFlag(key string, version int64, data string) (flag.Flag, error) {
	var f flag.Flag
	if err := json.Unmarshal([]byte(data), &f); err != nil {
		return flag.Flag{}, fmt.Errorf("decode stored flag %s: %w", key, err)
	}
	f.Key = key
	f.Version = version
	return f, nil
}

func queryRollout(ctx context.Context, q queryer, key string) (Rollout, error) {
	rows, err := q.QueryContext(ctx, `SELECT key, state, judge, updated_at, due_at, revision FROM vigil_rollouts WHERE key = $1`, key)
	if err != nil {
		return Rollout{}, fmt.Errorf("rollout %s: %w", key, err)
	}
	rs, err := scanRollouts(rows)
	if err != nil {
		return Rollout{}, fmt.Errorf("rollout %s: %w", key, err)
	}
	if len(rs) == 0 {
		return Rollout{}, ErrNotFound
	}
	return rs[0], nil
}

func queryRollouts(ctx context.Context, q queryer) ([]Rollout, error) {
	rows, err := q.QueryContext(ctx, `SELECT key, state, judge, updated_at, due_at, revision FROM vigil_rollouts ORDER BY key`)
	if err != nil {
		return nil, fmt.Errorf("rollouts: %w", err)
	}
	rs, err := scanRollouts(rows)
	if err != nil {
		return nil, fmt.Errorf("rollouts: %w", err)
	}
	return rs, nil
}

func scanRollouts(rows *sql.Rows) ([]Rollout, error) {
	defer rows.Close()
	out := []Rollout{}
	for rows.Next() {
		var r Rollout
		var state string
		var judge sql.NullString
		var at, due int64
		if err := rows.Scan(&r.Key, &state, &judge, &at, &due, &r.Revision); err != nil {
			return nil, err
		}
		r.State = json.RawMessage(state)
		if judge.Valid {
			r.Judge = json.RawMessage(judge.String)
		}
		r.UpdatedAt = time.UnixMicro(at).UTC()
		if due > 0 {
			r.DueAt = time.UnixMicro(due).UTC()
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// sqlTx implements Tx.
type sqlTx struct {
	tx    *stmtTx
	actor Actor
	now   time.Time
	rev   int64
	d     *dialect
	// tokensChanged: a token was created or deleted, which watchers hear
	// of as they do of flag changes, so that replicas that keep tokens in
	// memory drop a revoked one at once.
	tokensChanged bool
	// rollRev is the highest rollout revision issued, counting this
	// transaction's puts and deletes of rollout records so far.
	rollRev int64
	// rollouts are the rollout records put or deleted, each key with the
	// revision of its last change, which WatchRollouts tells of after the
	// commit.
	rollouts map[string]int64
}

// stmtTx runs a write transaction's statements, prepared once each for the
// transaction when prepare is set: one that stores a tick's batch of
// decisions runs each of a few statements dozens of times.
type stmtTx struct {
	tx      *sql.Tx
	prepare bool
	stmts   map[string]*sql.Stmt
}

// stmt is query prepared in the transaction, nil when statements are not
// prepared or preparing failed (running the query then reports why).
func (t *stmtTx) stmt(ctx context.Context, query string) *sql.Stmt {
	if !t.prepare {
		return nil
	}
	if st, ok := t.stmts[query]; ok {
		return st
	}
	st, err := t.tx.PrepareContext(ctx, query)
	if err != nil {
		return nil
	}
	if t.stmts == nil {
		t.stmts = map[string]*sql.Stmt{}
	}
	t.stmts[query] = st
	return st
}

func (t *stmtTx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := t.stmt(ctx, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return t.tx.QueryContext(ctx, query, args...)
}

func (t *stmtTx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if st := t.stmt(ctx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return t.tx.QueryRowContext(ctx, query, args...)
}

func (t *stmtTx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if st := t.stmt(ctx, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return t.tx.ExecContext(ctx, query, args...)
}

// rolloutChanged issues the next rollout revision for a put or delete of
// key's record and returns it.
func (t *sqlTx) rolloutChanged(key string) int64 {
	t.rollRev++
	if t.rollouts == nil {
		t.rollouts = map[string]int64{}
	}
	t.rollouts[key] = t.rollRev
	return t.rollRev
}

func (t *sqlTx) Revision() int64 { return t.rev }

func (t *sqlTx) HoldsLease(ctx context.Context, name, holder string) (bool, error) {
	var one int
	err := t.tx.QueryRowContext(ctx, t.d.holdsLease, name, holder, t.now.UnixMicro()).Scan(&one)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("check lease %s: %w", name, err)
	}
	return true, nil
}

func (t *sqlTx) Flag(ctx context.Context, key string) (flag.Flag, error) {
	return queryFlag(ctx, t.tx, key)
}

func (t *sqlTx) Flags(ctx context.Context) ([]flag.Flag, error) { return queryFlags(ctx, t.tx) }

func (t *sqlTx) PutFlag(ctx context.Context, f flag.Flag) (flag.Flag, error) {
	before, err := t.Flag(ctx, f.Key)
	action := "update"
	switch {
	case errors.Is(err, ErrNotFound):
		action = "create"
	case err != nil:
		return flag.Flag{}, err
	}
	t.rev++
	f.Version = t.rev
	data, err := encodeFlag(f)
	if err != nil {
		return flag.Flag{}, err
	}
	if _, err := t.tx.ExecContext(ctx, `INSERT INTO vigil_flags (key, version, deleted, data, updated_at) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (key) DO UPDATE SET version = excluded.version, deleted = excluded.deleted, data = excluded.data, updated_at = excluded.updated_at`,
		f.Key, f.Version, false, data, t.now.UnixMicro()); err != nil {
		return flag.Flag{}, fmt.Errorf("put flag %s: %w", f.Key, err)
	}
	e := AuditEntry{Action: action, Flag: f.Key, Version: f.Version}
	if action == "update" {
		if e.Before, err = json.Marshal(before); err != nil {
			return flag.Flag{}, err
		}
	}
	if e.After, err = json.Marshal(f); err != nil {
		return flag.Flag{}, err
	}
	if err := t.AppendAudit(ctx, e); err != nil {
		return flag.Flag{}, err
	}
	return f, nil
}

func (t *sqlTx) DeleteFlag(ctx context.Context, key string) (int64, error) {
	before, err := t.Flag(ctx, key)
	if err != nil {
		return 0, err
	}
	t.rev++
	if _, err := t.tx.ExecContext(ctx, `UPDATE vigil_flags SET version = $1, deleted = $2, data = $3, updated_at = $4 WHERE key = $5`,
		t.rev, true, "{}", t.now.UnixMicro(), key); err != nil {
		return 0, fmt.Errorf("delete flag %s: %w", key, err)
	}
	b, err := json.Marshal(before)
	if err != nil {
		return 0, err
	}
	if err := t.AppendAudit(ctx, AuditEntry{Action: "delete", Flag: key, Version: t.rev, Before: b}); err != nil {
		return 0, err
	}
	return t.rev, nil
}

func (t *sqlTx) AppendAudit(ctx context.Context, e AuditEntry) error {
	if e.Time.IsZero() {
		e.Time = t.now
	}
	if e.Actor == "" {
		e.Actor = t.actor.Name
	}
	if e.Message == "" {
		e.Message = t.actor.Message
	}
	if _, err := t.tx.ExecContext(ctx, `INSERT INTO vigil_audit (at, actor, action, flag, version, before_json, after_json, message)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		e.Time.UnixMicro(), e.Actor, e.Action, e.Flag, e.Version, string(e.Before), string(e.After), e.Message); err != nil {
		return fmt.Errorf("append audit: %w", err)
	}
	return nil
}

func (t *sqlTx) Rollout(ctx context.Context, key string) (Rollout, error) {
	return queryRollout(ctx, t.tx, key)
}

func (t *sqlTx) Rollouts(ctx context.Context) ([]Rollout, error) { return queryRollouts(ctx, t.tx) }

func (t *sqlTx) PutRollout(ctx context.Context, r Rollout) (int64, error) {
	if !json.Valid(r.State) {
		return 0, fmt.Errorf("put rollout %s: state is not valid JSON", r.Key)
	}
	var due int64
	if !r.DueAt.IsZero() {
		// At least 1: 0 is "not due", and a due time at or before the
		// epoch is simply overdue.
		due = max(r.DueAt.UnixMicro(), 1)
	}
	rev := t.rollRev + 1 // issued by rolloutChanged once stored
	// The judge's state is stored as given: it is opaque here, and
	// checking it would cost every look another pass over most of a
	// rollout's bytes.
	var judge sql.NullString
	if len(r.Judge) > 0 {
		judge = sql.NullString{String: string(r.Judge), Valid: true}
	}
	if _, err := t.tx.ExecContext(ctx, `INSERT INTO vigil_rollouts (key, state, judge, updated_at, due_at, revision) VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (key) DO UPDATE SET state = excluded.state, judge = excluded.judge, updated_at = excluded.updated_at, due_at = excluded.due_at, revision = excluded.revision`,
		r.Key, string(r.State), judge, t.now.UnixMicro(), due, rev); err != nil {
		return 0, fmt.Errorf("put rollout %s: %w", r.Key, err)
	}
	return t.rolloutChanged(r.Key), nil
}

func (t *sqlTx) AppendRolloutHistory(ctx context.Context, key string, entries ...json.RawMessage) error {
	for i, e := range entries {
		if !json.Valid(e) {
			return fmt.Errorf("append rollout history %s: entry %d is not valid JSON", key, i)
		}
	}
	for _, e := range entries {
		if _, err := t.tx.ExecContext(ctx, `INSERT INTO vigil_rollout_history (key, seq, data)
			VALUES ($1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM vigil_rollout_history WHERE key = $1), $2)`,
			key, string(e)); err != nil {
			return fmt.Errorf("append rollout history %s: %w", key, err)
		}
	}
	return nil
}

func (t *sqlTx) AppendRolloutLook(ctx context.Context, key string, at time.Time, look json.RawMessage, keep int) error {
	if !json.Valid(look) {
		return fmt.Errorf("append rollout look %s: not valid JSON", key)
	}
	if keep < 1 {
		return fmt.Errorf("append rollout look %s: keep %d, want at least 1", key, keep)
	}
	var seq int64
	if err := t.tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) + 1 FROM vigil_rollout_looks WHERE key = $1`, key).Scan(&seq); err != nil {
		return fmt.Errorf("append rollout look %s: %w", key, err)
	}
	if _, err := t.tx.ExecContext(ctx, `INSERT INTO vigil_rollout_looks (key, seq, at, data) VALUES ($1, $2, $3, $4)`,
		key, seq, at.UnixMicro(), string(look)); err != nil {
		return fmt.Errorf("append rollout look %s: %w", key, err)
	}
	if _, err := t.tx.ExecContext(ctx, `DELETE FROM vigil_rollout_looks WHERE key = $1 AND seq <= $2`, key, seq-int64(keep)); err != nil {
		return fmt.Errorf("drop old looks of rollout %s: %w", key, err)
	}
	return nil
}

func (t *sqlTx) DeleteRollout(ctx context.Context, key string) error {
	if err := t.deleteOne(ctx, `DELETE FROM vigil_rollouts WHERE key = $1`, "rollout "+key, key); err != nil {
		return err
	}
	for _, table := range []string{"vigil_rollout_history", "vigil_rollout_looks"} {
		if _, err := t.tx.ExecContext(ctx, `DELETE FROM `+table+` WHERE key = $1`, key); err != nil {
			return fmt.Errorf("delete rollout %s from %s: %w", key, table, err)
		}
	}
	t.rolloutChanged(key)
	return nil
}

func (t *sqlTx) CreateToken(ctx context.Context, tok Token) error {
	if _, err := t.tx.ExecContext(ctx, `INSERT INTO vigil_tokens (name, role, hash, created_at, created_by) VALUES ($1, $2, $3, $4, $5)`,
		tok.Name, string(tok.Role), tok.Hash, t.now.UnixMicro(), tok.CreatedBy); err != nil {
		if t.d.isUniqueViolation(err) {
			return fmt.Errorf("token %s: %w", tok.Name, ErrExists)
		}
		return fmt.Errorf("create token %s: %w", tok.Name, err)
	}
	t.tokensChanged = true
	return nil
}

func (t *sqlTx) DeleteToken(ctx context.Context, name string) error {
	if err := t.deleteOne(ctx, `DELETE FROM vigil_tokens WHERE name = $1`, "token "+name, name); err != nil {
		return err
	}
	t.tokensChanged = true
	return nil
}

func (t *sqlTx) deleteOne(ctx context.Context, query, what string, arg any) error {
	res, err := t.tx.ExecContext(ctx, query, arg)
	if err != nil {
		return fmt.Errorf("delete %s: %w", what, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("delete %s: %w", what, err)
	}
	if n == 0 {
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	return nil
}

// encodeFlag is the stored form of a flag: its JSON without the version,
// which has its own column.
func encodeFlag(f flag.Flag) (string, error) {
	f.Version = 0
	b, err := json.Marshal(f)
	if err != nil {
		return "", fmt.Errorf("encode flag %s: %w", f.Key, err)
	}
	return string(b), nil
}

// migration is one step of the schema, as statements per dialect.
type migration struct {
	version  int
	sqlite   []string
	postgres []string
}

// migrate applies the migrations not yet recorded, each in one transaction.
// lock, when set, runs first in each transaction so that replicas starting
// together migrate one at a time.
func migrate(ctx context.Context, db *sql.DB, d dialect, lock string, ms []migration) error {
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS vigil_schema (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)`); err != nil {
		return fmt.Errorf("create schema table: %w", err)
	}
	for _, m := range ms {
		if err := applyMigration(ctx, db, d.name, lock, m); err != nil {
			return fmt.Errorf("migration %d: %w", m.version, err)
		}
	}
	return nil
}

func applyMigration(ctx context.Context, db *sql.DB, dialectName, lock string, m migration) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit this is a no-op
	if lock != "" {
		if _, err := tx.ExecContext(ctx, lock); err != nil {
			return err
		}
	}
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM vigil_schema WHERE version = $1`, m.version).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	stmts := m.sqlite
	if dialectName == "postgres" {
		stmts = m.postgres
	}
	for _, q := range stmts {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO vigil_schema (version, applied_at) VALUES ($1, $2)`, m.version, time.Now().UnixMicro()); err != nil {
		return err
	}
	return tx.Commit()
}

// schema is the store's schema history. Append new migrations; never edit
// one that has shipped. Times are microseconds since the Unix epoch in both
// databases so that the statements above are shared.
var schema = []migration{{
	version: 1,
	sqlite: []string{
		`CREATE TABLE vigil_meta (id INTEGER PRIMARY KEY CHECK (id = 1), revision BIGINT NOT NULL)`,
		`INSERT INTO vigil_meta (id, revision) VALUES (1, 0)`,
		`CREATE TABLE vigil_flags (key TEXT PRIMARY KEY, version BIGINT NOT NULL, deleted BOOLEAN NOT NULL, data TEXT NOT NULL, updated_at BIGINT NOT NULL)`,
		`CREATE INDEX vigil_flags_version ON vigil_flags (version)`,
		`CREATE TABLE vigil_audit (id INTEGER PRIMARY KEY AUTOINCREMENT, at BIGINT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
			flag TEXT NOT NULL, version BIGINT NOT NULL, before_json TEXT NOT NULL, after_json TEXT NOT NULL, message TEXT NOT NULL)`,
		`CREATE INDEX vigil_audit_flag ON vigil_audit (flag, id)`,
		`CREATE TABLE vigil_tokens (name TEXT PRIMARY KEY, role TEXT NOT NULL, hash TEXT NOT NULL UNIQUE, created_at BIGINT NOT NULL, created_by TEXT NOT NULL)`,
		`CREATE TABLE vigil_rollouts (key TEXT PRIMARY KEY, state TEXT NOT NULL, updated_at BIGINT NOT NULL)`,
		`CREATE TABLE vigil_leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at BIGINT NOT NULL)`,
	},
	postgres: []string{
		`CREATE TABLE vigil_meta (id INTEGER PRIMARY KEY CHECK (id = 1), revision BIGINT NOT NULL)`,
		`INSERT INTO vigil_meta (id, revision) VALUES (1, 0)`,
		`CREATE TABLE vigil_flags (key TEXT PRIMARY KEY, version BIGINT NOT NULL, deleted BOOLEAN NOT NULL, data TEXT NOT NULL, updated_at BIGINT NOT NULL)`,
		`CREATE INDEX vigil_flags_version ON vigil_flags (version)`,
		`CREATE TABLE vigil_audit (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, at BIGINT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
			flag TEXT NOT NULL, version BIGINT NOT NULL, before_json TEXT NOT NULL, after_json TEXT NOT NULL, message TEXT NOT NULL)`,
		`CREATE INDEX vigil_audit_flag ON vigil_audit (flag, id)`,
		`CREATE TABLE vigil_tokens (name TEXT PRIMARY KEY, role TEXT NOT NULL, hash TEXT NOT NULL UNIQUE, created_at BIGINT NOT NULL, created_by TEXT NOT NULL)`,
		`CREATE TABLE vigil_rollouts (key TEXT PRIMARY KEY, state TEXT NOT NULL, updated_at BIGINT NOT NULL)`,
		`CREATE TABLE vigil_leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at BIGINT NOT NULL)`,
	},
}, {
	// Version 2 moves each rollout's history, which version 1 kept inline
	// in the state's "history" array, to a table of its own that only
	// grows, adds a table of the judge's looks at each rollout (which
	// version 1 did not keep), and indexes when each rollout is next due:
	// the loop then
	// reads only what is due, and a state stays small. A progressing
	// rollout is marked due at once (1): the loop reads it, and stores its
	// true due time unless it is due indeed.
	version: 2,
	sqlite: []string{
		`CREATE TABLE vigil_rollout_history (key TEXT NOT NULL, seq BIGINT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (key, seq))`,
		`CREATE TABLE vigil_rollout_looks (key TEXT NOT NULL, seq BIGINT NOT NULL, at BIGINT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (key, seq))`,
		`INSERT INTO vigil_rollout_history (key, seq, data)
			SELECT r.key, h.key + 1, h.value FROM vigil_rollouts r, json_each(r.state, '$.history') h
			WHERE json_type(r.state, '$.history') = 'array'`,
		`UPDATE vigil_rollouts SET state = json_remove(state, '$.history')`,
		`ALTER TABLE vigil_rollouts ADD COLUMN due_at BIGINT NOT NULL DEFAULT 0`,
		`UPDATE vigil_rollouts SET due_at = 1 WHERE json_extract(state, '$.state') = 'progressing'`,
		`CREATE INDEX vigil_rollouts_due ON vigil_rollouts (due_at) WHERE due_at > 0`,
	},
	postgres: []string{
		`CREATE TABLE vigil_rollout_history (key TEXT NOT NULL, seq BIGINT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (key, seq))`,
		`CREATE TABLE vigil_rollout_looks (key TEXT NOT NULL, seq BIGINT NOT NULL, at BIGINT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (key, seq))`,
		`INSERT INTO vigil_rollout_history (key, seq, data)
			SELECT r.key, h.n, h.v::text FROM vigil_rollouts r
			CROSS JOIN LATERAL jsonb_array_elements(CASE WHEN jsonb_typeof(r.state::jsonb -> 'history') = 'array'
				THEN r.state::jsonb -> 'history' ELSE '[]'::jsonb END) WITH ORDINALITY AS h(v, n)`,
		`UPDATE vigil_rollouts SET state = (state::jsonb - 'history')::text`,
		`ALTER TABLE vigil_rollouts ADD COLUMN due_at BIGINT NOT NULL DEFAULT 0`,
		`UPDATE vigil_rollouts SET due_at = 1 WHERE state::jsonb ->> 'state' = 'progressing'`,
		`CREATE INDEX vigil_rollouts_due ON vigil_rollouts (due_at) WHERE due_at > 0`,
	},
}, {
	// Version 3 gives each rollout record the revision of its last put,
	// from a sequence of rollout revisions kept beside the flags'
	// revision, so that a watcher told of a change knows whether the
	// record is still the one it holds (RolloutChange). Records stored
	// before have revision 0, which no change is told with.
	version: 3,
	sqlite: []string{
		`ALTER TABLE vigil_meta ADD COLUMN rollout_revision BIGINT NOT NULL DEFAULT 0`,
		`ALTER TABLE vigil_rollouts ADD COLUMN revision BIGINT NOT NULL DEFAULT 0`,
	},
	postgres: []string{
		`ALTER TABLE vigil_meta ADD COLUMN rollout_revision BIGINT NOT NULL DEFAULT 0`,
		`ALTER TABLE vigil_rollouts ADD COLUMN revision BIGINT NOT NULL DEFAULT 0`,
	},
}, {
	// Version 4 keeps the judge's state of a rollout in a column of its
	// own (Rollout.Judge), out of the state's JSON. Records stored before
	// carry it in their state until their next put.
	version:  4,
	sqlite:   []string{`ALTER TABLE vigil_rollouts ADD COLUMN judge TEXT`},
	postgres: []string{`ALTER TABLE vigil_rollouts ADD COLUMN judge TEXT`},
}}

// formatRevision is the NOTIFY payload of a revision.
func formatRevision(rev int64) string { return strconv.FormatInt(rev, 10) }
