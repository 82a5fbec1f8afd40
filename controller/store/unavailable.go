package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Unavailable reports whether err means that the database could not be
// reached or could not take the operation now (PostgreSQL down, a
// connection cut, a SQLite file locked by another process) rather than
// that the operation itself is wrong: the caller may retry later, and the
// server answers 503 with Retry-After rather than 500.
func Unavailable(err error) bool {
	if err == nil {
		return false
	}
	var (
		ne  net.Error
		ce  *pgconn.ConnectError
		pe  *pgconn.PgError
		se  *sqlite.Error
		ope *net.OpError
	)
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, driver.ErrBadConn), errors.Is(err, sql.ErrConnDone), errors.Is(err, io.ErrUnexpectedEOF):
		return true
	case errors.As(err, &ce), errors.As(err, &ope), errors.As(err, &ne):
		return true
	case errors.As(err, &pe):
		// Class 08 is connection exceptions; 57P01 to 57P03 a server that
		// shuts down or does not take connections yet; 53300 too many
		// connections.
		return strings.HasPrefix(pe.Code, "08") || pe.Code == "57P01" || pe.Code == "57P02" || pe.Code == "57P03" || pe.Code == "53300"
	case errors.As(err, &se):
		code := se.Code() & 0xff
		return code == sqlite3.SQLITE_BUSY || code == sqlite3.SQLITE_LOCKED
	}
	return pgconn.SafeToRetry(err)
}
