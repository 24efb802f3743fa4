package dispatcher

import (
	"context"
	"time"

	"github.com/otphub/otphub/store"
)

// groupCommit turns concurrent synchronous store writes into shared
// transactions: each caller waits for the transaction its write joined, and
// the writes that arrive while one commits go out together in the next. A
// store commit is an fsync, so under load this is the difference between
// one transaction per delivery and one per batch (as the embedded log's
// group commit does for publishes).
type groupCommit[T any] struct {
	ch    chan gcItem[T]
	max   int
	flush func(ctx context.Context, items []T) []error // one error per item
}

type gcItem[T any] struct {
	v    T
	done chan error
}

func newGroupCommit[T any](max int, flush func(ctx context.Context, items []T) []error) *groupCommit[T] {
	return &groupCommit[T]{ch: make(chan gcItem[T]), max: max, flush: flush}
}

// do writes v in the next transaction and returns its outcome. When ctx
// ends first it returns ctx's error; the write may still be committed, so
// callers retry only idempotent writes (a completion, once applied, fails
// with ErrPrecondition).
func (g *groupCommit[T]) do(ctx context.Context, v T) error {
	it := gcItem[T]{v: v, done: make(chan error, 1)}
	select {
	case g.ch <- it:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-it.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run commits batches until ctx ends.
func (g *groupCommit[T]) run(ctx context.Context) {
	batch := make([]gcItem[T], 0, g.max)
	vals := make([]T, 0, g.max)
	for {
		batch, vals = batch[:0], vals[:0]
		select {
		case it := <-g.ch:
			batch = append(batch, it)
		case <-ctx.Done():
			return
		}
	more:
		for len(batch) < g.max {
			select {
			case it := <-g.ch:
				batch = append(batch, it)
			default:
				break more
			}
		}
		for _, it := range batch {
			vals = append(vals, it.v)
		}
		errs := g.flush(ctx, vals)
		for i, it := range batch {
			it.done <- errs[i]
		}
	}
}

// flushTimeout bounds one group transaction.
const flushTimeout = 10 * time.Second

// newCompletions builds the group commit of retry-attempt completions: the
// retry path's one store write per attempt. (Task inserts of failed first
// attempts stay one transaction each on purpose: under an overload that
// cost paces how fast the router moves a saturated endpoint's backlog from
// the log into the store, leaving CPU for the deliveries themselves.)
func (e *Engine) newCompletions() {
	e.completions = newGroupCommit(e.cfg.RecordBatch, func(ctx context.Context, items []store.AttemptCompletion) []error {
		ctx, cancel := context.WithTimeout(ctx, flushTimeout)
		defer cancel()
		errs, err := e.st.CompleteAttempts(ctx, e.cfg.Owner, items)
		if err == nil {
			return errs
		}
		// The transaction failed: one by one, so one bad item fails alone.
		errs = make([]error, len(items))
		for i, it := range items {
			errs[i] = e.st.CompleteAttempt(ctx, it.TaskID, e.cfg.Owner, it.Attempt, it.Update)
		}
		return errs
	})
}
