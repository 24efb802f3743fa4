package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"time"
)

// Tx is a write transaction as the store's functions see it: a *sql.Tx
// whose statements, inside a group transaction, run under the group's
// context instead of the one their caller passes (see groupCommitter).
type Tx struct {
	tx  *sql.Tx
	ctx context.Context // the group's; nil: the caller's own transaction
	// stmts are the statements a group transaction prepared, by query
	// text, for the next function of the group that runs the same one
	// (nil outside groups). They live as long as the transaction: sql.Tx
	// closes them when it ends, so none outlives it.
	stmts map[string]*sql.Stmt
}

// maxGroupStmts bounds a group transaction's statements (queries with IN
// lists have one text per list length); beyond it statements run
// unprepared.
const maxGroupStmts = 64

func (t *Tx) use(ctx context.Context) context.Context {
	if t.ctx != nil {
		return t.ctx
	}
	return ctx
}

// stmt is the group's prepared statement for query, prepared now if it is
// the first time; nil outside a group, or past maxGroupStmts.
func (t *Tx) stmt(query string) (*sql.Stmt, error) {
	if t.stmts == nil {
		return nil, nil
	}
	if s, ok := t.stmts[query]; ok {
		return s, nil
	}
	if len(t.stmts) >= maxGroupStmts {
		return nil, nil
	}
	s, err := t.tx.PrepareContext(t.ctx, query)
	if err != nil {
		return nil, err
	}
	t.stmts[query] = s
	return s, nil
}

// ExecContext is sql.Tx.ExecContext.
func (t *Tx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	s, err := t.stmt(query)
	if err != nil {
		return nil, err
	}
	if s != nil {
		return s.ExecContext(t.ctx, args...)
	}
	return t.tx.ExecContext(t.use(ctx), query, args...)
}

// QueryRowContext is sql.Tx.QueryRowContext. (In a group it reuses the
// group's statement: its row is read, and the statement reset, by Scan,
// before the next statement runs. QueryContext does not, since its rows
// may stay open while the same query runs again.)
func (t *Tx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if s, err := t.stmt(query); err == nil && s != nil {
		return s.QueryRowContext(t.ctx, args...)
	}
	return t.tx.QueryRowContext(t.use(ctx), query, args...)
}

// queryRows runs query and calls fn for each row, the rows closed before
// it returns (so, in a group, it may reuse the group's statement).
func (t *Tx) queryRows(ctx context.Context, query string, args []any, fn func(*sql.Rows) error) error {
	s, err := t.stmt(query)
	if err != nil {
		return err
	}
	var rows *sql.Rows
	if s != nil {
		rows, err = s.QueryContext(t.ctx, args...)
	} else {
		rows, err = t.tx.QueryContext(t.use(ctx), query, args...)
	}
	return eachRow(rows, err, fn)
}

// querier runs statements: a *Tx, or a pool outside any transaction.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	queryRows(ctx context.Context, query string, args []any, fn func(*sql.Rows) error) error
}

// pool is a querier whose every statement commits on its own.
type pool struct{ *sql.DB }

func (p pool) queryRows(ctx context.Context, query string, args []any, fn func(*sql.Rows) error) error {
	rows, err := p.QueryContext(ctx, query, args...)
	return eachRow(rows, err, fn)
}

func eachRow(rows *sql.Rows, err error, fn func(*sql.Rows) error) error {
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := fn(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// QueryContext is sql.Tx.QueryContext.
func (t *Tx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return t.tx.QueryContext(t.use(ctx), query, args...)
}

// PrepareContext is sql.Tx.PrepareContext.
func (t *Tx) PrepareContext(ctx context.Context, query string) (*Stmt, error) {
	s, err := t.tx.PrepareContext(t.use(ctx), query)
	if err != nil {
		return nil, err
	}
	return &Stmt{s: s, t: t}, nil
}

// Stmt is a statement prepared in a Tx.
type Stmt struct {
	s *sql.Stmt
	t *Tx
}

// ExecContext is sql.Stmt.ExecContext.
func (s *Stmt) ExecContext(ctx context.Context, args ...any) (sql.Result, error) {
	return s.s.ExecContext(s.t.use(ctx), args...)
}

// Close is sql.Stmt.Close.
func (s *Stmt) Close() error { return s.s.Close() }

// tx runs fn in a write transaction, committing when it returns nil. A
// transaction failing with a retryable error (serialization failure,
// deadlock) is run again a few times. fn may run more than once, and its
// writes are committed when tx returns nil, never after.
func (db *DB) tx(ctx context.Context, fn func(tx *Tx) error) error {
	if db.group != nil {
		return db.group.do(ctx, fn)
	}
	const maxTries = 5
	var err error
	for try := 0; try < maxTries; try++ {
		err = db.tryTx(ctx, fn)
		if err == nil || db.d.IsRetryable == nil || !db.d.IsRetryable(err) || ctx.Err() != nil {
			return err
		}
		time.Sleep(time.Duration(try+1) * 5 * time.Millisecond)
	}
	return err
}

func (db *DB) tryTx(ctx context.Context, fn func(tx *Tx) error) error {
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return db.wrap("begin", err)
	}
	if err := fn(&Tx{tx: tx}); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return db.wrap("commit", err)
	}
	return nil
}

