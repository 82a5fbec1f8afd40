package store

import (
	"context"
	"strings"
)

// Open opens the PostgreSQL store at databaseURL when it is set, and the
// SQLite store in dataDir otherwise.
func Open(ctx context.Context, dataDir, databaseURL string) (Store, error) {
	if databaseURL != "" {
		return OpenPostgres(ctx, databaseURL)
	}
	return OpenSQLite(ctx, dataDir)
}

// IsPostgresURL reports whether s looks like a PostgreSQL connection URL.
func IsPostgresURL(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}
