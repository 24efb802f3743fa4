package isolation

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

type item struct{ _ int }

type fakeNow struct{ t atomic.Int64 }

func (f *fakeNow) now() time.Time          { return time.Unix(0, f.t.Load()) }
func (f *fakeNow) advance(d time.Duration) { f.t.Add(int64(d)) }

func TestEndpointGateQueueAndCap(t *testing.T) {
	clk := &fakeNow{}
	es := New[*item](2, 1, BreakerConfig{FailureThreshold: 3, OpenDuration: time.Minute}, clk.now)
	ds := []*item{{}, {}, {}, {}}
	want := []Admission{Run, Run, Queued, DenyBusy}
	for i, d := range ds {
		if a, _ := es.Admit("e", d); a != want[i] {
			t.Fatalf("delivery %d: admission %d, want %d", i, a, want[i])
		}
	}
	// A retry queues only in the first half of the queue (here: none of it).
	if a, _ := es.AdmitRetry("e", &item{}); a != DenyBusy {
		t.Errorf("retry at cap: %d, want DenyBusy", a)
	}
	// With room in the first half of the queue, a retry waits there.
	wide := New[*item](1, 4, BreakerConfig{FailureThreshold: 3, OpenDuration: time.Minute}, clk.now)
	wide.Admit("w", &item{})
	for i, want := range []Admission{Queued, Queued, DenyBusy} {
		if a, _ := wide.AdmitRetry("w", &item{}); a != want {
			t.Errorf("retry %d at a busy endpoint: %d, want %d", i, a, want)
		}
	}
	if a, _ := wide.Admit("w", &item{}); a != Queued {
		t.Errorf("a first attempt must still find room in the queue: %d", a)
	}
	// Another endpoint is unaffected.
	if a, _ := es.Admit("other", &item{}); a != Run {
		t.Errorf("other endpoint: %d", a)
	}
	ok := Success
	next, _, refused, _ := es.Release("e", ds[0], ok)
	if next != ds[2] || len(refused) != 0 {
		t.Fatalf("release handed over %v (refused %d), want the queued delivery", next, len(refused))
	}
	es.Release("e", ds[1], ok)
	es.Release("e", ds[2], ok)
	es.Release("other", &item{}, ok)
	if n := len(es.m); n != 0 {
		t.Errorf("%d idle endpoints still tracked", n)
	}
}

func TestBreakerOpensHalfOpensCloses(t *testing.T) {
	clk := &fakeNow{}
	es := New[*item](8, 8, BreakerConfig{FailureThreshold: 3, OpenDuration: time.Minute}, clk.now)
	fail := TransientFailure
	permanent := PermanentFailure
	for i := range 3 {
		d := &item{}
		if a, _ := es.Admit("e", d); a != Run {
			t.Fatalf("attempt %d refused", i)
		}
		es.Release("e", d, fail)
		if i < 2 {
			// Permanent errors do not count (the endpoint is up) nor reset.
			d := &item{}
			es.Admit("e", d)
			es.Release("e", d, permanent)
		}
	}
	if st := es.States(); st[StateOpen] != 1 {
		t.Fatalf("states %v, want one open", st)
	}
	a, retryAt := es.Admit("e", &item{})
	if a != DenyOpen || !retryAt.Equal(clk.now().Add(time.Minute)) {
		t.Fatalf("open circuit: %d until %v", a, retryAt)
	}

	// Half-open: one probe, others refused while it is out.
	clk.advance(time.Minute)
	if st := es.States(); st[StateHalfOpen] != 1 {
		t.Fatalf("states %v, want one half-open", st)
	}
	probe := &item{}
	if a, _ := es.AdmitRetry("e", probe); a != Run || !es.IsProbe("e", probe) {
		t.Fatalf("probe: %d (probe=%v)", a, es.IsProbe("e", probe))
	}
	if a, _ := es.Admit("e", &item{}); a != DenyOpen {
		t.Fatalf("second attempt while probing: %d", a)
	}
	// The probe fails: open again for a full OpenDuration.
	es.Release("e", probe, fail)
	if a, at := es.AdmitRetry("e", &item{}); a != DenyOpen || !at.Equal(clk.now().Add(time.Minute)) {
		t.Fatalf("after failed probe: %d until %v", a, at)
	}
	// The next probe succeeds: closed.
	clk.advance(time.Minute)
	probe = &item{}
	es.Admit("e", probe)
	es.Release("e", probe, Success)
	if a, _ := es.Admit("e", &item{}); a != Run {
		t.Fatalf("closed circuit refused: %d", a)
	}
}

