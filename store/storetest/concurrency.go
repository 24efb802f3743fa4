package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/otphub/otphub/store"
)

var concurrencyCases = []testCase{
	{"ConcurrentLeasing", testConcurrentLeasing},
	{"ConcurrentConsumeChallenge", testConcurrentConsume},
	{"ConcurrentClaimResend", testConcurrentClaimResend},
	{"ConcurrentUseBackupCode", testConcurrentBackupCode},
	{"ConcurrentCounters", testConcurrentCounters},
	{"ConcurrentReserveFailedAttempt", testConcurrentReserveFailedAttempt},
	{"ConcurrentUpsertSubscription", testConcurrentUpsert},
}

// parallel runs fn(i) for i in [0, n) at once and returns their errors.
func parallel(n int, fn func(i int) error) []error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = fn(i)
		}()
	}
	close(start)
	wg.Wait()
	return errs
}

func testConcurrentLeasing(t *testing.T, s store.Store) {
	c := ctx(t)
	a := mustOrg(t, s, "org-a")
	const tasks, owners = 60, 6
	var in []store.DeliveryTask
	for i := 0; i < tasks; i++ {
		tk := newTask(a.ID, fmt.Sprintf("t%03d", i), fmt.Sprintf("ev-%d", i), at(0))
		tk.NextAttemptAt = at(time.Duration(i) * time.Millisecond)
		in = append(in, tk)
	}
	_, err := s.InsertDeliveryTasks(c, in, nil)
	must(t, err, "InsertDeliveryTasks")

	now := at(time.Hour)
	var mu sync.Mutex
	leasedBy := map[string]string{}
	errs := parallel(owners, func(i int) error {
		owner := fmt.Sprintf("owner-%d", i)
		for {
			got, err := s.LeaseDueTasks(c, owner, now, time.Hour, 4)
			if err != nil {
				return err
			}
			if len(got) == 0 {
				return nil
			}
			mu.Lock()
			for _, tk := range got {
				if prev, dup := leasedBy[tk.ID]; dup {
					mu.Unlock()
					return fmt.Errorf("task %s leased by %s and %s", tk.ID, prev, owner)
				}
				if tk.LeaseOwner != owner {
					mu.Unlock()
					return fmt.Errorf("task %s returned to %s with lease owner %q", tk.ID, owner, tk.LeaseOwner)
				}
				leasedBy[tk.ID] = owner
			}
			mu.Unlock()
		}
	})
	for _, err := range errs {
		must(t, err, "concurrent LeaseDueTasks")
	}
	eq(t, len(leasedBy), tasks, "tasks leased in all")

	// Completing in parallel by the rightful owners all succeeds, once.
	ids := make([]string, 0, tasks)
	for id := range leasedBy {
		ids = append(ids, id)
	}
	errs = parallel(len(ids), func(i int) error {
		return s.CompleteAttempt(c, ids[i], leasedBy[ids[i]], store.DeliveryAttempt{TaskID: ids[i], StartedAt: now, Outcome: "success", StatusCode: 200},
			store.TaskUpdate{Status: store.DeliveryDelivered, LastStatusCode: 200})
	})
	for _, err := range errs {
		must(t, err, "concurrent CompleteAttempt")
	}
	st, err := s.DeliveryStats(c)
	must(t, err, "DeliveryStats")
	eq(t, st.Pending, int64(0), "pending tasks after every one was completed")
	done, err := s.ListDeliveries(c, a.ID, store.DeliveryFilter{Status: store.DeliveryDelivered, Limit: 1000})
	must(t, err, "ListDeliveries(delivered)")
	eq(t, len(done), tasks, "delivered tasks")
}

func countOutcomes(t *testing.T, errs []error, what string) int {
	t.Helper()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, store.ErrPrecondition):
		default:
			t.Fatalf("%s: unexpected error %v", what, err)
		}
	}
	return ok
}

// testConcurrentClaimResend: of concurrent resends of one challenge (a
// double click), one claims the turn; the others send nothing.
func testConcurrentClaimResend(t *testing.T, s store.Store) {
	c := ctx(t)
	a := mustOrg(t, s, "org-a")
	for round := 0; round < 3; round++ {
		ch := newChallenge(a.ID, fmt.Sprintf("c-%d", round))
		must(t, s.CreateChallenge(c, ch, store.Lockout{}), "CreateChallenge")
		errs := parallel(12, func(i int) error {
			return s.ClaimResend(c, a.ID, ch.ID, 0, ch.LastSentAt, at(time.Duration(i+1)*time.Microsecond))
		})
		if n := countOutcomes(t, errs, "ClaimResend"); n != 1 {
			t.Fatalf("round %d: %d concurrent ClaimResend calls succeeded, want exactly 1", round, n)
		}
	}
}