// groupCommitter runs the write transactions of a database with a single
// writer (SQLite): the transactions that arrive while one commits are run
// together as one, each in its own savepoint, and share its commit. A
// commit is an fsync (synchronous=FULL), so under load this is one fsync
// per group instead of one per transaction, which is what starting SMS OTP
// challenges (a challenge and its budget counters) is bound by. A
// function that fails rolls back to its savepoint and fails alone; the
// group's commit failing fails them all (nothing of theirs is committed).
// Alone, a transaction runs as before, under its caller's context.
//
// In a group, statements run under the group's context: a caller whose
// context ends stops waiting for its turn (its function is then not run),
// but once its function runs, the caller waits for the commit, so what tx
// returns is always the outcome. (SQLite rolls back the whole transaction
// when a statement is interrupted, so one caller's cancellation must not
// reach the shared transaction.)
type groupCommitter struct {
	db      *DB
	ch      chan *groupItem
	quit    chan struct{}
	stopped chan struct{}
	once    sync.Once
}

type groupItem struct {
	ctx  context.Context
	fn   func(tx *Tx) error
	done chan error
}

const (
	maxGroup     = 128              // functions per group transaction
	groupTimeout = 30 * time.Second // bounds one group transaction
)

func startGroupCommitter(db *DB) *groupCommitter {
	g := &groupCommitter{db: db, ch: make(chan *groupItem), quit: make(chan struct{}), stopped: make(chan struct{})}
	go g.run()
	return g
}

var errClosed = errors.New("store: closed")

func (g *groupCommitter) do(ctx context.Context, fn func(tx *Tx) error) error {
	it := &groupItem{ctx: ctx, fn: fn, done: make(chan error, 1)}
	select {
	case g.ch <- it:
	case <-ctx.Done():
		return g.db.wrap("begin", ctx.Err())
	case <-g.quit:
		return errClosed
	}
	return <-it.done
}

// stop ends run once the group being run has committed; it may be called
// more than once.
func (g *groupCommitter) stop() {
	g.once.Do(func() { close(g.quit) })
	<-g.stopped
}

func (g *groupCommitter) run() {
	defer close(g.stopped)
	batch := make([]*groupItem, 0, maxGroup)
	for {
		batch = batch[:0]
		select {
		case it := <-g.ch:
			batch = append(batch, it)
		case <-g.quit:
			return
		}
	more:
		for len(batch) < maxGroup {
			select {
			case it := <-g.ch:
				batch = append(batch, it)
			default:
				break more
			}
		}
		if len(batch) == 1 {
			batch[0].done <- g.db.tryTx(batch[0].ctx, batch[0].fn)
			continue
		}
		g.runGroup(batch)
	}
}

// runGroup runs batch as one transaction and tells each item its outcome.
func (g *groupCommitter) runGroup(batch []*groupItem) {
	db := g.db
	ctx, cancel := context.WithTimeout(context.Background(), groupTimeout)
	defer cancel()
	errs := make([]error, len(batch))
	ran := make([]bool, len(batch))
	finish := func(commitErr error) {
		for i, it := range batch {
			if errs[i] == nil && ran[i] {
				errs[i] = commitErr
			}
			it.done <- errs[i]
		}
	}
	sqlTx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		for i := range batch {
			errs[i] = db.wrap("begin", err)
		}
		finish(nil)
		return
	}
	tx := &Tx{tx: sqlTx, ctx: ctx, stmts: map[string]*sql.Stmt{}}
	// abort ends the group when its transaction is no longer usable: every
	// function that ran (or would have) fails with err.
	abort := func(op string, err error) {
		_ = sqlTx.Rollback()
		for i := range batch {
			if errs[i] == nil {
				errs[i] = db.wrap(op, err)
			}
		}
		finish(nil)
	}
	for i, it := range batch {
		if err := it.ctx.Err(); err != nil {
			errs[i] = db.wrap("begin", err)
			continue
		}
		if _, err := tx.ExecContext(ctx, "SAVEPOINT grp"); err != nil {
			abort("savepoint", err)
			return
		}
		ran[i] = true
		if errs[i] = it.fn(tx); errs[i] != nil {
			if _, err := tx.ExecContext(ctx, "ROLLBACK TO grp"); err != nil {
				abort("rollback to savepoint", err)
				return
			}
		}
		if _, err := tx.ExecContext(ctx, "RELEASE grp"); err != nil {
			abort("release savepoint", err)
			return
		}
	}
	if err := sqlTx.Commit(); err != nil {
		finish(db.wrap("commit", err))
		return
	}
	finish(nil)
}

// closeGroup stops the group committer, if any.
func (db *DB) closeGroup() {
	if db.group != nil {
		db.group.stop()
	}
}

// exec runs one write statement in its own transaction (grouped with
// others' under load, see groupCommitter).
func (db *DB) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	var res sql.Result
	err := db.tx(ctx, func(tx *Tx) error {
		var err error
		res, err = tx.ExecContext(ctx, query, args...)
		return err
	})
	return res, err
}

// writeRow is QueryRowContext on the writer, in its own transaction: for
// an INSERT … RETURNING, or a read that must see every committed write.
func (db *DB) writeRow(ctx context.Context, query string, args ...any) rowScan {
	return rowScan{db, ctx, query, args}
}

type rowScan struct {
	db    *DB
	ctx   context.Context
	query string
	args  []any
}

// Scan runs the statement and scans its row.
func (r rowScan) Scan(dest ...any) error {
	return r.db.tx(r.ctx, func(tx *Tx) error {
		return tx.QueryRowContext(r.ctx, r.query, r.args...).Scan(dest...)
	})
}
