// Package sqlstore is the one SQL implementation of store.Store that both
// adapters share: store/sqlite and store/postgres differ only in their
// Dialect (placeholders, row locking, error codes, migrations) and in how
// they open their *sql.DB handles.
//
// Conventions every query follows:
//   - Queries are written with '?' placeholders; the Dialect rebinds them
//     ($1, $2, … for PostgreSQL).
//   - Timestamps are BIGINT unix microseconds in UTC; 0 stands for the zero
//     time.Time ("never"/"unset"). Comparisons are plain integer ones, so the
//     same SQL works everywhere and no driver time-zone handling is involved.
//   - Lists (scopes, country codes) are JSON text.
//   - Secrets are sealed with AES-256-GCM before they reach the database
//     (see seal.go).
//   - Every record that belongs to an org is read and written with its
//     org_id in the WHERE clause.
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/otphub/otphub/store"
)

// Dialect is what differs between the SQL databases otphub runs on.
type Dialect struct {
	// Name is used in error messages ("sqlite", "postgres").
	Name string
	// NumberedPlaceholders rewrites '?' into $1, $2, … (PostgreSQL).
	NumberedPlaceholders bool
	// SkipLocked is appended to the SELECT that picks tasks to lease
	// (" FOR UPDATE SKIP LOCKED" for PostgreSQL; "" for SQLite, whose single
	// writer serialises leases anyway).
	SkipLocked string
	// ForUpdate is appended to a SELECT whose row a transaction then
	// rewrites (" FOR UPDATE" for PostgreSQL; "" for SQLite, whose
	// single writer serialises such transactions anyway).
	ForUpdate string
	// IsUniqueViolation tells whether err is a unique/primary key violation.
	IsUniqueViolation func(err error) bool
	// IsRetryable tells whether a transaction that failed with err may be
	// run again as a whole (serialization failures, deadlocks). Optional.
	IsRetryable func(err error) bool
	// GroupCommit runs concurrent write transactions as one (SQLite, whose
	// single writer would otherwise commit, and fsync, them one by one).
	GroupCommit bool
	// IndexHints lets a query name the index it must use (SQLite's
	// INDEXED BY; PostgreSQL's planner has statistics, and no such syntax).
	IndexHints bool
}

// indexedBy is the hint that makes a query read index (see IndexHints),
// to follow its table's name.
func (d Dialect) indexedBy(index string) string {
	if !d.IndexHints {
		return ""
	}
	return " INDEXED BY " + index
}

// DB implements store.Store on database/sql.
type DB struct {
	d Dialect
	// w runs every write and every read-modify-write transaction; r runs
	// plain reads. They are the same handle for PostgreSQL; for SQLite, w is
	// a single connection (so writers never meet SQLITE_BUSY) and r a pool.
	w, r   *sql.DB
	seal   *sealer
	now    func() time.Time
	closer func() error
	group  *groupCommitter // when Dialect.GroupCommit
	// async, if set (WithAsyncCommits), is a pool of the same database
	// whose sessions commit without waiting for the log flush.
	async *sql.DB

	rebindMu    sync.RWMutex
	rebindCache map[string]string

	counterPurge   purger // expired rate counters, from HitCounter
	challengePurge purger // long-expired challenges, from CreateChallenge
	flowPurge      purger // long-expired login flows, from CreateLoginFlow
	sessionPurge   purger // long-ended console sessions, from CreateConsoleSession
}

// New returns a DB on the given handles, sealing secrets under
// opts.EncryptionKey (32 bytes) and opening them under it or a previous key.
// closer is called by Close (it should close the handles).
func New(d Dialect, w, r *sql.DB, opts store.Options, closer func() error) (*DB, error) {
	s, err := newSealer(opts.EncryptionKey, opts.PreviousEncryptionKeys, opts.NextEncryptionKey)
	if err != nil {
		return nil, err
	}
	if r == nil {
		r = w
	}
	db := &DB{d: d, w: w, r: r, seal: s, now: time.Now, closer: closer, rebindCache: map[string]string{}}
	if d.GroupCommit {
		db.group = startGroupCommitter(db)
	}
	return db, nil
}

