package dispatcher

import (
	"sync/atomic"
	"testing"
	"time"
)

type fakeNow struct{ t atomic.Int64 }

func (f *fakeNow) now() time.Time          { return time.Unix(0, f.t.Load()) }
func (f *fakeNow) advance(d time.Duration) { f.t.Add(int64(d)) }

func TestEndpointGateQueueAndCap(t *testing.T) {
	clk := &fakeNow{}
	es := newEndpoints(2, 1, BreakerConfig{FailureThreshold: 3, OpenDuration: time.Minute}, clk.now)
	ds := []*delivery{{}, {}, {}, {}}
	want := []admission{admitRun, admitRun, admitQueued, denyBusy}
	for i, d := range ds {
		if a, _ := es.admit("e", d); a != want[i] {
			t.Fatalf("delivery %d: admission %d, want %d", i, a, want[i])
		}
	}
	// A retry queues only in the first half of the queue (here: none of it).
	if a, _ := es.admitRetry("e", &delivery{}); a != denyBusy {
		t.Errorf("retry at cap: %d, want denyBusy", a)
	}
	// With room in the first half of the queue, a retry waits there.
	wide := newEndpoints(1, 4, BreakerConfig{FailureThreshold: 3, OpenDuration: time.Minute}, clk.now)
	wide.admit("w", &delivery{})
	for i, want := range []admission{admitQueued, admitQueued, denyBusy} {
		if a, _ := wide.admitRetry("w", &delivery{}); a != want {
			t.Errorf("retry %d at a busy endpoint: %d, want %d", i, a, want)
		}
	}
	if a, _ := wide.admit("w", &delivery{}); a != admitQueued {
		t.Errorf("a first attempt must still find room in the queue: %d", a)
	}
	// Another endpoint is unaffected.
	if a, _ := es.admit("other", &delivery{}); a != admitRun {
		t.Errorf("other endpoint: %d", a)
	}
	ok := &Result{OK: true}
	next, refused, _ := es.release("e", ds[0], ok)
	if next != ds[2] || len(refused) != 0 {
		t.Fatalf("release handed over %v (refused %d), want the queued delivery", next, len(refused))
	}
	es.release("e", ds[1], ok)
	es.release("e", ds[2], ok)
	es.release("other", &delivery{}, ok)
	if n := len(es.m); n != 0 {
		t.Errorf("%d idle endpoints still tracked", n)
	}
}

func TestBreakerOpensHalfOpensCloses(t *testing.T) {
	clk := &fakeNow{}
	es := newEndpoints(8, 8, BreakerConfig{FailureThreshold: 3, OpenDuration: time.Minute}, clk.now)
	fail := &Result{Retry: true, Reason: ReasonServerError}
	permanent := &Result{Reason: ReasonClientError}
	for i := range 3 {
		d := &delivery{}
		if a, _ := es.admit("e", d); a != admitRun {
			t.Fatalf("attempt %d refused", i)
		}
		es.release("e", d, fail)
		if i < 2 {
			// Permanent errors do not count (the endpoint is up) nor reset.
			d := &delivery{}
			es.admit("e", d)
			es.release("e", d, permanent)
		}
	}
	if st := es.states(); st[StateOpen] != 1 {
		t.Fatalf("states %v, want one open", st)
	}
	a, retryAt := es.admit("e", &delivery{})
	if a != denyOpen || !retryAt.Equal(clk.now().Add(time.Minute)) {
		t.Fatalf("open circuit: %d until %v", a, retryAt)
	}

	// Half-open: one probe, others refused while it is out.
	clk.advance(time.Minute)
	if st := es.states(); st[StateHalfOpen] != 1 {
		t.Fatalf("states %v, want one half-open", st)
	}
	probe := &delivery{}
	if a, _ := es.admitRetry("e", probe); a != admitRun || !probe.probe {
		t.Fatalf("probe: %d (probe=%v)", a, probe.probe)
	}
	if a, _ := es.admit("e", &delivery{}); a != denyOpen {
		t.Fatalf("second attempt while probing: %d", a)
	}
	// The probe fails: open again for a full OpenDuration.
	es.release("e", probe, fail)
	if a, at := es.admitRetry("e", &delivery{}); a != denyOpen || !at.Equal(clk.now().Add(time.Minute)) {
		t.Fatalf("after failed probe: %d until %v", a, at)
	}
	// The next probe succeeds: closed.
	clk.advance(time.Minute)
	probe = &delivery{}
	es.admit("e", probe)
	es.release("e", probe, &Result{OK: true})
	if a, _ := es.admit("e", &delivery{}); a != admitRun {
		t.Fatalf("closed circuit refused: %d", a)
	}
}

func TestBreakerQueuedBehindOpeningCircuitAreRefused(t *testing.T) {
	clk := &fakeNow{}
	es := newEndpoints(1, 4, BreakerConfig{FailureThreshold: 1, OpenDuration: time.Minute}, clk.now)
	first, queued := &delivery{}, &delivery{}
	es.admit("e", first)
	if a, _ := es.admit("e", queued); a != admitQueued {
		t.Fatal("not queued")
	}
	next, refused, retryAt := es.release("e", first, &Result{Retry: true, Reason: ReasonTimeout})
	if next != nil || len(refused) != 1 || refused[0] != queued || retryAt.IsZero() {
		t.Fatalf("next %v refused %v at %v", next, refused, retryAt)
	}
}

func TestBreakerDisabled(t *testing.T) {
	clk := &fakeNow{}
	es := newEndpoints(1, 0, BreakerConfig{FailureThreshold: -1, OpenDuration: time.Minute}, clk.now)
	for range 20 {
		d := &delivery{}
		if a, _ := es.admit("e", d); a != admitRun {
			t.Fatal("disabled breaker refused")
		}
		es.release("e", d, &Result{Retry: true})
	}
}