func TestBreakerQueuedBehindOpeningCircuitAreRefused(t *testing.T) {
	clk := &fakeNow{}
	es := New[*item](1, 4, BreakerConfig{FailureThreshold: 1, OpenDuration: time.Minute}, clk.now)
	first, queued := &item{}, &item{}
	es.Admit("e", first)
	if a, _ := es.Admit("e", queued); a != Queued {
		t.Fatal("not queued")
	}
	next, _, refused, retryAt := es.Release("e", first, TransientFailure)
	if next != nil || len(refused) != 1 || refused[0] != queued || retryAt.IsZero() {
		t.Fatalf("next %v refused %v at %v", next, refused, retryAt)
	}
}

func TestBreakerDisabled(t *testing.T) {
	clk := &fakeNow{}
	es := New[*item](1, 0, BreakerConfig{FailureThreshold: -1, OpenDuration: time.Minute}, clk.now)
	for range 20 {
		d := &item{}
		if a, _ := es.Admit("e", d); a != Run {
			t.Fatal("disabled breaker refused")
		}
		es.Release("e", d, TransientFailure)
	}
}

// TestHostCap: at most n attempts in flight per host, across every key;
// a waiter gets the slot a release frees, or gives up with its context.
func TestHostCap(t *testing.T) {
	h := NewHostCap(2)
	ctx := context.Background()
	r1, err1 := h.Acquire(ctx, "https://shared.example:443")
	r2, err2 := h.Acquire(ctx, "https://shared.example:443")
	if err1 != nil || err2 != nil {
		t.Fatalf("the first two slots: %v %v", err1, err2)
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := h.Acquire(short, "https://shared.example:443"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a third attempt at the cap: %v, want it to wait out its deadline", err)
	}
	other, err := h.Acquire(ctx, "https://other.example:443")
	if err != nil {
		t.Fatalf("another host: %v", err)
	}
	other()
	got := make(chan error, 1)
	go func() {
		r, err := h.Acquire(ctx, "https://shared.example:443")
		if err == nil {
			r()
		}
		got <- err
	}()
	r1()
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("the waiter after a release: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the waiter never got the released slot")
	}
	r2()
	var none *HostCap
	if r, err := none.Acquire(ctx, "x"); err != nil {
		t.Fatalf("a nil cap: %v", err)
	} else {
		r()
	}
}

// fastAndFull makes key a fast endpoint (attempts ending microseconds
// apart) at its cap of 1 with its queue of 1 full, and returns the item
// running.
func fastAndFull(t *testing.T, g *Gate[*item], key string) *item {
	t.Helper()
	running := &item{}
	if a, _ := g.Admit(key, running); a != Run {
		t.Fatalf("first: %d", a)
	}
	for range 4 { // attempts ending back to back: the pace of a fast endpoint
		g.Admit(key, &item{})
		next, ok, _, _ := g.Release(key, running, Success)
		if !ok {
			t.Fatal("the queued item was not handed over")
		}
		running = next
	}
	if a, _ := g.Admit(key, &item{}); a != Queued {
		t.Fatalf("the queue: %d", a)
	}
	return running
}

// TestAdmitWaitForAFastEndpoint: a first attempt to a fast, healthy
// endpoint whose queue is full waits for room (instead of being refused
// into a retry task), and gets it when an attempt ends.
func TestAdmitWaitForAFastEndpoint(t *testing.T) {
	clk := &fakeNow{}
	g := New[*item](1, 1, BreakerConfig{FailureThreshold: 3, OpenDuration: time.Minute}, clk.now)
	running := fastAndFull(t, g, "e")
	clk.advance(SaturatedAfter)
	if !g.Saturated("e") || !g.AnySaturated() || g.Saturated("other") {
		t.Fatalf("Saturated: %v AnySaturated: %v other: %v", g.Saturated("e"), g.AnySaturated(), g.Saturated("other"))
	}
	got := make(chan Admission, 1)
	go func() { a, _ := g.AdmitWait(context.Background(), "e", &item{}); got <- a }()
	select {
	case a := <-got:
		t.Fatalf("did not wait: %d", a)
	case <-time.After(MaxWait / 4):
	}
	g.Release("e", running, Success) // the queued one runs: room in the queue
	if a := <-got; a != Queued {
		t.Fatalf("after room was made: %d, want Queued", a)
	}
	if g.Saturated("e") {
		t.Fatal("the queue filled again just now, Saturated says yes")
	}
	clk.advance(SaturatedAfter)
	if !g.Saturated("e") {
		t.Fatal("the queue stayed full, Saturated says no")
	}
}