func testConcurrentConsume(t *testing.T, s store.Store) {
	c := ctx(t)
	a := mustOrg(t, s, "org-a")
	for round := 0; round < 3; round++ {
		ch := newChallenge(a.ID, fmt.Sprintf("c-%d", round))
		must(t, s.CreateChallenge(c, ch, store.Lockout{}), "CreateChallenge")
		errs := parallel(12, func(i int) error {
			return s.ConsumeChallenge(c, a.ID, ch.ID, ch.CodeHMAC, at(time.Duration(i)*time.Second))
		})
		if n := countOutcomes(t, errs, "ConsumeChallenge"); n != 1 {
			t.Fatalf("round %d: %d concurrent ConsumeChallenge calls succeeded, want exactly 1", round, n)
		}
	}
}

func testConcurrentBackupCode(t *testing.T, s store.Store) {
	c := ctx(t)
	a := mustOrg(t, s, "org-a")
	must(t, s.ReplaceBackupCodes(c, a.ID, "alice", [][]byte{[]byte("h1"), []byte("h2")}), "ReplaceBackupCodes")
	codes, err := s.ListBackupCodes(c, a.ID, "alice")
	must(t, err, "ListBackupCodes")
	for _, code := range codes {
		errs := parallel(12, func(i int) error {
			return s.UseBackupCode(c, a.ID, "alice", code.ID, at(time.Duration(i)*time.Second))
		})
		if n := countOutcomes(t, errs, "UseBackupCode"); n != 1 {
			t.Fatalf("%d concurrent UseBackupCode calls succeeded, want exactly 1", n)
		}
	}
}

func testConcurrentCounters(t *testing.T, s store.Store) {
	c := ctx(t)
	a := mustOrg(t, s, "org-a")
	const workers, each = 8, 50
	var mu sync.Mutex
	seenFailed := map[int]bool{}
	seenHits := map[int64]bool{}
	errs := parallel(workers, func(i int) error {
		for j := 0; j < each; j++ {
			n, err := s.ReserveFailedAttempt(c, a.ID, "alice", noMax, at(time.Duration(j)*time.Millisecond), time.Time{})
			if err != nil {
				return err
			}
			h, err := s.HitCounter(c, "org:1", at(0), at(time.Minute))
			if err != nil {
				return err
			}
			mu.Lock()
			dupF, dupH := seenFailed[n], seenHits[h]
			seenFailed[n], seenHits[h] = true, true
			mu.Unlock()
			if dupF || dupH {
				return fmt.Errorf("two increments returned the same value (failed %d dup %v, hits %d dup %v)", n, dupF, h, dupH)
			}
		}
		return nil
	})
	for _, err := range errs {
		must(t, err, "concurrent increments")
	}
	n, _, err := s.FailedAttempts(c, a.ID, "alice")
	must(t, err, "FailedAttempts")
	eq(t, n, workers*each, "failed attempts after concurrent increments")
	h, err := s.HitCounter(c, "org:1", at(0), at(time.Minute))
	must(t, err, "HitCounter")
	eq(t, h, int64(workers*each+1), "hits after concurrent increments (+1)")
}

// testConcurrentReserveFailedAttempt: of a burst of reservations for one
// user, exactly max succeed, whether the user had no row, a live count, or
// a count whose window ended (which starts over).
func testConcurrentReserveFailedAttempt(t *testing.T, s store.Store) {
	c := ctx(t)
	a := mustOrg(t, s, "org-a")
	const max, burst = 3, 24
	rounds := []struct {
		name          string
		now, forgetAt time.Time
		wantOK        int
	}{
		{"no row", at(time.Minute), at(0), max},
		{"live count", at(2 * time.Minute), at(0), 0},
		{"window ended", at(time.Hour), at(59 * time.Minute), max},
	}
	for _, r := range rounds {
		errs := parallel(burst, func(i int) error {
			_, err := s.ReserveFailedAttempt(c, a.ID, "alice", max, r.now, r.forgetAt)
			return err
		})
		if n := countOutcomes(t, errs, "ReserveFailedAttempt"); n != r.wantOK {
			t.Fatalf("%s: %d of %d concurrent reservations succeeded, want %d", r.name, n, burst, r.wantOK)
		}
		n, _, err := s.FailedAttempts(c, a.ID, "alice")
		must(t, err, "FailedAttempts")
		eq(t, n, max, r.name+": count after the burst")
	}
}

func testConcurrentUpsert(t *testing.T, s store.Store) {
	c := ctx(t)
	a := mustOrg(t, s, "org-a")
	errs := parallel(8, func(i int) error {
		in := newSub(a.ID, topicA, "https://cb.example/same")
		in.LeaseSeconds = i
		_, err := s.UpsertSubscription(c, in)
		return err
	})
	for _, err := range errs {
		must(t, err, "concurrent UpsertSubscription")
	}
	list, err := s.ListSubscriptions(c, a.ID)
	must(t, err, "ListSubscriptions")
	eq(t, len(list), 1, "subscriptions after concurrent upserts of one (topic, callback)")
}
