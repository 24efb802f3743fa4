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
// apart) at its cap of 1 with its queue full (of 1, FastQueueFactor for a
// fast endpoint), and returns the item running.
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
	for range FastQueueFactor {
		if a, _ := g.Admit(key, &item{}); a != Queued {
			t.Fatalf("the queue: %d", a)
		}
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

// TestLoadAndTheFastQueue: a fast, healthy endpoint's queue holds
// FastQueueFactor times the base depth, a slow or failing one's the base
// depth; Load is the queue's length as a share of the depth it may reach
// now, AnyLoaded whether any endpoint has a quarter of the base depth or
// more queued; DrainQueues forgets them.
func TestLoadAndTheFastQueue(t *testing.T) {
	clk := &fakeNow{}
	g := New[*item](1, 4, BreakerConfig{FailureThreshold: 3, OpenDuration: time.Minute}, clk.now)
	if g.AnyLoaded() || g.Load("e") != 0 {
		t.Fatalf("idle: AnyLoaded %v, Load %v", g.AnyLoaded(), g.Load("e"))
	}
	running := &item{}
	if a, _ := g.Admit("e", running); a != Run {
		t.Fatalf("first: %d", a)
	}
	for i := range 4 { // a slow endpoint (not paced yet): the base depth
		if a, _ := g.Admit("e", &item{}); a != Queued {
			t.Fatalf("queued %d: %d", i, a)
		}
		if want := float64(i+1) / 4; g.Load("e") != want || !g.AnyLoaded() {
			t.Fatalf("%d queued: Load %v, want %v; AnyLoaded %v", i+1, g.Load("e"), want, g.AnyLoaded())
		}
	}
	if a, _ := g.Admit("e", &item{}); a != DenyBusy {
		t.Fatalf("past the base depth of an unpaced endpoint: %d, want DenyBusy", a)
	}
	for range 4 { // attempts ending back to back: the pace of a fast endpoint
		next, ok, _, _ := g.Release("e", running, Success)
		if !ok {
			t.Fatal("the queued item was not handed over")
		}
		running = next
	}
	for i := range FastQueueFactor * 4 {
		if a, _ := g.Admit("e", &item{}); a != Queued {
			t.Fatalf("fast endpoint, queued %d: %d", i, a)
		}
	}
	if g.Load("e") != 1 || g.Load("other") != 0 {
		t.Fatalf("fast and full: Load %v, other %v; want 1, 0", g.Load("e"), g.Load("other"))
	}
	if a, _ := g.Admit("e", &item{}); a != DenyBusy {
		t.Fatalf("past the fast depth: %d, want DenyBusy", a)
	}
	next, _, _, _ := g.Release("e", running, TransientFailure) // a failure: the base depth again
	if want := float64(FastQueueFactor*4-1) / 4; g.Load("e") != want {
		t.Fatalf("failing with more than the base depth queued: Load %v, want %v", g.Load("e"), want)
	}
	if a, _ := g.Admit("e", &item{}); a != DenyBusy {
		t.Fatalf("a failing endpoint past its base depth: %d, want DenyBusy", a)
	}
	g.Release("e", next, Success)
	g.DrainQueues()
	if g.AnyLoaded() || g.Load("e") != 0 {
		t.Fatalf("after DrainQueues: AnyLoaded %v, Load %v", g.AnyLoaded(), g.Load("e"))
	}
}
