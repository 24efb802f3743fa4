package admit

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func newGate(t *testing.T, limit int, wait time.Duration) *Gate {
	t.Helper()
	g, err := New(limit, wait)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// waitFor polls until the gate has n waiters.
func waitFor(t *testing.T, g *Gate, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); g.Stats().Waiting != n; {
		if time.Now().After(deadline) {
			t.Fatalf("waiting = %d, want %d", g.Stats().Waiting, n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestNewRefusesBadLimits(t *testing.T) {
	if _, err := New(0, time.Second); err == nil {
		t.Fatal("limit 0 accepted")
	}
	if _, err := New(1, -time.Second); err == nil {
		t.Fatal("negative wait accepted")
	}
}

func TestBusyWhenNoSlotFreesInTime(t *testing.T) {
	g := newGate(t, 2, 20*time.Millisecond)
	r1, err1 := g.Enter(context.Background(), "a")
	r2, err2 := g.Enter(context.Background(), "b")
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	if _, err := g.Enter(context.Background(), "c"); !errors.Is(err, ErrBusy) {
		t.Fatalf("third Enter: %v, want ErrBusy", err)
	}
	if s := g.Stats(); s != (Stats{InUse: 2}) {
		t.Fatalf("stats after the refusal %+v", s)
	}
	r1()
	r3, err := g.Enter(context.Background(), "c")
	if err != nil {
		t.Fatalf("Enter after a release: %v", err)
	}
	r2()
	r3()
	if s := g.Stats(); s != (Stats{}) {
		t.Fatalf("stats at the end %+v", s)
	}
}

func TestWaiterGetsTheReleasedSlot(t *testing.T) {
	g := newGate(t, 1, time.Minute)
	release, _ := g.Enter(context.Background(), "a")
	got := make(chan error, 1)
	go func() {
		r, err := g.Enter(context.Background(), "b")
		if err == nil {
			r()
		}
		got <- err
	}()
	waitFor(t, g, 1)
	release()
	if err := <-got; err != nil {
		t.Fatalf("waiter: %v", err)
	}
	if s := g.Stats(); s != (Stats{}) {
		t.Fatalf("stats at the end %+v", s)
	}
}

func TestFullQueueRefusesAtOnce(t *testing.T) {
	g := newGate(t, 1, time.Minute)
	release, _ := g.Enter(context.Background(), "a")
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 4 { // 4 × limit
		wg.Add(1)
		go func() { defer wg.Done(); _, _ = g.Enter(ctx, "a") }()
	}
	waitFor(t, g, 4)
	if _, err := g.Enter(context.Background(), "b"); !errors.Is(err, ErrBusy) {
		t.Fatalf("Enter with a full queue: %v, want ErrBusy", err)
	}
	cancel()
	wg.Wait()
	if s := g.Stats(); s != (Stats{InUse: 1}) {
		t.Fatalf("stats after the waiters gave up %+v", s)
	}
	release()
}

func TestCancelledWaiterLeavesTheQueue(t *testing.T) {
	g := newGate(t, 1, time.Minute)
	release, _ := g.Enter(context.Background(), "a")
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan error, 1)
	go func() { _, err := g.Enter(ctx, "b"); got <- err }()
	waitFor(t, g, 1)
	cancel()
	if err := <-got; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled waiter: %v", err)
	}
	release()
	if s := g.Stats(); s != (Stats{}) {
		t.Fatalf("stats at the end %+v", s)
	}
}

// A key with many waiters gets one turn, then the next key gets one.
func TestSlotsGoToKeysInTurn(t *testing.T) {
	g := newGate(t, 1, time.Minute)
	release, _ := g.Enter(context.Background(), "flood")
	var (
		mu    sync.Mutex
		order []string
		wg    sync.WaitGroup
	)
	enter := func(key string) {
		defer wg.Done()
		r, err := g.Enter(context.Background(), key)
		if err != nil {
			t.Error(err)
			return
		}
		mu.Lock()
		order = append(order, key)
		mu.Unlock()
		r()
	}
	for i := range 3 {
		wg.Add(1)
		go enter("flood")
		waitFor(t, g, i+1)
	}
	wg.Add(1)
	go enter("quiet")
	waitFor(t, g, 4)
	release()
	wg.Wait()
	want := []string{"flood", "quiet", "flood", "flood"}
	for i := range want {
		if order[i] != want[i] {
			t.Fatalf("admitted in order %v, want %v", order, want)
		}
	}
}

// Many goroutines entering with short waits and random holds: never more
// than the limit at once, and every slot and waiter accounted for at the
// end (a grant that races with a timeout is handed on, not lost).
func TestConcurrentUseKeepsTheBooks(t *testing.T) {
	const limit = 4
	g := newGate(t, limit, 200*time.Microsecond)
	var (
		now, peak, admitted, busy atomic.Int64
		wg                        sync.WaitGroup
	)
	for i := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := string(rune('a' + i%5))
			for range 200 {
				r, err := g.Enter(context.Background(), key)
				if err != nil {
					busy.Add(1)
					continue
				}
				n := now.Add(1)
				for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
				}
				admitted.Add(1)
				if rand.IntN(4) == 0 {
					time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
				}
				now.Add(-1)
				r()
			}
		}()
	}
	wg.Wait()
	if p := peak.Load(); p > limit {
		t.Fatalf("%d held at once, limit %d", p, limit)
	}
	if s := g.Stats(); s != (Stats{}) {
		t.Fatalf("stats at the end %+v (admitted %d, busy %d)", s, admitted.Load(), busy.Load())
	}
	if admitted.Load() == 0 || busy.Load() == 0 {
		t.Fatalf("admitted %d, busy %d: the test did not exercise both", admitted.Load(), busy.Load())
	}
}