// TestAdmitWaitDoesNotWaitLong: a wait is bounded by MaxWait, and an
// endpoint none of whose attempts ended for MaxWait (stalled) is not
// waited for at all; neither is a failing endpoint, nor anything once the
// context is cancelled.
func TestAdmitWaitDoesNotWaitLong(t *testing.T) {
	clk := &fakeNow{}
	g := New[*item](1, 1, BreakerConfig{FailureThreshold: 3, OpenDuration: time.Minute}, clk.now)
	fastAndFull(t, g, "e")
	start := time.Now()
	if a, _ := g.AdmitWait(context.Background(), "e", &item{}); a != DenyBusy {
		t.Fatalf("no room within MaxWait: %d, want DenyBusy", a)
	}
	if waited := time.Since(start); waited < MaxWait {
		t.Fatalf("returned after %v, before MaxWait", waited)
	}
	start = time.Now()
	if a, _ := g.AdmitWait(context.Background(), "e", &item{}); a != DenyBusy || time.Since(start) >= MaxWait {
		t.Fatalf("a stalled endpoint: %d after %v, want DenyBusy at once", a, time.Since(start))
	}

	failing := New[*item](1, 1, BreakerConfig{FailureThreshold: 3, OpenDuration: time.Minute}, clk.now)
	running := fastAndFull(t, failing, "f")
	failing.Release("f", running, TransientFailure) // the queued one runs now
	failing.Admit("f", &item{})                     // and the queue is full again
	start = time.Now()
	if a, _ := failing.AdmitWait(context.Background(), "f", &item{}); a != DenyBusy || time.Since(start) >= MaxWait {
		t.Fatalf("a failing endpoint: %d after %v, want DenyBusy at once", a, time.Since(start))
	}

	c := New[*item](1, 1, BreakerConfig{FailureThreshold: 3, OpenDuration: time.Minute}, clk.now)
	fastAndFull(t, c, "c")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if a, _ := c.AdmitWait(ctx, "c", &item{}); a != DenyBusy {
		t.Fatalf("cancelled: %d", a)
	}
}

// TestSaturatedAtAQuarterOfTheQueue: an endpoint at its cap counts as
// saturated while a quarter of its queue waits, once the queue has not
// emptied for SaturatedAfter (publishing is refused while the rest of the
// queue takes what the log still holds; a queue that fills for a moment
// refuses nothing), and stops as the queue drains below a quarter; a
// queue that dipped below a quarter without emptying is saturated again
// at once; DrainQueues forgets it.
func TestSaturatedAtAQuarterOfTheQueue(t *testing.T) {
	clk := &fakeNow{}
	g := New[*item](1, 8, BreakerConfig{FailureThreshold: 3, OpenDuration: time.Minute}, clk.now)
	running := &item{}
	if a, _ := g.Admit("e", running); a != Run {
		t.Fatalf("first: %d", a)
	}
	for i := range 3 {
		if a, _ := g.Admit("e", &item{}); a != Queued {
			t.Fatalf("queued %d: %d", i, a)
		}
		if want := i >= 1; g.AnySaturated() != want || g.Saturated("e") {
			t.Fatalf("%d queued: AnySaturated %v (want %v), Saturated %v before SaturatedAfter", i+1, g.AnySaturated(), want, g.Saturated("e"))
		}
	}
	clk.advance(SaturatedAfter - time.Millisecond)
	if g.Saturated("e") {
		t.Fatal("saturated before the queue was non-empty for SaturatedAfter")
	}
	clk.advance(time.Millisecond)
	if !g.Saturated("e") {
		t.Fatal("a quarter of the queue waited for SaturatedAfter: not saturated")
	}
	for i := 0; i < 2; i++ {
		next, ok, _, _ := g.Release("e", running, Success)
		if !ok {
			t.Fatal("nothing handed back")
		}
		running = next
	}
	if g.Saturated("e") || g.AnySaturated() {
		t.Fatal("one queued of eight: still saturated")
	}
	g.Admit("e", &item{})
	g.Admit("e", &item{})
	if !g.AnySaturated() || !g.Saturated("e") {
		t.Fatalf("three queued again, the queue never emptied: AnySaturated %v, Saturated %v", g.AnySaturated(), g.Saturated("e"))
	}
	for range 3 { // empty the queue
		next, _, _, _ := g.Release("e", running, Success)
		running = next
	}
	g.Admit("e", &item{})
	g.Admit("e", &item{})
	if !g.AnySaturated() || g.Saturated("e") {
		t.Fatalf("two queued just after the queue emptied: AnySaturated %v, Saturated %v", g.AnySaturated(), g.Saturated("e"))
	}
	g.DrainQueues()
	if g.AnySaturated() {
		t.Fatal("saturated after DrainQueues")
	}
}
