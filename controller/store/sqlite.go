package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// SQLiteBusyTimeout is how long a SQLite store waits for a lock that another
// process holds before the operation fails as Unavailable (the server then
// answers 503 with Retry-After). This process's own writers never wait on
// it: they queue in Go, one at a time on one connection, and in WAL mode
// reads take no lock that a writer waits for. So only another process (a
// sqlite3 shell; a second controller cannot open the directory) makes a wait,
// and a request should learn of it promptly rather than hold its client.
const SQLiteBusyTimeout = time.Second

// OpenSQLite opens (creating it if needed) the SQLite store in dir and
// migrates its schema. One process may use a directory at a time: it holds
// a lock on it until Close, or until it ends, however it ends, and
// another process's open fails meanwhile. The leases stored there when it
// opens were taken by processes that have ended, so it clears them: a
// controller killed and started again leads at once, rather than after
// its lease runs out.
func OpenSQLite(ctx context.Context, dir string) (Store, error) {
	return openSQLite(ctx, dir, schema)
}

// openSQLite opens the store in dir with the schema's migrations ms.
func openSQLite(ctx context.Context, dir string, ms []migration) (_ Store, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open sqlite store: %w", err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, fmt.Errorf("open sqlite store: %w", err)
	}
	defer func() {
		if err != nil {
			lock.Close()
		}
	}()
	path := filepath.Join(dir, "vigil.db")
	// The store holds token hashes and the audit log: readable by its owner
	// only. SQLite gives its -wal and -shm files the database's mode.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open sqlite store: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("open sqlite store: %w", err)
	}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout("+strconv.FormatInt(SQLiteBusyTimeout.Milliseconds(), 10)+")")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(NORMAL)")
	dsn := "file:" + path + "?" + q.Encode()
	// The writer begins its transactions IMMEDIATE, taking the write lock at
	// once, so that the revision it reads is still the latest when it writes.
	w, err := sql.Open("sqlite", dsn+"&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("open sqlite store %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	r, err := sql.Open("sqlite", dsn)
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open sqlite store %s: %w", path, err)
	}
	r.SetMaxOpenConns(8)
	r.SetMaxIdleConns(8)
	s := &sqlStore{
		d: dialect{
			name:              "sqlite",
			lockRevision:      `SELECT revision, rollout_revision FROM vigil_meta WHERE id = 1`,
			isUniqueViolation: sqliteUnique,
			// One writer at a time: nothing can take the lease during the
			// transaction.
			holdsLease:  `SELECT 1 FROM vigil_leases WHERE name = $1 AND holder = $2 AND expires_at > $3`,
			pingWrite:   true,
			prepareInTx: true,
		},
		w: w, r: r,
		wmu:       make(chan struct{}, 1),
		notes:     newNotifier(),
		rollNotes: newKeyNotifier(),
		now:       time.Now,
	}
	if err := migrate(ctx, w, s.d, "", ms); err != nil {
		s.Close()
		return nil, fmt.Errorf("open sqlite store %s: %w", path, err)
	}
	if _, err := w.ExecContext(ctx, `DELETE FROM vigil_leases`); err != nil {
		s.Close()
		return nil, fmt.Errorf("open sqlite store %s: clear the leases of ended processes: %w", path, err)
	}
	s.dirLock = lock
	return s, nil
}

// lockDir takes the lock on a store directory: an exclusive flock of its
// vigil.lock, which the kernel drops when the process ends. The store's
// change notices reach this process's readers only, so a second process
// would serve stale flags; and while the lock is held, every lease stored
// in the directory belongs to a process that has ended.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "vigil.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("another process uses %s: one process may use a SQLite store at a time (replicas share a PostgreSQL database instead)", dir)
		}
		return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	return f, nil
}

func sqliteUnique(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && (se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY)
}