// WithAsyncCommits gives db a pool of the same database whose sessions
// commit without waiting for their log flush (PostgreSQL:
// synchronous_commit off), for CreateChallenge's counter hits (the send
// budgets and the charged marker). A budget counter is a row every
// challenge of an org (or of one client address) updates, and its lock is
// held until the commit, so a flush per challenge would cap an org near
// one challenge per flush. With it, CreateChallenge is two statements
// outside any transaction: the challenge (unless its user is locked out),
// then the hits, asynchronously; a database crash may forget the counts
// of its last moment (HitCounter itself stays synchronous: login replay
// protection counts with it). Without it (SQLite, whose group commit
// shares one flush), the hits share the challenge's transaction. Call it
// before db is used; the closer given to New must close async too.
func (db *DB) WithAsyncCommits(async *sql.DB) { db.async = async }

// Ping checks the database is reachable.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.w.PingContext(ctx); err != nil {
		return fmt.Errorf("store: ping %s: %w", db.d.Name, err)
	}
	if db.r != db.w {
		if err := db.r.PingContext(ctx); err != nil {
			return fmt.Errorf("store: ping %s: %w", db.d.Name, err)
		}
	}
	return nil
}

// Close closes the database handles.
func (db *DB) Close() error {
	db.closeGroup()
	if db.closer != nil {
		return db.closer()
	}
	return nil
}

// q rebinds a '?' query for the dialect.
func (db *DB) q(query string) string {
	if !db.d.NumberedPlaceholders {
		return query
	}
	db.rebindMu.RLock()
	out, ok := db.rebindCache[query]
	db.rebindMu.RUnlock()
	if ok {
		return out
	}
	out = Rebind(query)
	db.rebindMu.Lock()
	if len(db.rebindCache) < 4096 {
		db.rebindCache[query] = out
	}
	db.rebindMu.Unlock()
	return out
}

// Rebind rewrites '?' placeholders into $1, $2, …, leaving quoted text alone.
func Rebind(query string) string {
	var b strings.Builder
	b.Grow(len(query) + 16)
	n := 0
	var quote byte
	for i := 0; i < len(query); i++ {
		c := query[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case c == '?':
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// wrap maps driver errors onto the store errors and adds context.
func (db *DB) wrap(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrConflict), errors.Is(err, store.ErrPrecondition):
		return err
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("%s: %w", op, store.ErrNotFound)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("store: %s: %w", op, err)
	case db.d.IsUniqueViolation != nil && db.d.IsUniqueViolation(err):
		return fmt.Errorf("%s: %w", op, store.ErrConflict)
	}
	return fmt.Errorf("store: %s (%s): %w", op, db.d.Name, err)
}

// affected returns ErrNotFound when res changed no row.
func affected(res sql.Result, what string) error {
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("%s: %w", what, store.ErrNotFound)
	}
	return nil
}

// Housekeeping piggybacks on writes: a purge runs on the first call, then
// whenever purgeInterval has passed (by the callers' record clock) or
// purgeEvery calls were made since the last one.
const (
	purgeInterval = 10 * time.Minute
	purgeEvery    = 512
)

type purger struct {
	mu    sync.Mutex
	last  time.Time
	calls int
}

// due tells whether a purge should run at now, and if so counts it as run.
func (p *purger) due(now time.Time) bool {
	if now.IsZero() {
		now = time.Now()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls++
	if p.last.IsZero() || now.Sub(p.last) >= purgeInterval || p.calls >= purgeEvery {
		p.last, p.calls = now, 0
		return true
	}
	return false
}

// micros converts t to unix microseconds; the zero time is 0.
func micros(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

// fromMicros is the inverse of micros, in UTC.
func fromMicros(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMicro(v).UTC()
}

// nowUTC is the store's wall clock for created/updated stamps, truncated to
// the stored precision so a returned record equals a re-read one.
func (db *DB) nowUTC() time.Time {
	return db.now().UTC().Truncate(time.Microsecond)
}

// placeholders returns "?, ?, …" with n marks.
func placeholders(n int) string {
	if n <= 0 {
		return ""
	}
	return strings.Repeat("?, ", n-1) + "?"
}

var _ store.Store = (*DB)(nil)
