package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Migration is one versioned schema change.
type Migration struct {
	Version int64
	Name    string
	SQL     string
}

// LoadMigrations reads NNNN_name.sql files from dir in fsys, ordered by
// version. Versions must be unique and positive.
func LoadMigrations(fsys fs.FS, dir string) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("store: migrations: %w", err)
	}
	var out []Migration
	seen := map[int64]string{}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".sql") {
			continue
		}
		num, name, ok := strings.Cut(strings.TrimSuffix(e.Name(), ".sql"), "_")
		if !ok {
			return nil, fmt.Errorf("store: migration %q: want NNNN_name.sql", e.Name())
		}
		v, err := strconv.ParseInt(num, 10, 64)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("store: migration %q: bad version", e.Name())
		}
		if prev, dup := seen[v]; dup {
			return nil, fmt.Errorf("store: migrations %q and %q share version %d", prev, e.Name(), v)
		}
		seen[v] = e.Name()
		body, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("store: migration %q: %w", e.Name(), err)
		}
		out = append(out, Migration{Version: v, Name: name, SQL: string(body)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out, nil
}

// Locker serialises migrations across processes on conn (PostgreSQL:
// pg_advisory_lock). It returns the unlock function. Correctness never
// depends on it alone: every migration's version row is inserted in the
// migration's own transaction under a primary key, so of two replicas racing
// without a lock one commits and the other rolls back and re-reads.
type Locker func(ctx context.Context, conn *sql.Conn) (unlock func(), err error)

// Migrate applies the migrations not yet recorded in schema_migrations, each
// in its own transaction together with its version row.
func (db *DB) Migrate(ctx context.Context, migrations []Migration, lock Locker) error {
	conn, err := db.w.Conn(ctx)
	if err != nil {
		return fmt.Errorf("store: migrate: connect: %w", err)
	}
	defer conn.Close()
	if lock != nil {
		unlock, err := lock(ctx, conn)
		if err != nil {
			return fmt.Errorf("store: migrate: lock: %w", err)
		}
		defer unlock()
	}
	if _, err := conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version BIGINT PRIMARY KEY,
		name TEXT NOT NULL,
		applied_at BIGINT NOT NULL
	)`); err != nil {
		// Another replica may have created it between our IF NOT EXISTS check
		// and our CREATE (no lock available): fine if it exists now.
		if _, err2 := db.appliedVersions(ctx, conn); err2 != nil {
			return fmt.Errorf("store: migrate: create schema_migrations: %w", err)
		}
	}
	for _, m := range migrations {
		applied, err := db.appliedVersions(ctx, conn)
		if err != nil {
			return err
		}
		if applied[m.Version] {
			continue
		}
		if err := db.applyMigration(ctx, conn, m); err != nil {
			// A replica racing us without the lock may have applied it.
			if again, err2 := db.appliedVersions(ctx, conn); err2 == nil && again[m.Version] {
				continue
			}
			return fmt.Errorf("store: migration %d_%s: %w", m.Version, m.Name, err)
		}
	}
	return nil
}

func (db *DB) applyMigration(ctx context.Context, conn *sql.Conn, m Migration) error {
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, db.q(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`),
		m.Version, m.Name, time.Now().UnixMicro()); err != nil {
		return err
	}
	return tx.Commit()
}

func (db *DB) appliedVersions(ctx context.Context, conn *sql.Conn) (map[int64]bool, error) {
	rows, err := conn.QueryContext(ctx, `SELECT version FROM schema_migrations`)
	if err != nil {
		return nil, fmt.Errorf("store: migrate: read versions: %w", err)
	}
	defer rows.Close()
	out := map[int64]bool{}
	for rows.Next() {
		var v int64
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out[v] = true
	}
	return out, rows.Err()
}
