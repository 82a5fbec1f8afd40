package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

// pgChannel is the LISTEN/NOTIFY channel on which a committed change
// announces its revision to every replica.
const pgChannel = "vigil_changes"

// pgRolloutChannel is the channel on which a committed change of a
// rollout record announces its key and revision (rolloutPayload).
const pgRolloutChannel = "vigil_rollouts"

// pgMigrateLock is the advisory lock key under which replicas migrate.
const pgMigrateLock = 0x76696769 // "vigi"

// OpenPostgres connects to the PostgreSQL database at url, migrates its
// schema and starts listening for changes made by other processes. Several
// controllers may share one database.
func OpenPostgres(ctx context.Context, url string) (Store, error) {
	return openPostgres(ctx, url, schema)
}

// openPostgres opens the store at url with the schema's migrations ms.
func openPostgres(ctx context.Context, url string, ms []migration) (Store, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("open postgres store: %w", err)
	}
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(16)
	db.SetMaxIdleConns(8)
	db.SetConnMaxIdleTime(5 * time.Minute)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open postgres store %s@%s: %w", cfg.User, cfg.Host, err)
	}
	lctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	s := &sqlStore{
		d: dialect{
			name:              "postgres",
			lockRevision:      `SELECT revision, rollout_revision FROM vigil_meta WHERE id = 1 FOR UPDATE`,
			readTx:            &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true},
			notify:            pgNotify,
			notifyRollouts:    pgNotifyRollouts,
			isUniqueViolation: pgUnique,
			holdsLease:        `SELECT 1 FROM vigil_leases WHERE name = $1 AND holder = $2 AND expires_at > $3 FOR SHARE`,
		},
		w: db, r: db,
		wmu:       make(chan struct{}, 1),
		notes:     newNotifier(),
		rollNotes: newKeyNotifier(),
		now:       time.Now,
		stop:      func() { stop(); <-done },
	}
	lock := fmt.Sprintf(`SELECT pg_advisory_xact_lock(%d)`, pgMigrateLock)
	if err := migrate(ctx, db, s.d, lock, ms); err != nil {
		stop()
		close(done)
		db.Close()
		return nil, fmt.Errorf("open postgres store: %w", err)
	}
	go func() {
		defer close(done)
		listen(lctx, cfg, s.notes, s.rollNotes)
	}()
	return s, nil
}

func pgNotify(ctx context.Context, tx *sql.Tx, rev int64) error {
	_, err := tx.ExecContext(ctx, `SELECT pg_notify($1, $2)`, pgChannel, formatRevision(rev))
	return err
}

// pgNotifyRollouts announces each change in a notification of its own: a
// payload is limited to 8000 bytes, and PostgreSQL folds the same payload
// sent twice in one transaction.
func pgNotifyRollouts(ctx context.Context, tx *sql.Tx, changes []RolloutChange) error {
	for _, c := range changes {
		if _, err := tx.ExecContext(ctx, `SELECT pg_notify($1, $2)`, pgRolloutChannel, rolloutPayload(c)); err != nil {
			return fmt.Errorf("notify of rollout %s: %w", c.Key, err)
		}
	}
	return nil
}

// rolloutPayload is the NOTIFY payload of a change of a rollout record:
// its key, a space (which no flag key holds) and its revision.
func rolloutPayload(c RolloutChange) string {
	return c.Key + " " + strconv.FormatInt(c.Revision, 10)
}

// parseRolloutPayload reads a rolloutPayload. A payload without a
// revision, as releases before revisions sent, is its key alone, with
// revision 0 (unknown): the watcher reads the record again.
func parseRolloutPayload(p string) RolloutChange {
	key, rev, ok := strings.Cut(p, " ")
	if !ok {
		return RolloutChange{Key: p}
	}
	n, err := strconv.ParseInt(rev, 10, 64)
	if err != nil || n < 0 {
		n = 0
	}
	return RolloutChange{Key: key, Revision: n}
}

func pgUnique(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

// listen holds a connection that LISTENs for other processes' changes and
// publishes each revision and each changed rollout's key until ctx is done.
// After losing the connection it reconnects with backoff and publishes 0
// and a nil batch of keys, because changes may have been missed meanwhile.
func listen(ctx context.Context, cfg *pgx.ConnConfig, notes *notifier, rollNotes *keyNotifier) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err == nil {
			_, err = conn.Exec(ctx, "LISTEN "+pgChannel)
		}
		if err == nil {
			_, err = conn.Exec(ctx, "LISTEN "+pgRolloutChannel)
		}
		if err == nil {
			backoff = 100 * time.Millisecond
			notes.publish(0)
			rollNotes.publish(nil)
			for {
				n, werr := conn.WaitForNotification(ctx)
				if werr != nil {
					break
				}
				if n.Channel == pgRolloutChannel {
					rollNotes.publish([]RolloutChange{parseRolloutPayload(n.Payload)})
					continue
				}
				rev, perr := strconv.ParseInt(n.Payload, 10, 64)
				if perr != nil {
					rev = 0
				}
				notes.publish(rev)
			}
		}
		if conn != nil {
			cctx, cancel := context.WithTimeout(context.Background(), time.Second)
			conn.Close(cctx)
			cancel()
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
			backoff = min(2*backoff, 5*time.Second)
		}
	}
}
