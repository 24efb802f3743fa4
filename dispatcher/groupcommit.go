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

// newCompletions builds the group commits of the two store writes made
// per delivery that is not delivered at once: the completion of a retry's
// attempt, and the insert of a first attempt's task (failed, or refused by
// a busy endpoint). Inserts used to be one transaction each, which paced
// how fast the router could move a saturated endpoint's overflow from the
// log into the store; the router now waits briefly for room at a fast
// endpoint and publishing is refused while every destination is saturated
// (isolation.Gate.AdmitWait, backlog.Local), so an overflow is no longer
// the normal path under load, and what does overflow costs one fsync per
// batch instead of one per event.
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
	e.inserts = newGroupCommit(e.cfg.RecordBatch, func(ctx context.Context, items []taskInsert) []error {
		ctx, cancel := context.WithTimeout(ctx, flushTimeout)
		defer cancel()
		var tasks []store.DeliveryTask
		var atts []store.DeliveryAttempt
		for _, it := range items {
			tasks = append(tasks, it.task)
			atts = append(atts, it.attempts...)
		}
		errs := make([]error, len(items))
		if _, err := e.st.InsertDeliveryTasks(ctx, tasks, atts); err == nil {
			return errs
		}
		// The transaction failed: one by one, so one bad item fails alone
		// (an insert of a task that exists is skipped: retrying is safe).
		for i, it := range items {
			_, errs[i] = e.st.InsertDeliveryTasks(ctx, []store.DeliveryTask{it.task}, it.attempts)
		}
		return errs
	})
}

// taskInsert is one new task and its attempt log.
type taskInsert struct {
	task     store.DeliveryTask
	attempts []store.DeliveryAttempt
}
