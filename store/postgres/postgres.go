// Package postgres is the scale-out store.Store adapter: PostgreSQL through
// github.com/jackc/pgx/v5 (its database/sql driver, so the SQL is the one
// store/internal/sqlstore shares with SQLite).
//
// Built for many replicas on one database (see docs/store.md): leases are
// taken with FOR UPDATE SKIP LOCKED, idempotency rests on unique
// constraints, counters and conditional updates are single atomic
// statements, and migrations are serialised by an advisory lock but kept
// correct without it by the schema_migrations primary key. Nothing depends on
// features a distributed PostgreSQL-wire database lacks where avoiding them
// costs nothing (no sequences read back, no LISTEN/NOTIFY, no advisory-lock-only
// correctness); transactions failing with a serialization error are retried.
package postgres

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"embed"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/otphub/otphub/store"
	"github.com/otphub/otphub/store/internal/sqlstore"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// Pool limits (per replica).
const (
	maxOpenConns    = 20
	maxAsyncConns   = 10 // synchronous_commit off: the send budgets' counters
	maxIdleConns    = 10
	connMaxLifetime = 30 * time.Minute
	connMaxIdleTime = 5 * time.Minute
)

// migrationLockClass is the first key of the two-key advisory lock taken
// while migrating; the second is a hash of the current schema, so stores in
// different schemas of one database migrate independently.
const migrationLockClass = 0x6f7470 // "otp"

// Store is the PostgreSQL store.Store.
type Store struct {
	*sqlstore.DB
}

var _ store.Store = (*Store)(nil)

// Open connects to url (a postgres:// URL or key=value DSN as pgx accepts;
// run-time parameters such as search_path=myschema are passed to the server,
// so tables live in the first schema of that path) and applies pending
// migrations.
func Open(ctx context.Context, url string, opts store.Options) (*Store, error) {
	if len(opts.EncryptionKey) != 32 {
		return nil, fmt.Errorf("store: postgres: encryption key must be 32 bytes for AES-256-GCM, got %d", len(opts.EncryptionKey))
	}
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		// pgx errors may echo the URL; say only what kind of problem it is.
		return nil, fmt.Errorf("store: postgres: invalid database URL: %w", redact(err))
	}
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(maxOpenConns)
	db.SetMaxIdleConns(maxIdleConns)
	db.SetConnMaxLifetime(connMaxLifetime)
	db.SetConnMaxIdleTime(connMaxIdleTime)

	acfg := cfg.Copy()
	acfg.RuntimeParams["synchronous_commit"] = "off"
	async := stdlib.OpenDB(*acfg)
	async.SetMaxOpenConns(maxAsyncConns)
	async.SetMaxIdleConns(maxAsyncConns)
	async.SetConnMaxLifetime(connMaxLifetime)
	async.SetConnMaxIdleTime(connMaxIdleTime)
	closeBoth := func() error { return errors.Join(db.Close(), async.Close()) }

	s, err := sqlstore.New(dialect, db, db, opts, closeBoth)
	if err != nil {
		closeBoth()
		return nil, err
	}
	s.WithAsyncCommits(async)
	if err := db.PingContext(ctx); err != nil {
		closeBoth()
		return nil, fmt.Errorf("store: postgres: connect to %s:%d/%s: %w", cfg.Host, cfg.Port, cfg.Database, err)
	}
	migrations, err := sqlstore.LoadMigrations(migrationFS, "migrations")
	if err != nil {
		closeBoth()
		return nil, err
	}
	if err := s.Migrate(ctx, migrations, lockMigrations); err != nil {
		closeBoth()
		return nil, fmt.Errorf("store: postgres: %w", err)
	}
	return &Store{DB: s}, nil
}

// redact keeps pgx's parse error text but not a password it might quote.
func redact(err error) error {
	var pe *pgconn.ParseConfigError
	if errors.As(err, &pe) {
		return errors.New(pe.Error())
	}
	return err
}

// lockMigrations takes a session advisory lock on conn. Where the database
// has no advisory locks (some PostgreSQL-wire databases), migrating goes on
// without: the schema_migrations primary key keeps it correct.
func lockMigrations(ctx context.Context, conn *sql.Conn) (func(), error) {
	const key = `?, hashtext(COALESCE(current_schema(), ''))`
	if _, err := conn.ExecContext(ctx, sqlstore.Rebind(`SELECT pg_advisory_lock(`+key+`)`), migrationLockClass); err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && (pgErr.Code == "42883" || pgErr.Code == "0A000") { // undefined_function, feature_not_supported
			return func() {}, nil
		}
		return nil, err
	}
	return func() {
		uctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := conn.ExecContext(uctx, sqlstore.Rebind(`SELECT pg_advisory_unlock(`+key+`)`), migrationLockClass); err != nil {
			// Never hand a connection still holding the lock back to the pool.
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		}
	}, nil
}

var dialect = sqlstore.Dialect{
	Name:                 "postgres",
	NumberedPlaceholders: true,
	SkipLocked:           " FOR UPDATE SKIP LOCKED",
	ForUpdate:            " FOR UPDATE",
	IsUniqueViolation: func(err error) bool {
		var pgErr *pgconn.PgError
		return errors.As(err, &pgErr) && pgErr.Code == "23505"
	},
	IsRetryable: func(err error) bool {
		var pgErr *pgconn.PgError
		return errors.As(err, &pgErr) && (pgErr.Code == "40001" || pgErr.Code == "40P01")
	},
}
