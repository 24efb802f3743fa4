package dispatcher

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
)

// TestGroupCommitSharesTransactions: concurrent writers share flushes, each
// gets its own item's outcome, and a caller whose context ends stops waiting.
func TestGroupCommitSharesTransactions(t *testing.T) {
	var flushes atomic.Int64
	release := make(chan struct{})
	bad := errors.New("bad item")
	g := newGroupCommit(64, func(_ context.Context, items []int) []error {
		if flushes.Add(1) == 1 {
			<-release // hold the first flush so the others queue up behind it
		}
		errs := make([]error, len(items))
		for i, v := range items {
			if v%10 == 0 {
				errs[i] = bad
			}
		}
		return errs
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go g.run(ctx)

	const n = 40
	var wg sync.WaitGroup
	results := make([]error, n+1)
	for i := 1; i <= n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = g.do(context.Background(), i)
		}()
	}
	close(release)
	wg.Wait()
	for i := 1; i <= n; i++ {
		if want := i%10 == 0; (results[i] != nil) != want {
			t.Errorf("item %d: %v", i, results[i])
		}
	}
	if f := flushes.Load(); f >= n {
		t.Errorf("%d flushes for %d concurrent writes: nothing was grouped", f, n)
	}

	stopped, stop := context.WithCancel(context.Background())
	stop()
	cancel() // run has ended: a write can only give up with its context
	if err := g.do(stopped, 1); !errors.Is(err, context.Canceled) {
		t.Errorf("a write whose context ended: %v", err)
	}
}
