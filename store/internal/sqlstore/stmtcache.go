package sqlstore

import (
	"context"
	"database/sql"
	"sync"
)

// stmtCache keeps one prepared statement per query text on a handle
// (Dialect.CacheStatements): parsing and planning a statement is most of
// the cost of a small SQLite query (in the SMS OTP challenge profile, a
// sixth of otphub's CPU went to the parser). database/sql prepares a
// cached statement again on each pooled connection the first time it runs
// there. The cache is bounded: past maxCached queries (which the store's
// fixed query texts never reach), a query runs unprepared.
//
// The writer is a single connection that a transaction holds, so its
// statements cannot be prepared while one runs: a transaction's statement
// that is not cached yet runs unprepared and is wanted, and the group
// committer prepares what is wanted between transactions.
type stmtCache struct {
	h      *sql.DB
	mu     sync.Mutex
	m      map[string]*sql.Stmt
	wanted map[string]bool
}

const maxCached = 512

func newStmtCache(h *sql.DB) *stmtCache {
	return &stmtCache{h: h, m: map[string]*sql.Stmt{}, wanted: map[string]bool{}}
}

// lookup returns query's statement if it is cached; else it is wanted.
func (c *stmtCache) lookup(query string) *sql.Stmt {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.m[query]
	if !ok && len(c.m)+len(c.wanted) < maxCached {
		c.wanted[query] = true
	}
	return s
}

// prepareWanted prepares the wanted statements; the handle must be free.
func (c *stmtCache) prepareWanted(ctx context.Context) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for q := range c.wanted {
		delete(c.wanted, q)
		if s, err := c.h.PrepareContext(ctx, q); err == nil {
			c.m[q] = s
		}
	}
}

// get returns query's statement, or nil when it cannot be cached.
func (c *stmtCache) get(ctx context.Context, query string) *sql.Stmt {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.m[query]; ok {
		return s
	}
	if len(c.m) >= maxCached {
		return nil
	}
	s, err := c.h.PrepareContext(ctx, query)
	if err != nil {
		return nil // run unprepared: the query reports its own error
	}
	c.m[query] = s
	return s
}

func (c *stmtCache) close() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for q, s := range c.m {
		s.Close()
		delete(c.m, q)
	}
}

// queryRow is db.r.QueryRowContext through the statement cache.
func (db *DB) queryRow(ctx context.Context, query string, args ...any) *sql.Row {
	if s := db.rstmts.get(ctx, query); s != nil {
		return s.QueryRowContext(ctx, args...)
	}
	return db.r.QueryRowContext(ctx, query, args...)
}

// query is db.r.QueryContext through the statement cache.
func (db *DB) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if s := db.rstmts.get(ctx, query); s != nil {
		return s.QueryContext(ctx, args...)
	}
	return db.r.QueryContext(ctx, query, args...)
}
