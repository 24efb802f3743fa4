// Package sqlite is the embedded store.Store adapter: one SQLite file,
// <dir>/otphub.db, through the pure-Go driver modernc.org/sqlite.
//
// Durability and concurrency (see docs/store.md):
//   - WAL journal with synchronous=FULL: a committed transaction has been
//     fsynced to the WAL before Commit returns, so neither kill -9 nor a power
//     loss loses it (on storage that honours fsync).
//   - All writes go through one connection whose transactions start with
//     BEGIN IMMEDIATE, so writers queue in Go instead of meeting SQLITE_BUSY;
//     reads use a small pool of read-only connections that WAL lets run
//     beside the writer. busy_timeout covers the rest (checkpoints, another
//     process briefly opening the file).
//   - One process per data directory: the file is not meant to be shared by
//     replicas (use store/postgres for that).
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/otphub/otphub/store"
	"github.com/otphub/otphub/store/internal/sqlstore"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// FileName is the database file inside the data directory.
const FileName = "otphub.db"

// busyTimeoutMS is how long a connection waits for a lock held elsewhere
// before SQLITE_BUSY (checkpoints, recovery, a second process).
const busyTimeoutMS = 10000

// readConns is the size of the read-only connection pool.
const readConns = 4

// Store is the SQLite store.Store.
type Store struct {
	*sqlstore.DB
}

var _ store.Store = (*Store)(nil)

// Open opens (creating when missing, with 0700 permissions) dir and the
// database file in it, and applies pending migrations.
func Open(ctx context.Context, dir string, opts store.Options) (*Store, error) {
	if dir == "" {
		return nil, errors.New("store: sqlite: empty data directory")
	}
	if strings.ContainsAny(dir, "?#") {
		return nil, fmt.Errorf("store: sqlite: data directory %q must not contain '?' or '#'", dir)
	}
	if len(opts.EncryptionKey) != 32 {
		return nil, fmt.Errorf("store: sqlite: encryption key must be 32 bytes for AES-256-GCM, got %d", len(opts.EncryptionKey))
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: sqlite: data directory: %w", err)
	}
	path := filepath.Join(dir, FileName)
	// Create the file 0600 before SQLite does (with the umask's mode): the
	// -wal and -shm files inherit its permissions.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store: sqlite: %w", err)
	}
	f.Close()

	common := url.Values{}
	common.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeoutMS))
	common.Add("_pragma", "foreign_keys(ON)")
	common.Add("_pragma", "synchronous(FULL)")

	wq := url.Values{}
	for k, v := range common {
		wq[k] = append([]string(nil), v...)
	}
	wq.Add("_pragma", "journal_mode(WAL)")
	wq.Set("_txlock", "immediate")
	w, err := sql.Open("sqlite", "file:"+path+"?"+wq.Encode())
	if err != nil {
		return nil, fmt.Errorf("store: sqlite: open %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)

	rq := url.Values{}
	for k, v := range common {
		rq[k] = append([]string(nil), v...)
	}
	rq.Add("_pragma", "query_only(1)")
	r, err := sql.Open("sqlite", "file:"+path+"?"+rq.Encode())
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("store: sqlite: open %s: %w", path, err)
	}
	r.SetMaxOpenConns(readConns)
	r.SetMaxIdleConns(readConns)

	closeBoth := func() error { return errors.Join(r.Close(), w.Close()) }
	db, err := sqlstore.New(dialect, w, r, opts, closeBoth)
	if err != nil {
		closeBoth()
		return nil, err
	}
	if err := w.PingContext(ctx); err != nil {
		closeBoth()
		return nil, fmt.Errorf("store: sqlite: open %s: %w", path, err)
	}
	migrations, err := sqlstore.LoadMigrations(migrationFS, "migrations")
	if err != nil {
		closeBoth()
		return nil, err
	}
	if err := db.Migrate(ctx, migrations, nil); err != nil {
		closeBoth()
		return nil, fmt.Errorf("store: sqlite %s: %w", path, err)
	}
	return &Store{DB: db}, nil
}

var dialect = sqlstore.Dialect{
	Name:        "sqlite",
	GroupCommit: true,
	IndexHints:  true,
	IsUniqueViolation: func(err error) bool {
		var se *sqlite.Error
		if !errors.As(err, &se) {
			return false
		}
		return se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	},
}
