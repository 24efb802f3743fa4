package sqlite_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/otphub/otphub/store"
)

// TestGroupCommit runs many concurrent write transactions, which the single
// writer groups into shared ones (one commit for many). Whatever the group
// they land in, each caller's outcome must be its own and true: a write
// that fails (a duplicate) rolls back alone, and a caller whose context
// ends while it waits either gets its context's error with nothing
// written, or success with its write committed, never an error for a
// committed write or a success for a lost one.
func TestGroupCommit(t *testing.T) {
	st := openFresh(t)
	ctx := context.Background()
	o, err := st.CreateOrg(ctx, "group-commit")
	if err != nil {
		t.Fatal(err)
	}
	const n = 600
	challenge := func(i int) store.Challenge {
		return store.Challenge{ID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i), OrgID: o.ID, UserID: "u", Mobile: "+94770000000",
			CodeHMAC: []byte{1}, ExpiresAt: time.Now().Add(time.Hour)}
	}
	// Every third ID exists already: creating it again must fail alone.
	for i := 0; i < n; i += 3 {
		if err := st.CreateChallenge(ctx, challenge(i), store.Lockout{}); err != nil {
			t.Fatal(err)
		}
	}
	window := time.Now().Truncate(time.Minute)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, cancel := context.WithCancel(ctx)
			defer cancel()
			if i%3 == 1 {
				// Half of these end while waiting for, or during, their turn.
				go func() { time.Sleep(time.Duration(i%7) * time.Millisecond); cancel() }()
			}
			errs[i] = st.CreateChallenge(c, challenge(i), store.Lockout{})
			if i%3 == 2 {
				if _, err := st.HitCounter(ctx, "k", window, time.Now().Add(time.Hour)); err != nil {
					t.Errorf("hit counter: %v", err)
				}
			}
		}()
	}
	wg.Wait()
	var cancelled int
	for i := range n {
		_, getErr := st.GetChallenge(ctx, o.ID, challenge(i).ID)
		switch {
		case i%3 == 0:
			if !errors.Is(errs[i], store.ErrConflict) {
				t.Errorf("challenge %d exists: create = %v, want ErrConflict", i, errs[i])
			}
		case errs[i] == nil:
			if getErr != nil {
				t.Errorf("challenge %d: create succeeded but it is not stored: %v", i, getErr)
			}
		case errors.Is(errs[i], context.Canceled):
			cancelled++
			if !errors.Is(getErr, store.ErrNotFound) {
				t.Errorf("challenge %d: create failed with %v but it is stored (%v)", i, errs[i], getErr)
			}
		default:
			t.Errorf("challenge %d: create = %v", i, errs[i])
		}
	}
	// Every hit counted once (n/3 of them), whatever its group.
	if hits, err := st.HitCounter(ctx, "k", window, time.Now().Add(time.Hour)); err != nil || hits != n/3+1 {
		t.Errorf("hit counter = %d, %v; want %d", hits, err, n/3+1)
	}
	t.Logf("%d of %d creates cancelled", cancelled, n)
}
