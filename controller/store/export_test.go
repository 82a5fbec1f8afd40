package store

import "context"

// OpenSQLiteAt opens the SQLite store in dir migrated only to the given
// schema version, as a release that had no later migrations left it.
func OpenSQLiteAt(ctx context.Context, dir string, version int) (Store, error) {
	return openSQLite(ctx, dir, schema[:version])
}

// OpenPostgresAt is OpenSQLiteAt for PostgreSQL.
func OpenPostgresAt(ctx context.Context, url string, version int) (Store, error) {
	return openPostgres(ctx, url, schema[:version])
}

// Exec runs a statement on s's database directly, as an older release
// would have written it.
func Exec(ctx context.Context, s Store, query string, args ...any) error {
	_, err := s.(*sqlStore).w.ExecContext(ctx, query, args...)
	return err
}
